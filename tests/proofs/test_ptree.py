"""Poseidon Merkle trees: shapes, roots against a hand-built tree, inclusion paths,
compound trees, and paths rebuilt from a re-read segment of leaves."""
import base64
import random

import numpy as np
import pytest

from zqnode.proofs import poseidon as ps
from zqnode.proofs import ptree as pt


def _leaves(count, seed=0):
    rng = random.Random(seed)
    return b"".join(ps.int_to_word(rng.randrange(ps.P)) for _ in range(count))


def _word(data, i):
    return data[32 * i:32 * (i + 1)]


def _textbook_root(data, arities):
    """Root built with the textbook permutation, level by level."""
    nodes = [ps.word_to_int(_word(data, i)) for i in range(len(data) // 32)]
    for arity in arities:
        nodes = [ps.reference_hash(nodes[i:i + arity]) for i in range(0, len(nodes), arity)]
    assert len(nodes) == 1
    return ps.int_to_word(nodes[0])


def _cid_digest(cid):
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))[-32:]


def test_comm_r_of_the_lotus_bench_2kib_seal():
    # PROOFS.md section 5: the documented 2 KiB seal of zeros (t01000, sector 1).
    comm_c = bytes.fromhex("95dd0e3fd2b1226dfcff24b2c337b96a965aebea8fa2c3ed1a0470582191de0b")
    comm_r_last = bytes.fromhex("d75cfa6d30ece5e2d0354a1f855d7fb128e42e84a16a133278fd9ea8b72a8f15")
    expected = _cid_digest("bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c")
    assert pt.comm_r(comm_c, comm_r_last) == expected


def test_level_arities_for_sector_shapes():
    assert pt.level_arities(2 ** 6) == (8, 8)                    # 2 KiB, 8,0,0
    assert pt.level_arities(2 ** 18) == (8,) * 6                 # 8 MiB
    assert pt.level_arities(2 ** 30, 8, 8, 0) == (8,) * 10       # 32 GiB
    assert pt.level_arities(2 ** 31, 8, 8, 2) == (8,) * 10 + (2,)  # 64 GiB
    with pytest.raises(pt.TreeError, match="shape"):
        pt.level_arities(2 ** 31, 8, 8, 0)
    with pytest.raises(pt.TreeError):
        pt.level_arities(96)


@pytest.mark.parametrize("arity, count", [(2, 16), (8, 64)])
def test_root_matches_a_textbook_tree(arity, count):
    data = _leaves(count, seed=arity)
    levels = pt.build_levels(data, arity)
    assert [len(level) // 32 for level in levels] == [count // arity ** k
                                                      for k in range(len(levels))]
    assert pt.root(levels) == _textbook_root(data, pt.level_arities(count, arity))


def test_numpy_leaves_equal_bytes_leaves():
    data = _leaves(64)
    levels = pt.build_levels(data, 8)
    assert pt.build_levels(np.frombuffer(data, dtype=np.uint8), 8) == levels
    assert pt.build_levels(np.frombuffer(data, dtype=np.uint64).reshape(-1, 4), 8) == levels
    assert pt.build_levels(bytearray(data), 8) == levels


@pytest.mark.parametrize("arity, count", [(2, 16), (8, 64)])
def test_every_path_verifies(arity, count):
    data = _leaves(count, seed=3)
    levels = pt.build_levels(data, arity)
    root = pt.root(levels)
    for i in range(count):
        path = pt.inclusion_path(levels, i)
        assert len(path) == len(levels) - 1
        assert all(len(step.siblings) == arity - 1 for step in path)
        assert path[0].position == i % arity
        assert pt.verify_path(root, _word(data, i), i, path, arity)


def test_tampered_paths_fail():
    data = _leaves(64, seed=4)
    levels = pt.build_levels(data, 8)
    root, leaf, path = pt.root(levels), _word(data, 21), pt.inclusion_path(levels, 21)
    assert pt.verify_path(root, leaf, 21, path, 8)
    assert not pt.verify_path(root, _word(data, 22), 21, path, 8)      # wrong leaf
    assert not pt.verify_path(root, leaf, 22, path, 8)                 # wrong index
    assert not pt.verify_path(root, leaf, 21 + 64, path, 8)            # index too big
    assert not pt.verify_path(root, leaf, 21, path, 2)                 # wrong arity
    assert not pt.verify_path(root, leaf, 21, path[:1], 8)             # short path
    swapped = [pt.PathStep((path[0].siblings[1], path[0].siblings[0]) + path[0].siblings[2:],
                           path[0].position)] + path[1:]
    assert not pt.verify_path(root, leaf, 21, swapped, 8)              # sibling order
    bad = [pt.PathStep((b"\xff" * 32,) + path[0].siblings[1:], path[0].position)] + path[1:]
    assert not pt.verify_path(root, leaf, 21, bad, 8)                  # non-field sibling
    with pytest.raises(pt.TreeError):
        pt.verify_path(root[:31], leaf, 21, path, 8)


def test_compound_8_8_2_tree():
    # 16 base trees of 8 leaves, joined in eights by arity-8 nodes, then an arity-2 top.
    data = _leaves(128, seed=5)
    arities = pt.level_arities(128, 8, 8, 2)
    assert arities == (8, 8, 2)
    levels = pt.build_levels(data, arities)
    base_roots = [ps.hash_bytes([_word(data, 8 * b + j) for j in range(8)]) for b in range(16)]
    sub_roots = [ps.hash_bytes(base_roots[8 * s:8 * s + 8]) for s in range(2)]
    assert pt.root(levels) == ps.hash_bytes(sub_roots) == _textbook_root(data, arities)
    for i in (0, 63, 64, 100, 127):
        path = pt.inclusion_path(levels, i)
        assert [len(step.siblings) for step in path] == [7, 7, 1]
        assert path[2].position == i // 64
        assert pt.verify_path(pt.root(levels), _word(data, i), i, path, arities)
        assert not pt.verify_path(pt.root(levels), _word(data, i), i, path, 8)


def test_compound_8_8_0_is_one_8_ary_tree():
    data = _leaves(64, seed=6)
    base_roots = [ps.hash_bytes([_word(data, 8 * b + j) for j in range(8)]) for b in range(8)]
    assert pt.root(pt.build_levels(data, pt.level_arities(64, 8, 8, 0))) == \
        ps.hash_bytes(base_roots) == pt.root(pt.build_levels(data, 8))


@pytest.fixture(scope="module")
def tree_4096():
    data = _leaves(4096, seed=8)
    return data, pt.build_levels(data, 8)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_path_rebuilt_from_a_segment_equals_the_full_path(tree_4096, k):
    data, levels = tree_4096
    upper = levels[k:]
    arities = (8,) * 4
    indices = (2049,) if k == 4 else (0, 7, 511, 512, 2049, 4095)  # k = 4: the whole tree
    for i in indices:
        seg = pt.segment_range(i, arities, k)
        assert len(seg) == 8 ** k and seg.start <= i < seg.stop
        segment = data[32 * seg.start:32 * seg.stop]
        assert pt.path_from_upper(upper, segment, i, 8) == pt.inclusion_path(levels, i)
        assert pt.path_from_upper(upper, segment, i, arities) == pt.inclusion_path(levels, i)


def test_upper_shape_is_what_a_rebuild_needs(tree_4096):
    # The one check path_from_upper and its GPU twin (proofs.gpu.post) share.
    data, levels = tree_4096
    segment = data[32 * 512:32 * 1024]
    for arities in (8, (8,) * 4):
        assert pt.upper_shape(levels[3:], segment, 600, arities) == ((8,) * 4, 3, range(512, 1024))
    with pytest.raises(pt.TreeError, match="out of range"):
        pt.upper_shape(levels[3:], segment, 4096, (8,) * 4)
    with pytest.raises(pt.TreeError, match="kept levels"):
        pt.upper_shape(levels, segment, 600, (8,) * 3)


def test_windowpost_segment_costs_73_hashes(tree_4096):
    data, levels = tree_4096
    bottom = pt.rebuild_bottom(data[32 * 512:32 * 1024], (8, 8, 8))
    assert [len(level) // 32 for level in bottom] == [512, 64, 8, 1]  # 64 + 8 + 1 hashes
    assert bottom[1:] == [level[32 * 512 // 8 ** k:32 * 1024 // 8 ** k]
                          for k, level in enumerate(levels[1:4], start=1)]


def test_rebuild_rejects_wrong_segments(tree_4096):
    data, levels = tree_4096
    upper = levels[3:]
    segment = bytearray(data[32 * 512:32 * 1024])
    with pytest.raises(pt.TreeError, match="segment has"):
        pt.path_from_upper(upper, segment[:-32 * 8], 600, (8,) * 4)
    with pytest.raises(pt.TreeError, match="stored level-3 node 1"):
        pt.path_from_upper(upper, data[:32 * 512], 600, (8,) * 4)   # the wrong 512 leaves
    segment[0] ^= 1
    with pytest.raises(pt.TreeError, match="do not hash"):
        pt.path_from_upper(upper, bytes(segment), 600, 8)


def test_bad_trees_are_rejected():
    with pytest.raises(pt.TreeError, match="power"):
        pt.build_levels(_leaves(12), 8)
    with pytest.raises(pt.TreeError, match="arities"):
        pt.build_levels(_leaves(16), (8, 8))
    with pytest.raises(pt.TreeError, match="multiple"):
        pt.build_levels(bytes(33), 8)
    with pytest.raises(pt.TreeError, match="multiple"):
        pt.build_levels(b"", 8)
    with pytest.raises(pt.TreeError, match="contiguous"):
        pt.build_levels(np.zeros((8, 64), dtype=np.uint8)[:, ::2], 8)
    with pytest.raises(ps.FieldElementError):
        pt.build_levels(b"\xff" * 32 * 8, 8)
    levels = pt.build_levels(_leaves(8), 8)
    with pytest.raises(pt.TreeError, match="out of range"):
        pt.inclusion_path(levels, 8)


def test_rows_to_discard_as_rust_fil_proofs():
    # default_rows_to_discard(leaves per base tree, arity) for each tree-r-last shape.
    assert pt.rows_to_discard(8, 8) == 0              # two rows: nothing to discard
    assert pt.rows_to_discard(64, 8) == 1             # 2 KiB: the one middle row
    assert pt.rows_to_discard(8 ** 6, 8) == 2         # 8 MiB
    assert pt.rows_to_discard(2 ** 27, 8) == 2        # a 32 GiB base tree
    assert pt.rows_to_discard(2 ** 20, 2) == 7
    assert pt.rows_to_discard(4 ** 4, 4) == 3         # capped by the rows it has
    with pytest.raises(pt.TreeError):
        pt.rows_to_discard(100, 8)


def test_paths_from_upper_rebuilds_each_segment_once():
    data = _leaves(512, seed=7)
    levels = pt.build_levels(data, 8)
    upper = levels[2:]                                # levels 0 and 1 discarded
    reads = []

    def read(segment):
        reads.append(segment)
        return data[32 * segment.start:32 * segment.stop]

    indices = [0, 63, 64, 130, 511, 1]
    paths = pt.paths_from_upper(upper, read, indices, (8, 8, 8))
    assert paths == [pt.inclusion_path(levels, i) for i in indices]
    assert reads == [range(0, 64), range(64, 128), range(128, 192), range(448, 512)]
    # A changed leaf: refused with check, a path that fails verification without.
    bad = bytearray(data)
    bad[32 * 130] ^= 1
    with pytest.raises(pt.TreeError, match="leaves 128..191 do not hash to the stored level-2 node 2"):
        pt.paths_from_upper(upper, lambda s: bytes(bad[32 * s.start:32 * s.stop]), [130], (8, 8, 8))
    (path,) = pt.paths_from_upper(upper, lambda s: bytes(bad[32 * s.start:32 * s.stop]), [130],
                                  (8, 8, 8), check=False)
    assert not pt.verify_path(pt.root(levels), _word(bytes(bad), 130), 130, path, 8)
    with pytest.raises(pt.TreeError, match="out of range"):
        pt.paths_from_upper(upper, read, [512], (8, 8, 8))
