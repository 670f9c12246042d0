"""Poseidon constants for the device: the CPU code's own parameters, in Montgomery form.

The numbers come from proofs.poseidon_constants (Grain LFSR round constants, Cauchy MDS)
through proofs.poseidon's sparse-round plan, the same objects the CPU hash runs on.
`poseidon_blob` lays them out as cuda/poseidon.cuh's ZqPoseidonLayout reads them: 32-byte
elements, each x * 2^256 mod p as four little-endian 64-bit limbs.
"""
from __future__ import annotations

import functools

from zqnode.proofs.poseidon import _plan
from zqnode.proofs.poseidon_constants import FULL_ROUNDS, P, params

WORD = 32
MONTGOMERY_R = (1 << 256) % P


def to_montgomery(x: int) -> int:
    return x * MONTGOMERY_R % P


def from_montgomery(x: int) -> int:
    return x * pow(MONTGOMERY_R, -1, P) % P


def layout(arity: int) -> dict[str, int]:
    """Element offsets of each part of the blob, as ZqPoseidonLayout<arity> computes them."""
    prm = params(arity)
    t, rp = prm.width, prm.partial_rounds
    half = FULL_ROUNDS // 2
    offsets = {"T": t, "RP": rp, "TAG": 0, "FIRST": 1}
    offsets["PARTIAL"] = offsets["FIRST"] + half * t
    offsets["SPARSE"] = offsets["PARTIAL"] + rp
    offsets["LAST"] = offsets["SPARSE"] + (rp - 1) * 2 * (t - 1)
    offsets["SECOND"] = offsets["LAST"] + t * t
    offsets["MDS"] = offsets["SECOND"] + half * t
    offsets["SIZE"] = offsets["MDS"] + t * t
    return offsets


def _elements(arity: int) -> list[int]:
    plan = _plan(arity)
    out = [params(arity).domain_tag]
    for row in plan.first_full:
        out += row
    out += plan.partial
    for column, row in plan.sparse:
        out += column
        out += row
    for row in plan.last_partial:
        out += row
    for row in plan.second_full:
        out += row
    for row in plan.mds:
        out += row
    return out


@functools.cache
def poseidon_blob(arity: int) -> bytes:
    """The constants of one arity, ready to upload (layout(arity)['SIZE'] * 32 bytes)."""
    elements = _elements(arity)
    assert len(elements) == layout(arity)["SIZE"], (arity, len(elements))
    return b"".join(to_montgomery(e).to_bytes(WORD, "little") for e in elements)
