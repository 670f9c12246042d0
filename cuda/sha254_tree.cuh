// Kernel bodies for fr32 padding and the binary sha254 Merkle tree, as phases (see
// common.cuh): cuda/sha254.cu runs them on the device, the harness on the host.
#pragma once
#include "sha256.cuh"

// ---- fr32 padding -----------------------------------------------------------------------
// One block pads ZQ_FR32_CHUNKS chunks of 127 bytes into 128 bytes each. Phase 0 copies the
// block's raw bytes into shared memory with coalesced word loads; phase 1 cuts each output
// word out of them (output word q of a chunk starts at input bit 254*(q/8) + 32*(q%8)).
#define ZQ_FR32_CHUNKS 32
#define ZQ_FR32_THREADS 128
// The raw bytes plus 8 zero bytes: the last output word of a chunk reads one byte past
// the chunk, into bits that the mask clears.
#define ZQ_FR32_SMEM_WORDS ((ZQ_FR32_CHUNKS * 127 + 8) / 4)

// `raw` holds 127 * chunks bytes and must stay readable (zero) up to the next multiple
// of 4 bytes; block b starts at chunk 32b, byte 4064b, so its word loads are aligned.
ZQ_HD void zq_fr32_load_phase(const uint32_t* raw, uint64_t chunks, uint64_t block,
                              uint32_t thread, uint32_t threads, uint32_t* smem) {
    uint64_t first = block * ZQ_FR32_CHUNKS;
    if (first >= chunks) return;
    uint64_t left = chunks - first;
    uint32_t count = left < ZQ_FR32_CHUNKS ? (uint32_t)left : ZQ_FR32_CHUNKS;
    uint32_t words = (count * 127 + 3) / 4;
    const uint32_t* src = raw + first * 127 / 4;
    for (uint32_t w = thread; w < ZQ_FR32_SMEM_WORDS; w += threads) smem[w] = w < words ? src[w] : 0;
}

ZQ_HD uint32_t zq_fr32_word(const uint8_t* chunk, uint32_t q) {
    uint32_t bit = 254 * (q >> 3) + 32 * (q & 7);
    const uint8_t* b = chunk + (bit >> 3);
    uint64_t v = (uint64_t)b[0] | ((uint64_t)b[1] << 8) | ((uint64_t)b[2] << 16) |
                 ((uint64_t)b[3] << 24) | ((uint64_t)b[4] << 32);
    uint32_t r = (uint32_t)(v >> (bit & 7));
    return (q & 7) == 7 ? r & 0x3FFFFFFFu : r;  // a word's two top bits are zero
}

ZQ_HD void zq_fr32_pad_phase(uint32_t* out, uint64_t chunks, uint64_t block,
                             uint32_t thread, uint32_t threads, const uint32_t* smem) {
    uint64_t first = block * ZQ_FR32_CHUNKS;
    if (first >= chunks) return;
    uint64_t left = chunks - first;
    uint32_t count = left < ZQ_FR32_CHUNKS ? (uint32_t)left : ZQ_FR32_CHUNKS;
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(smem);
    for (uint32_t w = thread; w < count * 32; w += threads)
        out[first * 32 + w] = zq_fr32_word(bytes + (w >> 5) * 127, w & 31);
}

// ---- one sha254 level ------------------------------------------------------------------------
// out[i] = sha254(in[2i] || in[2i+1]): a single level, one pair per thread.
ZQ_HD void zq_sha254_level_item(const uint32_t* in, uint32_t* out, uint64_t i) {
    uint32_t l[8], r[8], h[8];
    zq_load_node(in + 16 * i, l);
    zq_load_node(in + 16 * i + 8, r);
    zq_sha254_node(l, r, h);
    zq_store_node(out + 8 * i, h);
}

// ---- sha254 subtrees ----------------------------------------------------------------------
// One block of 2^(k-1) threads reduces 2^k consecutive nodes of a level to one node,
// k levels up. Phase j (0..k-1) hashes 2^(k-1-j) pairs: phase 0 from global memory,
// later phases from the previous phase's results in shared memory (two buffers used in
// turn, so no phase reads what it writes). With `store`, every level produced is also
// written to `out`, where the levels above the input lie one after another; the last
// phase writes the block's node to roots[block].
struct ZqShaSubtree {
    const uint32_t* in;  // the input level: n_in nodes of 32 bytes
    uint32_t* out;       // level +1 (then +2, ...) when store is set
    uint32_t* roots;     // level +k: one node per block
    uint64_t n_in;       // a multiple of 2^k
    int k;
    int store;
};

// Shared memory: nodes are stored transposed (word i of node n at buf[i * N + n]) so
// that threads reading neighbouring pairs hit different banks.
ZQ_HD uint32_t zq_sha_subtree_smem_words(int k) { return 8u * ((3u << (k - 1)) >> 1); }

ZQ_HD void zq_sha254_subtree_phase(const ZqShaSubtree& a, int j, uint64_t block, uint32_t t,
                                   uint32_t* smem) {
    uint32_t active = 1u << (a.k - 1 - j);
    if (t >= active) return;
    uint32_t n0 = 1u << (a.k - 1);
    uint32_t l[8], r[8], h[8];
    if (j == 0) {
        uint64_t base = (block << a.k) + 2 * (uint64_t)t;
        zq_load_node(a.in + base * 8, l);
        zq_load_node(a.in + base * 8 + 8, r);
    } else {
        uint32_t n_src = 2 * active;
        const uint32_t* src = ((j - 1) & 1) ? smem + 8 * n0 : smem;
#pragma unroll
        for (int i = 0; i < 8; i++) { l[i] = src[i * n_src + 2 * t]; r[i] = src[i * n_src + 2 * t + 1]; }
    }
    zq_sha254_node(l, r, h);
    if (j == a.k - 1) {
        zq_store_node(a.roots + block * 8, h);
        return;
    }
    uint32_t* dst = (j & 1) ? smem + 8 * n0 : smem;
#pragma unroll
    for (int i = 0; i < 8; i++) dst[i * active + t] = h[i];
    if (a.store) {
        uint64_t n1 = a.n_in / 2;
        uint64_t level_start = 2 * n1 - 2 * (n1 >> j);  // levels +1 .. +j before this one
        uint64_t index = level_start + (block << (a.k - 1 - j)) + t;
        zq_store_node(a.out + index * 8, h);
    }
}
