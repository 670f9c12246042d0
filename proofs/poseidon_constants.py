"""Poseidon parameters for BLS12-381 Fr as neptune (Filecoin, Strength::Standard) uses them.

Everything is generated, nothing pasted: round constants come from the Grain LFSR of
the Poseidon reference scripts and the MDS matrix is the Cauchy matrix 1/(i + t + j).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

#: The BLS12-381 scalar field modulus.
P = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
FIELD_BITS = 255
FULL_ROUNDS = 8
#: Partial rounds per width t under neptune's Strength::Standard.
PARTIAL_ROUNDS = {3: 55, 5: 56, 9: 57, 12: 57}
ARITIES = (2, 4, 8, 11)


class UnsupportedArity(ValueError):
    """The arity has no Filecoin Poseidon parameters."""


def _grain_kept_bits(t: int, r_f: int, r_p: int):
    """Yield Grain's output bits as '0'/'1' characters, in blocks.

    The register is an 80-bit int whose bit j holds b[i + j]; the tap distances are
    at least 18, so 18 new bits can be computed from one shift of the window.
    """
    init = f"{1:02b}{1:04b}{FIELD_BITS:012b}{t:012b}{r_f:010b}{r_p:010b}" + "1" * 30
    window = int(init[::-1], 2)  # bit j = init[j]
    mask = (1 << 18) - 1

    def raw_block() -> str:
        nonlocal window
        w = window
        new = ((w >> 62) ^ (w >> 51) ^ (w >> 38) ^ (w >> 23) ^ (w >> 13) ^ w) & mask
        window = (w >> 18) | (new << 62)
        return f"{new:018b}"[::-1]  # bit order: oldest first

    pending = "".join(raw_block() for _ in range(9))[160:]  # 162 bits; the first 160 are discarded
    while True:
        pending += "".join(raw_block() for _ in range(64))
        usable = len(pending) & ~1
        pairs, pending = pending[:usable], pending[usable:]
        yield "".join(b for a, b in zip(pairs[0::2], pairs[1::2]) if a == "1")


def round_constants(t: int) -> list[int]:
    """The (R_F + R_P) * t round constants for width t, in the order they are added."""
    r_p = _partial_rounds(t)
    count = (FULL_ROUNDS + r_p) * t
    constants: list[int] = []
    buffer = ""
    blocks = _grain_kept_bits(t, FULL_ROUNDS, r_p)
    while len(constants) < count:
        while len(buffer) < FIELD_BITS:
            buffer += next(blocks)
        value, buffer = int(buffer[:FIELD_BITS], 2), buffer[FIELD_BITS:]
        if value < P:  # rejection sampling: redraw when not a field element
            constants.append(value)
    return constants


def mds_matrix(t: int) -> list[list[int]]:
    """Cauchy matrix M[i][j] = 1 / (x_i + y_j) with x_i = i, y_j = t + j."""
    return [[pow(i + t + j, -1, P) for j in range(t)] for i in range(t)]


def _partial_rounds(t: int) -> int:
    try:
        return PARTIAL_ROUNDS[t]
    except KeyError:
        raise UnsupportedArity(f"no Poseidon parameters for width {t} (arity {t - 1});"
                               f" supported arities: {ARITIES}") from None


@dataclass(frozen=True)
class Params:
    """The textbook parameters for one arity."""
    arity: int
    width: int
    partial_rounds: int
    constants: tuple[int, ...]
    mds: tuple[tuple[int, ...], ...]

    @property
    def domain_tag(self) -> int:
        return (1 << self.arity) - 1


@functools.cache
def params(arity: int) -> Params:
    """Generated (and cached) parameters for a Merkle-tree arity in ARITIES."""
    if arity not in ARITIES:
        raise UnsupportedArity(f"unsupported Poseidon arity {arity}; supported: {ARITIES}")
    t = arity + 1
    return Params(arity=arity, width=t, partial_rounds=_partial_rounds(t),
                  constants=tuple(round_constants(t)),
                  mds=tuple(tuple(row) for row in mds_matrix(t)))
