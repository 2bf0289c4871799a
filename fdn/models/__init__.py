"""The networks: the MobileNet-v2 encoder, the searched decoder (ordinary and universal) and their parts.

``layers`` (PyTorch-semantics conv / BatchNorm), ``conv`` and ``depthwise`` (convolution kernels fast on
XLA:CPU), ``resize``, ``ops`` (the search space's operations), ``cells``, ``decoder``, ``encoder``,
``segmenter`` (encoder + decoder, `ModelSpec`), ``init`` (NumPy initialisers), ``bn_calibration``,
``names`` (every module, variable and collection name, and the patterns that read them back: one spelling
for the models, the converters, the optimisers and checkpoints), ``trainable`` (which parameters a genotype
trains and which it freezes, by those names) and ``universal`` (the decoder compiled once as an interpreter
of the genotype). Nothing here imports from the search, the trainers or serving (``tests/test_house.py``).
"""
