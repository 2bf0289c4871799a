"""The architecture search: ``python -m fdn.search`` (``__main__``), its loop, set-up, state and report.

``loop`` (propose -> train -> reward -> update, resumable, stopped cleanly by Ctrl-C or SIGTERM),
``candidate_run`` (one candidate, failures as reward 0), ``proposals`` (the next genotype, compile-ahead),
``setup`` (data, encoder, teacher, stage-1 cache, the resolved candidate config), ``state`` (the search
checkpoint), ``settings`` (which settings decide results; resume refuses others), ``failure_streak`` (stop after
a run of failures), ``run_log`` (``candidates.jsonl``), ``progress`` (the live line), ``early_stop`` (the
progressive rule), ``teacher`` (the distillation teacher), ``leaderboard`` and ``drawing`` (the report).
Candidates are trained by `fdn.candidate`; the policy lives in `fdn.agents`.
"""
