"""Full training of one genotype: ``python -m fdn.train`` (``__main__``), its loop and step.

``setup`` (what is built before the first step: model specs, data, learner, restored state), ``loop`` (the
steps: log, evaluate, export, Orbax checkpoints, stopping on Ctrl-C / SIGTERM), ``step`` (the jitted SGD
step: loss terms from `fdn.tasks`, clipping, Polyak), ``metric_writer`` (metrics.jsonl and
TensorBoard scalars via tensorboardX),
``genotype_source`` (``arch0``, a literal, or ``WORKDIR#rank`` of a search).
"""
