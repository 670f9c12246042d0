"""SDR encoding over whole buffers: (data + key) mod p and back, against Python ints."""
import random

import pytest

from zqnode.proofs.encoding import EncodingError, decode, encode, encode_word
from zqnode.proofs.poseidon import P


def _words(values):
    return b"".join(v.to_bytes(32, "little") for v in values)


def test_encode_and_decode_match_big_int_arithmetic():
    rng = random.Random(8)
    data = [rng.randrange(P) for _ in range(500)] + [0, P - 1, P - 1, 2 ** 254 - 1, 1]
    keys = [rng.randrange(2 ** 254) for _ in range(500)] + [0, 1, P - 1, 2 ** 254 - 1, P - 1]
    replica = encode(_words(data), _words(keys))
    assert replica == _words([(d + k) % P for d, k in zip(data, keys)])
    assert decode(replica, _words(keys)) == _words(data)
    assert all(encode_word(_words([d]), _words([k])) == _words([(d + k) % P])
               for d, k in zip(data[-5:], keys[-5:]))


def test_sizes_must_match():
    with pytest.raises(EncodingError, match="differ in size"):
        encode(bytes(64), bytes(32))
    with pytest.raises(EncodingError, match="whole number"):
        decode(bytes(33), bytes(33))
    with pytest.raises(EncodingError, match="32 bytes"):
        encode_word(bytes(31), bytes(32))
