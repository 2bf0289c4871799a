"""``CandidateTrainer``: one candidate's two-stage training and its reward, built for throughput.

Compiled once per search (shapes only): the encoder in eval mode (meta-val features, stage-2 validation).
The whole stage-1 program, the decoder's validation step and the stage-2 step are compiled ahead of time
(``jit(...).lower(...).compile()``, timed) and kept in a table keyed by (program key, program): with the
default ``programs='universal'`` (``fdn.candidate.programs``) the key is the same for every genotype, so a
search compiles each program once; with ``'per_genotype'`` every new genotype compiles its own.
``precompile(genotype)`` fills the table from another thread while the current candidate trains (a stage
waiting for a compile in flight joins it instead of compiling twice), and ``enable_compilation_cache(dir)``
turns on XLA's persistent cache across runs.

With ``device`` (one trainer per search worker, `fdn.search.parallel`) the encoder, the stage-1 cache and the
meta-val features are committed to that device and every program is compiled for it (single-device
shardings), so the trainer runs there whatever thread calls it; None keeps JAX's default device.

Nothing syncs with the host inside stage 1; stage 2 checks its loss every ``check_every`` steps. A NaN or
Inf loss, an out-of-memory error or a compile error raises ``CandidateFailure`` with the reason (the official
code silently turned every ``RuntimeError`` into reward 0).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fdn import genotype as G
from fdn.candidate import flat, optim, steps
from fdn.candidate.cache import Stage1Cache
from fdn.candidate.programs import make_programs, ordinary_abstract
from fdn.candidate.protocol import CandidateFailure, StageResult, failure_reason
from fdn.metrics import segmentation_metrics
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import draw_variables
from fdn.models.segmenter import Segmenter, count_params, eval_forward


def enable_compilation_cache(path: str, min_compile_seconds: float = 0.5):
    """XLA's persistent compilation cache: a genotype compiled by any earlier run loads from ``path``."""
    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))


class CandidateTrainer:
    """Trains and scores candidates for one search (fixed data, shapes and encoder start point).

    Args:
      config: ``fdn.candidate.default_config()`` (or the search config's ``candidate`` block).
      num_classes: segmentation classes (labels >= num_classes are ignored).
      encoder_variables: {'params', 'batch_stats'} of the pretrained ``MobileNetV2Encoder``; every candidate
        starts stage 2 from them.
      stage1_cache: ``build_stage1_cache(...)`` output.
      train_batches: ``() -> iterator`` of stage-2 batches {'image' (B, H, W, 3), 'segmentation' (B, H, W)}
        (a fresh iterator per candidate, e.g. over ``fdn.data.pipeline.train_dataset``).
      val_batches: meta-val batches {'image', 'segmentation', 'valid'} (``eval_dataset``), read once.
      expand_first_block: the encoder's layout (``fdn.models.encoder``), as ``encoder_variables`` have it:
        every program that runs the encoder (meta-val features, stage 2) must build the same one.
      device: the device to train on (inputs committed there, programs compiled for it); None: the default.

    Implements ``fdn.candidate.protocol.Trainer``; the class itself is the search's ``TrainerFactory``.
    """

    def __init__(
        self,
        config,
        num_classes: int,
        encoder_variables,
        stage1_cache: Stage1Cache,
        train_batches: Callable[[], Iterable[dict]] | None,
        val_batches: Iterable[dict],
        *,
        expand_first_block: bool = True,
        device=None,
    ):
        self.config = config
        self.device = device
        # Programs compiled for one device take (and move) uncommitted inputs there and leave results there.
        self._placed = {} if device is None else dict.fromkeys(("in_shardings", "out_shardings"), _on(device))
        self.num_classes = int(num_classes)
        d = config.decoder
        self.settings = DecoderSettings(self.num_classes, d.agg_size, d.repeats, d.aux_cell)
        self.encoder_variables = jax.device_put(encoder_variables, device)
        self.cache = stage1_cache if device is None else _cache_on(stage1_cache, device)
        self.train_batches = train_batches
        self.expand_first_block = bool(expand_first_block)
        self.programs = make_programs(config.programs, self.settings, self.expand_first_block)
        if config.compilation_cache_dir:
            enable_compilation_cache(config.compilation_cache_dir)
        self._lock = threading.Lock()
        self._compiled: dict = {}
        self._parts: dict = {}
        self._ordinary_shapes: dict = {}  # genotype -> its ordinary decoder's variable shapes (stage-1 inputs)
        encoder = MobileNetV2Encoder(self.expand_first_block)
        self._encode = jax.jit(lambda v, x: eval_forward(encoder, v, x, with_aux=None))
        self._val = [
            {
                "image": np.asarray(b["image"], np.float32),
                "segmentation": np.asarray(b["segmentation"]),
                "valid": np.asarray(b.get("valid", np.ones(len(b["image"]), bool))),
            }
            for b in val_batches
        ]
        if not self._val:
            raise ValueError("CandidateTrainer: no validation batches")
        self._val_feats = None
        if config.val.cache_features:  # stage 1 never changes the encoder: its meta-val features are fixed
            self._val_feats = [self._encode(self.encoder_variables, jnp.asarray(b["image"])) for b in self._val]

    # ------------------------------------------------------------------------------------------ compiling
    def _executable(self, key, build):
        """The compiled program for ``key`` and the seconds this call waited for it (0 if ready)."""
        with self._lock:
            future = self._compiled.get(key)
            owner = future is None
            if owner:
                future = self._compiled[key] = concurrent.futures.Future()
        start = time.perf_counter()
        if owner:
            try:
                with _compile_lock(key):  # one device compiles, the others then load it (XLA cache)
                    future.set_result(build())
            except Exception as err:  # noqa: BLE001  (reported as the candidate's failure reason)
                future.set_exception(CandidateFailure(failure_reason(err, f"compiling {key[1]}")))
        exe = future.result()
        return exe, (time.perf_counter() - start)

    def precompile(self, genotype, stages=("stage1", "eval", "stage2")) -> dict:
        """Compile ``genotype``'s programs now (call it from a thread while another candidate trains).

        Returns the seconds spent per program; compile errors are not raised here but by the stage that
        needs the program.
        """
        genotype = G.parse(genotype)
        out = {}
        for stage in stages:
            start = time.perf_counter()
            try:
                builders = {"stage1": self._stage1_exe, "eval": self._eval_exe, "stage2": self._stage2_exe}
                builders[stage](genotype)
            except CandidateFailure:
                pass
            out[stage] = time.perf_counter() - start
        return out

    def compiled_programs(self) -> dict:
        """{(program key, 'stage1' | 'eval' | 'stage2'): compiled executable} of every finished compile, for
        measurements (``fdn.bench search`` reads XLA's cost analysis of each)."""
        with self._lock:
            done = {k: f for k, f in self._compiled.items() if f.done() and f.exception() is None}
        return {k: f.result() for k, f in done.items()}

    def _cached(self, what, genotype, build):
        """Shapes and flatteners depend on the program key only (one entry per search when universal)."""
        key = (self.programs.key(genotype), what)
        if key not in self._parts:
            self._parts[key] = build()
        return self._parts[key]

    def _decoder_parts(self, genotype):
        def build():
            abstract = self.programs.abstract(genotype, [f.shape for f in self.cache.features])
            return abstract, flat.Flattener(abstract[N.PARAMS])

        return self._cached("stage1", genotype, build)

    def _stage1_tx(self, genotype):
        """Stage 1's optimiser: Adam on the decoder's flat vector, the genotype's unused adapters frozen."""
        c = self.config.stage1
        abstract, flattener = self._decoder_parts(genotype)
        trainable = optim.trainable_vector(flattener, optim.decoder_labels(abstract[N.PARAMS], genotype))
        return optim.flat_adam(c.lr, c.weight_decay, c.grad_clip, trainable)

    def _stage1_exe(self, genotype):
        def build():
            c = self.config.stage1
            abstract, flattener = self._decoder_parts(genotype)
            tx = self._stage1_tx(genotype)
            batch = min(c.batch_size, self.cache.num_examples)
            program = steps.make_stage1_program(
                self.programs.stage1_predict(genotype),
                tx,
                flattener,
                c,
                batch_size=batch,
                epochs=c.epochs,
                num_examples=self.cache.num_examples,
            )
            state = jax.eval_shape(lambda: steps.init_state(tx, jnp.zeros(flattener.size), abstract[N.BATCH_STATS]))
            args = (state, jax.random.PRNGKey(0), *self._cache_args(), self.programs.plan(genotype))
            return jax.jit(program, donate_argnums=0, **self._placed).lower(*args).compile()

        return self._executable((self.programs.key(genotype), "stage1"), build)

    def _eval_exe(self, genotype):
        def build():
            feats = (
                self._val_feats[0]
                if self._val_feats is not None
                else jax.eval_shape(self._encode, self.encoder_variables, jnp.asarray(self._val[0]["image"]))
            )
            feats = [jax.ShapeDtypeStruct(f.shape, jnp.float32) for f in feats]
            abstract = self.programs.abstract(genotype, [f.shape for f in feats])
            predict = self.programs.eval_predict(genotype)
            b = self._val[0]

            def fn(v, f, y, m, cm, data):
                return steps.decoder_confusion(predict, self.num_classes, v, f, y, m, cm, data)

            cm = jax.ShapeDtypeStruct((self.num_classes, self.num_classes), jnp.int32)
            return (
                jax.jit(fn, **self._placed)
                .lower(abstract, feats, b["segmentation"], b["valid"], cm, self.programs.plan(genotype))
                .compile()
            )

        return self._executable((self.programs.key(genotype), "eval"), build)

    def _stage2_parts(self, genotype):
        c = self.config.stage2

        def build():
            size = (c.crop_size, c.crop_size)
            model = Segmenter(genotype, self.settings, self.expand_first_block)
            dummy = jnp.zeros((2, *size, 3))
            ordinary = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), dummy, train=False))
            feature_shapes = [
                f.shape for f in jax.eval_shape(lambda v: model.apply(v, dummy, method=Segmenter.encode), ordinary)
            ]
            dec = self.programs.abstract(genotype, feature_shapes)
            abstract = {k: {N.ENCODER: ordinary[k][N.ENCODER], N.DECODER: dec[k]} for k in (N.PARAMS, N.BATCH_STATS)}
            return (
                abstract,
                flat.Flattener(abstract[N.PARAMS][N.ENCODER]),
                flat.Flattener(abstract[N.PARAMS][N.DECODER]),
            )

        abstract, f_enc, f_dec = self._cached("stage2", genotype, build)
        p = abstract[N.PARAMS]
        enc_on = optim.trainable_vector(f_enc, optim.encoder_labels(p[N.ENCODER], genotype))
        dec_on = optim.trainable_vector(f_dec, optim.decoder_labels(p[N.DECODER], genotype))
        tx_enc = optim.flat_sgd(c.enc_lr, c.enc_momentum, c.enc_weight_decay, c.grad_clip, enc_on)
        tx_dec = optim.flat_adam(c.dec_lr, c.dec_weight_decay, c.grad_clip, dec_on)
        return abstract, tx_enc, tx_dec, f_enc, f_dec

    def _stage2_exe(self, genotype):
        def build():
            c = self.config.stage2
            abstract, tx_enc, tx_dec, f_enc, f_dec = self._stage2_parts(genotype)
            predict = self.programs.stage2_predict(genotype)
            fn = lambda s, x, y, d: steps.stage2_step(predict, tx_enc, tx_dec, f_enc, f_dec, c, s, x, y, d)  # noqa
            state = jax.eval_shape(
                lambda: steps.init_stage2_state(
                    tx_enc, tx_dec, jnp.zeros(f_enc.size), jnp.zeros(f_dec.size), abstract[N.BATCH_STATS]
                )
            )
            size = (c.crop_size, c.crop_size)
            images = jax.ShapeDtypeStruct((c.batch_size, *size, 3), jnp.float32)
            labels = jax.ShapeDtypeStruct((c.batch_size, *size), jnp.uint8)
            exe = jax.jit(fn, donate_argnums=0, **self._placed)
            return exe.lower(state, images, labels, self.programs.plan(genotype)).compile()

        return self._executable((self.programs.key(genotype), "stage2"), build)

    def _cache_args(self):
        return list(self.cache.features), self.cache.labels, self.cache.teacher

    # ------------------------------------------------------------------------------------------ stages
    def stage1(self, genotype, key) -> StageResult:
        """Decoder-only training on the cache, then the meta-val reward."""
        genotype = G.parse(genotype)
        start = time.perf_counter()
        exe, compile_s = self._stage1_exe(genotype)
        _, flattener = self._decoder_parts(genotype)
        tx = self._stage1_tx(genotype)
        init_key, run_key = jax.random.split(key)
        if genotype not in self._ordinary_shapes:  # ~0.5 s of tracing; a search meets most genotypes again
            self._ordinary_shapes[genotype] = ordinary_abstract(
                genotype, self.settings, [f.shape for f in self.cache.features]
            )
        ordinary_shapes = self._ordinary_shapes[genotype]
        variables = self.programs.to_program(
            draw_variables(ordinary_shapes, int(jax.random.randint(init_key, (), 0, 2**31 - 1))), genotype
        )
        state = steps.init_state(tx, flattener.flatten(variables[N.PARAMS]), variables[N.BATCH_STATS])
        data = self.programs.plan(genotype)
        t0 = time.perf_counter()
        try:
            state, losses = exe(state, run_key, *self._cache_args(), data)
            losses = np.asarray(losses)
        except Exception as err:  # noqa: BLE001
            raise CandidateFailure(failure_reason(err, "stage 1")) from err
        train_s = time.perf_counter() - t0
        _check_finite(losses, "stage 1")
        decoder_vars = {N.PARAMS: flattener.unflatten(state[N.PARAMS]), N.BATCH_STATS: state[N.BATCH_STATS]}
        # Counted from shapes in the ordinary layout (the official names: aux heads are 'aux*').
        params = {N.ENCODER: self.encoder_variables[N.PARAMS], N.DECODER: ordinary_shapes[N.PARAMS]}
        counts = (count_params(params, True), count_params(params, False))
        return self._finish(
            genotype,
            decoder_vars,
            self.encoder_variables,
            self._val_feats,
            compile_s,
            train_s,
            start,
            counts,
            steps=int(losses.size),
        )

    def stage2(self, genotype, stage1_result: StageResult, key=None) -> StageResult:
        """End-to-end training from the stage-1 variables over the train stream, then the reward."""
        del key  # the order of the stage-2 data comes from ``train_batches``
        genotype = G.parse(genotype)
        c = self.config.stage2
        start = time.perf_counter()
        exe, compile_s = self._stage2_exe(genotype)
        _, tx_enc, tx_dec, f_enc, f_dec = self._stage2_parts(genotype)
        enc, dec = stage1_result.encoder_variables, stage1_result.decoder_program_variables
        # The step donates its state: copy what stage 1's result shares with the trainer.
        batch_stats = jax.tree.map(
            lambda a: jnp.array(a, copy=True), {N.ENCODER: enc[N.BATCH_STATS], N.DECODER: dec[N.BATCH_STATS]}
        )
        state = steps.init_stage2_state(
            tx_enc, tx_dec, f_enc.flatten(enc[N.PARAMS]), f_dec.flatten(dec[N.PARAMS]), batch_stats
        )
        data = self.programs.plan(genotype)
        t0 = time.perf_counter()
        batches = iter(self.train_batches())
        input_wait = time.perf_counter() - t0  # host time spent getting batches (the device may still compute)
        pending, trained = [], 0
        try:
            for _ in range(c.epochs):
                done = 0
                while c.steps_per_epoch <= 0 or done < c.steps_per_epoch:
                    t_wait = time.perf_counter()
                    batch = next(batches, None)
                    input_wait += time.perf_counter() - t_wait
                    if batch is None:
                        break
                    state, loss = exe(
                        state,
                        jnp.asarray(batch["image"], jnp.float32),
                        jnp.asarray(batch["segmentation"], jnp.uint8),
                        data,
                    )
                    pending.append(loss)
                    done += 1
                    if done % max(c.check_every, 1) == 0:
                        _check_finite(np.asarray(jnp.stack(pending)), "stage 2")
                        pending = []
                if done == 0:
                    raise CandidateFailure("stage 2: the train batch iterator is empty")
                trained += done
                state = steps.end_epoch(state)
            if pending:
                _check_finite(np.asarray(jnp.stack(pending)), "stage 2")
        except CandidateFailure:
            raise
        except Exception as err:  # noqa: BLE001
            raise CandidateFailure(failure_reason(err, "stage 2")) from err
        train_s = time.perf_counter() - t0
        decoder_vars = {N.PARAMS: f_dec.unflatten(state["dec"]), N.BATCH_STATS: state[N.BATCH_STATS][N.DECODER]}
        encoder_vars = {N.PARAMS: f_enc.unflatten(state["enc"]), N.BATCH_STATS: state[N.BATCH_STATS][N.ENCODER]}
        counts = (stage1_result.params_total, stage1_result.params_without_aux)  # the same network
        return self._finish(
            genotype,
            decoder_vars,
            encoder_vars,
            None,
            compile_s,
            train_s,
            start,
            counts,
            steps=trained,
            input_wait=input_wait,
        )

    # ------------------------------------------------------------------------------------------ eval
    def _evaluate(self, genotype, decoder_vars, encoder_vars, val_feats):
        exe, compile_s = self._eval_exe(genotype)
        data = self.programs.plan(genotype)
        cm = jnp.zeros((self.num_classes, self.num_classes), jnp.int32)
        for i, b in enumerate(self._val):
            feats = val_feats[i] if val_feats is not None else self._encode(encoder_vars, jnp.asarray(b["image"]))
            cm = exe(decoder_vars, [f.astype(jnp.float32) for f in feats], b["segmentation"], b["valid"], cm, data)
        metrics = segmentation_metrics(np.asarray(cm), tuple(self.config.val.omit_classes))
        return metrics, compile_s

    def _finish(
        self,
        genotype,
        decoder_vars,
        encoder_vars,
        val_feats,
        compile_s,
        train_s,
        start,
        counts,
        *,
        steps: int,
        input_wait: float = 0.0,
    ):
        t0 = time.perf_counter()
        try:
            metrics, eval_compile_s = self._evaluate(genotype, decoder_vars, encoder_vars, val_feats)
        except CandidateFailure:
            raise
        except Exception as err:  # noqa: BLE001
            raise CandidateFailure(failure_reason(err, "validation")) from err
        eval_s = time.perf_counter() - t0 - eval_compile_s
        seconds = {
            "compile": compile_s + eval_compile_s,
            "train": train_s,
            "eval": eval_s,
            "input_wait": input_wait,
            "total": time.perf_counter() - start,
        }
        return StageResult(
            metrics["reward"],
            metrics,
            counts[0],
            counts[1],
            seconds,
            steps,
            encoder_vars,
            decoder_vars,
            functools.partial(self.programs.to_ordinary, genotype=genotype),
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


def _cache_on(cache: Stage1Cache, device) -> Stage1Cache:
    """A copy of ``cache`` on ``device`` (the host-side build is shared; each worker's device holds its own)."""
    put = functools.partial(jax.device_put, device=device)
    return dataclasses.replace(
        cache,
        features=tuple(put(f) for f in cache.features),
        labels=put(cache.labels),
        teacher=None if cache.teacher is None else put(cache.teacher),
    )


def _check_finite(losses: np.ndarray, what: str):
    bad = ~np.isfinite(losses)
    if bad.any():
        first = int(np.argmax(bad.ravel()))
        raise CandidateFailure(f"{what}: non-finite loss ({losses.ravel()[first]}) at step {first}")
