"""Full training of one genotype: ``python -m fdn.train`` (``__main__``), its loop and step.

``loop`` (data, model, Orbax checkpoints, evaluation, resume), ``step`` (the jitted SGD step: loss terms from
`fdn.tasks`, clipping, Polyak), ``metric_writer`` (metrics.jsonl and TensorBoard scalars via tensorboardX),
``genotype_source`` (``arch0``, a literal, or ``WORKDIR#rank`` of a search).
"""
