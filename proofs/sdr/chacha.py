"""ChaCha block function with rand_chacha's ChaCha8Rng semantics, scalar and numpy, and
the RFC 8439 ChaCha20 keystream (synthetic PoRep's challenges).

rand_chacha: the 32-byte seed is the key (8 little-endian words), the 64-bit block
counter and the 64-bit stream id (nonce) start at 0; output words are the block
words in order, and a u64 is two consecutive words, low word first.
"""
from __future__ import annotations

import struct

import numpy as np

SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)   # "expand 32-byte k"
MASK32 = 0xFFFFFFFF
_QUARTER_ROUNDS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15),
                   (0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _check_rounds(rounds: int) -> None:
    if rounds not in (8, 12, 20):
        raise ValueError(f"ChaCha rounds must be 8, 12 or 20, not {rounds!r}")


def chacha_block(key: bytes, counter: int = 0, nonce: int = 0, rounds: int = 8) -> list[int]:
    """One 64-byte block as 16 words; plain Python, the reference for the numpy version."""
    _check_rounds(rounds)
    if len(key) != 32:
        raise ValueError(f"ChaCha key must be 32 bytes, got {len(key)}")
    init = [*SIGMA, *struct.unpack("<8I", key),
            counter & MASK32, counter >> 32, nonce & MASK32, nonce >> 32]
    x = list(init)
    for _ in range(rounds // 2):
        for a, b, c, d in _QUARTER_ROUNDS:
            x[a] = (x[a] + x[b]) & MASK32
            x[d] ^= x[a]
            x[d] = ((x[d] << 16) | (x[d] >> 16)) & MASK32
            x[c] = (x[c] + x[d]) & MASK32
            x[b] ^= x[c]
            x[b] = ((x[b] << 12) | (x[b] >> 20)) & MASK32
            x[a] = (x[a] + x[b]) & MASK32
            x[d] ^= x[a]
            x[d] = ((x[d] << 8) | (x[d] >> 24)) & MASK32
            x[c] = (x[c] + x[d]) & MASK32
            x[b] ^= x[c]
            x[b] = ((x[b] << 7) | (x[b] >> 25)) & MASK32
    return [(x[i] + init[i]) & MASK32 for i in range(16)]


def _permute(init: list[np.ndarray], rounds: int) -> np.ndarray:
    """The block function over n states at once: 16 (n,) uint32 input words -> (n, 16)."""
    n = init[0].shape[0]
    x = [w.copy() for w in init]
    tmp = np.empty(n, np.uint32)

    def rotl(v, s):    # in place: v = v <<< s
        np.right_shift(v, 32 - s, out=tmp)
        np.left_shift(v, s, out=v)
        np.bitwise_or(v, tmp, out=v)

    for _ in range(rounds // 2):
        for a, b, c, d in _QUARTER_ROUNDS:
            xa, xb, xc, xd = x[a], x[b], x[c], x[d]
            np.add(xa, xb, out=xa); np.bitwise_xor(xd, xa, out=xd); rotl(xd, 16)
            np.add(xc, xd, out=xc); np.bitwise_xor(xb, xc, out=xb); rotl(xb, 12)
            np.add(xa, xb, out=xa); np.bitwise_xor(xd, xa, out=xd); rotl(xd, 8)
            np.add(xc, xd, out=xc); np.bitwise_xor(xb, xc, out=xb); rotl(xb, 7)
    out = np.empty((n, 16), np.uint32)
    for i in range(16):
        np.add(x[i], init[i], out=out[:, i])
    return out


def chacha_blocks(keys: np.ndarray, counter: int = 0, nonce: int = 0,
                  rounds: int = 8) -> np.ndarray:
    """Block `counter` for many keys at once: keys (n, 8) uint32 -> words (n, 16) uint32."""
    _check_rounds(rounds)
    keys = np.asarray(keys)
    if keys.dtype != np.uint32 or keys.ndim != 2 or keys.shape[1] != 8:
        raise ValueError(f"keys must be an (n, 8) uint32 array, got {keys.dtype} {keys.shape}")
    n = keys.shape[0]
    consts = [*SIGMA, None, None, None, None, None, None, None, None,
              counter & MASK32, counter >> 32, nonce & MASK32, nonce >> 32]
    return _permute([np.full(n, c, np.uint32) if c is not None else np.ascontiguousarray(keys[:, i - 4])
                     for i, c in enumerate(consts)], rounds)


def chacha20_stream(key: bytes, nonce: bytes, first_block: int, blocks: int) -> bytes:
    """`blocks` 64-byte blocks of the ChaCha20 keystream from block `first_block` on, as
    RFC 8439 (the `chacha20` crate's ChaCha20): a 32-bit block counter and a 96-bit nonce."""
    if len(key) != 32 or len(nonce) != 12:
        raise ValueError("ChaCha20 takes a 32-byte key and a 12-byte nonce")
    if not (0 <= first_block and 0 <= blocks and first_block + blocks <= 1 << 32):
        raise ValueError("the ChaCha20 block counter is 32 bits")
    n = blocks
    fixed = [*SIGMA, *struct.unpack("<8I", key), None, *struct.unpack("<3I", nonce)]
    init = [np.arange(first_block, first_block + n, dtype=np.uint64).astype(np.uint32) if c is None
            else np.full(n, c, np.uint32) for c in fixed]
    return _permute(init, 20).astype("<u4").tobytes()


def words_to_u64(words: np.ndarray) -> np.ndarray:
    """(n, 2m) uint32 -> (n, m) uint64, pairing words low first like rand_core's next_u64."""
    w = words.astype(np.uint64)
    return w[:, 0::2] | (w[:, 1::2] << np.uint64(32))
