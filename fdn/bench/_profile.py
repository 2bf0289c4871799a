"""Where a compiled step's time goes, by XLA op and by kind of work: a ``jax.profiler`` trace read back here.

Issue #12 asks for speed work "guided by profiles": on a borrowed GPU there are minutes, not hours, so the bench
traces a few steps, prints what took the time, and keeps the trace (``*.xplane.pb``, readable later with
``jax.profiler.ProfileData`` or TensorBoard) and the optimised HLO (``step.hlo.txt``) beside it.

Reading the trace: an event counts when its name is an instruction of the step's optimised HLO (so runtime
events, Python and other programs drop out). On a GPU (or TPU) plane the events are the device's op times; on
a CPU they are the XLA worker threads' events, nested (a loop or conditional holds its body's ops), so each
event counts its *exclusive* time. The JAX source path in each instruction's metadata (``op_name``) says what
it computes: forward or backward (``transpose(``), and the kind (``category``).
"""

from __future__ import annotations

import collections
import glob
import os
import re

import jax

_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?metadata=\{([^}]*)\}")
_OP_NAME = re.compile(r'op_name="([^"]*)"')

# (pattern in op_name, kind): the first match names an instruction's kind of work
_KINDS = (
    (r"_dw/|depthwise", "depthwise conv"),
    (r"conv_general_dilated", "conv"),
    (r"dot_general", "dot (conv kernel grads, dense)"),
    (r"/bn/|batch_norm|BatchNorm", "batchnorm"),
    (r"dynamic_slice|dynamic_update_slice|dynamic_index|dynamic_update_index", "dynamic slice / update"),
    (r"add_any", "gradient sums (add_any)"),
    (r"select_n|/where", "select"),
    (r"broadcast_in_dim", "broadcast (zero fills)"),
    (r"resize|scale_and_translate", "resize"),
    (r"reduce_sum|reduce_max|argmax|log_softmax|logsumexp", "reductions / loss"),
    (r"/(pad|concatenate|slice|transpose|copy|reshape|gather|scatter-add)$", "data movement"),
    (r"/(max|min|add|sub|mul|div|neg|exp|log|rsqrt|sqrt|jit\(relu\))$", "elementwise"),
)


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Optimised HLO text -> {instruction name: (shape, JAX op_name)}."""
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m:
            op = _OP_NAME.search(m.group(3))
            out[m.group(1)] = (m.group(2), op.group(1) if op else "")
    return out


def category(op_name: str) -> str:
    """'fwd ' or 'bwd ' and the kind of work of an instruction, from its JAX op_name."""
    direction = "bwd" if "transpose(" in op_name else "fwd"
    kind = next((k for pattern, k in _KINDS if re.search(pattern, op_name)), "other")
    return f"{direction} {kind}"


def trace(run, steps: int, directory: str) -> None:
    """``run()`` ``steps`` times (each call blocks until done) under ``jax.profiler`` into ``directory``."""
    os.makedirs(directory, exist_ok=True)
    jax.profiler.start_trace(directory)
    try:
        for _ in range(steps):
            run()
    finally:
        jax.profiler.stop_trace()


def _exclusive(events) -> collections.Counter:
    """{name: exclusive ns} of one timeline's (start, end, name) events, nesting by time."""
    out, stack = collections.Counter(), []  # stack: [start, end, name, children's time]

    def close(item):
        start, end, name, children = item
        out[name] += end - start - children

    for start, end, name in sorted(events, key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][1] <= start:
            close(stack.pop())
        if stack:
            stack[-1][3] += end - start
        stack.append([start, end, name, 0])
    while stack:
        close(stack.pop())
    return out


def _instruction_name(event_name: str) -> str:
    """An event's HLO instruction name: 'fusion.12' from 'fusion.12', '%fusion.12' or '%fusion.12 = f32[...] ...'."""
    return event_name.lstrip("%").split(" ", 1)[0]


def op_seconds(directory: str, instructions: dict, steps: int) -> dict[str, float]:
    """{HLO instruction: seconds per step} from the newest trace under ``directory``: device planes where the
    trace has them, else the CPU's XLA threads (exclusive times)."""
    from jax.profiler import ProfileData

    paths = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        return {}
    planes = list(ProfileData.from_file(paths[-1]).planes)
    device = [p for p in planes if p.name.startswith(("/device:GPU", "/device:TPU"))]
    total = collections.Counter()
    for plane in device or [p for p in planes if p.name == "/host:CPU"]:
        lines = list(plane.lines)
        if device:  # a GPU plane has an "XLA Ops" line beside its streams' kernels; prefer it
            lines = [ln for ln in lines if ln.name == "XLA Ops"] or lines
        for line in lines:
            events = [(e.start_ns, e.start_ns + e.duration_ns, _instruction_name(e.name)) for e in line.events]
            total.update(_exclusive(events))
    return {name: ns / 1e9 / steps for name, ns in total.items() if name in instructions}


def by_category(seconds: dict, instructions: dict) -> dict[str, float]:
    out = collections.Counter()
    for name, s in seconds.items():
        out[category(instructions[name][1])] += s
    return dict(out.most_common())


def format_profile(seconds: dict, instructions: dict, top: int = 15) -> list[str]:
    """The kinds of work, then the ``top`` instructions, in ms per step (summed over threads on a CPU)."""
    if not seconds:  # e.g. a GPU whose command buffers (CUDA graphs) hide the single ops from the trace
        return [
            "profile: no event of the trace names an instruction of the step; on a GPU try again with "
            "XLA_FLAGS=--xla_gpu_enable_command_buffer= (the trace is kept: jax.profiler.ProfileData reads it)"
        ]
    total = sum(seconds.values())
    lines = [f"profile: {total * 1e3:.1f} ms per step in XLA ops ({len(seconds)} instructions)"]
    for kind, s in by_category(seconds, instructions).items():
        lines.append(f"  {kind:<40} {s * 1e3:9.1f} ms {s / total:6.1%}")
    lines.append(f"  top {top} instructions:")
    for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        shape, op = instructions[name]
        lines.append(f"  {s * 1e3:9.2f} ms  {name[:32]:<32} {shape[:34]:<34} {op[-90:]}")
    return lines
