"""Benchmarks: ``python -m fdn.bench <what> [flags]``.

Each benchmark lives in its own module ``fdn.bench.<what>`` exposing ``main(argv)``; speed claims in fdn are
made only from these, run side by side in one process.
"""
