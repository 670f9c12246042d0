// WindowPoSt: inclusion paths through the rebuilt bottom rows of tree-r-last.
//
// Lotus keeps tree-r-last without its bottom rows, so each challenge re-reads the segment
// of S = A^k leaves under its level-k node and rehashes it. The host uploads the segments
// of a whole partition (one per challenge, in challenge order) and rebuilds their k levels
// with poseidon_A launches over all segments at once (segments are whole A-ary subtrees,
// so the levels of the concatenation are the concatenated levels). `levels` then holds,
// one after another, level 0 (n_seg * S leaves), level 1 (n_seg * S / A nodes), ...
// level k (n_seg nodes). A gather then copies each challenge's path:
//   row c = k * (A - 1) siblings (level 0's first, each level's in child order without
//           the path node itself), then the rebuilt level-k node (the host checks it
//           against the stored level and takes the rest of the path from there).
#pragma once
#include "common.cuh"

ZQ_HD uint64_t zq_post_level_start(uint64_t n_seg, uint32_t seg_leaves, uint32_t arity, int level) {
    uint64_t start = 0, width = seg_leaves;
    for (int l = 0; l < level; l++) {
        start += n_seg * width;
        width /= arity;
    }
    return start;
}

ZQ_HD uint32_t zq_post_row_words(uint32_t arity, int k) { return k * (arity - 1) + 1; }

// The node (index into `levels`) that slot `slot` of challenge `seg`'s row copies;
// `offset` is the challenged leaf's index within its segment.
ZQ_HD uint64_t zq_post_source(uint64_t seg, uint32_t slot, uint32_t offset, uint64_t n_seg,
                              uint32_t seg_leaves, uint32_t arity, int k) {
    if (slot == (uint32_t)k * (arity - 1)) return zq_post_level_start(n_seg, seg_leaves, arity, k) + seg;
    int level = slot / (arity - 1);
    uint32_t j = slot % (arity - 1);
    uint32_t width = seg_leaves, index = offset;
    for (int l = 0; l < level; l++) {
        width /= arity;
        index /= arity;
    }
    uint32_t position = index % arity;
    uint32_t child = index - position + j + (j >= position ? 1 : 0);
    return zq_post_level_start(n_seg, seg_leaves, arity, level) + seg * width + child;
}

// Item = seg * row_words + slot: copy one 32-byte node into the output rows.
ZQ_HD void zq_post_gather_item(const uint64_t* levels, const uint32_t* offsets, uint64_t* out, uint64_t item,
                               uint64_t n_seg, uint32_t seg_leaves, uint32_t arity, int k) {
    uint32_t row = zq_post_row_words(arity, k);
    uint64_t seg = item / row;
    uint32_t slot = (uint32_t)(item % row);
    uint64_t source = zq_post_source(seg, slot, offsets[seg], n_seg, seg_leaves, arity, k);
#pragma unroll
    for (int w = 0; w < 4; w++) out[item * 4 + w] = levels[source * 4 + w];
}
