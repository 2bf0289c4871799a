"""The universal decoder computes what the ordinary decoder computes, for any genotype, from one compile."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdn import genotype as G
from fdn.candidate.programs import DecoderProgram, make_programs, ordinary_abstract
from fdn.models import names as N
from fdn.models.decoder import Decoder, DecoderSettings
from fdn.models.init import draw_variables
from fdn.models.resize import resize_bilinear
from fdn.models.universal import Geometry, Layout, UniversalDecoder, make_plan
from fdn.models.universal.decoder import resize_from_level

SETTINGS = DecoderSettings(5, 8, 1, True)
SIZES = (8, 4, 2, 1)  # encoder outputs of a 32x32 crop
OUT = (8, 8)
# Every op, cells at every level, blocks reading earlier blocks, one and several collected outputs.
GENOTYPES = [
    G.parse("[[7, [1, 0, 10, 7], [2, 1, 10, 6], [0, 5, 7, 4]], [[2, 1], [0, 0], [4, 1]]]"),
    G.parse("[[3, [0, 1, 5, 0], [3, 2, 2, 8], [2, 2, 6, 9]], [[3, 2], [1, 4], [0, 5]]]"),
]
# The op slots of a cell: op0, then o1 and o2 of each pair.
OP_POSITIONS = ("op0", "pair1.o1", "pair1.o2", "pair2.o1", "pair2.o2", "pair3.o1", "pair3.o2")


def op_slots(g) -> dict:
    return dict(zip(OP_POSITIONS, [g.op0, *[op for p in g.pairs for op in p[2:]]]))


def covering_genotypes() -> list:
    """G.NUM_OPS genotypes that together put every op id (conv3x3, id 1, included) in every op slot: genotype i
    has op (i + 3k) % NUM_OPS in slot k, so each genotype mixes ops; its positions and block wiring vary too."""
    out = []
    for i in range(G.NUM_OPS):
        ops = [(i + 3 * k) % G.NUM_OPS for k in range(len(OP_POSITIONS))]
        pairs = [
            [i % 2, (i + 1) % 2, ops[1], ops[2]],
            [i % 5, (2 * i) % 5, ops[3], ops[4]],
            [(3 * i) % 8, (i + 5) % 8, ops[5], ops[6]],
        ]
        blocks = [[(i + 3) % 4, (i + 3 + i % 2) % 4], [(i + 2) % 5, i % 5], [(i + 3) % 6, (2 * i) % 6]]
        out.append(G.parse([[ops[0], *pairs], blocks]))
    return out


# What the universal decoder is compared on: the fixed list, the covering set and random genotypes.
COMPARED = GENOTYPES + covering_genotypes() + [None, None]  # None: a random genotype, drawn in the test


def compared_genotypes():
    rng = np.random.default_rng(7)
    return [g if g is not None else random_genotype(rng) for g in COMPARED]


def test_every_op_id_is_compared_in_every_op_slot():
    """Computed from the genotypes the comparisons below use: no op id may be missing from any slot."""
    compared = compared_genotypes()
    assert sum(g is None for g in COMPARED) >= 2  # random genotypes too
    seen = {pos: set() for pos in OP_POSITIONS}
    for g in compared:
        for pos, op in op_slots(g).items():
            seen[pos].add(op)
    missing = {pos: sorted(set(range(G.NUM_OPS)) - ops) for pos, ops in seen.items() if len(ops) < G.NUM_OPS}
    assert not missing, missing
    assert len(G.OPS) == G.NUM_OPS and [op.id for op in G.OPS] == list(range(G.NUM_OPS))
    # Cells at every resolution level and blocks reading earlier blocks, too.
    levels = {int(x) for g in compared for x in make_plan(g)["block_level"]}
    assert levels == {0, 1, 2, 3}, levels
    assert any(i >= 4 for g in compared for b in g.blocks for i in b)


def random_genotype(rng):
    while True:
        actions = [0, int(rng.integers(G.NUM_OPS))]
        for n in G.CELL_POSITION_CHOICES:
            actions += [
                int(rng.integers(n)),
                int(rng.integers(n)),
                int(rng.integers(G.NUM_OPS)),
                int(rng.integers(G.NUM_OPS)),
            ]
        for n in G.BLOCK_INPUT_CHOICES:
            actions += [int(rng.integers(n)), int(rng.integers(n))]
        try:
            return G.Genotype.from_actions(actions)
        except G.GenotypeError:
            continue


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    return [jnp.asarray(rng.normal(size=(2, s, s, c)).astype(np.float32)) for s, c in zip(SIZES, (24, 32, 96, 320))]


def ordinary_variables(genotype, features, seed):
    decoder = Decoder(genotype, SETTINGS)
    abstract = jax.eval_shape(lambda: decoder.init(jax.random.PRNGKey(0), features, train=False))
    return decoder, draw_variables(abstract, seed, random_bn_stats=True)


def test_layout_round_trip_is_exact(features):
    layout = Layout(SETTINGS)
    rng = np.random.default_rng(1)
    for i in range(6):
        g = random_genotype(rng)
        _, v = ordinary_variables(g, features, i)
        back = layout.from_universal(layout.to_universal(v, g), g)
        assert jax.tree.structure(back) == jax.tree.structure(v)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(v)):
            np.testing.assert_array_equal(np.asarray(a), b)
        # Every genotype gets the same universal shapes: one compile serves them all.
        reference = layout.to_universal(ordinary_variables(GENOTYPES[0], features, 0)[1], GENOTYPES[0])
        assert jax.tree.map(np.shape, layout.to_universal(v, g)) == jax.tree.map(np.shape, reference)


def test_plan_levels():
    plan = make_plan(GENOTYPES[0])
    # blocks: [2, 1] -> level 1, [0, 0] -> 0, [4 (b1, level 1), 1] -> 1; collected: b2, b3 (b1 is read by b3)
    assert plan["block_level"].tolist() == [1, 0, 1]
    assert plan["job_level"].tolist() == [[2, 1, 1], [0, 0, 0], [1, 1, 1]]
    assert plan["collected"].tolist() == [False, True, True] and int(plan["final_level"]) == 0


def test_both_decoder_programs_meet_the_protocol():
    for kind in ("universal", "per_genotype"):
        programs = make_programs(kind, SETTINGS)
        assert isinstance(programs, DecoderProgram)
        assert (programs.plan(GENOTYPES[0]) is None) == (kind == "per_genotype")


def rel(a, b, floor):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), floor))


def exact_outputs(decoder, variables, features):
    """The ordinary decoder's train-mode outputs (main, aux) at ``OUT``, computed in float64 from the same float32
    inputs and weights: the answer both float32 programs approximate."""
    with jax.enable_x64(True):
        to64 = lambda x: jnp.asarray(np.asarray(x), jnp.float64)  # noqa: E731
        (logits, aux), _ = decoder.apply(
            jax.tree.map(to64, variables), [to64(f) for f in features], train=True, mutable=["batch_stats"]
        )
        return np.asarray(resize_bilinear(logits, OUT)), [np.asarray(resize_bilinear(a, OUT)) for a in aux]


def within_float32_noise(universal, ordinary, exact) -> bool:
    """The universal output is as close to the exact (float64) answer as float32 allows: within 1e-5 of it, or
    within twice the ordinary float32 decoder's own error where that is larger. Why not simply against the
    ordinary float32 output: train-mode BN over the fixture's 1x1 level (2 values per channel) is ill-conditioned,
    and there the float32 ordinary decoder itself is 3.5e-5 off the exact answer on one CPU (AMD Zen 5: universal
    2.7e-5), so the two float32 programs differ by 1.3e-5 with neither wrong. A wrong op or wiring is >= 1e-3."""
    return rel(universal, exact, 1e-6) < max(1e-5, 2 * rel(ordinary, exact, 1e-6))


def test_train_outputs_stats_and_gradients_match_the_ordinary_decoder(features):
    universal = UniversalDecoder(SETTINGS)
    geom = Geometry.of(features)
    rng = np.random.default_rng(2)
    weights = [jnp.asarray(rng.normal(size=(2, *OUT, 5)).astype(np.float32)) for _ in range(4)]

    def score(out, aux):
        return jnp.sum(out * weights[0]) + sum(jnp.sum(a * w) for a, w in zip(aux, weights[1:]))

    traces = []  # one entry per trace: a second one means a genotype got its own program

    def universal_loss(params, stats, plan):
        traces.append(None)
        logits, level, aux, new = universal.apply({"params": params, "batch_stats": stats}, features, plan, train=True)
        out = resize_from_level(logits, level, OUT, geom)
        aux = [resize_from_level(a, plan["block_level"][b], OUT, geom) for b, a in enumerate(aux)]
        return score(out, aux), (out, aux, new)

    universal_step = jax.jit(jax.value_and_grad(universal_loss, has_aux=True))  # compiled once, for all
    for seed, g in enumerate(compared_genotypes()):
        decoder, v = ordinary_variables(g, features, seed)

        def ordinary_loss(params):
            (logits, aux), upd = decoder.apply(
                {"params": params, "batch_stats": v["batch_stats"]}, features, train=True, mutable=["batch_stats"]
            )
            out, aux = resize_bilinear(logits, OUT), [resize_bilinear(a, OUT) for a in aux]
            return score(out, aux), (out, aux, upd["batch_stats"])

        (loss, (out, aux, stats)), grads = jax.value_and_grad(ordinary_loss, has_aux=True)(v["params"])
        uv = universal.layout.to_universal(v, g)
        plan = {k: jnp.asarray(x) for k, x in make_plan(g).items()}
        (u_loss, (u_out, u_aux, u_stats)), u_grads = universal_step(uv["params"], uv["batch_stats"], plan)
        # The fixed list as before; for the covering and random genotypes the weighted sum may cancel ~100x
        # (sum of |terms| / |sum| up to 101, measured), so its error is judged against the terms' scale: the
        # outputs themselves are held to float32's noise just below (`within_float32_noise`; loss 2.9e-5 of |sum|).
        floor = 1e-6 if seed < len(GENOTYPES) else float(jnp.sum(jnp.abs(out * weights[0])))
        assert rel(u_loss, loss, floor) < 1e-5
        exact_out, exact_aux = exact_outputs(decoder, v, features)
        assert within_float32_noise(u_out, out, exact_out)
        assert all(within_float32_noise(*outputs) for outputs in zip(u_aux, aux, exact_aux))
        back = universal.layout.from_universal({"params": u_grads, "batch_stats": u_stats}, g)
        for a, b in zip(jax.tree.leaves(back["batch_stats"]), jax.tree.leaves(stats)):
            assert rel(a, b, 1e-6) < 1e-5
        # Per-leaf gradient error relative to the leaf, floored at 1e-2 of the largest leaf gradient (GAP
        # branches after batch-statistics BN have gradients that are float noise around zero). Why 1e-2: float32
        # rounding leaves differences of ~1e-6 of the largest gradient in any leaf (both programs, measured), and
        # a floor of 1e-3 amplified that to 1.02e-3 / 1.10e-3 for two covering genotypes on jax 0.10.2 (the
        # same leaves in float64 differ by <= 7e-5 of the floor, from the universal program's float32 geometry
        # constants). At 1e-2 the worst measured is 4.1e-4, and a 1% error in every kernel gradient gives 9.9e-3
        # (tried): a wrong gradient on any leaf above 1% of the largest is still caught, smaller leaves are held
        # to 1e-5 of the largest.
        scale = max(float(np.linalg.norm(np.asarray(x))) for x in jax.tree.leaves(grads))
        errs = [rel(a, b, 1e-2 * scale) for a, b in zip(jax.tree.leaves(back["params"]), jax.tree.leaves(grads))]
        assert jax.tree.structure(back["params"]) == jax.tree.structure(grads)
        assert max(errs) < 1e-3, max(errs)
    # One program for every genotype: a plan (or layout) whose shapes or dtypes depend on the genotype would
    # retrace and compile silently here, and fail the search's ahead-of-time compiled programs.
    assert len(traces) == 1


def test_without_aux_heads_the_aux_cells_do_not_run_and_keep_their_statistics(features):
    """``with_aux=False`` (the search's evaluation) skips the aux cells, as the ordinary decoder does: the same
    logits and the same new statistics, the aux cells' unchanged, in train mode too (where they would move)."""
    universal = UniversalDecoder(SETTINGS)
    forward = jax.jit(lambda v, plan: universal.apply(v, features, plan, train=True, with_aux=False))
    for seed, g in enumerate(GENOTYPES):
        decoder, v = ordinary_variables(g, features, seed)
        (logits, _), upd = decoder.apply(v, features, train=True, with_aux=False, mutable=["batch_stats"])
        uv = universal.layout.to_universal(v, g)
        u_logits, level, aux, u_stats = forward(uv, {k: jnp.asarray(x) for k, x in make_plan(g).items()})
        assert aux == []
        h = SIZES[int(level)]
        assert rel(u_logits[:, :h, :h], logits, 1e-6) < 1e-5
        back = universal.layout.from_universal({"params": uv["params"], "batch_stats": u_stats}, g)["batch_stats"]
        flat_back = dict(jax.tree_util.tree_flatten_with_path(back)[0])
        flat_new = dict(jax.tree_util.tree_flatten_with_path(upd["batch_stats"])[0])
        flat_old = dict(jax.tree_util.tree_flatten_with_path(v["batch_stats"])[0])
        assert flat_back.keys() == flat_new.keys()
        moved = kept = 0
        for path, new in flat_new.items():
            assert rel(flat_back[path], new, 1e-6) < 1e-5, jax.tree_util.keystr(path)
            moved += int(not np.array_equal(np.asarray(new), np.asarray(flat_old[path])))
            if N.AUX_CELL in jax.tree_util.keystr(path):
                assert np.array_equal(np.asarray(flat_back[path]), np.asarray(flat_old[path]))
                kept += 1
        assert kept > 0 and moved > 0  # aux-cell statistics were checked, and train mode moved the others


def test_eval_outputs_match_the_ordinary_decoder(features):
    universal = UniversalDecoder(SETTINGS)
    traces = []  # one entry per trace: a second one means a genotype got its own program

    def forward(v, plan):
        traces.append(None)
        return universal.apply(v, features, plan, train=False, with_aux=False)[:2]

    fn = jax.jit(forward)
    for seed, g in enumerate(compared_genotypes()):
        decoder, v = ordinary_variables(g, features, seed)
        logits, _ = decoder.apply(v, features, train=False, with_aux=False)
        plan = {k: jnp.asarray(x) for k, x in make_plan(g).items()}
        u_logits, level = fn(universal.layout.to_universal(v, g), plan)
        h, w = SIZES[int(level)], SIZES[int(level)]
        assert u_logits[:, :h, :w].shape == logits.shape
        assert rel(u_logits[:, :h, :w], logits, 1e-6) < 1e-5
    assert len(traces) == 1  # one program for every genotype


def test_ordinary_shapes_read_off_the_universal_layout_equal_the_decoders_own(features):
    """The universal programs derive a genotype's ordinary variable shapes from their layout (no tracing); they
    must be the tree ``ordinary_abstract`` traces, leaf for leaf (weights are drawn and parameters counted in it)."""
    programs = make_programs("universal", SETTINGS)
    shapes = [f.shape for f in features]
    for g in compared_genotypes():
        ours = programs.ordinary_abstract(g, shapes)
        theirs = ordinary_abstract(g, SETTINGS, shapes)
        assert jax.tree.structure(ours) == jax.tree.structure(theirs)
        assert jax.tree.leaves(ours) == jax.tree.leaves(theirs)
