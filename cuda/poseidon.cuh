// Poseidon over BLS12-381 Fr (neptune, Strength::Standard), __host__ __device__.
//
// The constants come from proofs/poseidon_constants.py through proofs.poseidon's sparse
// plan, converted to Montgomery form by proofs/gpu/constants.py into one array of ZqFr
// per arity, laid out as ZqPoseidonLayout says:
//   TAG      1          the domain tag 2^arity - 1 (state[0] at the start)
//   FIRST    4*T        constants of full rounds 1..4
//   PARTIAL  RP         one constant per partial round (added to s0 only)
//   SPARSE   (RP-1)*2*(T-1)  per partial round but the last: column w, then row v
//   LAST     T*T        the dense matrix of the last partial round, row-major
//   SECOND   4*T        constants of full rounds 5..8
//   MDS      T*T        the Cauchy matrix, row-major
// Row-vector convention: a matrix N maps s to s·N, (s·N)_j = sum_i s_i N[i][j].
// A sparse round maps s to (s0*M00 + sum_i s_i w_i, s_1 + s0 v_1, ..., s_{T-1} + s0 v_{T-1}).
#pragma once
#include "fr.cuh"

ZQ_HD constexpr int zq_poseidon_partial_rounds(int t) { return t == 3 ? 55 : t == 5 ? 56 : 57; }

template <int A>
struct ZqPoseidonLayout {
    static constexpr int T = A + 1;
    static constexpr int RP = zq_poseidon_partial_rounds(A + 1);
    static constexpr int TAG = 0;
    static constexpr int FIRST = 1;
    static constexpr int PARTIAL = FIRST + 4 * T;
    static constexpr int SPARSE = PARTIAL + RP;
    static constexpr int LAST = SPARSE + (RP - 1) * 2 * (T - 1);
    static constexpr int SECOND = LAST + T * T;
    static constexpr int MDS = SECOND + 4 * T;
    static constexpr int SIZE = MDS + T * T;
};

// Constants are read by every thread of a warp at the same address: through the
// read-only cache on the device.
ZQ_HD ZqFr zq_fr_const(const ZqFr* p) {
#ifdef __CUDA_ARCH__
    const ulonglong2* v = reinterpret_cast<const ulonglong2*>(p);
    ulonglong2 a = __ldg(v), b = __ldg(v + 1);
    return zq_fr_make(a.x, a.y, b.x, b.y);
#else
    return *p;
#endif
}

// Code size matters as much as speed here: a fully unrolled permutation is hundreds of
// inlined Montgomery products per arity, which takes ptxas many minutes. So each kind of
// step appears once inside one loop over the rounds, unrolled only over the state.

// y <- s·N for a dense T x T matrix; columns in a rolled loop, rows unrolled.
template <int T>
ZQ_HD void zq_poseidon_dense(const ZqFr s[T], ZqFr y[T], const ZqFr* n) {
#pragma unroll 1
    for (int j = 0; j < T; j++) {
        ZqFr acc = zq_fr_mul(s[0], zq_fr_const(n + j));
#pragma unroll
        for (int i = 1; i < T; i++) acc = zq_fr_add(acc, zq_fr_mul(s[i], zq_fr_const(n + i * T + j)));
        y[j] = acc;
    }
}

// Poseidon of A field elements in Montgomery form; the digest in Montgomery form.
// Rounds 0..3 and RP+4..RP+7 are full; in between, partial rounds add one constant to s0
// and raise only s0 to the fifth power, then apply a sparse matrix (the last: LAST).
template <int A>
ZQ_HD ZqFr zq_poseidon_hash(const ZqFr x[A], const ZqFr* c) {
    typedef ZqPoseidonLayout<A> L;
    const int T = L::T;
    ZqFr s[T];
    s[0] = zq_fr_const(c + L::TAG);
#pragma unroll
    for (int i = 0; i < A; i++) s[i + 1] = x[i];
    const ZqFr m00 = zq_fr_const(c + L::MDS);

#pragma unroll 1
    for (int r = 0; r < L::RP + 8; r++) {
        bool full = r < 4 || r >= L::RP + 4;
        if (full) {
            const ZqFr* k = r < 4 ? c + L::FIRST + r * T : c + L::SECOND + (r - L::RP - 4) * T;
#pragma unroll
            for (int i = 0; i < T; i++) s[i] = zq_fr_pow5(zq_fr_add(s[i], zq_fr_const(k + i)));
        } else {
            s[0] = zq_fr_pow5(zq_fr_add(s[0], zq_fr_const(c + L::PARTIAL + r - 4)));
        }
        if (full || r == L::RP + 3) {
            ZqFr y[T];
            zq_poseidon_dense<T>(s, y, full ? c + L::MDS : c + L::LAST);
#pragma unroll
            for (int i = 0; i < T; i++) s[i] = y[i];
        } else {
            const ZqFr* w = c + L::SPARSE + (r - 4) * 2 * (T - 1);
            const ZqFr* v = w + (T - 1);
            ZqFr y0 = zq_fr_mul(s[0], m00);
#pragma unroll
            for (int i = 1; i < T; i++) y0 = zq_fr_add(y0, zq_fr_mul(s[i], zq_fr_const(w + i - 1)));
#pragma unroll
            for (int j = 1; j < T; j++) s[j] = zq_fr_add(s[j], zq_fr_mul(s[0], zq_fr_const(v + j - 1)));
            s[0] = y0;
        }
    }
    return s[1];
}

// ---- kernel bodies: one output word per item ----------------------------------------------
// Words in global memory are 32-byte little-endian field elements in standard form (the
// bytes the CPU code reads and writes). A non-canonical input (>= p) sets *bad; the host
// then raises, as the CPU code does.

// Load a standard-form word and enter Montgomery form.
ZQ_HD ZqFr zq_poseidon_input(const uint64_t* word, uint32_t* bad) {
    ZqFr x = zq_fr_load(word);
    if (!zq_fr_is_canonical(x)) *bad = 1;
    return zq_fr_to_mont(x);
}

// out[i] = Poseidon of the A words at in + i * item_stride + j * elem_stride (j < A), in
// words of 32 bytes. item_stride = A, elem_stride = 1: one level of an A-ary tree, or
// hash_many over rows of A words. item_stride = 1, elem_stride = layer length: tree-c's
// column digests over A layers stored one after another.
template <int A>
ZQ_HD void zq_poseidon_item(const uint64_t* in, uint64_t item_stride, uint64_t elem_stride, uint64_t* out,
                            uint64_t i, const ZqFr* c, uint32_t* bad) {
    ZqFr x[A];
#pragma unroll
    for (int j = 0; j < A; j++) x[j] = zq_poseidon_input(in + (i * item_stride + j * elem_stride) * 4, bad);
    zq_fr_store(out + i * 4, zq_fr_from_mont(zq_poseidon_hash<A>(x, c)));
}

// The replica word: (data + key) mod p. Addition mod p is the same in either form.
ZQ_HD void zq_encode_item(const uint64_t* data, const uint64_t* key, uint64_t* out, uint64_t i,
                          uint32_t* bad) {
    ZqFr d = zq_fr_load(data + i * 4), k = zq_fr_load(key + i * 4);
    if (!zq_fr_is_canonical(d) || !zq_fr_is_canonical(k)) *bad = 1;
    zq_fr_store(out + i * 4, zq_fr_add(d, k));
}

// Benchmark input: word i = a canonical pseudo-random value of (seed, i) (splitmix64 per
// limb, top two bits cleared), so big synthetic trees need no upload.
ZQ_HD void zq_synthetic_item(uint64_t* out, uint64_t i, uint64_t seed) {
    for (int j = 0; j < 4; j++) {
        uint64_t z = seed + (4 * i + j + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        out[4 * i + j] = j == 3 ? z & 0x3fffffffffffffffull : z;
    }
}
