"""Expander parents of the SDR graph: a keyed Feistel permutation, degree 8.

Mirrors storage-proofs-core crypto/feistel.rs and storage-proofs-porep graph.rs:
3 rounds on 2k bits (k smallest >= 1 with 4^k >= N), round function
F(R, key) = u64be(BLAKE2b-512(u64be(R) || u64be(key))[:8]) & (2^k - 1), cycle-walking
until the result is < N.  F depends only on R (k bits), so we tabulate it once per key
(at most 3 x 2^17 hashes, for 64 GiB) and permute whole arrays with table lookups.
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np

from zqnode.proofs.params import ApiVersion

EXP_DEGREE = 8
FEISTEL_ROUNDS = 3
FEISTEL_DST = b"Filecoin_Feistel"


def feistel_keys(porep_id: bytes) -> tuple[int, int, int, int]:
    """The four u64le words of SHA-256("Filecoin_Feistel" || porep_id); 3 are used."""
    if len(porep_id) != 32:
        raise ValueError(f"porep_id must be 32 bytes, got {len(porep_id)}")
    return struct.unpack("<4Q", hashlib.sha256(FEISTEL_DST + bytes(porep_id)).digest())


def half_bits(num_elements: int) -> int:
    """k: the smallest k >= 1 with 4^k >= num_elements."""
    k = 1
    while 4 ** k < num_elements:
        k += 1
    return k


def round_function(right: int, key: int, mask: int) -> int:
    digest = hashlib.blake2b(right.to_bytes(8, "big") + key.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:8], "big") & mask


class FeistelPermutation:
    """The permutation of [0, num_elements) for the given keys (first 3 used)."""

    def __init__(self, num_elements: int, keys):
        if num_elements < 1:
            raise ValueError(f"Feistel domain must be non-empty, got {num_elements}")
        self.num_elements = num_elements
        self.keys = tuple(keys)[:FEISTEL_ROUNDS]
        self.k = half_bits(num_elements)
        self.mask = (1 << self.k) - 1
        self._tables = None

    def _encode_one(self, x: int) -> int:
        left, right = (x >> self.k) & self.mask, x & self.mask
        for key in self.keys:
            left, right = right, left ^ round_function(right, key, self.mask)
        return (left << self.k) | right

    def permute_one(self, index: int) -> int:
        """Scalar reference: hashes on every round, exactly like feistel.rs."""
        u = self._encode_one(index)
        while u >= self.num_elements:
            u = self._encode_one(u)
        return u

    def tables(self) -> np.ndarray:
        """F(R, key_r) for every R: (3, 2^k) uint64."""
        if self._tables is None:
            size = self.mask + 1
            tab = np.empty((len(self.keys), size), np.uint64)
            blake, mask = hashlib.blake2b, self.mask
            for r, key in enumerate(self.keys):
                key_be = key.to_bytes(8, "big")
                tab[r] = [int.from_bytes(blake(x.to_bytes(8, "big") + key_be).digest()[:8], "big")
                          & mask for x in range(size)]
            self._tables = tab
        return self._tables

    def _encode(self, x: np.ndarray) -> np.ndarray:
        tab, k, mask = self.tables(), np.uint64(self.k), np.uint64(self.mask)
        left, right = (x >> k) & mask, x & mask
        for r in range(len(self.keys)):
            left, right = right, left ^ tab[r][right]
        return (left << k) | right

    def permute(self, index: np.ndarray) -> np.ndarray:
        """Vectorised permute of a uint64 array of indexes (< 4^k)."""
        index = np.asarray(index, dtype=np.uint64)
        if self._tables is None and 2 * index.size < self.mask + 1:
            # A few indexes: hashing directly is cheaper than tabulating F.
            flat = [self.permute_one(int(i)) for i in index.reshape(-1)]
            return np.array(flat, dtype=np.uint64).reshape(index.shape)
        u = self._encode(index.reshape(-1))
        todo = np.flatnonzero(u >= np.uint64(self.num_elements))
        while todo.size:
            u[todo] = self._encode(u[todo])
            todo = todo[u[todo] >= np.uint64(self.num_elements)]
        return u.reshape(index.shape)


def expander_permutation(nodes: int, porep_id: bytes) -> FeistelPermutation:
    return FeistelPermutation(nodes * EXP_DEGREE, feistel_keys(porep_id))


def expander_parents(node_indexes: np.ndarray, perm: FeistelPermutation,
                     api_version: ApiVersion) -> np.ndarray:
    """Expander parents (len, 8) uint32: parent i of v = permute(8v + i) / 8.

    API 1.0 truncates the permuted index to u32 before dividing (graph.rs
    `transformed as u32 / 8`), which matters from 32 GiB up."""
    v = np.asarray(node_indexes, dtype=np.uint64).reshape(-1, 1)
    transformed = perm.permute(v * np.uint64(EXP_DEGREE) + np.arange(EXP_DEGREE, dtype=np.uint64))
    if api_version.legacy:
        transformed &= np.uint64(0xFFFFFFFF)
    return (transformed // np.uint64(EXP_DEGREE)).astype(np.uint32)
