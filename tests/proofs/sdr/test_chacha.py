import struct

import numpy as np
import pytest

from zqnode.proofs.sdr.chacha import chacha20_stream, chacha_block, chacha_blocks, words_to_u64

# draft-strombergson-chacha-test-vectors TC1: ChaCha8, all-zero 256-bit key and 64-bit IV.
CHACHA8_TC1 = bytes.fromhex(
    "3e00ef2f895f40d67f5bb8e81f09a5a12c840ec3ce9a7f3b181be188ef711a1e"
    "984ce172b9216f419f445367456d5619314a42a3da86b001387bfdb80e0cfe42"
    "d2aefa0deaa5c151bf0adb6c01f2a5adc0fd581259f9a2aadcf20f8fd566a26b"
    "5032ec38bbc5da98ee0c6f568b872a65a08abf251deb21bb4b56e5d8821e68aa")

# rand_chacha test_chacha_true_values_a/b (ChaCha20Rng words, from the ChaCha20 drafts).
CHACHA20_ZERO_KEY = [
    [0xade0b876, 0x903df1a0, 0xe56a5d40, 0x28bd8653, 0xb819d2bd, 0x1aed8da0, 0xccef36a8,
     0xc70d778b, 0x7c5941da, 0x8d485751, 0x3fe02477, 0x374ad8b8, 0xf4b8436a, 0x1ca11815,
     0x69b687c3, 0x8665eeb2],
    [0xbee7079f, 0x7a385155, 0x7c97ba98, 0x0d082d73, 0xa0290fcb, 0x6965e348, 0x3e53c612,
     0xed7aee32, 0x7621b729, 0x434ee69c, 0xb03371d5, 0xd539d874, 0x281fed31, 0x45fb0a51,
     0x1f0ae1ac, 0x6f4d794b]]
CHACHA20_KEY_1_BLOCK_1 = [
    0x2452eb3a, 0x9249f8ec, 0x8d829d9b, 0xddd4ceb1, 0xe8252083, 0x60818b01, 0xf38422b8,
    0x5aaa49c9, 0xbb00ca8e, 0xda3ba7b4, 0xc4b592d1, 0xfdf2732f, 0x4436274e, 0x2561b3c8,
    0xebdd4aa6, 0xa0136c00]


def as_bytes(words):
    return struct.pack("<16I", *[int(w) for w in words])


def test_scalar_chacha8_tc1():
    blocks = [as_bytes(chacha_block(bytes(32), counter)) for counter in (0, 1)]
    assert b"".join(blocks) == CHACHA8_TC1


def test_numpy_chacha8_tc1():
    keys = np.zeros((3, 8), np.uint32)
    assert all(as_bytes(row) == CHACHA8_TC1[:64] for row in chacha_blocks(keys, 0))
    assert as_bytes(chacha_blocks(keys, 1)[2]) == CHACHA8_TC1[64:]


def test_chacha20_true_values():
    assert [chacha_block(bytes(32), c, rounds=20) for c in (0, 1)] == CHACHA20_ZERO_KEY
    key = bytes(31) + b"\x01"
    assert chacha_block(key, 1, rounds=20) == CHACHA20_KEY_1_BLOCK_1
    keys = np.frombuffer(key * 2, dtype="<u4").reshape(2, 8)
    assert chacha_blocks(keys, 1, rounds=20).tolist() == [CHACHA20_KEY_1_BLOCK_1] * 2


@pytest.mark.parametrize("rounds", [8, 12, 20])
def test_numpy_matches_scalar(rounds):
    rng = np.random.default_rng(rounds)
    keys = rng.integers(0, 1 << 32, size=(50, 8), dtype=np.uint64).astype(np.uint32)
    for counter, nonce in [(0, 0), (1, 0), (0xFFFFFFFF, 7), (1 << 40, 1 << 63)]:
        got = chacha_blocks(keys, counter, nonce, rounds)
        want = [chacha_block(k.tobytes(), counter, nonce, rounds) for k in keys]
        assert got.tolist() == want


def test_words_to_u64_low_word_first():
    words = np.array([[1, 2, 0xFFFFFFFF, 0]], np.uint32)
    assert words_to_u64(words).tolist() == [[(2 << 32) | 1, 0xFFFFFFFF]]


def test_bad_inputs():
    with pytest.raises(ValueError):
        chacha_block(bytes(32), rounds=10)
    with pytest.raises(ValueError):
        chacha_block(bytes(31))
    with pytest.raises(ValueError):
        chacha_blocks(np.zeros((2, 8), np.uint64))
    with pytest.raises(ValueError):
        chacha_blocks(np.zeros((2, 7), np.uint32))


def test_chacha20_stream_is_rfc_8439():
    # RFC 8439 2.4.2: the sunscreen plaintext under key 00..1f, nonce 00 00 00 00 00 00 00 4a
    # 00 00 00 00, from block 1.
    plain = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
             b"the future, sunscreen would be it.")
    stream = chacha20_stream(bytes(range(32)), bytes.fromhex("000000000000004a00000000"), 1, 2)
    cipher = bytes(a ^ b for a, b in zip(plain, stream))
    assert cipher.hex().startswith("6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b")
    assert chacha20_stream(bytes(32), bytes(12), 5, 2)[64:] == chacha20_stream(bytes(32), bytes(12), 6, 1)
    for first, blocks in ((2 ** 32 - 3, 4), (-1, 1), (0, -1)):      # a 32-bit counter, never wrapped
        with pytest.raises(ValueError, match="32 bits"):
            chacha20_stream(bytes(32), bytes(12), first, blocks)
