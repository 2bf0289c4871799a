"""What a searched design costs when deployed: latency (estimated), parameters and FLOPs (exact).

``parts`` takes a genotype apart into pieces, ``pieces`` builds and times them in the released form, ``table``
turns them into a latency model, ``exact`` sums parameters and FLOPs. `fdn.search.budget` is the user.
"""
