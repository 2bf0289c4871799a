"""The HTML search report (``WORKDIR/report/index.html``): the cost measure and Pareto front (`measure`), the
new figures (`plots`), the run's facts and training commands (`run_info`) and the page itself (`page`).
`fdn.search.leaderboard.write_report` writes it with the rest of the report."""
