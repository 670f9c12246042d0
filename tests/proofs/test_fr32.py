import os
import random

import numpy as np
import pytest

from zqnode.proofs import fr32


def reference_pad(data: bytes) -> bytes:
    """Fr32 straight from the definition: 127 bytes as one integer, four 254-bit words."""
    data = data + bytes(-len(data) % 127)
    out = bytearray()
    for start in range(0, len(data), 127):
        n = int.from_bytes(data[start:start + 127], "little")
        for k in range(4):
            out += ((n >> (254 * k)) & ((1 << 254) - 1)).to_bytes(32, "little")
    return bytes(out)


def test_all_ones_chunk_pads_to_four_words_with_top_bits_clear():
    word = b"\xff" * 31 + b"\x3f"
    assert fr32.pad(b"\xff" * 127) == word * 4


def test_single_bits_land_where_the_definition_puts_them():
    # Input bit 254 is bit 0 of word 1; input bit 1015 (the last) is bit 253 of word 3.
    n = (1 << 254) | (1 << 1015)
    padded = fr32.pad(n.to_bytes(127, "little"))
    assert padded == bytes(32) + b"\x01" + bytes(31) + bytes(32) + bytes(31) + b"\x20"


@pytest.mark.parametrize("length", [0, 1, 31, 32, 126, 127, 128, 253, 254, 255, 1000, 127 * 40 + 3])
def test_pad_matches_the_definition(length):
    data = random.Random(length).randbytes(length)
    assert fr32.pad(data) == reference_pad(data)
    assert fr32.pad(b"\xff" * length) == reference_pad(b"\xff" * length)


def test_pad_accepts_any_bytes_like():
    data = os.urandom(300)
    expected = reference_pad(data)
    assert fr32.pad(bytearray(data)) == expected
    assert fr32.pad(memoryview(data)) == expected
    assert fr32.pad(np.frombuffer(data, dtype=np.uint8)) == expected


def test_padded_words_all_have_their_top_two_bits_clear():
    padded = fr32.pad(b"\xff" * 127 * 50)
    assert set(padded[31::32]) == {0x3F}


def test_unpad_inverts_pad_on_random_lengths():
    rng = random.Random(7)
    for _ in range(40):
        data = rng.randbytes(rng.randrange(0, 3000))
        padded = fr32.pad(data)
        assert len(padded) == -(-len(data) // 127) * 128
        restored = fr32.unpad(padded)
        assert restored[:len(data)] == data
        assert restored[len(data):] == bytes(len(restored) - len(data))


def test_unpad_rejects_a_length_that_is_not_whole_chunks():
    with pytest.raises(fr32.Fr32Error, match="multiple of 128"):
        fr32.unpad(bytes(129))


def test_unpad_rejects_words_that_are_not_fr32():
    bad = bytearray(fr32.pad(bytes(254)))
    bad[128 + 63] = 0x40
    with pytest.raises(fr32.Fr32Error, match="chunk 1"):
        fr32.unpad(bytes(bad))
    assert isinstance(fr32.Fr32Error("x"), ValueError)


def test_pad_chunks_rejects_a_partial_chunk():
    with pytest.raises(fr32.Fr32Error, match="multiple of 127"):
        fr32.pad_chunks(np.zeros(130, dtype=np.uint8))


def test_padded_and_unpadded_sizes():
    assert fr32.padded_size(0) == 0
    assert fr32.padded_size(127) == 128
    assert fr32.padded_size(127 * 3) == 384
    assert fr32.padded_size(34359738368 // 128 * 127) == 34359738368
    assert fr32.unpadded_size(128) == 127
    assert fr32.unpadded_size(2048) == 2032
    assert fr32.unpadded_size(34359738368) == 34091302912


@pytest.mark.parametrize("bad", [1, 126, 128, -127, 1.5, "127", True])
def test_padded_size_rejects_non_multiples_of_127(bad):
    with pytest.raises(fr32.PieceSizeError):
        fr32.padded_size(bad)


@pytest.mark.parametrize("bad", [1, 127, 129, -128])
def test_unpadded_size_rejects_non_multiples_of_128(bad):
    with pytest.raises(fr32.PieceSizeError):
        fr32.unpadded_size(bad)


def test_piece_size_validation():
    for good in (128, 256, 2048, 8 << 20, 32 << 30, 64 << 30):
        assert fr32.check_padded_piece_size(good) == good
        assert fr32.check_unpadded_piece_size(good // 128 * 127) == good // 128 * 127
    for bad in (0, 64, 127, 384, 1000, -128, True, 128.0):
        with pytest.raises(fr32.PieceSizeError, match="power of two"):
            fr32.check_padded_piece_size(bad)
    for bad in (0, 126, 128, 381, 127 * 3, -127):
        with pytest.raises(fr32.PieceSizeError, match="127"):
            fr32.check_unpadded_piece_size(bad)
    assert isinstance(fr32.PieceSizeError("x"), ValueError)


@pytest.mark.parametrize("payload, padded", [
    (0, 128), (1, 128), (65, 128), (127, 128), (128, 256), (254, 256), (255, 512),
    (508, 512), (509, 1024), (2032, 2048), (2033, 4096),
    (34091302912, 32 << 30), (34091302913, 64 << 30),
])
def test_piece_size_for(payload, padded):
    assert fr32.piece_size_for(payload) == padded


def test_piece_size_for_rejects_negative():
    with pytest.raises(fr32.PieceSizeError):
        fr32.piece_size_for(-1)


def test_pad_of_more_than_one_internal_batch():
    data = random.Random(5).randbytes(127 * 9000 + 50)
    padded = fr32.pad(data)
    assert len(padded) == 9001 * 128
    # Spot-check chunks on both sides of the 8192-chunk batch edge and the tail.
    for chunk in (0, 8191, 8192, 8999, 9000):
        assert padded[chunk * 128:(chunk + 1) * 128] == reference_pad(data[chunk * 127:(chunk + 1) * 127])
    assert fr32.unpad(padded)[:len(data)] == data


def test_pad_chunks_into_a_reused_buffer():
    out = np.full(128 * 4, 0xEE, dtype=np.uint8)
    data = os.urandom(127 * 3)
    result = fr32.pad_chunks(np.frombuffer(data, dtype=np.uint8), out=out)
    assert result.shape == (3, 128)
    assert result.tobytes() == reference_pad(data)
    assert out[:384].tobytes() == reference_pad(data)
    assert out[384:].tobytes() == b"\xee" * 128


@pytest.mark.parametrize("out", [np.zeros(255, dtype=np.uint8), np.zeros(64, dtype=np.uint64),
                                 np.zeros(512, dtype=np.uint8)[::2]])
def test_pad_chunks_rejects_an_unusable_out_buffer(out):
    with pytest.raises(fr32.Fr32Error, match="out must be"):
        fr32.pad_chunks(np.zeros(254, dtype=np.uint8), out=out)
