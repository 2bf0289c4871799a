"""Genotype parsing, validation, description, hashing and the search-space size."""

import json

import numpy as np
import pytest

from fdn import genotype as G

SEARCH_A = [[7, [0, 0, 6, 3], [2, 1, 4, 2], [4, 1, 6, 1]], [[0, 0], [3, 2], [2, 0]]]


def test_released_architectures_by_name_and_description():
    assert G.parse("arch0").to_list() == G.RELEASED["arch0"]
    assert G.ARCH0.describe_cell() == (
        "sep5x5r6(x) + [conv3x3r3(x) + sep3x3(x)] + [sep5x5r6(x) + sep5x5r6(conv3x3r3(x))] + "
        "[conv3x3(x) + gap(sep5x5r6(x))]"
    )
    assert G.ARCH1.describe_cell() == (
        "[sep5x5(sep3x3(x)) + conv3x3r12(x)] + [sep3x3(x) + sep5x5r6(sep3x3(x))] + "
        "[conv3x3r12(sep5x5(sep3x3(x))) + conv3x3(x)]"
    )
    assert G.ARCH0.collected_blocks() == [0, 1, 2]
    assert G.ARCH1.collected_blocks() == [1, 2]
    assert G.ARCH2.collected_blocks() == [1, 2]
    assert "b3=(l4,l1)" in G.ARCH0.describe_blocks()


def test_parse_accepts_lists_json_log_lines_and_arrays():
    g = G.parse(SEARCH_A)
    assert G.parse(json.dumps(SEARCH_A)) == g
    assert G.parse(str(SEARCH_A)) == g
    log_line = f"0.5312\t12\t2210000\t13.4\t{SEARCH_A}"
    assert G.parse(log_line) == g
    assert G.parse(g) is g
    numpy_ints = [
        [np.int64(7), *[list(np.array(p)) for p in SEARCH_A[0][1:]]],
        [list(np.array(b)) for b in SEARCH_A[1]],
    ]
    assert G.parse(numpy_ints) == g
    assert G.Genotype.from_actions(np.array(g.to_actions())) == g
    assert g.to_actions() == [0, 7, 0, 0, 6, 3, 2, 1, 4, 2, 4, 1, 6, 1, 0, 0, 3, 2, 2, 0]


def test_json_round_trip_and_stable_hash():
    for name in G.RELEASED:
        g = G.released(name)
        assert G.parse(g.to_json()) == g
        assert len(g.short_hash) == 10 and g.short_hash == G.parse(str(g)).short_hash
    assert len({G.released(n).short_hash for n in G.RELEASED}) == 3
    # The hash is part of the on-disk format (leaderboards de-duplicate by it): pin one value.
    assert G.ARCH0.short_hash == "9c556c1312"


def test_search_space_size():
    assert G.search_space_size() == 14400 * 11 * (4 * 121) * (25 * 121) * (64 * 121)
    assert f"{G.search_space_size():.2g}" == "1.8e+15"


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            [[11, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]],
            "cell op0 = 11 is out of range: allowed 0..10",
        ),
        (
            [[1, [0, 2, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]],
            "cell pair 1 position p2 = 2 is out of range: allowed 0..1",
        ),
        (
            [[1, [0, 0, 1, 1], [5, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]],
            "cell pair 2 position p1 = 5 is out of range: allowed 0..4",
        ),
        (
            [[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 8, 1, 1]], [[0, 0], [0, 0], [0, 0]]],
            "cell pair 3 position p2 = 8 is out of range: allowed 0..7",
        ),
        ([[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, -1]], [[0, 0], [0, 0], [0, 0]]], "cell pair 3 op o2 = -1"),
        (
            [[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[4, 0], [0, 0], [0, 0]]],
            "block 1 input i1 = 4 is out of range: allowed 0..3",
        ),
        (
            [[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 5], [0, 0]]],
            "block 2 input i2 = 5 is out of range: allowed 0..4",
        ),
        (
            [[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [6, 0]]],
            "block 3 input i1 = 6 is out of range: allowed 0..5",
        ),
        (
            [[1, [0, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]],
            "cell pair 1 must be [p1, p2, o1, o2]",
        ),
        ([[1, [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]], "the cell part must be"),
        ([[1, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0]]], "the block part must be"),
        ([[1.5, [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], [[0, 0], [0, 0], [0, 0]]], "cell op0 must be an integer"),
        ("arch9", "unknown genotype 'arch9'"),
        ("[[1, [0, 0, 1, 1]", "unbalanced brackets"),
        ("[[1, [0, 0, 1, 1] oops]]", "cannot read genotype text"),
        ("", "empty genotype"),
    ],
)
def test_bad_genotypes_name_the_field(bad, message):
    with pytest.raises(G.GenotypeError) as err:
        G.parse(bad)
    assert message in str(err.value)


def test_loose_ends_follow_the_official_rule():
    # pair 1 consumes op0(x) (index 1), so only the pair sums remain
    g = G.parse([[2, [1, 0, 3, 6], [0, 1, 2, 8], [2, 0, 6, 1]], [[2, 3], [3, 1], [4, 4]]])
    assert g.cell_loose_ends() == [4, 7, 10]
    assert G.ARCH0.cell_loose_ends() == [1, 4, 7, 10]


def test_op_table_ids_names_and_families():
    """The op table is the single source of op ids and names: the README's order, ids = positions."""
    assert [op.id for op in G.OPS] == list(range(G.NUM_OPS)) and G.NUM_OPS == 11
    assert G.OP_NAMES == (
        "conv1x1",
        "conv3x3",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "global_average_pool",
        "conv3x3_dil3",
        "conv3x3_dil12",
        "sep_conv_3x3_dil3",
        "sep_conv_5x5_dil6",
        "skip_connect",
        "none",
    )
    assert [op.padding for op in G.OPS[:9]] == [0, 1, 1, 2, 0, 3, 12, 3, 12]
    assert [op.family for op in G.OPS] == [
        "conv1",
        "conv3",
        "sep3",
        "sep5",
        "gap",
        "conv3",
        "conv3",
        "sep3",
        "sep5",
        None,
        None,
    ]


def test_encoder_levels_used_leaves_out_block_outputs():
    # Decoder pool: 0..3 = encoder outputs l1..l4, 4 and 5 = blocks 1 and 2. ARCH1's blocks [[2, 3], [3, 1], [4, 4]]
    # read l2, l3, l4 and block 1 (index 4, not an encoder level).
    assert G.ARCH1.encoder_levels_used() == [1, 2, 3]
    g = G.parse([[0, [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0], [4, 4], [5, 4]]])
    assert g.encoder_levels_used() == [0]
    assert g.collected_blocks() == [2]  # blocks 1 and 2 are consumed by later blocks
