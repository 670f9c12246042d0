"""Poseidon hash over BLS12-381 Fr, bit-compatible with neptune (Filecoin, Strength::Standard).

hash(x1..xa) = state[1] after the permutation of [2^a - 1, x1, ..., xa].

Two implementations live here:

* `reference_hash` is the textbook permutation, straight from the parameters;
* `hash_ints` runs a straight-line function generated per arity at first use (`_source`).
  It is the same permutation, rearranged: partial rounds, most of the rounds, use sparse
  factored matrices (`_plan`, about 2t products instead of t^2); full rounds use the
  Cauchy matrix scaled to small integers; reduction mod p happens only where a value is
  raised to the fifth power. Pure-Python big-int cost is dominated by the S-boxes
  (8t + R_P of them, each a pow(x, 5, p)), which no rearrangement removes.
"""
from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from zqnode.proofs.poseidon_constants import ARITIES, FULL_ROUNDS, P, UnsupportedArity, params

__all__ = ["P", "ARITIES", "FieldElementError", "UnsupportedArity", "hash_ints", "hash_tagged", "hash_bytes",
           "hash_many", "hash_words", "hash_columns", "reference_hash", "int_to_word", "word_to_int"]

WORD = 32


class FieldElementError(ValueError):
    """An input is not a canonical BLS12-381 Fr element."""


# --- encoding --------------------------------------------------------------------------

def word_to_int(word: bytes) -> int:
    """A 32-byte little-endian field element as an int; it must be < P."""
    if len(word) != WORD:
        raise FieldElementError(f"a field element is {WORD} bytes, got {len(word)}")
    value = int.from_bytes(word, "little")
    if value >= P:
        raise FieldElementError(f"0x{value:064x} is not a canonical field element (>= p)")
    return value


def int_to_word(value: int) -> bytes:
    return value.to_bytes(WORD, "little")


def _field_elements(xs: Iterable[int]) -> list[int]:
    """The inputs as plain ints, each checked to be a canonical field element."""
    out = []
    for x in xs:
        try:
            v = operator.index(x)
        except TypeError:
            raise FieldElementError(f"{x!r} is not an integer") from None
        if not 0 <= v < P:
            raise FieldElementError(f"{x!r} is not a canonical field element (need 0 <= x < p)")
        out.append(v)
    return out


# --- textbook permutation ----------------------------------------------------------------

def reference_hash(xs: Sequence[int]) -> int:
    """The plain Poseidon permutation of the parameters; slow, kept as the yardstick."""
    xs = _field_elements(xs)
    prm = params(len(xs))
    t, mds, constants = prm.width, prm.mds, prm.constants
    half = FULL_ROUNDS // 2
    state = [prm.domain_tag, *xs]
    for r in range(FULL_ROUNDS + prm.partial_rounds):
        state = [(v + constants[r * t + i]) % P for i, v in enumerate(state)]
        if half <= r < half + prm.partial_rounds:
            state[0] = pow(state[0], 5, P)
        else:
            state = [pow(v, 5, P) for v in state]
        state = [sum(state[i] * mds[i][j] for i in range(t)) % P for j in range(t)]
    return state[1]


# --- rearranged permutation ----------------------------------------------------------------
# Row-vector convention throughout: a linear layer maps s to s·N, (s·N)_j = sum_i s_i N[i][j].

def _mat_mul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) % P for j in range(len(b[0]))]
            for i in range(len(a))]


def _vec_mat(v, m):
    return [sum(v[i] * m[i][j] for i in range(len(v))) % P for j in range(len(m[0]))]


def _mat_inv(m):
    """Inverse mod P by Gauss-Jordan elimination."""
    n = len(m)
    rows = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col])
        rows[col], rows[pivot] = rows[pivot], rows[col]
        inv = pow(rows[col][col], -1, P)
        rows[col] = [v * inv % P for v in rows[col]]
        for r in range(n):
            if r != col and rows[r][col]:
                f = rows[r][col]
                rows[r] = [(a - f * b) % P for a, b in zip(rows[r], rows[col])]
    return [row[n:] for row in rows]


@dataclass(frozen=True)
class _Plan:
    """The permutation, rearranged.

    Partial rounds only raise s_0 to the fifth power, so:

    * constants: the part of a partial round's constants outside s_0 passes through that
      round's S-box untouched; it is pushed through the matrix into the next round's
      constants, leaving one scalar per partial round; the last remainder joins the first
      constants of the second half.
    * matrices: a matrix N factors as N = B·A with A = diag(1, Â) and B the identity except
      for its first row and column. A leaves s_0 alone, so it commutes with a partial round's
      S-box and constant; it is folded into the next round's matrix, N' = A·M. Every partial
      round but the last applies a sparse B (2t - 1 products); the last applies its N whole.
    """
    arity: int
    first_full: tuple[tuple[int, ...], ...]    # constants of full rounds 1..4
    partial: tuple[int, ...]                    # one scalar per partial round
    sparse: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (column w, row v) of B_r
    last_partial: tuple[tuple[int, ...], ...]   # N_n, dense
    second_full: tuple[tuple[int, ...], ...]    # constants of full rounds 5..8
    mds: tuple[tuple[int, ...], ...]


@functools.cache
def _plan(arity: int) -> _Plan:
    prm = params(arity)
    t, n, mds = prm.width, prm.partial_rounds, [list(r) for r in prm.mds]
    half = FULL_ROUNDS // 2
    rounds = [list(prm.constants[r * t:(r + 1) * t]) for r in range(FULL_ROUNDS + n)]

    partial_scalars = []
    carry = [0] * t
    for r in range(half, half + n):
        c = [(a + b) % P for a, b in zip(rounds[r], carry)]
        partial_scalars.append(c[0])
        carry = _vec_mat([0] + c[1:], mds)
    second = rounds[half + n:]
    second[0] = [(a + b) % P for a, b in zip(second[0], carry)]

    sparse = []
    nmat = mds  # N_1 = M; N_{r+1} = A_r·M
    for _ in range(n - 1):
        a_hat = [row[1:] for row in nmat[1:]]
        column = [nmat[i][0] for i in range(1, t)]
        row = _vec_mat(nmat[0][1:], _mat_inv(a_hat))
        sparse.append((tuple(column), tuple(row)))
        a = [[1] + [0] * (t - 1)] + [[0] + r for r in a_hat]
        nmat = _mat_mul(a, mds)
    last = nmat
    return _Plan(arity=arity,
                 first_full=tuple(tuple(r) for r in rounds[:half]),
                 partial=tuple(partial_scalars), sparse=tuple(sparse),
                 last_partial=tuple(tuple(r) for r in last),
                 second_full=tuple(tuple(r) for r in second),
                 mds=tuple(tuple(r) for r in mds))


def _small_mds(t: int) -> tuple[int, list[list[int]]]:
    """(L, L·M) with L = lcm(t .. 3t-2): the Cauchy matrix as small integers times 1/L."""
    lcm = math.lcm(*range(t, 3 * t - 1))
    return lcm, [[lcm // (i + j + t) for j in range(t)] for i in range(t)]


def _source(plan: _Plan, tag: int) -> str:
    """Straight-line Python for one hash, every constant inlined as a literal.

    The generated code keeps each value as a multiple of the true one, with the factor
    known at generation time and absorbed into the constants. That lets full rounds use
    the Cauchy matrix scaled to small integers (cheap products, small values to reduce)
    and saves a product per partial round (the S-box output's coefficient is made 1).
    """
    t = plan.arity + 1
    s = [f"s{i}" for i in range(t)]
    lines = [f"def poseidon_{plan.arity}({', '.join(s[1:])}):"]
    emit = lines.append

    def inv(x):
        return pow(x, -1, P)

    lcm, small = _small_mds(t)
    inv_lcm = inv(lcm)

    def full_round(constants, scale, first, last):
        """Input stored as true/scale (one scale for every element); returns the output's."""
        for i in range(t):
            if first and i == 0:
                emit(f"    u0 = {pow(tag + constants[0], 5, P)}")
            else:
                emit(f"    u{i} = pow({s[i]} + {constants[i] * inv(scale) % P}, 5, p)")
        scale = pow(scale, 5, P) * inv_lcm % P
        for j in ([1] if last else range(t)):
            emit(f"    {s[j]} = " + " + ".join(f"u{i} * {small[i][j]}" for i in range(t)))
        return scale

    scale = 1
    for r, constants in enumerate(plan.first_full):
        scale = full_round(constants, scale, first=(r == 0), last=False)

    # Partial rounds: s0 is stored as true/alpha, s1.. as true/rest (rest never changes).
    alpha = rest = scale
    m00 = plan.mds[0][0]
    for k, (column, row) in zip(plan.partial, plan.sparse):
        emit(f"    u = pow(s0 + {k * inv(alpha) % P}, 5, p)")
        u_scale = pow(alpha, 5, P)
        alpha = u_scale * m00 % P
        y0 = " + ".join(["u"] + [f"{s[i]} * {rest * column[i - 1] * inv(alpha) % P}"
                                 for i in range(1, t)])
        others = ", ".join(f"{s[j]} + u * {u_scale * row[j - 1] * inv(rest) % P}"
                           for j in range(1, t))
        emit(f"    {', '.join(s)} = {y0}, {others}")
    emit(f"    u0 = pow(s0 + {plan.partial[-1] * inv(alpha) % P}, 5, p)")
    u_scale = pow(alpha, 5, P)
    last = plan.last_partial
    outputs = []
    for j in range(t):
        terms = [f"u0 * {u_scale * last[0][j] % P}"]
        terms += [f"{s[i]} * {rest * last[i][j] % P}" for i in range(1, t)]
        outputs.append(" + ".join(terms))
    emit(f"    {', '.join(s)} = {', '.join(outputs)}")

    scale = 1
    for r, constants in enumerate(plan.second_full):
        scale = full_round(constants, scale, first=False, last=(r == len(plan.second_full) - 1))
    emit(f"    return s1 * {scale} % p")
    return "\n".join(lines) + "\n"


@functools.cache
def _compiled(arity: int, tag: int | None = None):
    """The hash of `arity` inputs; `tag` the first state element (default: neptune's
    Merkle-tree tag, 2^arity - 1)."""
    if arity not in ARITIES:
        raise UnsupportedArity(f"unsupported Poseidon arity {arity}; supported: {ARITIES}")
    namespace = {"p": P}
    tag = (1 << arity) - 1 if tag is None else tag
    exec(compile(_source(_plan(arity), tag), f"<poseidon arity {arity}, tag {tag}>", "exec"), namespace)
    return namespace[f"poseidon_{arity}"]


# --- public API ----------------------------------------------------------------------------

def hash_ints(xs: Sequence[int]) -> int:
    """Poseidon of `arity = len(xs)` field elements (ints in [0, p))."""
    fn = _compiled(len(xs))
    return fn(*_field_elements(xs))


def hash_tagged(xs: Sequence[int], tag: int) -> int:
    """Poseidon of field elements with another domain tag than the Merkle tree's (neptune's
    HashType::Custom, e.g. SnapDeals' gen-randomness hash)."""
    if not 0 <= tag < P:
        raise FieldElementError(f"a domain tag is a field element, got {tag}")
    return _compiled(len(xs), tag)(*_field_elements(xs))


def hash_bytes(words: Sequence[bytes]) -> bytes:
    """Poseidon of 32-byte little-endian words; returns the 32-byte little-endian digest."""
    fn = _compiled(len(words))
    return int_to_word(fn(*[word_to_int(w) for w in words]))


def hash_many(rows: Iterable[Sequence[int]], arity: int | None = None) -> list[int]:
    """Poseidon of each row of ints; every input is checked before any hashing.

    `arity` defaults to the length of the first row; every row must have that length.
    """
    rows = [_field_elements(r) for r in rows]
    if arity is None:
        if not rows:
            return []
        arity = len(rows[0])
    fn = _compiled(arity)
    for i, r in enumerate(rows):
        if len(r) != arity:
            raise ValueError(f"row {i} has {len(r)} elements, expected arity {arity}")
    return [fn(*r) for r in rows]


def hash_words(data: bytes, arity: int) -> bytes:
    """Hash consecutive groups of `arity` 32-byte LE words of `data`; the digests, concatenated.

    This is one level of a Merkle tree: len(data) must be a multiple of 32 * arity.
    """
    fn = _compiled(arity)
    data = memoryview(data).cast("B")
    group = WORD * arity
    if len(data) % group:
        raise ValueError(f"{len(data)} bytes is not a whole number of {arity}-word groups")
    ints = [int.from_bytes(data[i:i + WORD], "little") for i in range(0, len(data), WORD)]
    for i, v in enumerate(ints):
        if v >= P:
            raise FieldElementError(f"word {i} (0x{v:064x}) is not a canonical field element")
    out = bytearray()
    for i in range(0, len(ints), arity):
        out += fn(*ints[i:i + arity]).to_bytes(WORD, "little")
    return bytes(out)


def hash_columns(layers: Sequence[bytes]) -> bytes:
    """Poseidon(arity = len(layers)) of each column across equal-length layers of 32-byte words.

    tree-c's leaves: digest v = Poseidon(layer_1[v], ..., layer_L[v]), concatenated.
    """
    fn = _compiled(len(layers))
    views = [memoryview(layer).cast("B") for layer in layers]
    size = len(views[0])
    if size % WORD or any(len(v) != size for v in views):
        raise ValueError(f"layers must be equal whole numbers of {WORD}-byte words,"
                         f" got {[len(v) for v in views]} bytes")
    columns = []
    for n, view in enumerate(views):
        ints = [int.from_bytes(view[i:i + WORD], "little") for i in range(0, size, WORD)]
        for i, v in enumerate(ints):
            if v >= P:
                raise FieldElementError(f"layer {n + 1} word {i} is not a canonical field element")
        columns.append(ints)
    return b"".join(fn(*column).to_bytes(WORD, "little") for column in zip(*columns))
