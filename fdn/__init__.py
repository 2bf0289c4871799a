"""fdn: fast dense NAS.

A JAX/Flax reimplementation of the decoder search of *Fast Neural Architecture Search of Compact Semantic
Segmentation Models via Auxiliary Cells* (Nekrasov et al., CVPR 2019), built for throughput.
"""

__version__ = "0.1.0"
