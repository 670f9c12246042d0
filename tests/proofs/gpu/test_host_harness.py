"""The kernels' arithmetic, run on the CPU by the host harness, against the Python code.

Covers cuda/sha256.cuh (compression, the constant padding block, node hash), fr32
padding, cuda/fr.cuh (Montgomery arithmetic over BLS12-381 Fr) and the Poseidon
permutation for arities 2, 8 and 11 with the uploaded-constant layout.
"""
import hashlib
import random

import pytest

from zqnode.proofs import fr32, merkle, poseidon
from zqnode.proofs.gpu import constants
from zqnode.proofs.poseidon_constants import P

RNG = random.Random(20240611)
EDGES = [0, 1, 2, P - 1, P - 2, (P - 1) // 2, 1 << 254, (1 << 254) - 1, constants.MONTGOMERY_R, 5]


def word(x: int) -> str:
    return x.to_bytes(32, "little").hex()


def value(h: str) -> int:
    return int.from_bytes(bytes.fromhex(h), "little")


def test_padding_block_table_matches_its_schedule(hx):
    assert hx.ask("selfcheck") == "ok"


@pytest.mark.parametrize("length", [0, 1, 55, 56, 63, 64, 65, 119, 120, 200, 1000])
def test_sha256_compression_matches_hashlib(hx, length):
    message = RNG.randbytes(length)
    assert hx.ask(f"sha256 {message.hex()}") == hashlib.sha256(message).hexdigest()


def test_node_hash_matches_merkle_on_random_and_edge_pairs(hx):
    pairs = [bytes(64), b"\xff" * 64, bytes(range(64))] + [RNG.randbytes(64) for _ in range(40)]
    for pair in pairs:
        assert hx.ask(f"node {pair.hex()}") == merkle.node_hash(pair[:32], pair[32:]).hex()


def test_node_chain_reaches_the_zero_commitment_check_values(hx):
    node = bytes(32)
    zeros = {}
    for height in range(1, 31):
        node = bytes.fromhex(hx.ask(f"node {(node + node).hex()}"))
        zeros[height] = node.hex()
    assert zeros[2] == "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"  # 128 B
    assert zeros[6] == "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"  # 2 KiB
    assert zeros[30] == "077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e"  # 32 GiB


@pytest.mark.parametrize("op, fn", [
    ("mul", lambda a, b: a * b % P),
    ("add", lambda a, b: (a + b) % P),
    ("sub", lambda a, b: (a - b) % P),
])
def test_field_binary_ops(hx, op, fn):
    values = EDGES + [RNG.randrange(P) for _ in range(30)]
    pairs = [(a, b) for a in EDGES for b in EDGES] + [(RNG.choice(values), RNG.choice(values)) for _ in range(200)]
    for a, b in pairs:
        assert value(hx.ask(f"fr {op} {word(a)} {word(b)}")) == fn(a, b), (op, a, b)


@pytest.mark.parametrize("op, fn", [
    ("sqr", lambda a: a * a % P),
    ("pow5", lambda a: pow(a, 5, P)),
    ("to", constants.to_montgomery),
])
def test_field_unary_ops(hx, op, fn):
    for a in EDGES + [RNG.randrange(P) for _ in range(100)]:
        assert value(hx.ask(f"fr {op} {word(a)}")) == fn(a), (op, a)


def test_from_montgomery_inverts_to(hx):
    for a in EDGES + [RNG.randrange(P) for _ in range(50)]:
        assert value(hx.ask(f"fr from {word(constants.to_montgomery(a))}")) == a


@pytest.mark.parametrize("x, canonical", [(0, "1"), (P - 1, "1"), (P, "0"), (P + 1, "0"),
                                          ((1 << 256) - 1, "0"), (1 << 255, "0"), ((1 << 254) - 1, "1")])
def test_canonical_check(hx, x, canonical):
    assert hx.ask(f"fr canon {word(x)}") == canonical


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_constant_layout_agrees_with_the_blob(hx, arity):
    names = ["T", "RP", "TAG", "FIRST", "PARTIAL", "SPARSE", "LAST", "SECOND", "MDS", "SIZE"]
    device = dict(zip(names, map(int, hx.ask(f"layout {arity}").split())))
    assert device == constants.layout(arity)
    assert len(constants.poseidon_blob(arity)) == 32 * device["SIZE"]


def _harness_hash(hx, arity, rows):
    """Poseidon of each row through the poseidon_<arity> kernel body on the harness."""
    from zqnode.proofs.gpu import poseidon as gpu_poseidon
    return gpu_poseidon.hash_many(hx, rows, arity)


def test_poseidon_arity_2_check_value(hx):
    digest = _harness_hash(hx, 2, [[0, 1]])[0]
    assert digest == 0x396508d75e76a56b739e0fd902efe161a6fba9339d05a69d2e203c369a02e7ff


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_poseidon_permutation_matches_cpu(hx, arity):
    rows = [[0] * arity, [P - 1] * arity, [1] * arity, [RNG.choice(EDGES) for _ in range(arity)]]
    rows += [[RNG.randrange(P) for _ in range(arity)] for _ in range(12)]
    assert _harness_hash(hx, arity, rows) == poseidon.hash_many(rows)
    assert _harness_hash(hx, arity, rows[:2]) == [poseidon.reference_hash(r) for r in rows[:2]]


def test_fr32_pad_matches_cpu_for_partial_and_whole_blocks(hx):
    from zqnode.proofs.gpu.launch import Ptr
    from zqnode.proofs.gpu.sha254 import fr32_launch
    for chunks in (1, 3, 31, 32, 33, 64, 70):
        raw = RNG.randbytes(127 * chunks)
        src = hx.alloc(-(-len(raw) // 4) * 4)  # the kernel's contract: readable to a multiple of 4
        dst = hx.alloc(128 * chunks)
        hx.write(Ptr(src), raw)
        hx.launch(fr32_launch(Ptr(src), Ptr(dst), chunks))
        assert hx.read(Ptr(dst), 128 * chunks).tobytes() == fr32.pad(raw), chunks
        # all-ones input: every word's two top bits must still come out clear
        hx.write(Ptr(src), b"\xff" * len(raw))
        hx.launch(fr32_launch(Ptr(src), Ptr(dst), chunks))
        assert hx.read(Ptr(dst), 128 * chunks).tobytes() == fr32.pad(b"\xff" * len(raw)), chunks
