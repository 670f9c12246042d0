// SHA-256 compression and the sha254 Merkle node, __host__ __device__.
//
// Words are held big-endian-decoded ("SHA form"): node bytes b0..b31 are the words
// (b0<<24 | b1<<16 | b2<<8 | b3), ... as SHA-256 reads them, so nodes pass between tree
// levels without byte swapping; only loads from and stores to byte memory swap.
//
// A node message is 64 bytes, so SHA-256 pads it with a second block that is always the
// same (0x80, zeros, bit length 512). Its message schedule is therefore constant:
// ZQ_SHA256_PAD64_KW holds K[i] + W[i] of that block, which saves the 48 schedule steps
// and 64 additions of the second compression.
#pragma once
#include "common.cuh"

#define ZQ_SHA256_K_LIST \
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u, \
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, \
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, \
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, \
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, \
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, \
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u, \
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u

// K[i] + W[i] for the constant padding block of a 64-byte message (checked by the
// harness's `selfcheck` against the schedule computed from scratch).
#define ZQ_SHA256_PAD64_KW_LIST \
    0xc28a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u, \
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf374u, \
    0x649b69c1u, 0xf0fe4786u, 0x0fe1edc6u, 0x240cf254u, 0x4fe9346fu, 0x6cc984beu, 0x61b9411eu, 0x16f988fau, \
    0xf2c65152u, 0xa88e5a6du, 0xb019fc65u, 0xb9d99ec7u, 0x9a1231c3u, 0xe70eeaa0u, 0xfdb1232bu, 0xc7353eb0u, \
    0x3069bad5u, 0xcb976d5fu, 0x5a0f118fu, 0xdc1eeefdu, 0x0a35b689u, 0xde0b7a04u, 0x58f4ca9du, 0xe15d5b16u, \
    0x007f3e86u, 0x37088980u, 0xa507ea32u, 0x6fab9537u, 0x17406110u, 0x0d8cd6f1u, 0xcdaa3b6du, 0xc0bbbe37u, \
    0x83613bdau, 0xdb48a363u, 0x0b02e931u, 0x6fd15ca7u, 0x521afacau, 0x31338431u, 0x6ed41a95u, 0x6d437890u, \
    0xc39c91f2u, 0x9eccabbdu, 0xb5c9a0e6u, 0x532fb63cu, 0xd2c741c6u, 0x07237ea3u, 0xa4954b68u, 0x4c191d76u

// The device reads these from the constant bank (uniform across a warp, so free as
// instruction operands); the host reads ordinary arrays.
__constant__ uint32_t zq_sha256_k_dev[64] = {ZQ_SHA256_K_LIST};
__constant__ uint32_t zq_sha256_pad64_kw_dev[64] = {ZQ_SHA256_PAD64_KW_LIST};
static const uint32_t zq_sha256_k_host[64] = {ZQ_SHA256_K_LIST};
static const uint32_t zq_sha256_pad64_kw_host[64] = {ZQ_SHA256_PAD64_KW_LIST};

ZQ_HD uint32_t zq_sha256_k(int i) {
#ifdef __CUDA_ARCH__
    return zq_sha256_k_dev[i];
#else
    return zq_sha256_k_host[i];
#endif
}

ZQ_HD uint32_t zq_sha256_pad64_kw(int i) {
#ifdef __CUDA_ARCH__
    return zq_sha256_pad64_kw_dev[i];
#else
    return zq_sha256_pad64_kw_host[i];
#endif
}

ZQ_HD uint32_t zq_rotr(uint32_t x, int n) {
#ifdef __CUDA_ARCH__
    return __funnelshift_r(x, x, n);
#else
    return (x >> n) | (x << (32 - n));
#endif
}

ZQ_HD void zq_sha256_iv(uint32_t st[8]) {
    st[0] = 0x6a09e667u; st[1] = 0xbb67ae85u; st[2] = 0x3c6ef372u; st[3] = 0xa54ff53au;
    st[4] = 0x510e527fu; st[5] = 0x9b05688cu; st[6] = 0x1f83d9abu; st[7] = 0x5be0cd19u;
}

// One round; `kw` is K[i] + W[i].
ZQ_HD void zq_sha256_round(uint32_t v[8], uint32_t kw) {
    uint32_t a = v[0], b = v[1], c = v[2], d = v[3], e = v[4], f = v[5], g = v[6], h = v[7];
    uint32_t t1 = h + (zq_rotr(e, 6) ^ zq_rotr(e, 11) ^ zq_rotr(e, 25)) + ((e & f) ^ (~e & g)) + kw;
    uint32_t t2 = (zq_rotr(a, 2) ^ zq_rotr(a, 13) ^ zq_rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    v[7] = g; v[6] = f; v[5] = e; v[4] = d + t1;
    v[3] = c; v[2] = b; v[1] = a; v[0] = t1 + t2;
}

// Compress one 16-word (SHA form) block into `st`. The schedule is kept as a rolling
// window of 16 words: W[i] overwrites W[i - 16].
ZQ_HD void zq_sha256_compress(uint32_t st[8], const uint32_t block[16]) {
    uint32_t w[16], v[8];
#pragma unroll
    for (int i = 0; i < 16; i++) w[i] = block[i];
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = st[i];
#pragma unroll
    for (int i = 0; i < 64; i++) {
        if (i >= 16) {
            uint32_t x = w[(i + 1) & 15], y = w[(i + 14) & 15];
            uint32_t s0 = zq_rotr(x, 7) ^ zq_rotr(x, 18) ^ (x >> 3);
            uint32_t s1 = zq_rotr(y, 17) ^ zq_rotr(y, 19) ^ (y >> 10);
            w[i & 15] += s0 + w[(i + 9) & 15] + s1;
        }
        zq_sha256_round(v, zq_sha256_k(i) + w[i & 15]);
    }
#pragma unroll
    for (int i = 0; i < 8; i++) st[i] += v[i];
}

// Compress the constant second block of a 64-byte message.
ZQ_HD void zq_sha256_compress_pad64(uint32_t st[8]) {
    uint32_t v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = st[i];
#pragma unroll
    for (int i = 0; i < 64; i++) zq_sha256_round(v, zq_sha256_pad64_kw(i));
#pragma unroll
    for (int i = 0; i < 8; i++) st[i] += v[i];
}

// sha254(left || right): SHA-256 with the digest's last byte & 0x3F. All in SHA form;
// the last byte is the low byte of word 7.
ZQ_HD void zq_sha254_node(const uint32_t left[8], const uint32_t right[8], uint32_t out[8]) {
    uint32_t block[16];
#pragma unroll
    for (int i = 0; i < 8; i++) { block[i] = left[i]; block[8 + i] = right[i]; }
    zq_sha256_iv(out);
    zq_sha256_compress(out, block);
    zq_sha256_compress_pad64(out);
    out[7] &= 0xFFFFFF3Fu;
}

// A node from byte memory (32 bytes, 4-aligned) into SHA form, and back.
// Nodes are 32-byte aligned in memory, so the device moves them as two 16-byte vectors.
ZQ_HD void zq_load_node(const uint32_t* bytes_as_words, uint32_t node[8]) {
#ifdef __CUDA_ARCH__
    const uint4* v = reinterpret_cast<const uint4*>(bytes_as_words);
    uint4 a = v[0], b = v[1];
    uint32_t raw[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#else
    const uint32_t* raw = bytes_as_words;
#endif
#pragma unroll
    for (int i = 0; i < 8; i++) node[i] = zq_bswap32(raw[i]);
}

ZQ_HD void zq_store_node(uint32_t* bytes_as_words, const uint32_t node[8]) {
#ifdef __CUDA_ARCH__
    uint4* v = reinterpret_cast<uint4*>(bytes_as_words);
    v[0] = make_uint4(zq_bswap32(node[0]), zq_bswap32(node[1]), zq_bswap32(node[2]), zq_bswap32(node[3]));
    v[1] = make_uint4(zq_bswap32(node[4]), zq_bswap32(node[5]), zq_bswap32(node[6]), zq_bswap32(node[7]));
#else
#pragma unroll
    for (int i = 0; i < 8; i++) bytes_as_words[i] = zq_bswap32(node[i]);
#endif
}
