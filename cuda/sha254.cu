// Binary sha254 Merkle trees (CommP, CommD, tree-d) and fr32 padding on the device.
// Bodies live in sha254_tree.cuh; proofs/gpu/sha254.py plans the launches.
#include "sha254_tree.cuh"

extern "C" __global__ void __launch_bounds__(ZQ_FR32_THREADS)
fr32_pad(const uint32_t* raw, uint32_t* out, uint64_t chunks) {
    __shared__ uint32_t smem[ZQ_FR32_SMEM_WORDS];
    zq_fr32_load_phase(raw, chunks, blockIdx.x, threadIdx.x, blockDim.x, smem);
    __syncthreads();
    zq_fr32_pad_phase(out, chunks, blockIdx.x, threadIdx.x, blockDim.x, smem);
}

// blockDim.x = 2^(k-1); dynamic shared memory = zq_sha_subtree_smem_words(k) words.
extern "C" __global__ void __launch_bounds__(1024)
sha254_subtree(const uint32_t* in, uint32_t* out, uint32_t* roots, uint64_t n_in, int k, int store) {
    extern __shared__ uint32_t smem[];
    ZqShaSubtree a = {in, out, roots, n_in, k, store};
    for (int j = 0; j < k; j++) {
        zq_sha254_subtree_phase(a, j, blockIdx.x, threadIdx.x, smem);
        __syncthreads();
    }
}

extern "C" __global__ void sha254_level(const uint32_t* in, uint32_t* out, uint64_t n_out) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n_out) zq_sha254_level_item(in, out, i);
}
