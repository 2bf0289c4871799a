"""fdn: fast dense NAS.

A JAX/Flax reimplementation of the decoder search of *Fast Neural Architecture Search of Compact Semantic
Segmentation Models via Auxiliary Cells* (Nekrasov et al., CVPR 2019), built for throughput.
"""

__version__ = "0.1.0"

from fdn.host_memory import reexec_command_with_hugepages as _reexec_command_with_hugepages

_reexec_command_with_hugepages()  # only for ``python -m fdn.X``, before anything heavy is imported
