"""The genotype: what the controller emits and what the decoder is built from.

Format (the paper's, and the text the official logs print)::

    [[op0, [p1, p2, o1, o2], [p1, p2, o1, o2], [p1, p2, o1, o2]], [[i1, i2], [i1, i2], [i1, i2]]]

The first half is the *cell*: ``op0`` is applied to the cell input ``x``; each of the three pairs then picks two
features by position from the cell's growing pool ``[x, op0(x), a1, b1, s1, a2, b2, s2]`` (pool sizes 2, 5 and 8
for pairs 1, 2 and 3, as in the 2019 search code that found the released architectures), applies ops ``o1`` and
``o2`` and sums them (``s = a + b``). The cell's output is the sum of its loose ends.

The second half wires the three decoder *blocks*: block ``b`` fuses two entries of the decoder pool
``[l1, l2, l3, l4, b1, b2, ...]`` (4 + b choices: the four encoder outputs and the earlier blocks' outputs).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from fdn.errors import UserError


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One candidate operation: the single record every part of fdn reads for it (pure data, no flax).

    ``kind`` is what the constructor builds (``fdn.models.ops.make_op``: 'conv' = conv-BN-ReLU, 'sep' =
    separable conv, 'gap' = global average pool, 'skip', 'zero'); ``kernel`` and ``dilation`` its geometry.
    The padding keeps the resolution. Ops that differ only in dilation have the same parameter shapes, so they
    share a parameter ``family`` (the universal decoder's banks, ``fdn.models.universal.layout``).
    """

    id: int
    name: str  # the official name (README, logs)
    short: str  # as the paper's figures write it ("sep5x5 rate 6" -> sep5x5r6), used by ``describe()``
    kind: str
    kernel: int = 1
    dilation: int = 1

    @property
    def padding(self) -> int:
        return self.dilation * (self.kernel - 1) // 2

    @property
    def family(self) -> str | None:
        """Parameter family (None: the op has no parameters)."""
        if self.kind in ("conv", "sep"):
            return f"{self.kind}{self.kernel}"
        return "gap" if self.kind == "gap" else None


# The op table: id (the index), official name, short name, kind and geometry. Ids are those of the paper and
# the official code, so genotypes from either read the same.
OPS = (
    OpSpec(0, "conv1x1", "conv1x1", "conv", 1),
    OpSpec(1, "conv3x3", "conv3x3", "conv", 3),
    OpSpec(2, "sep_conv_3x3", "sep3x3", "sep", 3),
    OpSpec(3, "sep_conv_5x5", "sep5x5", "sep", 5),
    OpSpec(4, "global_average_pool", "gap", "gap"),
    OpSpec(5, "conv3x3_dil3", "conv3x3r3", "conv", 3, 3),
    OpSpec(6, "conv3x3_dil12", "conv3x3r12", "conv", 3, 12),
    OpSpec(7, "sep_conv_3x3_dil3", "sep3x3r3", "sep", 3, 3),
    OpSpec(8, "sep_conv_5x5_dil6", "sep5x5r6", "sep", 5, 6),
    OpSpec(9, "skip_connect", "skip", "skip"),
    OpSpec(10, "none", "none", "zero"),
)
NUM_OPS = len(OPS)
OP_NAMES = tuple(op.name for op in OPS)

NUM_PAIRS = 3
NUM_BLOCKS = 3
NUM_ENCODER_OUTPUTS = 4
# Choices for the two positions of pair 1, 2, 3: the cell pool holds x and op0(x), then 3 more per pair.
CELL_POSITION_CHOICES = (2, 5, 8)
# Choices for the two inputs of block 1, 2, 3: the encoder outputs plus the earlier blocks' outputs.
BLOCK_INPUT_CHOICES = (4, 5, 6)
# Flattened action layout used by the official code: [0, op0, (p1, p2, o1, o2) x 3, (i1, i2) x 3].
ACTION_SIZE = 2 + 4 * NUM_PAIRS + 2 * NUM_BLOCKS


class GenotypeError(UserError, ValueError):
    """A genotype that is malformed or outside the search space; the message names the bad field."""


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A decoder design: one cell design shared by every cell, plus the wiring of the three blocks."""

    op0: int
    pairs: tuple[tuple[int, int, int, int], ...]
    blocks: tuple[tuple[int, int], ...]

    def __post_init__(self):
        object.__setattr__(self, "pairs", tuple(tuple(int(v) for v in p) for p in self.pairs))
        object.__setattr__(self, "blocks", tuple(tuple(int(v) for v in b) for b in self.blocks))
        object.__setattr__(self, "op0", int(self.op0))
        validate(self)

    # ----------------------------------------------------------------------------------------- formats
    def to_list(self) -> list:
        """The paper's nested-list format."""
        return [[self.op0, *[list(p) for p in self.pairs]], [list(b) for b in self.blocks]]

    def to_json(self) -> str:
        return json.dumps(self.to_list(), separators=(", ", ": "))

    def __str__(self) -> str:
        return json.dumps(self.to_list())

    def to_actions(self) -> list[int]:
        """The official flattened action vector: ``[0, op0, (p1, p2, o1, o2) x 3, (i1, i2) x 3]``."""
        return [0, self.op0, *[v for p in self.pairs for v in p], *[v for b in self.blocks for v in b]]

    @classmethod
    def from_actions(cls, actions: Sequence[int]) -> Genotype:
        actions = [int(a) for a in actions]
        if len(actions) != ACTION_SIZE:
            raise GenotypeError(f"an action vector has {ACTION_SIZE} entries, got {len(actions)}")
        pairs = tuple(tuple(actions[2 + 4 * i : 6 + 4 * i]) for i in range(NUM_PAIRS))
        off = 2 + 4 * NUM_PAIRS
        blocks = tuple(tuple(actions[off + 2 * i : off + 2 + 2 * i]) for i in range(NUM_BLOCKS))
        return cls(actions[1], pairs, blocks)

    @property
    def short_hash(self) -> str:
        """A stable 10-hex-digit id (sha256 of the canonical JSON) for de-duplicating searched designs."""
        return hashlib.sha256(json.dumps(self.to_list()).encode()).hexdigest()[:10]

    # ------------------------------------------------------------------------------------ structure
    def cell_loose_ends(self) -> list[int]:
        """Pool indices whose features are summed into the cell output (x, index 0, never is)."""
        ends = [1]
        for layer, (p1, p2, _, _) in enumerate(self.pairs, start=1):
            ends = [e for e in ends if e not in (p1, p2)]
            ends.append(3 * layer + 1)
        return [e for e in ends if e != 0]

    def collected_blocks(self) -> list[int]:
        """Indices (0-based among blocks) of block outputs no later block consumes: the final head fuses them."""
        used = {i for b in self.blocks for i in b}
        return [b for b in range(NUM_BLOCKS) if NUM_ENCODER_OUTPUTS + b not in used]

    def encoder_levels_used(self) -> list[int]:
        """Encoder outputs (0..3 = l1..l4) that feed some block."""
        return sorted({i for b in self.blocks for i in b if i < NUM_ENCODER_OUTPUTS})

    def describe_cell(self) -> str:
        """The cell as an expression, e.g. ``sep5x5r6(x) + [conv3x3r3(x) + sep3x3(x)] + ...``."""
        exprs = ["x", f"{OPS[self.op0].short}(x)"]
        for p1, p2, o1, o2 in self.pairs:
            a = f"{OPS[o1].short}({exprs[p1]})"
            b = f"{OPS[o2].short}({exprs[p2]})"
            exprs += [a, b, f"[{a} + {b}]"]
        return " + ".join(exprs[i] for i in self.cell_loose_ends())

    def describe_blocks(self) -> str:
        names = [f"l{i + 1}" for i in range(NUM_ENCODER_OUTPUTS)] + [f"b{i + 1}" for i in range(NUM_BLOCKS)]
        parts = [f"b{k + 1}=({names[i1]},{names[i2]})" for k, (i1, i2) in enumerate(self.blocks)]
        collected = ",".join(f"b{b + 1}" for b in self.collected_blocks())
        return " ".join(parts) + f" -> concat[{collected}]"

    def describe(self) -> str:
        return f"cell = {self.describe_cell()}; blocks: {self.describe_blocks()}"


# ------------------------------------------------------------------------------------------ validation
def _check_int(value: Any, field: str, choices: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenotypeError(f"{field} must be an integer in 0..{choices - 1}, got {value!r}")
    if not 0 <= value < choices:
        raise GenotypeError(f"{field} = {value} is out of range: allowed 0..{choices - 1}")


def validate(g: Genotype) -> None:
    """Raises GenotypeError naming the first bad field and its allowed range."""
    _check_int(g.op0, "cell op0", NUM_OPS)
    if len(g.pairs) != NUM_PAIRS:
        raise GenotypeError(f"the cell needs {NUM_PAIRS} pairs [p1, p2, o1, o2] after op0, got {len(g.pairs)}")
    for i, pair in enumerate(g.pairs):
        if len(pair) != 4:
            raise GenotypeError(f"cell pair {i + 1} must be [p1, p2, o1, o2], got {list(pair)}")
        for name, value in zip(("p1", "p2"), pair[:2]):
            _check_int(value, f"cell pair {i + 1} position {name}", CELL_POSITION_CHOICES[i])
        for name, value in zip(("o1", "o2"), pair[2:]):
            _check_int(value, f"cell pair {i + 1} op {name}", NUM_OPS)
    if len(g.blocks) != NUM_BLOCKS:
        raise GenotypeError(f"the decoder needs {NUM_BLOCKS} blocks [i1, i2], got {len(g.blocks)}")
    for i, block in enumerate(g.blocks):
        if len(block) != 2:
            raise GenotypeError(f"block {i + 1} must be [i1, i2], got {list(block)}")
        for name, value in zip(("i1", "i2"), block):
            _check_int(value, f"block {i + 1} input {name}", BLOCK_INPUT_CHOICES[i])


# ------------------------------------------------------------------------------------------- parsing
RELEASED = {
    "arch0": [[8, [0, 0, 5, 2], [0, 2, 8, 8], [0, 5, 1, 4]], [[3, 3], [3, 2], [3, 0]]],
    "arch1": [[2, [1, 0, 3, 6], [0, 1, 2, 8], [2, 0, 6, 1]], [[2, 3], [3, 1], [4, 4]]],
    "arch2": [[5, [0, 0, 4, 1], [3, 2, 0, 1], [5, 6, 5, 0]], [[1, 3], [4, 3], [2, 2]]],
}


def _extract_nested_list(text: str) -> str:
    """The first balanced ``[[...]]`` literal in a line (official log lines put it after reward, epoch, ...)."""
    start = text.find("[[")
    if start < 0:
        raise GenotypeError(f"no genotype literal '[[...]]' found in {text!r}")
    depth = 0
    for pos in range(start, len(text)):
        if text[pos] == "[":
            depth += 1
        elif text[pos] == "]":
            depth -= 1
            if depth == 0:
                return text[start : pos + 1]
    raise GenotypeError(f"unbalanced brackets in genotype text {text!r}")


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise GenotypeError(f"{field} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:  # numpy / jax scalar
        return _as_int(value.item(), field)
    raise GenotypeError(f"{field} must be an integer, got {value!r}")


def _from_list(obj: Any) -> Genotype:
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise GenotypeError(
            f"a genotype is [[op0, [p1, p2, o1, o2] x3], [[i1, i2] x3]] (cell, then block connections); got {obj!r}"
        )
    cell, blocks = obj
    if not isinstance(cell, (list, tuple)) or len(cell) != 1 + NUM_PAIRS:
        raise GenotypeError(f"the cell part must be [op0, [p1, p2, o1, o2] x3], got {cell!r}")
    if not isinstance(blocks, (list, tuple)) or len(blocks) != NUM_BLOCKS:
        raise GenotypeError(f"the block part must be [[i1, i2] x3], got {blocks!r}")
    op0 = _as_int(cell[0], "cell op0")
    pairs = []
    for i, pair in enumerate(cell[1:]):
        if not isinstance(pair, (list, tuple)) or len(pair) != 4:
            raise GenotypeError(f"cell pair {i + 1} must be [p1, p2, o1, o2], got {pair!r}")
        pairs.append(tuple(_as_int(v, f"cell pair {i + 1} entry {j}") for j, v in enumerate(pair)))
    conns = []
    for i, block in enumerate(blocks):
        if not isinstance(block, (list, tuple)) or len(block) != 2:
            raise GenotypeError(f"block {i + 1} must be [i1, i2], got {block!r}")
        conns.append(tuple(_as_int(v, f"block {i + 1} input {j + 1}") for j, v in enumerate(block)))
    return Genotype(op0, tuple(pairs), tuple(conns))


def parse(spec: Any) -> Genotype:
    """A Genotype from a Genotype, a nested list, a released name (``arch0``), JSON or a log line's text."""
    if isinstance(spec, Genotype):
        return spec
    if isinstance(spec, str):
        text = spec.strip()
        if text in RELEASED:
            return _from_list(RELEASED[text])
        if not text:
            raise GenotypeError("empty genotype string")
        if "[" not in text:
            raise GenotypeError(
                f"unknown genotype {text!r}: give a released name ({', '.join(RELEASED)}) or a literal "
                "like [[op0, [p1, p2, o1, o2] x3], [[i1, i2] x3]]"
            )
        literal = _extract_nested_list(text)
        try:
            obj = json.loads(literal)
        except json.JSONDecodeError:
            try:
                obj = ast.literal_eval(literal)
            except (ValueError, SyntaxError) as err:
                raise GenotypeError(f"cannot read genotype text {literal!r}: {err}") from None
        return _from_list(obj)
    if hasattr(spec, "tolist"):
        spec = spec.tolist()
    return _from_list(spec)


def released(name: str) -> Genotype:
    """One of the released architectures (arch0, arch1, arch2) by name."""
    if name not in RELEASED:
        raise GenotypeError(f"no released architecture {name!r}; known: {', '.join(RELEASED)}")
    return _from_list(RELEASED[name])


ARCH0 = released("arch0")
ARCH1 = released("arch1")
ARCH2 = released("arch2")


def search_space_size() -> int:
    """Number of distinct ordered genotypes (1.8e15 with the 2019 position pools)."""
    connections = math.prod(c * c for c in BLOCK_INPUT_CHOICES)
    cell = NUM_OPS * math.prod(c * c * NUM_OPS * NUM_OPS for c in CELL_POSITION_CHOICES)
    return connections * cell
