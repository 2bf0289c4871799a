"""Using a trained model: the model checkpoint format, inference, evaluation, images and export.

``checkpoint`` (an fdn model directory: ``fdn_model.json`` + Orbax variables), ``inference`` (the eval-mode
forward at any input size), ``images`` (reading and normalising pictures), ``visualize`` (palettes, depth maps),
``evaluation`` (metrics of a checkpoint on a split), ``export`` (BN folding, StableHLO / ONNX). The commands
``python -m fdn.predict|evaluate|export`` are thin modules at the package top. Nothing here imports the search
or the trainers.
"""
