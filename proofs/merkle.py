"""sha254 and the binary sha254 Merkle tree of CommP / CommD / tree-d (PROOFS.md section 1).

sha254(x) is SHA-256(x) with the last byte's two top bits cleared; an internal node is
sha254(left ‖ right); leaves are 32-byte fr32 words, used as they are.

A tree level is one bytes object of 32-byte nodes side by side. Hashing a level costs
one hashlib call per node, which is the CPU ceiling; the rest is kept to C-level bulk
work: struct cuts a batch of 64-byte messages out of the level, bytes.join glues the
digests back, and one bytearray translate clears the top bits of every 32nd byte.
"""
import functools
import struct
from hashlib import sha256

NODE = 32

# Digests per batch: small enough that a batch's digests stay in cache, large enough
# that the per-batch Python overhead vanishes.
_BATCH = 1024
# Clears the two top bits of a byte (the sha254 truncation of a digest's last byte).
_TRUNCATE = bytes(b & 0x3F for b in range(256))


class MerkleError(ValueError):
    """Malformed tree input: sizes that are not whole, power-of-two numbers of nodes."""


def sha254(data) -> bytes:
    """SHA-256 of `data` with the last byte `&= 0x3F`."""
    digest = sha256(data).digest()
    return digest[:31] + _TRUNCATE[digest[31]:digest[31] + 1]


def node_hash(left: bytes, right: bytes) -> bytes:
    """The parent of two 32-byte nodes."""
    if len(left) != NODE or len(right) != NODE:
        raise MerkleError(f"nodes must be {NODE} bytes, got {len(left)} and {len(right)}")
    return sha254(bytes(left) + bytes(right))


def _height_of(size: int, what: str) -> int:
    """log2(size / 32) for a size that is 32 times a power of two."""
    if not isinstance(size, int) or isinstance(size, bool) or size < NODE or size & (size - 1):
        raise MerkleError(f"{what} must be 32 times a power of two bytes, got {size!r}")
    return size.bit_length() - 1 - 5


@functools.cache
def _zero_at_height(height: int) -> bytes:
    if height == 0:
        return bytes(NODE)
    below = _zero_at_height(height - 1)
    return node_hash(below, below)


def zero_commitment(padded_size: int) -> bytes:
    """Root of an all-zero tree over `padded_size` bytes (32 * 2^k; 32 gives 32 zero bytes)."""
    return zero_commitment_at_height(_height_of(padded_size, "padded size"))


def zero_commitment_at_height(height: int) -> bytes:
    """Root of an all-zero tree of 2^height leaves."""
    if not isinstance(height, int) or not 0 <= height <= 64:
        raise MerkleError(f"tree height must be an int in 0..64, got {height!r}")
    # Fill the cache bottom up so deep first calls do not recurse 64 frames at once.
    for h in range(height):
        _zero_at_height(h)
    return _zero_at_height(height)


@functools.lru_cache(maxsize=64)
def _cutter(pairs: int) -> struct.Struct:
    """Cuts `pairs` 64-byte messages (bytes objects) out of a buffer in one C call."""
    return struct.Struct(f"{2 * NODE}s" * pairs)


def hash_level(level) -> bytes:
    """The level above `level` (bytes-like, an even number of 32-byte nodes)."""
    size = memoryview(level).nbytes
    if size == 0 or size % (2 * NODE):
        raise MerkleError(f"a level to hash must be a non-zero multiple of {2 * NODE} bytes, got {size}")
    pairs = size // (2 * NODE)
    parts = []
    for first in range(0, pairs, _BATCH):
        cut = _cutter(min(_BATCH, pairs - first))
        parts.append(b"".join([sha256(m).digest() for m in cut.unpack_from(level, first * 2 * NODE)]))
    above = bytearray(b"".join(parts))
    above[NODE - 1::NODE] = above[NODE - 1::NODE].translate(_TRUNCATE)
    return bytes(above)


def leaf_count(leaves) -> int:
    """How many 32-byte leaves `leaves` holds; MerkleError unless a power of two of them."""
    size = memoryview(leaves).nbytes
    _height_of(size, "a leaf level")
    return size // NODE


def merkle_root(leaves) -> bytes:
    """Root of the tree over `leaves` (32 * 2^k bytes), keeping no levels."""
    leaf_count(leaves)
    level = leaves
    while memoryview(level).nbytes > NODE:
        level = hash_level(level)
    return bytes(level)


def tree_levels(leaves) -> list[bytes]:
    """Every level of the tree, leaves first, the 32-byte root last."""
    leaf_count(leaves)
    levels = [bytes(leaves)]
    while len(levels[-1]) > NODE:
        levels.append(hash_level(levels[-1]))
    return levels


def _node(level: bytes, index: int) -> bytes:
    return bytes(level[index * NODE:(index + 1) * NODE])


def inclusion_path(levels: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to (not including) the root."""
    leaves = len(levels[0]) // NODE
    if not isinstance(index, int) or not 0 <= index < leaves:
        raise MerkleError(f"leaf index must be in 0..{leaves - 1}, got {index!r}")
    path = []
    for level in levels[:-1]:
        path.append(_node(level, index ^ 1))
        index >>= 1
    return path


def root_from_path(leaf: bytes, index: int, path: list[bytes]) -> bytes:
    """The root that `leaf` at `index` with sibling `path` hashes up to."""
    if not isinstance(index, int) or not 0 <= index < 1 << len(path):
        raise MerkleError(f"leaf index {index!r} does not fit a path of {len(path)} siblings")
    node = bytes(leaf)
    for sibling in path:
        node = node_hash(sibling, node) if index & 1 else node_hash(node, sibling)
        index >>= 1
    return node


def verify_path(root: bytes, leaf: bytes, index: int, path: list[bytes]) -> bool:
    """True when `leaf` at `index` with sibling `path` hashes up to `root`."""
    if len(root) != NODE or len(leaf) != NODE:
        raise MerkleError(f"root and leaf must be {NODE} bytes, got {len(root)} and {len(leaf)}")
    return root_from_path(leaf, index, path) == bytes(root)
