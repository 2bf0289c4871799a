"""One compiled decoder program for every genotype: the search's answer to per-candidate compilation.

A candidate's decoder differs from another's only in *data*: which op each cell slot runs, which features
each slot reads, which pool entries feed each block, and at which resolution each cell therefore runs. fdn
compiles the decoder once as an interpreter of those choices (``fdn.models.universal.decoder``), fed by a small
array *plan* per genotype (``fdn.models.universal.plan``) and by parameters in a fixed, genotype-independent
layout (``fdn.models.universal.layout``, converted from and back to the ordinary ``fdn.models.decoder.Decoder``
variables). Every candidate of a search then reuses the same stage-1, stage-2 and evaluation executables.
"""

from fdn.models.universal.decoder import Geometry, UniversalDecoder  # noqa: F401
from fdn.models.universal.layout import Layout  # noqa: F401
from fdn.models.universal.plan import make_plan  # noqa: F401
