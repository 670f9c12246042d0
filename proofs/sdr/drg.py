"""DRG (base) parents of the SDR graph: bucket sampling, degree 6 (PROOFS.md section 4).

Mirrors storage-proofs-core drgraph.rs BucketGraph::parents: per node v >= 2 a ChaCha8Rng
keyed with seed28 || u32le(v) draws 5 pairs of u64s; nodes 0 and 1 have six parents 0.
"""
from __future__ import annotations

import hashlib

import numpy as np

from zqnode.proofs.params import ApiVersion
from zqnode.proofs.sdr.chacha import chacha_blocks, words_to_u64

BASE_DEGREE = 6
DRSAMPLE_DST = b"Filecoin_DRSample"
_M_PRIME = BASE_DEGREE - 1          # metagraph expansion: 5 metagraph nodes per node


def drg_seed(porep_id: bytes) -> bytes:
    """First 28 bytes of SHA-256("Filecoin_DRSample" || porep_id)."""
    if len(porep_id) != 32:
        raise ValueError(f"porep_id must be 32 bytes, got {len(porep_id)}")
    return hashlib.sha256(DRSAMPLE_DST + bytes(porep_id)).digest()[:28]


def base_parents(nodes: np.ndarray, porep_id: bytes, api_version: ApiVersion) -> np.ndarray:
    """Base parents of each node in `nodes` (uint, < 2^32) -> (len, 6) uint32."""
    v = np.asarray(nodes, dtype=np.uint64).reshape(-1)
    if v.size and int(v.max()) >= 1 << 32:
        raise ValueError("DRG node indexes must fit in a u32")
    seed_words = np.frombuffer(drg_seed(porep_id), dtype="<u4")
    keys = np.empty((v.size, 8), np.uint32)
    keys[:, :7] = seed_words
    keys[:, 7] = v.astype(np.uint32)
    # Each of the 5 parents draws two u64 (bucket, distance): 20 words, so block 0 gives
    # words 0..15 and block 1 (rand_chacha's buffer continues with counter 1) words 16..19.
    words = np.concatenate([chacha_blocks(keys, counter=0), chacha_blocks(keys, counter=1)[:, :4]],
                           axis=1)
    draws = words_to_u64(words)                         # (n, 10): bucket, distance, bucket, ...

    meta = v * np.uint64(_M_PRIME)
    # ceil(log2(meta)) == bit_length(meta - 1), exact for meta >= 2 (frexp is exact below 2^53).
    safe_meta = np.maximum(meta, np.uint64(2))
    _, n_buckets = np.frexp((safe_meta - np.uint64(1)).astype(np.float64))
    n_buckets = n_buckets.astype(np.uint64)

    others = np.empty((v.size, _M_PRIME), np.uint64)
    one, two = np.uint64(1), np.uint64(2)
    for k in range(_M_PRIME):
        bucket = draws[:, 2 * k] % n_buckets + one
        largest = np.minimum(safe_meta, np.left_shift(one, bucket))
        smallest = np.maximum(two, largest >> one)
        distance = smallest + draws[:, 2 * k + 1] % (largest - smallest + one)
        parent = (safe_meta - distance) // np.uint64(_M_PRIME)
        others[:, k] = np.where(parent == v, v - one, parent)

    out = np.empty((v.size, BASE_DEGREE), np.uint32)
    if api_version.legacy:
        out[:, :_M_PRIME], out[:, _M_PRIME] = others, v - one
    else:
        out[:, 0], out[:, 1:] = v - one, others
    out[v < two] = 0
    return out
