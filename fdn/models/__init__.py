"""The networks: the MobileNet-v2 encoder, the searched decoder (ordinary and universal) and their parts.

``layers`` (PyTorch-semantics conv / BatchNorm), ``conv`` and ``depthwise`` (convolution kernels fast on
XLA:CPU), ``resize``, ``ops`` (the search space's operations), ``cells``, ``decoder``, ``encoder``,
``segmenter`` (encoder + decoder, `ModelSpec`), ``init`` (NumPy initialisers), ``bn_calibration`` and
``universal`` (the decoder compiled once as an interpreter of the genotype). Nothing here imports from the
search, the trainers or serving.
"""
