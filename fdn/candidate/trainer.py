"""``CandidateTrainer``: one candidate's two-stage training and its reward, built for throughput.

Compiled once per search (shapes only): the encoder in eval mode (meta-val features, stage-2 validation).
The stage programs come from the trainer's `fdn.candidate.compiled.CompiledPrograms` (compiled ahead of time,
once per search with the default universal programs, once per genotype with ``per_genotype``);
``precompile(genotype)`` fills that table from another thread while the current candidate trains, and
``enable_compilation_cache(dir)`` turns on XLA's persistent cache across runs.

With ``device`` (one trainer per search worker, `fdn.search.parallel`) the encoder, the stage-1 cache and the
meta-val features are committed to that device and every program is compiled for it (single-device
shardings), so the trainer runs there whatever thread calls it; None keeps JAX's default device.

Nothing syncs with the host inside stage 1; stage 2 checks its loss every ``check_every`` steps. A NaN or
Inf loss, an out-of-memory error or a compile error raises ``CandidateFailure`` with the reason (the official
code silently turned every ``RuntimeError`` into reward 0).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fdn import genotype as G
from fdn import placement, tasks
from fdn.candidate import steps
from fdn.candidate.cache import Stage1Cache
from fdn.candidate.compiled import STAGES, BackgroundCompile, CompiledPrograms
from fdn.candidate.protocol import CandidateFailure, StageResult, failure_reason
from fdn.metrics import segmentation_metrics
from fdn.models import names as N
from fdn.models.decoder import DecoderSettings
from fdn.models.encoder import MobileNetV2Encoder
from fdn.models.init import draw_variables
from fdn.models.segmenter import count_params, eval_forward


def decoder_settings(config, num_classes: int) -> DecoderSettings:
    """The search-form decoder of a trainer's ``config`` with a ``num_classes``-wide head."""
    d = config.decoder
    return DecoderSettings(num_classes, d.agg_size, d.repeats, d.aux_cell)


def encoder_features(expand_first_block: bool) -> Callable:
    """``(encoder variables, images) -> [l1..l4]``: the encoder in eval mode (meta-val features)."""
    encoder = MobileNetV2Encoder(expand_first_block)
    return lambda v, x: eval_forward(encoder, v, x, with_aux=None)


def host_val_batches(val_batches: Iterable[dict], task: str) -> list[dict]:
    """The meta-val batches as a trainer keeps them: NumPy, float32 images, the task's data keys and ``valid``."""
    keys = tasks.get(task).data_keys
    val = [
        {
            "image": np.asarray(b["image"], np.float32),
            **{k: np.asarray(b[k]) for k in keys},
            "valid": np.asarray(b.get("valid", np.ones(len(b["image"]), bool))),
        }
        for b in val_batches
    ]
    if not val:
        raise ValueError("CandidateTrainer: no validation batches")
    return val


def enable_compilation_cache(path: str, min_compile_seconds: float = 0.5):
    """XLA's persistent compilation cache: a genotype compiled by any earlier run loads from ``path``.

    On CPU, JAX's extra XLA caches are off: JAX writes the GPU autotuning cache's directory (inside ``path``) into
    the compile options its cache key hashes, so a cache copied or moved to another path (a container's, CI's,
    another checkout's) missed on every program (measured: the demo's three programs compiled again, ~150 s cold);
    on CPU that cache holds nothing. On GPUs it stays on (autotuning results are worth keeping)."""
    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    if jax.default_backend() == "cpu":
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


class CandidateTrainer:
    """Trains and scores candidates for one search (fixed data, shapes and encoder start point).

    Args:
      config: ``fdn.candidate.default_config()`` (or the search config's ``candidate`` block).
      num_classes: the head's width: segmentation classes (labels >= num_classes are ignored), pose joints.
      encoder_variables: {'params', 'batch_stats'} of the pretrained ``MobileNetV2Encoder``; every candidate
        starts stage 2 from them.
      stage1_cache: ``build_stage1_cache(...)`` output; its ``task`` is the trainer's (`fdn.tasks`: the loss
        terms, the evaluation sums and the reward: segmentation's paper reward, pose's PCK@0.5).
      train_batches: ``() -> iterator`` of stage-2 batches {'image' (B, H, W, 3), 'segmentation' (B, H, W)}
        (pose: 'keypoints' (B, K, 3) instead) (a fresh iterator per candidate, e.g. over
        ``fdn.data.pipeline.train_dataset``).
      val_batches: meta-val batches {'image', 'segmentation', 'valid'} (pose: the ``fdn.tasks.Pose`` data keys
        instead of 'segmentation') (``eval_dataset``), read once.
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
        self.task = stage1_cache.task
        self.num_classes = int(num_classes)
        self.settings = decoder_settings(config, self.num_classes)
        self.encoder_variables = jax.device_put(encoder_variables, device)
        self.cache = stage1_cache if device is None else _cache_on(stage1_cache, device)
        self.train_batches = train_batches
        self.expand_first_block = bool(expand_first_block)
        if config.compilation_cache_dir:
            enable_compilation_cache(config.compilation_cache_dir)
        self._ordinary_shapes: dict = {}  # genotype -> its ordinary decoder's variable shapes (stage-1 inputs)
        self._encode = jax.jit(encoder_features(self.expand_first_block))
        self._val = host_val_batches(val_batches, self.task)
        self._val_feats = None
        if config.val.cache_features:  # stage 1 never changes the encoder: its meta-val features are fixed
            self._val_feats = [self._encode(self.encoder_variables, placement.put(b["image"])) for b in self._val]
        val_features = (
            self._val_feats[0]
            if self._val_feats is not None
            else jax.eval_shape(self._encode, self.encoder_variables, placement.put(self._val[0]["image"]))
        )
        self.compiled = CompiledPrograms(
            config, self.settings, self.expand_first_block, self.cache, val_features, self._val[0], device
        )
        self.programs = self.compiled.programs  # the decoder program: plans, layouts, to/from the ordinary one

    # ------------------------------------------------------------------------------------------ compiling
    @staticmethod
    def compile_early(
        config,
        num_classes: int,
        encoder_variables,
        abstract_cache: Stage1Cache,
        val_batches: Iterable[dict],
        genotype,
        *,
        expand_first_block: bool = True,
        device=None,
        stages=STAGES,
    ) -> BackgroundCompile:
        """Start compiling ``genotype``'s programs before the trainer exists, from shapes alone
        (``abstract_cache``: `fdn.candidate.cache.abstract_stage1_cache`), in a thread; hand ``.table`` to the
        trainer's ``adopt_programs``. With the universal programs that is every program of the search, compiled
        while the teacher trains instead of after it. The arguments are the trainer's own."""
        val = host_val_batches(val_batches, abstract_cache.task)
        val_features = jax.eval_shape(encoder_features(bool(expand_first_block)), encoder_variables, val[0]["image"])
        table = CompiledPrograms(
            config,
            decoder_settings(config, int(num_classes)),
            bool(expand_first_block),
            abstract_cache,
            val_features,
            val[0],
            device,
        )
        return table.in_background(G.parse(genotype), stages)

    def adopt_programs(self, table: CompiledPrograms) -> bool:
        """Use ``table`` (``compile_early``'s, with what it has compiled so far or is compiling) instead of this
        trainer's own if it was built for exactly this trainer's shapes and settings; whether it was."""
        if table.signature() != self.compiled.signature():
            return False
        self.compiled = table
        self.programs = table.programs
        return True

    def precompile(self, genotype, stages=STAGES) -> dict:
        """Compile ``genotype``'s programs now (call it from a thread while another candidate trains).

        Returns the seconds spent per program; compile errors are not raised here but by the stage that
        needs the program.
        """
        return self.compiled.precompile(G.parse(genotype), stages)

    def compiled_programs(self) -> dict:
        """{(program key, 'stage1' | 'eval' | 'stage2'): compiled executable} of every finished compile, for
        measurements (``fdn.bench search`` reads XLA's cost analysis of each)."""
        return self.compiled.finished()

    def _cache_args(self):
        return list(self.cache.features), self.cache.labels, self.cache.teacher

    # ------------------------------------------------------------------------------------------ stages
    def stage1(self, genotype, key) -> StageResult:
        """Decoder-only training on the cache, then the meta-val reward."""
        genotype = G.parse(genotype)
        start = time.perf_counter()
        exe, compile_s = self.compiled.stage1(genotype)
        _, flattener, tx = self.compiled.stage1_parts(genotype)
        init_key, run_key = jax.random.split(key)
        if genotype not in self._ordinary_shapes:  # traced per genotype (ordinary programs), a search meets most again
            self._ordinary_shapes[genotype] = self.programs.ordinary_abstract(
                genotype, [f.shape for f in self.cache.features]
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
        exe, compile_s = self.compiled.stage2(genotype)
        _, tx_enc, tx_dec, f_enc, f_dec = self.compiled.stage2_parts(genotype)
        enc, dec = stage1_result.encoder_variables, stage1_result.decoder_program_variables
        # The step donates its state: copy what stage 1's result shares with the trainer.
        batch_stats = jax.tree.map(placement.copy, {N.ENCODER: enc[N.BATCH_STATS], N.DECODER: dec[N.BATCH_STATS]})
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
                    state, loss = exe(state, placement.put(batch["image"], np.float32), self._targets(batch), data)
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
    def _targets(self, batch):
        """A stage-2 batch's targets as the compiled step takes them (``CompiledPrograms.stage2_targets``)."""
        if self.task == tasks.SEGMENTATION:
            return placement.put(batch["segmentation"], np.uint8)
        return placement.put(batch[tasks.get(self.task).label_key], np.float32)

    def _evaluate(self, genotype, decoder_vars, encoder_vars, val_feats):
        exe, compile_s = self.compiled.eval(genotype)
        data = self.programs.plan(genotype)
        segmentation = self.task == tasks.SEGMENTATION
        sums = jnp.zeros((self.num_classes, self.num_classes), jnp.int32) if segmentation else self.compiled.zero_sums()
        for i, b in enumerate(self._val):
            feats = val_feats[i] if val_feats is not None else self._encode(encoder_vars, placement.put(b["image"]))
            feats = [f.astype(jnp.float32) for f in feats]
            if segmentation:
                sums = exe(decoder_vars, feats, b["segmentation"], b["valid"], sums, data)
            else:
                sums = exe(decoder_vars, feats, {k: v for k, v in b.items() if k != "image"}, sums, data)
        if segmentation:
            return segmentation_metrics(np.asarray(sums), tuple(self.config.val.omit_classes)), compile_s
        metrics = tasks.get(self.task).summarise(jax.tree.map(np.asarray, sums))
        return {**metrics, "reward": metrics["score"]}, compile_s

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
