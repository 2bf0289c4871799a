"""Candidates trained in parallel with a fixed lag: the jobs/outcomes interface (`workers`), the per-device
pool (`local`), the per-candidate stage-2 stream scope (`streams`) and the in-order scheduler (`schedule`).

Results depend on (seed, ``parallel.lag``) only, never on the worker count or on timing: see
`fdn.search.parallel.schedule` for the order of agent calls that guarantees it.
"""
