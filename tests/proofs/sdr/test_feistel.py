import hashlib
import struct

import numpy as np
import pytest

from zqnode.proofs.params import ApiVersion, porep_id
from zqnode.proofs.sdr.feistel import (
    FeistelPermutation, expander_parents, expander_permutation, feistel_keys, half_bits,
)

NEW, LEGACY = ApiVersion.V1_1_0, ApiVersion.V1_0_0


def reference_permute(n, index, keys):
    """feistel.rs permute(), written out plainly."""
    k = 1
    while 4 ** k < n:
        k += 1
    mask = (1 << k) - 1

    def f(right, key):
        data = struct.pack(">QQ", right, key)
        return int.from_bytes(hashlib.blake2b(data).digest()[:8], "big") & mask

    def encode(x):
        left, right = (x >> k) & mask, x & mask
        for key in keys[:3]:
            left, right = right, left ^ f(right, key)
        return (left << k) | right

    u = encode(index)
    while u >= n:
        u = encode(u)
    return u


def test_feistel_keys():
    digest = hashlib.sha256(b"Filecoin_Feistel" + porep_id(5)).digest()
    assert feistel_keys(porep_id(5)) == struct.unpack("<4Q", digest)


@pytest.mark.parametrize("n, k", [(1, 1), (4, 1), (5, 2), (16, 2), (17, 3), (512, 5),
                                  (1 << 21, 11), (1 << 33, 17), (1 << 34, 17)])
def test_half_bits(n, k):
    assert half_bits(n) == k


@pytest.mark.parametrize("n", [5, 6, 8, 12, 17, 512, 1000])
def test_permutes_the_whole_domain_like_the_reference(n):
    keys = (1, 2, 3, 4)
    perm = FeistelPermutation(n, keys)
    table = perm.tables()                      # force the vectorised path
    assert table.shape == (3, 1 << half_bits(n))
    got = perm.permute(np.arange(n)).tolist()
    assert got == [reference_permute(n, i, keys) for i in range(n)]
    assert sorted(got) == list(range(n))
    assert [perm.permute_one(i) for i in range(n)] == got


def test_vectorised_matches_reference_on_an_8mib_sample():
    perm = expander_permutation(1 << 18, porep_id(6))
    keys = feistel_keys(porep_id(6))
    sample = np.arange(0, 1 << 21, 4099, dtype=np.uint64)
    perm.tables()
    assert perm.permute(sample).tolist() == [reference_permute(1 << 21, int(i), keys)
                                             for i in sample]


def test_expander_parents_2kib():
    v = np.arange(64)
    parents = expander_parents(v, expander_permutation(64, porep_id(5)), NEW)
    keys = feistel_keys(porep_id(5))
    assert parents.dtype == np.uint32 and parents.shape == (64, 8)
    assert parents.tolist() == [[reference_permute(512, 8 * x + i, keys) // 8 for i in range(8)]
                                for x in range(64)]
    # A permutation of the 512 (node, slot) pairs: every node is a parent exactly 8 times.
    assert np.bincount(parents.reshape(-1), minlength=64).tolist() == [8] * 64


def test_legacy_truncation_only_matters_above_2_pow_32():
    small = expander_permutation(1 << 18, porep_id(1))
    v = np.arange(0, 1 << 18, 97)
    assert (expander_parents(v, small, LEGACY) == expander_parents(v, small, NEW)).all()


def test_legacy_32gib_graph_is_pathological():
    # graph.rs test_graph_distribution_pathology: legacy (u32-truncated) expander parents
    # never reach the second half of a 32 GiB sector; the new ones do.
    nodes = 1 << 30
    v = np.arange(200)
    legacy = expander_parents(v, expander_permutation(nodes, porep_id(3)), LEGACY)
    new = expander_parents(v, expander_permutation(nodes, porep_id(8)), NEW)
    assert legacy.max() < nodes // 2 <= new.max()
    assert new.max() < nodes


def test_bad_domain():
    with pytest.raises(ValueError):
        FeistelPermutation(0, (1, 2, 3))
    with pytest.raises(ValueError):
        feistel_keys(bytes(8))
