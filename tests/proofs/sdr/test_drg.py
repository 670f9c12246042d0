import hashlib
import math

import numpy as np
import pytest

from zqnode.proofs.params import ApiVersion, porep_id
from zqnode.proofs.sdr.chacha import chacha_block
from zqnode.proofs.sdr.drg import base_parents, drg_seed

NEW, LEGACY = ApiVersion.V1_1_0, ApiVersion.V1_0_0


class Rng:
    """rand_chacha ChaCha8Rng read as next_u64, one block at a time."""

    def __init__(self, key):
        self.key, self.counter, self.words = key, 0, []

    def next_u64(self):
        while len(self.words) < 2:
            self.words += chacha_block(self.key, self.counter)
            self.counter += 1
        lo, hi = self.words.pop(0), self.words.pop(0)
        return lo | hi << 32


def reference_parents(v, porep, api):
    """drgraph.rs BucketGraph::parents, written out plainly."""
    if v < 2:
        return [0] * 6
    seed = hashlib.sha256(b"Filecoin_DRSample" + porep).digest()[:28]
    rng = Rng(seed + v.to_bytes(4, "little"))
    meta = 5 * v
    buckets = math.ceil(math.log2(meta))
    others = []
    for _ in range(5):
        bucket = rng.next_u64() % buckets + 1
        largest = min(meta, 1 << bucket)
        smallest = max(2, largest >> 1)
        dist = smallest + rng.next_u64() % (largest - smallest + 1)
        p = (meta - dist) // 5
        others.append(v - 1 if p == v else p)
    return others + [v - 1] if api.legacy else [v - 1] + others


def test_drg_seed():
    assert drg_seed(porep_id(5)) == hashlib.sha256(b"Filecoin_DRSample" + porep_id(5)).digest()[:28]
    with pytest.raises(ValueError):
        drg_seed(bytes(31))


@pytest.mark.parametrize("api", [NEW, LEGACY])
def test_matches_reference_on_a_2kib_graph(api):
    porep = porep_id(5 if api is NEW else 0)
    got = base_parents(np.arange(64), porep, api)
    assert got.dtype == np.uint32 and got.shape == (64, 6)
    assert got.tolist() == [reference_parents(v, porep, api) for v in range(64)]


def test_matches_reference_on_sampled_large_nodes():
    nodes = [2, 3, 1000, (1 << 18) - 1, 123456789, (1 << 30) - 1, (1 << 31) - 1, (1 << 32) - 1]
    porep = porep_id(9)
    assert base_parents(np.array(nodes), porep, NEW).tolist() == \
        [reference_parents(v, porep, NEW) for v in nodes]


def test_first_nodes_and_parents_below_node():
    parents = base_parents(np.arange(1 << 12), porep_id(6), NEW)
    assert parents[:2].tolist() == [[0] * 6] * 2
    v = np.arange(2, 1 << 12)
    assert (parents[2:] < v[:, None]).all()
    assert (parents[2:, 0] == v - 1).all()


def test_legacy_order_moves_predecessor_last():
    v = np.arange(1 << 10)
    new, legacy = base_parents(v, porep_id(5), NEW), base_parents(v, porep_id(5), LEGACY)
    assert (legacy[:, :5] == new[:, 1:]).all() and (legacy[:, 5] == new[:, 0]).all()
    assert (legacy[2:, 5] == v[2:] - 1).all()


def test_node_index_must_fit_u32():
    with pytest.raises(ValueError):
        base_parents(np.array([1 << 32]), porep_id(5), NEW)
