"""Human pose estimation (SimpleBaseline's setting): joint tables, the crop geometry and the metrics.

``joints`` holds the one copy of every per-dataset joint table (names, left/right flip pairs, COCO's OKS sigmas,
MPII's PCKh groups); ``affine`` the person-box crop, rotation and flip as 2x3 affine maps; ``pckh`` and ``oks``
the MPII and COCO metrics in NumPy (``oks_pycocotools``: the same AP through
pycocotools, the optional ``pose`` extra). The datasets are ``fdn.data.mpii`` and ``fdn.data.coco_keypoints``, the
training/evaluation crops ``fdn.data.pose_pipeline``. Nothing here imports JAX or the tfds builders, so grain
workers and metric code can use it cheaply.
"""
