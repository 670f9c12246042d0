"""SDR encoding: replica word = (data word + key word) mod p, and its inverse (PROOFS.md §5).

The key of node v is its label in the last layer. Words are 32-byte little-endian field
elements. Whole sectors are done with numpy on four 64-bit limbs per word (add or
subtract with carry, then one conditional correction by p), which keeps a 32 GiB
sector's encoding out of Python's per-element loop.
"""
from __future__ import annotations

import numpy as np

from zqnode.proofs.poseidon import P, WORD

_P_LIMBS = np.array([(P >> (64 * i)) & (2 ** 64 - 1) for i in range(4)], dtype=np.uint64)


class EncodingError(ValueError):
    """Buffers that are not equal whole numbers of 32-byte words."""


def _limbs(buffer, what: str) -> np.ndarray:
    data = np.frombuffer(memoryview(buffer).cast("B"), dtype=np.uint8)
    if data.size % WORD:
        raise EncodingError(f"{what} is {data.size} bytes, not a whole number of {WORD}-byte words")
    return data.view("<u8").reshape(-1, 4)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = _limbs(a, "the first buffer"), _limbs(b, "the second buffer")
    if x.shape != y.shape:
        raise EncodingError(f"buffers differ in size: {x.shape[0]} and {y.shape[0]} words")
    return x, y


def _add(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x + y limb-wise; returns (sum mod 2^256, carry out)."""
    out = np.empty_like(x)
    carry = np.zeros(x.shape[0], dtype=np.uint64)
    for i in range(4):
        s = x[:, i] + y[:, i]
        c1 = s < x[:, i]
        s2 = s + carry
        c2 = s2 < s
        out[:, i] = s2
        carry = (c1 | c2).astype(np.uint64)
    return out, carry.astype(bool)


def _sub(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x - y limb-wise; returns (difference mod 2^256, borrow out)."""
    out = np.empty_like(x)
    borrow = np.zeros(x.shape[0], dtype=np.uint64)
    for i in range(4):
        d = x[:, i] - y[:, i]
        b1 = x[:, i] < y[:, i]
        d2 = d - borrow
        b2 = d < borrow
        out[:, i] = d2
        borrow = (b1 | b2).astype(np.uint64)
    return out, borrow.astype(bool)


def _at_least_p(x: np.ndarray) -> np.ndarray:
    ge = np.ones(x.shape[0], dtype=bool)          # equal to p counts as >= p
    decided = np.zeros(x.shape[0], dtype=bool)
    for i in (3, 2, 1, 0):
        gt, lt = x[:, i] > _P_LIMBS[i], x[:, i] < _P_LIMBS[i]
        ge = np.where(~decided & lt, False, ge)
        decided |= gt | lt
    return ge


def encode(data, key) -> bytes:
    """(data + key) mod p, word by word; both inputs are canonical (< p)."""
    x, y = _pair(data, key)
    s, carry = _add(x, y)
    fix = carry | _at_least_p(s)
    corrected, _ = _sub(s[fix], np.broadcast_to(_P_LIMBS, (int(fix.sum()), 4)))
    s[fix] = corrected
    return s.tobytes()


def decode(replica, key) -> bytes:
    """(replica - key) mod p, word by word: the data words back from a replica."""
    x, y = _pair(replica, key)
    d, borrow = _sub(x, y)
    fixed, _ = _add(d[borrow], np.broadcast_to(_P_LIMBS, (int(borrow.sum()), 4)))
    d[borrow] = fixed
    return d.tobytes()


def encode_word(data: bytes, key: bytes) -> bytes:
    """One word: (data + key) mod p, with Python ints (the verifier's scalar path)."""
    if len(data) != WORD or len(key) != WORD:
        raise EncodingError(f"words are {WORD} bytes, got {len(data)} and {len(key)}")
    value = (int.from_bytes(data, "little") + int.from_bytes(key, "little")) % P
    return value.to_bytes(WORD, "little")
