// Shared helpers for zqnode's kernels. Everything here is __host__ __device__ so the
// host-side test harness (tests/proofs/gpu/harness.cu) runs the very code the kernels run.
#pragma once
#include <stdint.h>

#define ZQ_HD __host__ __device__ __forceinline__

// Big-endian 32-bit word <-> native (little-endian) word: SHA-256 reads its message
// big-endian, while nodes are stored as plain bytes.
ZQ_HD uint32_t zq_bswap32(uint32_t x) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, 0, 0x0123);
#else
    return __builtin_bswap32(x);
#endif
}

// Kernel bodies are written as "phases": functions of (block, thread) that a kernel runs
// for its own blockIdx/threadIdx between __syncthreads(), and that the host harness runs
// for every block and thread in turn. Within a phase no thread reads what another
// thread of the same phase writes, so the sequential host run gives the same result.
