"""proofs.gpu.post on the host harness vs ptree.path_from_upper, plus the gather index logic."""
import random

import pytest

from zqnode.proofs import ptree
from zqnode.proofs.gpu import post
from zqnode.proofs.poseidon_constants import P

RNG = random.Random(5)


def words(n: int) -> bytes:
    return b"".join(RNG.randrange(P).to_bytes(32, "little") for _ in range(n))


@pytest.fixture(scope="module")
def tree_4096():
    """An 8-ary tree over 8^4 leaves, kept from level 3 (segments of 512 leaves)."""
    leaves = words(4096)
    return leaves, ptree.build_levels(leaves, 8)


def segment_of(leaves: bytes, index: int, size: int) -> bytes:
    start = index - index % size
    return leaves[start * 32:(start + size) * 32]


def test_paths_match_cpu_with_512_leaf_segments(hx, tree_4096):
    leaves, levels = tree_4096
    upper = levels[3:]
    indices = [0, 1, 7, 8, 511, 512, 2047, 4095] + [RNG.randrange(4096) for _ in range(8)]
    items = [(upper, segment_of(leaves, i, 512), i) for i in indices]
    expected = [ptree.path_from_upper(u, s, i, 8) for u, s, i in items]
    assert post.paths_from_upper(hx, items, 8) == expected
    # and each path verifies against the root
    for (_, _, i), path in zip(items, expected):
        assert ptree.verify_path(levels[-1], leaves[i * 32:(i + 1) * 32], i, path, 8)


def test_two_kib_shape_rebuilds_the_whole_tree(hx):
    leaves = words(64)
    levels = ptree.build_levels(leaves, 8)
    upper = levels[2:]  # the root only: every challenge rehashes all 64 leaves
    items = [(upper, leaves, i) for i in (0, 9, 63)]
    assert post.paths_from_upper(hx, items, 8) == [ptree.path_from_upper(u, s, i, 8) for u, s, i in items]


def test_compound_shape_and_explicit_arities(hx):
    shape = (8, 8, 8, 2)
    leaves = words(1024)
    levels = ptree.build_levels(leaves, shape)
    upper = levels[3:]
    items = [(upper, segment_of(leaves, i, 512), i) for i in (3, 600, 1023)]
    assert post.paths_from_upper(hx, items, shape) == [ptree.path_from_upper(u, s, i, shape) for u, s, i in items]


def test_mixed_bottom_arities_fall_back_to_the_cpu(hx):
    shape = (2, 8)
    leaves = words(16)
    levels = ptree.build_levels(leaves, shape)
    items = [(levels[2:], leaves, i) for i in (0, 15)]
    assert post.paths_from_upper(hx, items, shape) == [ptree.path_from_upper(u, s, i, shape) for u, s, i in items]


def test_partition_paths_groups_by_sector(hx, tree_4096):
    leaves, levels = tree_4096
    upper = levels[3:]
    sectors = [(upper, [(i, segment_of(leaves, i, 512)) for i in (5, 3000)]),
               (upper, [(1234, segment_of(leaves, 1234, 512))])]
    got = post.partition_paths(hx, sectors, 8)
    assert [len(s) for s in got] == [2, 1]
    assert got[1][0] == ptree.path_from_upper(upper, segment_of(leaves, 1234, 512), 1234, 8)


def test_wrong_segment_raises_like_the_cpu(hx, tree_4096):
    leaves, levels = tree_4096
    upper = levels[3:]
    wrong = segment_of(leaves, 0, 512)  # leaves of segment 0 offered for leaf 600
    with pytest.raises(ptree.TreeError, match="do not hash to the stored level-3 node 1"):
        ptree.path_from_upper(upper, wrong, 600, 8)
    with pytest.raises(ptree.TreeError, match="do not hash to the stored level-3 node 1"):
        post.paths_from_upper(hx, [(upper, wrong, 600)], 8)
    for fn in (lambda: ptree.path_from_upper(upper, wrong[:32 * 64], 600, (8,) * 4),
               lambda: post.paths_from_upper(hx, [(upper, wrong[:32 * 64], 600)], (8,) * 4)):
        with pytest.raises(ptree.TreeError, match="segment has 64 leaves, expected 512"):
            fn()
    with pytest.raises(ptree.TreeError, match="out of range"):
        post.paths_from_upper(hx, [(upper, wrong, 4096)], 8)


def test_gather_rows_hold_siblings_then_the_rebuilt_node(hx):
    segment = words(64)
    levels = ptree.build_levels(segment, 8)
    row = post.bottom_rows(hx, [segment, segment], [10, 63], 8, 2)
    assert len(row) == 2 and len(row[0]) == post.row_words(8, 2) * 32 == 15 * 32
    # leaf 10: level 0 group 8..15 without 10; level 1 group 0..7 without 1; then the root
    expected = b"".join(segment[i * 32:(i + 1) * 32] for i in (8, 9, 11, 12, 13, 14, 15))
    expected += b"".join(levels[1][i * 32:(i + 1) * 32] for i in (0, 2, 3, 4, 5, 6, 7)) + levels[2]
    assert row[0] == expected
