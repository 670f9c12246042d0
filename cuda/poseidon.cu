// Poseidon on the device: hash_many / tree levels / tree-c columns for arities 2, 8, 11
// (one more line instantiates another arity), and replica encoding.
// Bodies live in poseidon.cuh; proofs/gpu/poseidon.py plans the launches and uploads the
// constants (Montgomery form, ZqPoseidonLayout order) once per arity.
#include "poseidon.cuh"

#define ZQ_POSEIDON_THREADS 128

// poseidon_A(in, item_stride, elem_stride, out, n, constants, bad): see zq_poseidon_item.
#define ZQ_POSEIDON_KERNEL(A)                                                                    \
    extern "C" __global__ void __launch_bounds__(ZQ_POSEIDON_THREADS)                            \
    poseidon_##A(const uint64_t* in, uint64_t item_stride, uint64_t elem_stride, uint64_t* out,  \
                 uint64_t n, const ZqFr* c, uint32_t* bad) {                                     \
        uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;                            \
        if (i < n) zq_poseidon_item<A>(in, item_stride, elem_stride, out, i, c, bad);            \
    }

ZQ_POSEIDON_KERNEL(2)
ZQ_POSEIDON_KERNEL(8)
ZQ_POSEIDON_KERNEL(11)

extern "C" __global__ void encode_replica(const uint64_t* data, const uint64_t* key, uint64_t* out,
                                          uint64_t n, uint32_t* bad) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) zq_encode_item(data, key, out, i, bad);
}

// Benchmark input made on the device (see zq_synthetic_item).
extern "C" __global__ void fill_synthetic(uint64_t* out, uint64_t n, uint64_t seed) {
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) zq_synthetic_item(out, i, seed);
}
