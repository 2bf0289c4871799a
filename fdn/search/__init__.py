"""The architecture search: ``python -m fdn.search`` (``__main__``), its loop, set-up, state and report.

``loop`` (propose -> train -> reward -> update, resumable), ``setup`` (data, encoder, teacher, stage-1 cache),
``state`` (the search checkpoint), ``run_log`` (``candidates.jsonl``), ``early_stop`` (the progressive rule),
``teacher`` (the distillation teacher), ``leaderboard`` and ``drawing`` (the report). Candidates are trained by
`fdn.candidate`; the policy lives in `fdn.agents`.
"""
