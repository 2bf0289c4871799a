"""Large host buffers on transparent huge pages: every ``python -m fdn.X`` restarts itself once with glibc's
``glibc.malloc.hugetlb=1`` where that pays.

Why: XLA:CPU allocates each execution's temporary arena with ``malloc``. Above glibc's mmap threshold that is a
fresh ``mmap`` per call (1.8 GB for the paper's stage-1 step at batch 16), touched in 4 KiB pages (~430k page
faults, each zeroing its page in the kernel) and unmapped after the step. On the 2-core CPU that was a third of
the step: 1.43 -> 1.02 s for genotype search_a and 1.61 -> 1.13 s for search_b with the tunable (README, "Host
memory"). Kernels whose transparent huge pages are in ``madvise`` mode (common on distribution kernels) give huge
pages only to mappings advised so, and glibc advises its own only when the tunable is set; glibc reads tunables
once, when the process starts, so a command re-executes itself (same PID, same argv) before it has imported
anything heavy. Numerics are untouched: only where the bytes live changes.

Nothing happens when fdn is imported as a library, off glibc, when THP is ``always`` (already huge) or
``never`` (nothing to gain), when ``GLIBC_TUNABLES`` already names a hugetlb setting, or with
``FDN_HOST_HUGEPAGES=0``. ``python -m fdn.bench host_memory`` prints what the running process got and measures
page faults per GB of malloc'd memory; the other benches name the state (``state()``) with their settings.
"""

from __future__ import annotations

import os
import sys

OPT_OUT = "FDN_HOST_HUGEPAGES"
TUNABLES = "GLIBC_TUNABLES"
HUGETLB = "glibc.malloc.hugetlb"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
MIN_GLIBC = (2, 35)  # the release that added glibc.malloc.hugetlb


def command_module(argv: list[str], orig_argv: list[str]) -> str | None:
    """The ``fdn.X`` of ``python ... -m fdn.X ...`` while Python is still importing it, else None.

    During the imports that ``-m`` does before running the module, ``sys.argv[0]`` is ``'-m'``; a library import
    (a script, pytest, a notebook) never sees that. The module's name is read off the interpreter's own options.
    """
    if not argv or argv[0] != "-m":
        return None
    args = iter(orig_argv[1:])
    for arg in args:
        if arg == "--check-hash-based-pycs":
            next(args, None)
            continue
        if arg.startswith("--"):
            continue
        if arg == "-" or not arg.startswith("-"):
            return None  # a script path or stdin: interpreter options end here
        for j, letter in enumerate(arg[1:], start=2):  # a cluster of short options, e.g. -u, -um, -Ximporttime
            if letter == "m":
                name = arg[j:] or next(args, "")
                return name if name == "fdn" or name.startswith("fdn.") else None
            if letter == "c":
                return None
            if letter in "XW":
                if j == len(arg):
                    next(args, None)
                break
    return None


def glibc_version() -> tuple[int, ...] | None:
    """(major, minor) of the C library when it is glibc, else None."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # type: ignore[union-attr]
        return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The bracketed choice of the kernel's THP setting ('always', 'madvise', 'never'), or None when unknown."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def with_hugetlb(tunables: str) -> str:
    """``GLIBC_TUNABLES`` with huge pages for malloc's mappings added to whatever the user set."""
    return f"{tunables}:{HUGETLB}=1" if tunables else f"{HUGETLB}=1"


def opted_out(environ) -> bool:
    """``FDN_HOST_HUGEPAGES=0``: keep glibc's defaults."""
    return environ.get(OPT_OUT, "1") == "0"


def should_reexec(environ, glibc: tuple[int, ...] | None, thp: str | None) -> bool:
    """Whether restarting with the tunable would change anything (and has not been done or refused)."""
    return (
        not opted_out(environ)
        and HUGETLB not in environ.get(TUNABLES, "")
        and glibc is not None
        and glibc >= MIN_GLIBC
        and thp == "madvise"
    )


def reexec_command_with_hugepages() -> None:
    """Restart ``python -m fdn.X`` with ``glibc.malloc.hugetlb=1`` where it pays (see the module docstring)."""
    if command_module(sys.argv, getattr(sys, "orig_argv", [])) is None:
        return
    if not should_reexec(os.environ, glibc_version(), thp_mode()):
        return
    env = dict(os.environ, **{TUNABLES: with_hugetlb(os.environ.get(TUNABLES, ""))})
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # an interpreter that cannot be re-run as it was started: carry on without huge pages
        return


def faults_per_gb(gigabytes: float = 0.5, rounds: int = 3) -> float:
    """Minor page faults per GB of one large malloc'd block, touched and freed ``rounds`` times (as XLA does)."""
    import ctypes
    import resource

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = int(gigabytes * 2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        block = libc.malloc(size)
        if not block:
            raise MemoryError(f"malloc({size}) failed")
        ctypes.memset(block, 1, size)
        libc.free(block)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (gigabytes * rounds)


def state(environ=os.environ) -> str:
    """One phrase for a bench's settings: whether this process's large host buffers get huge pages, and why."""
    thp = thp_mode()
    if thp == "always":
        return "on (kernel THP always)"
    if HUGETLB + "=1" in environ.get(TUNABLES, "") and thp == "madvise":
        return f"on ({HUGETLB}=1, THP madvise)"
    if opted_out(environ):
        return f"off ({OPT_OUT}=0)"
    return f"off (THP {thp or 'unknown'}, glibc {'.'.join(map(str, glibc_version() or ())) or 'absent'})"
