"""Fr32 padding and piece sizes (PROOFS.md section 1).

Fr32 reads 127 bytes as one little-endian 1016-bit integer and writes it as four
32-byte little-endian words of 254 bits each, so every word has its two top bits zero
and is a valid BLS12-381 scalar. Word k holds input bits 254k .. 254k+253, which start
at byte 31k + (6k // 8) with a bit shift of 6k % 8. The code below shifts 64-bit lanes
of many 127-byte chunks at once with numpy (about 2 GB/s), far ahead of the hashing
that follows it.

Sizes: an unpadded piece size is 127 * 2^k (k >= 0), its padded size 128 * 2^k.
"""
import numpy as np

UNPADDED_CHUNK = 127
PADDED_CHUNK = 128
MIN_PADDED_PIECE = 128

_PAD_BATCH = 8192  # 127-byte chunks per pad_chunks call in pad()
# (first input byte, bit shift) of each 254-bit output word within a 127-byte chunk.
_WORD_STARTS = [(31 * k + (6 * k) // 8, (6 * k) % 8) for k in range(4)]


class Fr32Error(ValueError):
    """Data that cannot be fr32 padded or unpadded as asked."""


class PieceSizeError(ValueError):
    """A size that is not a valid (padded or unpadded) piece size."""


def _as_bytes_array(data) -> np.ndarray:
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def pad_chunks(raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fr32-pad a flat uint8 array of 127·N bytes into an (N, 128) uint8 array.

    `out`, when given, is a contiguous uint8 array of at least 128·N bytes to reuse;
    the result is a view of its start.

    Works on 64-bit lanes: output lane i of word k is the 8 input bytes at
    start + 8i shifted right, topped up with the low bits of the next 8 bytes. Each
    lane is computed for all N chunks at once from strided (unaligned) views, into a
    lane-major scratch array, which one transposing copy then interleaves.
    """
    n = raw.size // UNPADDED_CHUNK
    if raw.size != n * UNPADDED_CHUNK:
        raise Fr32Error(f"pad_chunks needs a multiple of {UNPADDED_CHUNK} bytes, got {raw.size}")
    if out is None:
        out = np.empty(n * PADDED_CHUNK, dtype=np.uint8)
    elif out.dtype != np.uint8 or not out.flags.c_contiguous or out.size < n * PADDED_CHUNK:
        raise Fr32Error(f"out must be a contiguous uint8 array of at least {n * PADDED_CHUNK} bytes")
    out = out.reshape(-1)[:n * PADDED_CHUNK]
    if n == 0:
        return out.reshape(0, PADDED_CHUNK)
    lanes = np.empty((16, n), dtype="<u8")
    carry = np.empty(n, dtype="<u8")

    def lane_of_input(offset):
        return np.ndarray((n,), dtype="<u8", buffer=raw, offset=offset, strides=(UNPADDED_CHUNK,))

    for k, (start, shift) in enumerate(_WORD_STARTS):
        for i in range(4):
            lane = lanes[4 * k + i]
            low = lane_of_input(start + 8 * i)
            if shift == 0:
                lane[:] = low
                continue
            np.right_shift(low, shift, out=lane)
            # The last lane of word 3 would top up from byte 127 (past the chunk);
            # those bits land in the two top bits, which are masked off anyway.
            if not (k == 3 and i == 3):
                np.left_shift(lane_of_input(start + 8 * i + 8), np.uint64(64 - shift), out=carry)
                lane |= carry
        lanes[4 * k + 3] &= np.uint64(0x3FFF_FFFF_FFFF_FFFF)
    out.view("<u8").reshape(n, 16)[:] = lanes.T
    return out.reshape(n, PADDED_CHUNK)


def unpad_chunks(words: np.ndarray) -> np.ndarray:
    """Undo pad_chunks: an (N, 128) uint8 array of valid fr32 words -> (N, 127)."""
    tops = words[:, 31::32]
    if np.any(tops & 0xC0):
        bad = int(np.argwhere(tops & 0xC0)[0][0])
        raise Fr32Error(f"not fr32 data: a word in 128-byte chunk {bad} has its top two bits set")
    # Built one byte wider than needed; the spare column only ever receives zeros.
    out = np.zeros((words.shape[0], UNPADDED_CHUNK + 1), dtype=np.uint8)
    for k, (start, shift) in enumerate(_WORD_STARTS):
        word = words[:, 32 * k:32 * k + 32]
        if shift == 0:
            out[:, start:start + 32] |= word
        else:
            out[:, start:start + 32] |= word << shift
            out[:, start + 1:start + 33] |= word >> (8 - shift)
    return out[:, :UNPADDED_CHUNK]


def pad(data) -> bytes:
    """Fr32-pad bytes-like data, zero-filling it to a multiple of 127 bytes first."""
    raw = _as_bytes_array(data)
    if raw.size % UNPADDED_CHUNK:
        filled = np.zeros(-(-raw.size // UNPADDED_CHUNK) * UNPADDED_CHUNK, dtype=np.uint8)
        filled[:raw.size] = raw
        raw = filled
    chunks = raw.size // UNPADDED_CHUNK
    out = np.empty(chunks * PADDED_CHUNK, dtype=np.uint8)
    # A batch at a time, so pad_chunks' scratch stays small and in cache.
    for first in range(0, chunks, _PAD_BATCH):
        last = min(chunks, first + _PAD_BATCH)
        pad_chunks(raw[first * UNPADDED_CHUNK:last * UNPADDED_CHUNK],
                   out=out[first * PADDED_CHUNK:last * PADDED_CHUNK])
    return out.tobytes()


def unpad(padded) -> bytes:
    """Undo pad: 128·n bytes of fr32 words -> 127·n bytes."""
    words = _as_bytes_array(padded)
    if words.size % PADDED_CHUNK:
        raise Fr32Error(f"fr32 data must be a multiple of {PADDED_CHUNK} bytes, got {words.size}")
    return unpad_chunks(words.reshape(-1, PADDED_CHUNK)).tobytes()


def _check_size_type(size) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PieceSizeError(f"a size must be a non-negative int, got {size!r}")


def padded_size(unpadded: int) -> int:
    """Bytes after fr32 padding of `unpadded` bytes (a multiple of 127)."""
    _check_size_type(unpadded)
    if unpadded % UNPADDED_CHUNK:
        raise PieceSizeError(f"unpadded size {unpadded} is not a multiple of {UNPADDED_CHUNK}")
    return unpadded // UNPADDED_CHUNK * PADDED_CHUNK


def unpadded_size(padded: int) -> int:
    """Bytes of payload that `padded` fr32 bytes (a multiple of 128) carry."""
    _check_size_type(padded)
    if padded % PADDED_CHUNK:
        raise PieceSizeError(f"padded size {padded} is not a multiple of {PADDED_CHUNK}")
    return padded // PADDED_CHUNK * UNPADDED_CHUNK


def is_padded_piece_size(size) -> bool:
    """True for a power of two of at least 128."""
    return (isinstance(size, int) and not isinstance(size, bool)
            and size >= MIN_PADDED_PIECE and size & (size - 1) == 0)


def check_padded_piece_size(size: int) -> int:
    """Return `size` if it is a valid padded piece size, else raise PieceSizeError."""
    if not is_padded_piece_size(size):
        raise PieceSizeError(f"padded piece size must be a power of two >= {MIN_PADDED_PIECE}, got {size!r}")
    return size


def check_unpadded_piece_size(size: int) -> int:
    """Return `size` if it is a valid unpadded piece size (127 * 2^k), else raise."""
    ok = (isinstance(size, int) and not isinstance(size, bool) and size >= UNPADDED_CHUNK
          and size % UNPADDED_CHUNK == 0 and is_padded_piece_size(size // UNPADDED_CHUNK * PADDED_CHUNK))
    if not ok:
        raise PieceSizeError(f"unpadded piece size must be 127 * 2^k, got {size!r}")
    return size


def piece_size_for(payload_len: int) -> int:
    """The smallest padded piece size whose unpadded capacity holds `payload_len` bytes."""
    _check_size_type(payload_len)
    needed = -(-payload_len // UNPADDED_CHUNK) * PADDED_CHUNK
    return max(MIN_PADDED_PIECE, 1 << (needed - 1).bit_length())
