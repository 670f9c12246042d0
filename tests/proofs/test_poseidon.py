"""Poseidon over BLS12-381 Fr: neptune's check values, the optimised path against the
textbook permutation, and input validation."""
import random

import pytest

from zqnode.proofs import poseidon as ps
from zqnode.proofs import poseidon_constants as pc

# neptune's hash_values test (Strength::Standard): Poseidon(0, 1, ..., arity - 1).
NEPTUNE_VECTORS = {
    2: 0x396508D75E76A56B739E0FD902EFE161A6FBA9339D05A69D2E203C369A02E7FF,
    4: 0x58A54B10A9E5848A00DB3C6579229399FB6B4605BF1327EC019814FF6662075D,
    8: 0x2394611DA3A5DE5512010042116770774B682E9D9CC4AED92A9934F56D38A5E6,
    11: 0x0C0FC1B2E5227F286CA537E232EBE87A09F3DCD8CCB08FC1CEE3BBC32B693163,
}


def test_modulus_is_bls12_381_fr():
    assert ps.P == 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
    assert pow(2, ps.P - 1, ps.P) == 1  # Fermat witness; P is the known prime


def test_check_value_arity_2():
    assert ps.hash_ints([0, 1]) == NEPTUNE_VECTORS[2]
    assert ps.reference_hash([0, 1]) == NEPTUNE_VECTORS[2]


@pytest.mark.parametrize("arity", sorted(NEPTUNE_VECTORS))
def test_neptune_vectors(arity):
    xs = list(range(arity))
    assert ps.reference_hash(xs) == NEPTUNE_VECTORS[arity]
    assert ps.hash_ints(xs) == NEPTUNE_VECTORS[arity]
    words = [ps.int_to_word(x) for x in xs]
    assert ps.hash_bytes(words) == NEPTUNE_VECTORS[arity].to_bytes(32, "little")


def _naive_grain_constants(t, r_f, r_p):
    """The Poseidon reference script's Grain LFSR, one bit at a time."""
    fields = [(1, 2), (1, 4), (255, 12), (t, 12), (r_f, 10), (r_p, 10)]
    bits = [int(b) for value, width in fields for b in format(value, f"0{width}b")] + [1] * 30

    def step():
        new = bits[62] ^ bits[51] ^ bits[38] ^ bits[23] ^ bits[13] ^ bits[0]
        bits.pop(0)
        bits.append(new)
        return new

    for _ in range(160):
        step()

    def kept():
        while True:
            first, second = step(), step()
            if first:
                yield second

    source = kept()
    while True:
        value = int("".join(str(next(source)) for _ in range(255)), 2)
        if value < ps.P:
            yield value


@pytest.mark.parametrize("t", [3, 9])
def test_round_constants_match_a_bitwise_grain_lfsr(t):
    constants = pc.round_constants(t)
    assert len(constants) == (8 + pc.PARTIAL_ROUNDS[t]) * t
    naive = _naive_grain_constants(t, 8, pc.PARTIAL_ROUNDS[t])
    count = len(constants) if t == 3 else 30
    assert [next(naive) for _ in range(count)] == constants[:count]


def test_round_numbers_and_widths():
    assert pc.PARTIAL_ROUNDS == {3: 55, 5: 56, 9: 57, 12: 57}
    for arity in pc.ARITIES:
        prm = pc.params(arity)
        assert prm.width == arity + 1
        assert prm.domain_tag == 2 ** arity - 1
        assert len(prm.constants) == (8 + prm.partial_rounds) * prm.width
        assert all(0 <= c < ps.P for c in prm.constants)


@pytest.mark.parametrize("t", [3, 5, 9, 12])
def test_mds_is_the_cauchy_matrix(t):
    m = pc.mds_matrix(t)
    assert all(m[i][j] * (i + t + j) % ps.P == 1 for i in range(t) for j in range(t))


@pytest.mark.parametrize("arity", [2, 4, 8, 11])
def test_optimised_equals_textbook(arity):
    rng = random.Random(arity)
    rows = [[rng.randrange(ps.P) for _ in range(arity)] for _ in range(40)]
    rows += [[0] * arity, [ps.P - 1] * arity, [ps.P - 1 - i for i in range(arity)]]
    assert [ps.hash_ints(r) for r in rows] == [ps.reference_hash(r) for r in rows]


def test_batch_and_byte_forms_agree():
    rng = random.Random(7)
    rows = [[rng.randrange(ps.P) for _ in range(8)] for _ in range(6)]
    expected = [ps.hash_ints(r) for r in rows]
    assert ps.hash_many(rows) == expected
    assert ps.hash_many(rows, 8) == expected
    assert ps.hash_many([]) == []
    data = b"".join(ps.int_to_word(x) for r in rows for x in r)
    assert ps.hash_words(data, 8) == b"".join(ps.int_to_word(h) for h in expected)
    assert [ps.word_to_int(ps.hash_bytes([ps.int_to_word(x) for x in r])) for r in rows] == expected


def test_non_canonical_inputs_are_rejected():
    with pytest.raises(ps.FieldElementError, match="canonical"):
        ps.hash_ints([ps.P, 0])
    with pytest.raises(ps.FieldElementError, match="canonical"):
        ps.hash_ints([-1, 0])
    with pytest.raises(ps.FieldElementError, match="not an integer"):
        ps.hash_ints([1.0, 0])
    with pytest.raises(ps.FieldElementError, match="canonical"):
        ps.reference_hash([0, ps.P])
    with pytest.raises(ps.FieldElementError, match="canonical"):
        ps.hash_bytes([ps.P.to_bytes(32, "little"), bytes(32)])
    with pytest.raises(ps.FieldElementError, match="32 bytes"):
        ps.hash_bytes([bytes(31), bytes(32)])
    with pytest.raises(ps.FieldElementError, match="word 1"):
        ps.hash_words(bytes(32) + b"\xff" * 32, 2)
    with pytest.raises(ps.FieldElementError):
        ps.hash_many([[0, 1], [0, ps.P]])
    assert issubclass(ps.FieldElementError, ValueError)


def test_bad_shapes_are_rejected():
    with pytest.raises(ps.UnsupportedArity, match="arity 3"):
        ps.hash_ints([0, 1, 2])
    with pytest.raises(ps.UnsupportedArity):
        pc.params(16)
    with pytest.raises(ValueError, match="row 1"):
        ps.hash_many([[0, 1], [0, 1, 2]])
    with pytest.raises(ValueError, match="groups"):
        ps.hash_words(bytes(32 * 3), 2)
    assert issubclass(ps.UnsupportedArity, ValueError)


@pytest.mark.parametrize("layers", [2, 11])
def test_hash_columns_hashes_across_layers(layers):
    rng = random.Random(layers)
    grid = [[rng.randrange(ps.P) for _ in range(4)] for _ in range(layers)]
    data = [b"".join(ps.int_to_word(x) for x in row) for row in grid]
    expected = b"".join(ps.int_to_word(ps.reference_hash([row[v] for row in grid]))
                        for v in range(4))
    assert ps.hash_columns(data) == expected
    with pytest.raises(ValueError, match="equal"):
        ps.hash_columns([data[0], data[1][:-32]] + data[2:])
    with pytest.raises(ps.FieldElementError, match="layer 2 word 3"):
        ps.hash_columns([data[0], data[1][:-32] + b"\xff" * 32] + data[2:])
