"""House rules that no single module's tests see: one spelling per name, and imports that point one way.

* Module, variable and collection names of the segmenter are spelled in ``fdn.models.names`` only; elsewhere
  code uses its constants and helpers, so a rename is one edit. Guarded here by parsing every module of fdn
  for the literals (docstrings aside) and for f-strings that spell a numbered module name.
* The import graph has no cycle and points one way (README, Layout): ``models`` <- ``candidate`` <- ``search``;
  ``models`` <- ``train``; ``serve`` reads model checkpoints and imports neither the search nor the trainers.

Both read the source with ``ast`` (no imports, so the test is fast and sees lazy imports inside functions too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fdn.models import names as N

FDN = Path(__file__).resolve().parents[1] / "fdn"

# Exact string literals that must only be spelled in fdn/models/names.py.
GUARDED_LITERALS = {
    N.ENCODER,
    N.DECODER,
    N.PARAMS,
    N.BATCH_STATS,
    N.KERNEL,
    N.DW_CONV,
    N.DW_BN,
    N.PROJECT_CONV,
    N.PROJECT_BN,
}
# An f-string piece that ends with the stem of a numbered fdn module name right before a ``{...}``, at the start
# of the string or after a ``/`` (fdn paths); PyTorch keys (``decoder.adapt{i}``, after a ``.``) are the
# official format's own names and may be spelled in fdn/convert.
_NUMBERED_STEM = re.compile(r"(^|/)(adapt|cells_|aux_clfs_|ops_|sep_|branch_|layer)$")
# The same stems as plain literals (``name.startswith("aux_clfs_")``): use the helpers or ``PATTERNS``.
GUARDED_STEMS = {"cells_", "aux_clfs_", "ops_", "sep_", "branch_"}

# (file relative to fdn/, literal) -> why it is allowed. Entries with TODO belong to files another helper owns.
ALLOWED_LITERALS = {
    ("models/names.py", "*"): "the one home of the names",
    ("models/segmenter.py", N.DECODER): "the spec JSON's field for DecoderSettings, not a module name",
    ("search/drawing.py", N.DECODER): "a plot title",
    ("search/leaderboard.py", N.PARAMS): "a run-log field: the parameter count",
    ("search/candidate_run.py", N.PARAMS): "a run-log field: the parameter count",
    ("search/report/page.py", N.PARAMS): "a leaderboard row field: the parameter count",
    ("search/report/run_info.py", N.ENCODER): "the search config's section (config.encoder.checkpoint)",
}
ALLOWED_NUMBERED = {
    "models/names.py": "the one home of the names",
}

# package -> the packages it must not import (a package is fdn's first-level module or subpackage).
FORBIDDEN_IMPORTS = {
    "models": {"candidate", "search", "train", "serve", "agents", "bench", "convert"},
    "candidate": {"search", "train", "serve"},
    "serve": {"search", "train", "candidate", "agents"},
    "train": {"search", "candidate"},
    # The runtime wrapper sits below every command that may run on several hosts (train, search).
    "distributed": {"search", "train", "candidate", "models", "serve", "agents", "bench"},
}
# (importing module, imported module) -> why it is allowed for now.
ALLOWED_IMPORTS: dict = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(FDN.rglob("*.py")):
        parts = list(path.relative_to(FDN.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _docstring_ids(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _spelled_names(path: Path):
    """(line, what) for every guarded literal and numbered-name f-string in ``path``, docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = _docstring_ids(tree)
    in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for piece, after in zip(node.values, node.values[1:]):
                if (
                    isinstance(piece, ast.Constant)
                    and isinstance(after, ast.FormattedValue)
                    and _NUMBERED_STEM.search(piece.value)
                ):
                    yield node.lineno, f"f-string {piece.value!r}{{...}}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in GUARDED_LITERALS | GUARDED_STEMS
            and id(node) not in docstrings
            and id(node) not in in_fstring
        ):
            yield node.lineno, repr(node.value)


def test_names_are_spelled_only_in_models_names():
    found, used = [], set()
    for path in sorted(FDN.rglob("*.py")):
        rel = path.relative_to(FDN).as_posix()
        for line, what in _spelled_names(path):
            literal = what.strip("'\"")
            allowed = [key for key in ((rel, "*"), (rel, literal)) if key in ALLOWED_LITERALS]
            if what.startswith("f-string") and rel in ALLOWED_NUMBERED:
                allowed.append((rel, "*"))
            if allowed:
                used.update(allowed)
                continue
            found.append(f"fdn/{rel}:{line}: {what}")
    assert not found, (
        "use fdn.models.names (constants / helpers / PATTERNS) instead of spelling these names:\n  "
        + "\n  ".join(found)
    )
    # An entry nothing needs any more goes, so the allow-list only shrinks.
    assert not set(ALLOWED_LITERALS) - used, f"stale allow-list entries: {sorted(set(ALLOWED_LITERALS) - used)}"


def _imports(path: Path, modules) -> set[str]:
    """The fdn modules ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``from fdn.models import names`` names a module
                target = target.rpartition(".")[0]
            if target.startswith("fdn"):
                out.add(target)
    return out


@pytest.fixture(scope="module")
def import_graph():
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_imports_point_one_way(import_graph):
    wrong = []
    for module, imported in sorted(import_graph.items()):
        banned = FORBIDDEN_IMPORTS.get(_package(module), set())
        for target in sorted(imported):
            if _package(target) in banned and (module, target) not in ALLOWED_IMPORTS:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layout (README, Layout):\n  " + "\n  ".join(wrong)
    stale = [pair for pair in ALLOWED_IMPORTS if pair[1] not in import_graph.get(pair[0], set())]
    assert not stale, f"stale allowed imports: {stale}"


def _cycle(graph) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_the_import_graph_has_no_cycle(import_graph):
    cycle = _cycle(import_graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(
    "pattern, spelled",
    [
        ("encoder_block", [N.encoder_block_name(g, j) for g in range(7) for j in range(4)]),
        ("adapter", [N.adapter_name(level) for level in range(4)]),
        ("input_cell", [N.input_cell_name(b, k) for b in range(3) for k in (1, 2)]),
        ("aggregate", [N.aggregate_name(b) for b in range(3)]),
        ("aggregate_branch", [N.aggregate_branch_name(k) for k in (1, 2)]),
        ("aux_head", [N.aux_head_name(b) for b in range(3)]),
        ("cell_op", [N.cell_op_name(s) for s in range(7)]),
        ("sep_dw", [N.sep_conv_names(r)[0] for r in range(3)]),
        ("sep_pw", [N.sep_conv_names(r)[1] for r in range(3)]),
        ("sep_bn", [N.sep_conv_names(r)[2] for r in range(3)]),
    ],
)
def test_each_pattern_reads_back_what_its_helper_spells(pattern, spelled):
    regex = re.compile(f"^{N.PATTERNS[pattern]}$")
    assert all(regex.match(name) for name in spelled), (pattern, spelled)
    if pattern == "aux_head":
        assert all(N.is_aux_head(name) for name in spelled) and not N.is_aux_head(N.AUX_CELL)
    others = [p for k, p in N.PATTERNS.items() if k != pattern]
    assert not any(re.match(f"^{p}$", name) for p in others for name in spelled), pattern


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# A longer function must say why in its docstring, with this phrase.
LONG_REASON = "Long because"


def _oversized():
    modules, functions = [], []
    for path in sorted(FDN.rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(FDN.parent)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            modules.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                    functions.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return modules, functions


def test_no_module_over_400_lines_and_no_long_function_without_a_reason():
    """Small files, one concept each (issue 11): a module over 400 lines is two concepts, and a function over
    ~80 lines either splits or says in its docstring why it does not ("Long because ...")."""
    modules, functions = _oversized()
    assert modules == [], modules
    assert functions == [], functions
