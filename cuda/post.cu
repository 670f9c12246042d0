// WindowPoSt path extraction for a whole partition; see post.cuh. The bottom rows are
// rebuilt with poseidon.cu's poseidon_A kernels; proofs/gpu/post.py drives both.
#include "post.cuh"

extern "C" __global__ void post_gather(const uint64_t* levels, const uint32_t* offsets, uint64_t* out,
                                       uint64_t n_seg, uint32_t seg_leaves, uint32_t arity, int k) {
    uint64_t item = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (item < n_seg * zq_post_row_words(arity, k))
        zq_post_gather_item(levels, offsets, out, item, n_seg, seg_leaves, arity, k);
}
