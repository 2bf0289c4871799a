"""Several processes (hosts) as one run, through JAX's distributed runtime and nothing of our own on the wire.

`runtime` starts ``jax.distributed`` from flags or the environment (one source for ``fdn.train`` and
``fdn.search``); `mailbox` is the one module that touches the coordination service's key-value store (private
JAX API, pinned to the installed version); `watchdog` turns a lost process into one clear line within a
bounded time. The search's use of them is `fdn.search.parallel.remote`.
"""
