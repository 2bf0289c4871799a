"""``python -m fdn.bench stage2``: seconds per end-to-end (stage-2) step of a candidate, search settings.

Encoder + decoder (agg 48, auxiliary cells, repeats 1) in train mode on synthetic ``--crop`` images: NLL at
the output resolution + 0.15 x aux NLL, encoder SGD and decoder Adam with separate clips, Polyak 0.99 over
both.
Prints a table and, as the last line, a JSON object with ``seconds_per_step`` (median after warm-up) and
``compile_seconds`` (AOT compile of the step). The official code: 0.93-0.98 s per step at batch 4, 350x350 on
the 2-core CI CPU (``shared/reference/official-baseline.md``).

    python -m fdn.bench stage2 --batch=4 --crop=350
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from fdn import genotype as G
from fdn import host_memory
from fdn.bench._timing import time_calls
from fdn.bench.stage1 import SEARCH_A, print_table
from fdn.candidate import default_config, flat, steps
from fdn.candidate.compiled import stage2_abstract, stage2_optimisers
from fdn.candidate.programs import make_programs
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.init import draw_variables
from fdn.models.segmenter import Segmenter, count_params

FLAGS = flags.FlagValues()
flags.DEFINE_string("genotype", SEARCH_A, "genotype to time", flag_values=FLAGS)
flags.DEFINE_integer("batch", 4, "batch size", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("crop", 350, "square crop side", lower_bound=32, flag_values=FLAGS)
flags.DEFINE_integer("steps", 10, "timed steps", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("warmup", 2, "untimed steps after compiling", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("num_classes", 21, "classes", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum(
    "programs",
    "universal",
    ["universal", "per_genotype"],
    "decoder program (fdn.candidate.programs)",
    flag_values=FLAGS,
)


def main(argv):
    FLAGS(argv)
    genotype = G.parse(FLAGS.genotype)
    cfg = default_config().stage2
    model = Segmenter(genotype, DecoderSettings.search(FLAGS.num_classes))
    b, size = FLAGS.batch, FLAGS.crop
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(b, size, size, 3)).astype(np.float32))
    labels = rng.integers(0, FLAGS.num_classes, (b, size, size)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.05] = 255
    labels = jnp.asarray(labels)

    programs = make_programs(FLAGS.programs, model.settings)
    abstract = stage2_abstract(programs, genotype, model.settings, True, size)
    f_enc, f_dec = (flat.Flattener(abstract[N.PARAMS][part]) for part in (N.ENCODER, N.DECODER))
    tx_enc, tx_dec = stage2_optimisers(cfg, abstract[N.PARAMS], f_enc, f_dec, genotype)
    drawn = draw_variables(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images[:2], train=False)), 0)
    dec = programs.to_program({k: drawn[k][N.DECODER] for k in (N.PARAMS, N.BATCH_STATS)}, genotype)
    variables = {k: {N.ENCODER: drawn[k][N.ENCODER], N.DECODER: dec[k]} for k in (N.PARAMS, N.BATCH_STATS)}
    state = steps.init_stage2_state(
        tx_enc,
        tx_dec,
        f_enc.flatten(variables[N.PARAMS][N.ENCODER]),
        f_dec.flatten(variables[N.PARAMS][N.DECODER]),
        variables[N.BATCH_STATS],
    )

    predict, plan = programs.stage2_predict(genotype), programs.plan(genotype)

    def step(state, x, y):
        return steps.stage2_step(predict, tx_enc, tx_dec, f_enc, f_dec, cfg, state, x, y, plan)

    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=0).lower(state, images, labels)
    t1 = time.perf_counter()
    exe = lowered.compile()
    t2 = time.perf_counter()
    holder = {"state": state}

    def call(x, y):
        holder["state"], loss = exe(holder["state"], x, y)
        return loss

    timing = time_calls(call, repeats=FLAGS.steps, warmup=FLAGS.warmup, args=lambda: (images, labels))
    median, times = timing.median, timing.times
    print_table(
        [
            ("genotype", str(genotype)),
            ("batch / crop", f"{b} / {size}"),
            ("programs", FLAGS.programs),
            (
                "params (total / without aux)",
                f"{count_params(drawn[N.PARAMS])} / {count_params(drawn[N.PARAMS], False)}",
            ),
            ("trace+lower s", f"{t1 - t0:.2f}"),
            ("compile s", f"{t2 - t1:.2f}"),
            ("step s (median)", f"{median:.4f}"),
            ("step s (min / max)", f"{min(times):.4f} / {max(times):.4f}"),
            ("images/s", f"{b / median:.1f}"),
            ("host huge pages", host_memory.state()),
        ]
    )
    print(
        json.dumps(
            {
                "bench": "stage2",
                "genotype": genotype.to_list(),
                "programs": FLAGS.programs,
                "batch": b,
                "crop": size,
                "seconds_per_step": median,
                "compile_seconds": t2 - t1,
                "lower_seconds": t1 - t0,
                "device": jax.devices()[0].device_kind,
                "host_hugepages": host_memory.state(),
            }
        )
    )
    return 0
