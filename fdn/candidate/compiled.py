"""``CompiledPrograms``: a trainer's table of compiled stage-1, evaluation and stage-2 programs.

Every program is compiled ahead of time (``jit(...).lower(...).compile()``, timed) and kept under (program key,
stage): with universal programs (`fdn.candidate.programs`) the key is the same for every genotype, so a search
compiles each program once; with per-genotype ones every new genotype compiles its own, and the table keeps those
of the last few genotypes only (`fdn.candidate.residency`: on a CPU more would exhaust the process's memory maps).
A stage waiting for a compile in flight (``precompile`` from another thread) joins it instead of compiling twice,
and trainers on several devices of one process compile the same program one after another (`_compile_lock`).

This module owns what a program is built from (abstract variables, flatteners, the optimisers a genotype
freezes parts of); `fdn.candidate.trainer` owns the data and runs the stages with what it gets from here.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import jax
import jax.numpy as jnp

from fdn import tasks
from fdn.candidate import flat, optim, residency, steps
from fdn.candidate.cache import Stage1Cache
from fdn.candidate.precision import of_config
from fdn.candidate.programs import make_programs, resolve_kind, stage1_work
from fdn.candidate.protocol import CandidateFailure, failure_reason
from fdn.models import depthwise
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.segmenter import Segmenter

STAGES = ("stage1", "eval", "stage2")


class CompiledPrograms:
    """The compiled programs of one trainer, built on first use (or ahead, by ``precompile``).

    Args:
      config: the trainer's config (``fdn.candidate.default_config()``).
      settings: the search-form decoder settings.
      expand_first_block: the encoder's layout, for the stage-2 program that runs the encoder.
      stage1_cache: the stage-1 cache (only its shapes, size and task are used).
      val_features: one meta-val batch's encoder features (arrays or ``jax.ShapeDtypeStruct``).
      val_batch: that batch's {'segmentation', 'valid'} (pose: {'keypoints', 'keypoint_norm', 'keypoint_flip',
        'valid'}), for their shapes.
      device: compile for this device (single-device shardings); None: JAX's default device.
    """

    def __init__(
        self,
        config,
        settings: DecoderSettings,
        expand_first_block: bool,
        stage1_cache: Stage1Cache,
        val_features,
        val_batch: dict,
        device=None,
    ):
        self.config = config
        self.settings = settings
        self.expand_first_block = expand_first_block
        self.task = stage1_cache.task
        # Programs compiled for one device take (and move) uncommitted inputs there and leave results there.
        self._placed = {} if device is None else dict.fromkeys(("in_shardings", "out_shardings"), _on(device))
        self._platform = jax.default_backend() if device is None else device.platform
        l1 = stage1_cache.features[0].shape  # stride 4: the crop has 16 pixels per l1 pixel
        work = stage1_work(stage1_cache.num_examples, config.stage1.epochs, 16 * l1[1] * l1[2])
        self.programs = make_programs(
            resolve_kind(config.programs, work, self._platform),
            settings,
            expand_first_block,
            self.task,
            of_config(config),
        )
        self._cache_shapes = (
            [_abstract(f) for f in stage1_cache.features],
            _abstract(stage1_cache.labels),
            None if stage1_cache.teacher is None else _abstract(stage1_cache.teacher),
        )
        self._num_examples = stage1_cache.num_examples
        self._val_features = [jax.ShapeDtypeStruct(f.shape, jnp.float32) for f in val_features]
        self._val_batch = {k: _abstract(val_batch[k]) for k in (*tasks.get(self.task).data_keys, "valid")}
        self._lock = threading.Lock()
        self._compiled: dict = {}
        self._parts: dict = {}
        self._recency = residency.Recency(residency.capacity(self._platform))  # which genotypes' programs to keep

    def signature(self) -> tuple:
        """Everything but the genotype that the programs depend on: a table built ahead from abstract shapes
        (`fdn.candidate.trainer.CandidateTrainer.compile_early`) serves a trainer only if the two are equal."""
        return (
            self.config.to_dict(),
            self.settings,
            self.expand_first_block,
            self.task,
            self._placed,
            self._cache_shapes,
            self._num_examples,
            self._val_features,
            self._val_batch,
        )

    # ------------------------------------------------------------------------------------------ the table
    def _executable(self, key, build):
        """The compiled program for ``key`` and the seconds this call waited for it (0 if ready)."""
        with self._lock:
            future = self._compiled.get(key)
            owner = future is None
            if owner:
                future = self._compiled[key] = concurrent.futures.Future()
            for old in self._recency.touch(key[0], self._in_flight):
                self._drop(old)
        start = time.perf_counter()
        if owner:
            try:
                with _compile_lock(key), depthwise.tracing_for(self._platform):  # one device compiles, the
                    future.set_result(build())  # others then load it (XLA cache); one conv form traced, not two
            except Exception as err:  # noqa: BLE001  (reported as the candidate's failure reason)
                future.set_exception(CandidateFailure(failure_reason(err, f"compiling {key[1]}")))
        exe = future.result()
        return exe, (time.perf_counter() - start)

    def _in_flight(self, program_key) -> bool:
        return any(k[0] == program_key and not f.done() for k, f in self._compiled.items())

    def _drop(self, program_key) -> None:
        """Let go of a program key's executables and parts (`fdn.candidate.residency`; under ``_lock``)."""
        for table in (self._compiled, self._parts):
            for k in [k for k in table if k[0] == program_key]:
                del table[k]

    def precompile(self, genotype, stages=STAGES) -> dict:
        """Compile ``genotype``'s programs now; the seconds spent per program. Compile errors are not raised
        here but by the stage that needs the program."""
        builders = {"stage1": self.stage1, "eval": self.eval, "stage2": self.stage2}
        out = {}
        for stage in stages:
            start = time.perf_counter()
            try:
                builders[stage](genotype)
            except CandidateFailure:
                pass
            out[stage] = time.perf_counter() - start
        return out

    def in_background(self, genotype, stages=STAGES) -> BackgroundCompile:
        """Start compiling ``genotype``'s programs in a thread of their own (see ``BackgroundCompile``)."""
        return BackgroundCompile(self, genotype, stages)

    def finished(self) -> dict:
        """{(program key, stage): compiled executable} of every finished compile (``fdn.bench search`` reads
        XLA's cost analysis of each)."""
        with self._lock:
            done = {k: f for k, f in self._compiled.items() if f.done() and f.exception() is None}
        return {k: f.result() for k, f in done.items()}

    def _cached(self, what, genotype, build):
        """Shapes and flatteners depend on the program key only (one entry per search when universal)."""
        key = (self.programs.key(genotype), what)
        with self._lock:
            if key in self._parts:
                return self._parts[key]
        value = build()
        with self._lock:
            return self._parts.setdefault(key, value)

    # ------------------------------------------------------------------------------------------ stage 1
    def stage1_parts(self, genotype):
        """``(abstract decoder variables, flattener, optimiser)``: Adam on the decoder's flat vector with the
        genotype's unused adapters frozen."""

        def build():
            abstract = self.programs.abstract(genotype, [f.shape for f in self._cache_shapes[0]])
            return abstract, flat.Flattener(abstract[N.PARAMS])

        abstract, flattener = self._cached("stage1", genotype, build)
        return abstract, flattener, stage1_optimiser(self.config.stage1, abstract[N.PARAMS], flattener, genotype)

    def stage1(self, genotype):
        """The whole stage-1 program (every step as one compiled loop) and the seconds waited for it."""

        def build():
            c = self.config.stage1
            abstract, flattener, tx = self.stage1_parts(genotype)
            program = steps.make_stage1_program(
                self.programs.stage1_predict(genotype),
                tx,
                flattener,
                c,
                batch_size=min(c.batch_size, self._num_examples),
                epochs=c.epochs,
                num_examples=self._num_examples,
                task=self.task,
            )
            state = jax.eval_shape(lambda: steps.init_state(tx, jnp.zeros(flattener.size), abstract[N.BATCH_STATS]))
            args = (state, jax.random.PRNGKey(0), *self._cache_shapes, self.programs.plan(genotype))
            return jax.jit(program, donate_argnums=0, **self._placed).lower(*args).compile()

        return self._executable((self.programs.key(genotype), "stage1"), build)

    # ------------------------------------------------------------------------------------------ evaluation
    def eval(self, genotype):
        """The decoder's validation step (features -> the sums added to: segmentation's confusion matrix, another
        task's ``eval_sums``) and the seconds waited."""

        def build():
            feats = self._val_features
            abstract = self.programs.abstract(genotype, [f.shape for f in feats])
            predict = self.programs.eval_predict(genotype)
            num_classes, task, b, plan = (
                self.settings.num_classes,
                self.task,
                self._val_batch,
                self.programs.plan(genotype),
            )
            if task != tasks.SEGMENTATION:

                def sums_fn(v, f, batch, sums, data):
                    return steps.decoder_eval_sums(predict, task, num_classes, v, f, batch, sums, data)

                lowered = jax.jit(sums_fn, **self._placed).lower(abstract, feats, b, self.zero_sums(), plan)
                return lowered.compile()

            def fn(v, f, y, m, cm, data):
                return steps.decoder_confusion(predict, num_classes, v, f, y, m, cm, data)

            cm = jax.ShapeDtypeStruct((num_classes, num_classes), jnp.int32)
            lowered = jax.jit(fn, **self._placed).lower(abstract, feats, b["segmentation"], b["valid"], cm, plan)
            return lowered.compile()

        return self._executable((self.programs.key(genotype), "eval"), build)

    def zero_sums(self):
        """Zeros of the task's evaluation sums (``eval_sums``' shapes for one meta-val batch), to add batches to."""
        head = jax.ShapeDtypeStruct((*self._val_features[0].shape[:3], self.settings.num_classes), jnp.float32)
        shapes = jax.eval_shape(
            lambda logits, batch: tasks.get(self.task).eval_sums(logits, batch, self.settings.num_classes),
            head,
            self._val_batch,
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    # ------------------------------------------------------------------------------------------ stage 2
    def stage2_parts(self, genotype):
        """``(abstract variables, encoder SGD, decoder Adam, encoder flattener, decoder flattener)``."""
        c = self.config.stage2

        def build():
            abstract = stage2_abstract(self.programs, genotype, self.settings, self.expand_first_block, c.crop_size)
            return (
                abstract,
                flat.Flattener(abstract[N.PARAMS][N.ENCODER]),
                flat.Flattener(abstract[N.PARAMS][N.DECODER]),
            )

        abstract, f_enc, f_dec = self._cached("stage2", genotype, build)
        return (abstract, *stage2_optimisers(c, abstract[N.PARAMS], f_enc, f_dec, genotype), f_enc, f_dec)

    def stage2(self, genotype):
        """One stage-2 step (encoder SGD + decoder Adam, Polyak) and the seconds waited for it."""

        def build():
            c = self.config.stage2
            abstract, tx_enc, tx_dec, f_enc, f_dec = self.stage2_parts(genotype)
            predict = self.programs.stage2_predict(genotype)
            task = self.task
            fn = lambda s, x, y, d: steps.stage2_step(predict, tx_enc, tx_dec, f_enc, f_dec, c, s, x, y, d, task)  # noqa
            state = jax.eval_shape(
                lambda: steps.init_stage2_state(
                    tx_enc, tx_dec, jnp.zeros(f_enc.size), jnp.zeros(f_dec.size), abstract[N.BATCH_STATS]
                )
            )
            size = (c.crop_size, c.crop_size)
            images = jax.ShapeDtypeStruct((c.batch_size, *size, 3), jnp.float32)
            labels = self.stage2_targets(c.batch_size, size)
            exe = jax.jit(fn, donate_argnums=0, **self._placed)
            return exe.lower(state, images, labels, self.programs.plan(genotype)).compile()

        return self._executable((self.programs.key(genotype), "stage2"), build)

    def stage2_targets(self, batch_size: int, size):
        """The shape of one stage-2 batch's targets: segmentation labels (B, H, W) uint8, pose keypoints (B, K, 3)
        (as many joints as the stage-1 cache's)."""
        if self.task == tasks.SEGMENTATION:
            return jax.ShapeDtypeStruct((batch_size, *size), jnp.uint8)
        return jax.ShapeDtypeStruct((batch_size, *self._cache_shapes[1].shape[1:]), jnp.float32)


class BackgroundCompile:
    """``table.precompile`` stage by stage in a thread, so that the compiles overlap other set-up work (the search
    starts its universal programs while the teacher trains: README, cold start). A stage that needs a program
    still compiling waits for it (``CompiledPrograms._executable``). ``stop()`` skips the stages not yet started
    and waits for the one in flight: XLA must not be compiling in a thread when the interpreter exits."""

    def __init__(self, table: CompiledPrograms, genotype, stages=STAGES):
        self.table = table
        self.seconds: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(genotype, tuple(stages)), name="fdn-compile-ahead")
        self._thread.start()

    def _run(self, genotype, stages):
        for stage in stages:
            if self._stop.is_set():
                return
            self.seconds.update(self.table.precompile(genotype, (stage,)))

    def wait(self) -> dict:
        """Waits for every stage; the seconds each took."""
        self._thread.join()
        return dict(self.seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def stage1_optimiser(c, params, flattener: flat.Flattener, genotype):
    """Stage 1's Adam (config ``c``) on the decoder's flat vector, with the adapters ``genotype`` leaves unused
    frozen (`fdn.candidate.optim`)."""
    trainable = optim.trainable_vector(flattener, optim.decoder_labels(params, genotype))
    return optim.flat_adam(c.lr, c.weight_decay, c.grad_clip, trainable)


def stage2_abstract(programs, genotype, settings: DecoderSettings, expand_first_block: bool, crop_size: int):
    """Stage 2's abstract variables: the ordinary encoder's and the decoder program's (``programs``' layout)."""
    model = Segmenter(genotype, settings, expand_first_block)
    dummy = jnp.zeros((2, crop_size, crop_size, 3))
    ordinary = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, train=False))
    feature_shapes = [
        f.shape for f in jax.eval_shape(lambda v: model.apply(v, dummy, method=Segmenter.encode), ordinary)
    ]
    dec = programs.abstract(genotype, feature_shapes)
    return {k: {N.ENCODER: ordinary[k][N.ENCODER], N.DECODER: dec[k]} for k in (N.PARAMS, N.BATCH_STATS)}


def stage2_optimisers(c, params, f_enc: flat.Flattener, f_dec: flat.Flattener, genotype):
    """``(encoder SGD, decoder Adam)`` of stage 2 (config ``c``) on the flat vectors, with what ``genotype``
    leaves unused frozen (`fdn.candidate.optim`)."""
    enc_on = optim.trainable_vector(f_enc, optim.encoder_labels(params[N.ENCODER], genotype))
    dec_on = optim.trainable_vector(f_dec, optim.decoder_labels(params[N.DECODER], genotype))
    return (
        optim.flat_sgd(c.enc_lr, c.enc_momentum, c.enc_weight_decay, c.grad_clip, enc_on),
        optim.flat_adam(c.dec_lr, c.dec_weight_decay, c.grad_clip, dec_on),
    )


_COMPILE_LOCKS: dict = {}
_COMPILE_LOCKS_GUARD = threading.Lock()


def _compile_lock(key) -> threading.Lock:
    """One lock per program across this process's trainers (one per device, `fdn.search.parallel`).

    Workers that meet the same program at once compile it one after another: with the persistent cache on
    (``compilation_cache_dir``), the first writes it and the others load it where the cache key ignores the
    device (GPU); on CPU each device still compiles its own, but one at a time, so the peak memory of N
    concurrent XLA compiles (which got a 4-device demo OOM-killed on a 23 GB host) is never reached.
    """
    with _COMPILE_LOCKS_GUARD:
        return _COMPILE_LOCKS.setdefault(key, threading.Lock())


def _on(device):
    return jax.sharding.SingleDeviceSharding(device)


def _abstract(x):
    return x if isinstance(x, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(x.shape, x.dtype)
