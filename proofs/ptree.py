"""n-ary Poseidon Merkle trees as Filecoin builds them (tree-c, tree-r-last, comm_r).

A tree is a list of levels, bottom up: levels[0] is the leaves, levels[-1] the 32-byte
root; each level is one bytes object of 32-byte little-endian field elements. Leaves are
not hashed; a node is Poseidon(arity) of its children.

Arities may differ per level, which covers Filecoin's compound trees: a 32 GiB tree-r-last
('8,8,0') is 8 base trees joined by one arity-8 node, which is exactly an 8-ary tree over
all the leaves; a 64 GiB one ('8,8,2') puts an arity-2 node on top of two of those. Base
trees are contiguous runs of leaves, so leaf i of the sector is leaf i of the whole tree.

Lotus keeps tree-r-last without its bottom rows; `path_from_upper` rebuilds them from a
segment of leaves (512 for arity 8 and 3 rebuilt levels: 64 + 8 + 1 = 73 hashes).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from zqnode.proofs.poseidon import WORD, FieldElementError, hash_bytes, hash_words

__all__ = ["TreeError", "PathStep", "level_arities", "arities_for", "leaf_bytes", "build_levels",
           "root", "inclusion_path", "verify_path", "comm_r", "segment_range", "rebuild_bottom",
           "upper_shape", "path_from_upper", "rows_to_discard", "paths_from_upper"]


class TreeError(ValueError):
    """Leaves, levels, indices or shapes that do not make a tree."""


class PathStep(NamedTuple):
    """One level of an inclusion path: the other children of the node, and our position."""
    siblings: tuple[bytes, ...]
    position: int


def level_arities(leaf_count: int, base: int = 8, sub: int = 0, top: int = 0) -> tuple[int, ...]:
    """Per-level arities, bottom up, for a PROOFS.md shape 'base,sub,top' (0 = absent)."""
    joins = [a for a in (sub, top) if a]
    per_base = leaf_count // math.prod(joins)
    height = _exact_log(per_base, base)
    if height is None or per_base * math.prod(joins) != leaf_count:
        raise TreeError(f"{leaf_count} leaves do not fit the tree shape {base},{sub},{top}")
    return (base,) * height + tuple(joins)


def _exact_log(n: int, base: int) -> int | None:
    height = 0
    while n > 1 and n % base == 0:
        n //= base
        height += 1
    return height if n == 1 else None


def arities_for(leaf_count: int, arities: int | Sequence[int]) -> tuple[int, ...]:
    """Every level's arity, bottom up, for `arities` (one for all levels, or one per level)
    over `leaf_count` leaves; TreeError when they do not make a tree of that many leaves."""
    if isinstance(arities, int):
        height = _exact_log(leaf_count, arities)
        if height is None:
            raise TreeError(f"{leaf_count} leaves is not a power of the arity {arities}")
        return (arities,) * height
    arities = tuple(arities)
    if math.prod(arities) != leaf_count:
        raise TreeError(f"{leaf_count} leaves do not match the level arities {arities}")
    return arities


def leaf_bytes(leaves) -> bytes:
    """bytes of a bytes-like or C-contiguous numpy array of 32-byte words."""
    try:
        data = memoryview(leaves).cast("B")
    except TypeError as e:  # not C-contiguous, or not a buffer
        raise TreeError(f"leaves must be bytes or a C-contiguous array: {e}") from None
    if len(data) == 0 or len(data) % WORD:
        raise TreeError(f"leaves are {len(data)} bytes, not a positive multiple of {WORD}")
    return bytes(data)


def build_levels(leaves, arities: int | Sequence[int] = 8) -> list[bytes]:
    """All levels of the tree over `leaves` (bytes or numpy array of 32-byte LE words).

    `arities` is one arity for every level (the leaf count must be a power of it) or the
    arity of each level, bottom up (see `level_arities`).
    """
    data = leaf_bytes(leaves)
    levels = [data]
    for arity in arities_for(len(data) // WORD, arities):
        levels.append(hash_words(levels[-1], arity))
    return levels


def root(levels: Sequence[bytes]) -> bytes:
    return bytes(levels[-1])


def _node(level: bytes, i: int) -> bytes:
    return bytes(level[i * WORD:(i + 1) * WORD])


def inclusion_path(levels: Sequence[bytes], index: int) -> list[PathStep]:
    """The path from leaf `index` to the root: per level, the siblings and the position."""
    count = len(levels[0]) // WORD
    if not 0 <= index < count:
        raise TreeError(f"leaf index {index} out of range for {count} leaves")
    path = []
    for below, above in zip(levels, levels[1:]):
        arity = len(below) // len(above)
        first, position = index - index % arity, index % arity
        siblings = tuple(_node(below, first + j) for j in range(arity) if j != position)
        path.append(PathStep(siblings, position))
        index //= arity
    return path


def verify_path(root_hash: bytes, leaf: bytes, index: int, path: Sequence[PathStep],
                arities: int | Sequence[int]) -> bool:
    """Whether `path` proves `leaf` is leaf `index` under `root_hash`.

    `arities` is one arity for every level or the arity of each level, bottom up.
    """
    if len(root_hash) != WORD or len(leaf) != WORD:
        raise TreeError(f"root and leaf must be {WORD} bytes")
    if isinstance(arities, int):
        arities = (arities,) * len(path)
    if len(arities) != len(path) or index < 0 or index >= math.prod(arities):
        return False
    node = bytes(leaf)
    for (siblings, position), arity in zip(path, arities):
        if len(siblings) != arity - 1 or position != index % arity:
            return False
        children = list(siblings)
        children.insert(position, node)
        try:
            node = hash_bytes(children)
        except FieldElementError:
            return False
        index //= arity
    return node == bytes(root_hash)


def comm_r(comm_c: bytes, comm_r_last: bytes) -> bytes:
    """comm_r = Poseidon arity 2 of (comm_c, comm_r_last)."""
    return hash_bytes([comm_c, comm_r_last])


# --- trees stored without their bottom levels --------------------------------------------

def segment_range(index: int, arities: Sequence[int], k: int) -> range:
    """The leaves under the level-k node above leaf `index`: what a rebuild must re-read."""
    size = math.prod(arities[:k])
    start = index - index % size
    return range(start, start + size)


def rebuild_bottom(segment, arities: Sequence[int]) -> list[bytes]:
    """Levels 0..len(arities) of the subtree over `segment` (bytes or array of leaves)."""
    data = leaf_bytes(segment)
    return build_levels(data, arities_for(len(data) // WORD, arities))


def upper_shape(upper: Sequence[bytes], segment, index: int,
                arities: int | Sequence[int]) -> tuple[tuple[int, ...], int, range]:
    """The checks of `path_from_upper` (and of its GPU twin, proofs.gpu.post): every
    level's arity, bottom up, how many levels k the segment rebuilds, and the segment's
    range of leaves; TreeError when the kept levels, segment and index do not fit."""
    if isinstance(arities, int):
        kept = _exact_log(len(upper[0]) // WORD, arities)
        rebuilt = _exact_log(_leaf_count(segment), arities)
        if kept is None or rebuilt is None:
            raise TreeError(f"the kept levels and segment are not parts of an {arities}-ary tree")
        arities = (arities,) * (rebuilt + kept)
    arities = tuple(arities)
    k = len(arities) - (len(upper) - 1)
    if k < 0:
        raise TreeError(f"{len(upper)} kept levels for a tree of {len(arities)} levels")
    expected = segment_range(index, arities, k)
    if _leaf_count(segment) != len(expected):
        raise TreeError(f"segment has {_leaf_count(segment)} leaves, expected {len(expected)}")
    if index // len(expected) * WORD >= len(upper[0]):
        raise TreeError(f"leaf index {index} out of range")
    return arities, k, expected


def path_from_upper(upper: Sequence[bytes], segment, index: int,
                    arities: int | Sequence[int]) -> list[PathStep]:
    """The inclusion path of leaf `index` from the kept levels and a re-read leaf segment.

    `upper` is levels[k:] of the whole tree (levels[k] first, the root last) and `segment`
    the leaves `segment_range(index, arities, k)`. The rebuilt level-k node must equal the
    stored one; a mismatch (wrong or corrupt leaves) raises TreeError.
    """
    arities, k, expected = upper_shape(upper, segment, index, arities)
    bottom = rebuild_bottom(segment, arities[:k])
    position = index // len(expected)
    if bottom[-1] != _node(upper[0], position):
        raise TreeError(f"leaves {expected.start}..{expected.stop - 1} do not hash to the"
                        f" stored level-{k} node {position}")
    return inclusion_path(bottom, index - expected.start) + inclusion_path(upper, position)


def rows_to_discard(base_leaves: int, arity: int) -> int:
    """How many rows above the leaves Lotus drops from a tree-r-last base tree.

    rust-fil-proofs `default_rows_to_discard`: none for a tree of at most two rows, the one
    middle row of a three-row tree, else at most 7 (arity 2), 5 (arity 4) or 2 (others),
    and never all rows between the leaves and the root. The stored tree then starts at
    level `rows_to_discard + 1`; the leaves themselves are the replica.
    """
    height = _exact_log(base_leaves, arity)
    if height is None:
        raise TreeError(f"{base_leaves} leaves is not a power of the arity {arity}")
    rows = height + 1
    if rows <= 2:
        return 0
    if rows == 3:
        return 1
    return min(rows - 2, {2: 7, 4: 5}.get(arity, 2))


def paths_from_upper(upper: Sequence[bytes], read_segment, indices: Sequence[int],
                     arities: Sequence[int], check: bool = True) -> list[list[PathStep]]:
    """`path_from_upper` for many leaves, rebuilding each distinct segment once.

    `read_segment(range)` returns the leaves of a segment (bytes-like). With `check`
    a rebuilt node that differs from the stored one raises TreeError; without it the
    path is built anyway (it then fails verification), which tests use to forge proofs.
    """
    arities = tuple(arities)
    k = len(arities) - (len(upper) - 1)
    if k < 0:
        raise TreeError(f"{len(upper)} kept levels for a tree of {len(arities)} levels")
    count = math.prod(arities)
    bottoms: dict[int, list[bytes]] = {}
    paths = []
    for index in indices:
        if not 0 <= index < count:
            raise TreeError(f"leaf index {index} out of range for {count} leaves")
        segment = segment_range(index, arities, k)
        position = index // len(segment)
        bottom = bottoms.get(segment.start)
        if bottom is None:
            leaves = read_segment(segment)
            if _leaf_count(leaves) != len(segment):
                raise TreeError(f"segment has {_leaf_count(leaves)} leaves, expected {len(segment)}")
            bottom = bottoms[segment.start] = rebuild_bottom(leaves, arities[:k])
            if check and bottom[-1] != _node(upper[0], position):
                raise TreeError(f"leaves {segment.start}..{segment.stop - 1} do not hash to the"
                                f" stored level-{k} node {position}")
        paths.append(inclusion_path(bottom, index - segment.start) + inclusion_path(upper, position))
    return paths


def _leaf_count(leaves) -> int:
    return len(memoryview(leaves).cast("B")) // WORD
