"""XLA's persistent cache as fdn enables it (`fdn.candidate.enable_compilation_cache`) is relocatable on CPU: a cache
directory copied elsewhere still serves every program (JAX otherwise hashes a path inside it into the key)."""

import shutil
import subprocess
import sys

import jax
import pytest

COMPILE = """
import sys
import jax, jax.numpy as jnp
from jax._src import monitoring
from fdn.candidate import enable_compilation_cache
hits = []
monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None)
enable_compilation_cache(sys.argv[1], min_compile_seconds=0.0)
x = jnp.arange(64.0).reshape(8, 8)
jax.block_until_ready(jax.jit(lambda a: jnp.tanh(a @ a.T).sum(axis=0) * 3.0)(x))
print(len(hits))
"""


def compile_in_a_fresh_process(cache_dir) -> int:
    """Compiles one small program with the cache at ``cache_dir``; the number of persistent-cache hits."""
    proc = subprocess.run(
        [sys.executable, "-c", COMPILE, str(cache_dir)], capture_output=True, text=True, timeout=300, check=True
    )
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the relocatable cache is the CPU's (GPUs keep autotuning)")
def test_a_copied_cache_directory_still_hits(tmp_path):
    first = tmp_path / "a"
    assert compile_in_a_fresh_process(first) == 0  # compiled and written
    entries = sorted(p.name for p in first.iterdir())
    assert entries
    loaded = compile_in_a_fresh_process(first)  # the same directory: every program loaded
    assert loaded == len(entries)
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, moved)
    assert compile_in_a_fresh_process(moved) == loaded  # a copy at another path: loaded too
    assert sorted(p.name for p in moved.iterdir()) == entries  # nothing compiled and written again
