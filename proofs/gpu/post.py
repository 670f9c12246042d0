"""WindowPoSt inclusion paths for a whole partition at once: the twin of ptree.path_from_upper.

Lotus keeps tree-r-last without its bottom rows, so every challenge (10 per sector, 2349
sectors in a 32 GiB partition) re-reads the 512-leaf segment under its level-3 node and
rehashes it. Here all segments of a batch go up together, their bottom levels are
rebuilt by one poseidon launch per level over all of them, and one gather kernel copies
every challenge's siblings out (cuda/post.cuh). The host checks each rebuilt node against
the stored level and adds the upper part of the path from the stored rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zqnode.proofs import ptree
from zqnode.proofs.gpu import poseidon as gpu_poseidon
from zqnode.proofs.gpu.launch import Launch, Ptr, blocks_for, i32, u32, u64
from zqnode.proofs.poseidon import WORD
from zqnode.proofs.ptree import PathStep, TreeError

MODULE = "post"
GATHER_THREADS = 256
#: Share of device memory a batch of segments may use.
MEMORY_SHARE = 0.25


def row_words(arity: int, k: int) -> int:
    """Words per challenge in the gather output: k * (arity - 1) siblings, then the top node."""
    return k * (arity - 1) + 1


def gather_launch(levels: Ptr, offsets: Ptr, out: Ptr, n_seg: int, seg_leaves: int, arity: int, k: int) -> Launch:
    items = n_seg * row_words(arity, k)
    return Launch(MODULE, "post_gather", blocks_for(items, GATHER_THREADS), GATHER_THREADS,
                  (levels, offsets, out, u64(n_seg), u32(seg_leaves), u32(arity), i32(k)))


def paths_from_upper(ex, items: Sequence[tuple[Sequence[bytes], bytes, int]],
                     arities: int | Sequence[int]) -> list[list[PathStep]]:
    """[ptree.path_from_upper(upper, segment, index, arities) for each item], batched.

    Items whose rebuilt levels do not share one arity (no Filecoin shape does that) are
    done on the CPU.
    """
    resolved = [ptree.upper_shape(upper, segment, index, arities) for upper, segment, index in items]
    paths: list[list[PathStep] | None] = [None] * len(items)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (shape, k, _) in enumerate(resolved):
        bottom = shape[:k]
        if k == 0 or len(set(bottom)) != 1 or bottom[0] not in gpu_poseidon.GPU_ARITIES:
            upper, segment, index = items[i]
            paths[i] = ptree.path_from_upper(upper, segment, index, shape)
        else:
            groups.setdefault((bottom[0], k), []).append(i)
    for (arity, k), members in groups.items():
        seg_leaves = arity ** k
        per_segment = seg_leaves * WORD * 2 + row_words(arity, k) * WORD
        batch = max(1, int(ex.limits.total_memory * MEMORY_SHARE) // per_segment)
        for start in range(0, len(members), batch):
            chunk = members[start:start + batch]
            rows = bottom_rows(ex, [items[i][1] for i in chunk],
                               [items[i][2] - resolved[i][2].start for i in chunk], arity, k)
            for i, row in zip(chunk, rows):
                upper, _, index = items[i]
                paths[i] = _assemble(upper, index, row, arity, k, resolved[i][2])
    return paths


def _assemble(upper, index: int, row: bytes, arity: int, k: int, expected: range) -> list[PathStep]:
    offset = index - expected.start
    position = index // len(expected)
    top = row[-WORD:]
    if top != bytes(upper[0][position * WORD:(position + 1) * WORD]):
        raise TreeError(f"leaves {expected.start}..{expected.stop - 1} do not hash to the"
                        f" stored level-{k} node {position}")
    path = []
    for level in range(k):
        first = level * (arity - 1) * WORD
        siblings = tuple(row[first + j * WORD:first + (j + 1) * WORD] for j in range(arity - 1))
        path.append(PathStep(siblings, (offset // arity ** level) % arity))
    return path + ptree.inclusion_path(upper, position)


def bottom_rows(ex, segments: Sequence[bytes], offsets: Sequence[int], arity: int, k: int) -> list[bytes]:
    """For each segment (arity^k leaves) and leaf offset in it: the gather row (see row_words)."""
    n_seg, seg_leaves = len(segments), arity ** k
    level_nodes = [n_seg * seg_leaves // arity ** level for level in range(k + 1)]
    row_bytes = row_words(arity, k) * WORD
    levels = ex.alloc(sum(level_nodes) * WORD)
    offsets_buf = ex.alloc(max(16, 4 * n_seg))
    out = ex.alloc(n_seg * row_bytes)
    try:
        joined = b"".join(bytes(segment) for segment in segments)  # one copy up, not one per segment
        ex.write(Ptr(levels), np.frombuffer(joined, np.uint8))
        ex.write(Ptr(offsets_buf), np.asarray(offsets, dtype="<u4").view(np.uint8))
        gpu_poseidon._clear_bad(ex)
        start = 0
        for level in range(k):
            src = Ptr(levels, start * WORD)
            start += level_nodes[level]
            ex.launch(gpu_poseidon.hash_launch(ex, arity, src, arity, 1, Ptr(levels, start * WORD),
                                               level_nodes[level + 1]))
        gpu_poseidon._raise_if_bad(ex, "post segments")
        ex.launch(gather_launch(Ptr(levels), Ptr(offsets_buf), Ptr(out), n_seg, seg_leaves, arity, k))
        data = ex.read(Ptr(out), n_seg * row_bytes).tobytes()
    finally:
        for buf in (levels, offsets_buf, out):
            ex.free(buf)
    return [data[i * row_bytes:(i + 1) * row_bytes] for i in range(n_seg)]


def partition_paths(ex, sectors: Sequence[tuple[Sequence[bytes], Sequence[tuple[int, bytes]]]],
                    arities: int | Sequence[int]) -> list[list[list[PathStep]]]:
    """Paths of a whole partition: for each sector (upper rows, [(leaf index, segment), ...]),
    the path of each challenge, in order."""
    items = [(upper, segment, index) for upper, challenges in sectors for index, segment in challenges]
    flat = paths_from_upper(ex, items, arities)
    out, at = [], 0
    for _, challenges in sectors:
        out.append(flat[at:at + len(challenges)])
        at += len(challenges)
    return out

