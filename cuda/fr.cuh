// BLS12-381 scalar field Fr in Montgomery form: 4 little-endian 64-bit limbs, R = 2^256.
// __host__ __device__: the harness checks this exact code against Python's big ints.
// Portable C throughout; only the 64x64->128 product differs between host and device.
#pragma once
#include "common.cuh"

struct ZqFr {
    uint64_t l[4];
};

#define ZQ_P0 0xffffffff00000001ull
#define ZQ_P1 0x53bda402fffe5bfeull
#define ZQ_P2 0x3339d80809a1d805ull
#define ZQ_P3 0x73eda753299d7d48ull
#define ZQ_INV 0xfffffffeffffffffull  // -p^-1 mod 2^64

ZQ_HD ZqFr zq_fr_make(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    ZqFr r;
    r.l[0] = a; r.l[1] = b; r.l[2] = c; r.l[3] = d;
    return r;
}

ZQ_HD ZqFr zq_fr_p() { return zq_fr_make(ZQ_P0, ZQ_P1, ZQ_P2, ZQ_P3); }
// R^2 mod p: multiplying by it enters Montgomery form.
ZQ_HD ZqFr zq_fr_r2() {
    return zq_fr_make(0xc999e990f3f29c6dull, 0x2b6cedcb87925c23ull, 0x05d314967254398full, 0x0748d9d99f59ff11ull);
}

ZQ_HD void zq_mul_wide(uint64_t a, uint64_t b, uint64_t& lo, uint64_t& hi) {
#ifdef __CUDA_ARCH__
    lo = a * b;
    hi = __umul64hi(a, b);
#else
    unsigned __int128 p = (unsigned __int128)a * b;
    lo = (uint64_t)p;
    hi = (uint64_t)(p >> 64);
#endif
}

// acc + a*b + carry: returns the low word, leaves the high word in carry (never overflows).
ZQ_HD uint64_t zq_mac(uint64_t acc, uint64_t a, uint64_t b, uint64_t& carry) {
    uint64_t lo, hi;
    zq_mul_wide(a, b, lo, hi);
    lo += acc;
    hi += lo < acc;
    lo += carry;
    hi += lo < carry;
    carry = hi;
    return lo;
}

ZQ_HD uint64_t zq_adc(uint64_t a, uint64_t b, uint64_t& carry) {
    uint64_t s = a + b;
    uint64_t c = s < a;
    uint64_t s2 = s + carry;
    c += s2 < s;
    carry = c;
    return s2;
}

ZQ_HD uint64_t zq_sbb(uint64_t a, uint64_t b, uint64_t& borrow) {
    uint64_t d = a - b;
    uint64_t o = a < b;
    uint64_t d2 = d - borrow;
    o += d < borrow;
    borrow = o;
    return d2;
}

// x - p when x >= p (x < 2p), else x; branch-free.
ZQ_HD ZqFr zq_fr_reduce_once(const ZqFr& x) {
    uint64_t b = 0;
    ZqFr d;
    d.l[0] = zq_sbb(x.l[0], ZQ_P0, b);
    d.l[1] = zq_sbb(x.l[1], ZQ_P1, b);
    d.l[2] = zq_sbb(x.l[2], ZQ_P2, b);
    d.l[3] = zq_sbb(x.l[3], ZQ_P3, b);
    uint64_t keep = 0 - b;  // all ones when x < p
    ZqFr r;
#pragma unroll
    for (int i = 0; i < 4; i++) r.l[i] = (x.l[i] & keep) | (d.l[i] & ~keep);
    return r;
}

// Whether 32 bytes (as limbs) are a canonical field element, i.e. < p.
ZQ_HD bool zq_fr_is_canonical(const ZqFr& x) {
    uint64_t b = 0;
    zq_sbb(x.l[0], ZQ_P0, b);
    zq_sbb(x.l[1], ZQ_P1, b);
    zq_sbb(x.l[2], ZQ_P2, b);
    zq_sbb(x.l[3], ZQ_P3, b);
    return b != 0;
}

// Sums of canonical values stay below 2p < 2^256, so one conditional subtraction does.
ZQ_HD ZqFr zq_fr_add(const ZqFr& a, const ZqFr& b) {
    uint64_t c = 0;
    ZqFr s;
    s.l[0] = zq_adc(a.l[0], b.l[0], c);
    s.l[1] = zq_adc(a.l[1], b.l[1], c);
    s.l[2] = zq_adc(a.l[2], b.l[2], c);
    s.l[3] = zq_adc(a.l[3], b.l[3], c);
    return zq_fr_reduce_once(s);
}

ZQ_HD ZqFr zq_fr_sub(const ZqFr& a, const ZqFr& b) {
    uint64_t borrow = 0;
    ZqFr d;
    d.l[0] = zq_sbb(a.l[0], b.l[0], borrow);
    d.l[1] = zq_sbb(a.l[1], b.l[1], borrow);
    d.l[2] = zq_sbb(a.l[2], b.l[2], borrow);
    d.l[3] = zq_sbb(a.l[3], b.l[3], borrow);
    uint64_t mask = 0 - borrow;  // add p back when a < b
    uint64_t c = 0;
    d.l[0] = zq_adc(d.l[0], ZQ_P0 & mask, c);
    d.l[1] = zq_adc(d.l[1], ZQ_P1 & mask, c);
    d.l[2] = zq_adc(d.l[2], ZQ_P2 & mask, c);
    d.l[3] = zq_adc(d.l[3], ZQ_P3 & mask, c);
    return d;
}

// Montgomery product a*b/R mod p (CIOS). For a, b < p the result before the final
// subtraction is below 2p, and 2p < 2^256, so no fifth word is kept.
ZQ_HD ZqFr zq_fr_mul(const ZqFr& a, const ZqFr& b) {
    uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint64_t bi = b.l[i], c = 0;
        t0 = zq_mac(t0, a.l[0], bi, c);
        t1 = zq_mac(t1, a.l[1], bi, c);
        t2 = zq_mac(t2, a.l[2], bi, c);
        t3 = zq_mac(t3, a.l[3], bi, c);
        uint64_t c4 = 0;
        t4 = zq_adc(t4, c, c4);
        uint64_t m = t0 * ZQ_INV;
        c = 0;
        zq_mac(t0, m, ZQ_P0, c);  // low word is zero by the choice of m
        t0 = zq_mac(t1, m, ZQ_P1, c);
        t1 = zq_mac(t2, m, ZQ_P2, c);
        t2 = zq_mac(t3, m, ZQ_P3, c);
        uint64_t c5 = 0;
        t3 = zq_adc(t4, c, c5);
        t4 = c4 + c5;
    }
    return zq_fr_reduce_once(zq_fr_make(t0, t1, t2, t3));
}

ZQ_HD ZqFr zq_fr_sqr(const ZqFr& a) { return zq_fr_mul(a, a); }

ZQ_HD ZqFr zq_fr_pow5(const ZqFr& a) {
    ZqFr a2 = zq_fr_sqr(a);
    ZqFr a4 = zq_fr_sqr(a2);
    return zq_fr_mul(a4, a);
}

ZQ_HD ZqFr zq_fr_to_mont(const ZqFr& a) { return zq_fr_mul(a, zq_fr_r2()); }
ZQ_HD ZqFr zq_fr_from_mont(const ZqFr& a) { return zq_fr_mul(a, zq_fr_make(1, 0, 0, 0)); }

// 32 little-endian bytes in memory (8-byte aligned) as limbs, and back.
ZQ_HD ZqFr zq_fr_load(const uint64_t* p) {
#ifdef __CUDA_ARCH__
    const ulonglong2* v = reinterpret_cast<const ulonglong2*>(p);
    ulonglong2 a = v[0], b = v[1];
    return zq_fr_make(a.x, a.y, b.x, b.y);
#else
    return zq_fr_make(p[0], p[1], p[2], p[3]);
#endif
}

ZQ_HD void zq_fr_store(uint64_t* p, const ZqFr& x) {
#ifdef __CUDA_ARCH__
    ulonglong2* v = reinterpret_cast<ulonglong2*>(p);
    v[0] = make_ulonglong2(x.l[0], x.l[1]);
    v[1] = make_ulonglong2(x.l[2], x.l[3]);
#else
    p[0] = x.l[0]; p[1] = x.l[1]; p[2] = x.l[2]; p[3] = x.l[3];
#endif
}
