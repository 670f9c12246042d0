// Host-side harness for zqnode's kernels: runs the __host__ __device__ code of cuda/*.cuh
// on the CPU, so tests check the kernels' arithmetic and index logic without a GPU.
//
// Built by tests/proofs/gpu/conftest.py with `nvcc -I cuda` (optionally under
// AddressSanitizer). It reads one command per line on stdin; commands that answer print
// one line on stdout and flush. It plays a device: buffers, copies, and kernel launches
// whose blocks and phases run one after another (see cuda/common.cuh), with the launch
// configuration checked as the real kernel would need it.
//
//   alloc ID NBYTES | free ID | write ID OFF HEX | memset ID OFF NBYTES BYTE
//   copy DST DOFF SRC SOFF NBYTES | read ID OFF NBYTES -> HEX | sync -> ok
//   launch KERNEL GRID BLOCK SMEM ARG...   (ARG: p:ID:OFF | u64:V | u32:V | i32:V)
//   node HEX64 -> HEX32          sha254 node of left || right
//   sha256 HEX -> HEX32          SHA-256 of any message, through zq_sha256_compress
//   fr OP A [B] -> HEX32         OP: mul add sub sqr pow5 (standard-form in and out,
//                                through Montgomery form), to (-> Montgomery form),
//                                from (Montgomery in), canon (-> 1 or 0)
//   layout A -> "T RP TAG FIRST PARTIAL SPARSE LAST SECOND MDS SIZE"
//   selfcheck -> ok              the padding block's K+W table against its schedule
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "sha254_tree.cuh"
#include "poseidon.cuh"
#include "post.cuh"

using std::string;
using std::vector;

[[noreturn]] static void fail(const string& why) {
    fprintf(stderr, "harness: %s\n", why.c_str());
    exit(2);
}

static vector<uint8_t> unhex(const string& s) {
    if (s.size() % 2) fail("odd hex length");
    vector<uint8_t> out(s.size() / 2);
    for (size_t i = 0; i < out.size(); i++) out[i] = (uint8_t)std::stoul(s.substr(2 * i, 2), nullptr, 16);
    return out;
}

static string hex(const uint8_t* p, size_t n) {
    static const char* digits = "0123456789abcdef";
    string s(2 * n, '0');
    for (size_t i = 0; i < n; i++) { s[2 * i] = digits[p[i] >> 4]; s[2 * i + 1] = digits[p[i] & 15]; }
    return s;
}

static void answer(const string& s) {
    fwrite(s.data(), 1, s.size(), stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

// ---- buffers: exactly sized, so AddressSanitizer sees any access past the end -------------
struct Buffer {
    uint8_t* data;
    size_t size;
};
static std::map<string, Buffer> buffers;

static Buffer& buffer(const string& id) {
    auto it = buffers.find(id);
    if (it == buffers.end()) fail("no buffer " + id);
    return it->second;
}

static uint8_t* span(const string& id, size_t off, size_t n) {
    Buffer& b = buffer(id);
    if (off > b.size || n > b.size - off) fail("range past the end of buffer " + id);
    return b.data + off;
}

// ---- launches -------------------------------------------------------------------------------
struct Arg {
    char kind;  // 'p', 'q' (u64), 'u' (u32), 'i' (i32)
    uint8_t* ptr;
    uint64_t value;
};

static Arg parse_arg(const string& tok) {
    Arg a = {0, nullptr, 0};
    size_t colon = tok.find(':');
    if (colon == string::npos) fail("bad argument " + tok);
    string kind = tok.substr(0, colon), rest = tok.substr(colon + 1);
    if (kind == "p") {
        size_t c2 = rest.rfind(':');
        if (c2 == string::npos) fail("bad pointer " + tok);
        Buffer& b = buffer(rest.substr(0, c2));
        size_t off = std::stoull(rest.substr(c2 + 1));
        if (off > b.size) fail("pointer past the end: " + tok);
        if (off % 16) fail("pointer not 16-byte aligned: " + tok);
        a.kind = 'p';
        a.ptr = b.data + off;
    } else if (kind == "u64") {
        a.kind = 'q';
        a.value = std::stoull(rest);
    } else if (kind == "u32") {
        a.kind = 'u';
        a.value = std::stoull(rest);
        if (a.value >> 32) fail("u32 out of range: " + tok);
    } else if (kind == "i32") {
        a.kind = 'i';
        long long v = std::stoll(rest);
        if (v < INT32_MIN || v > INT32_MAX) fail("i32 out of range: " + tok);
        a.value = (uint64_t)v;
    } else {
        fail("bad argument kind " + tok);
    }
    return a;
}

static void expect(const string& kernel, const vector<Arg>& args, const char* kinds) {
    if (args.size() != strlen(kinds)) fail(kernel + ": wrong number of arguments");
    for (size_t i = 0; i < args.size(); i++)
        if (args[i].kind != kinds[i]) fail(kernel + ": argument " + std::to_string(i) + " has the wrong type");
}

template <typename T>
static T* P(const Arg& a) { return reinterpret_cast<T*>(a.ptr); }

template <int A>
static void run_poseidon(const vector<Arg>& a, uint64_t grid, uint32_t block) {
    uint64_t n = a[4].value;
    if (block > 128) fail("poseidon kernels are built for at most 128 threads a block");
    if (grid * block < n) fail("poseidon launch does not cover n");
    for (uint64_t b = 0; b < grid; b++)
        for (uint32_t t = 0; t < block; t++) {
            uint64_t i = b * block + t;
            if (i < n) zq_poseidon_item<A>(P<uint64_t>(a[0]), a[1].value, a[2].value, P<uint64_t>(a[3]), i,
                                           P<ZqFr>(a[5]), P<uint32_t>(a[6]));
        }
}

static void launch(const string& kernel, uint64_t grid, uint32_t block, uint32_t smem, const vector<Arg>& a) {
    if (grid == 0 || grid > 0x7fffffffull) fail(kernel + ": grid out of range");
    if (block == 0 || block > 1024) fail(kernel + ": block out of range");
    if (smem > 48 * 1024) fail(kernel + ": more than 48 KiB of dynamic shared memory");
    if (kernel == "fr32_pad") {
        expect(kernel, a, "ppq");
        if (block != ZQ_FR32_THREADS) fail("fr32_pad needs ZQ_FR32_THREADS threads");
        if (grid * ZQ_FR32_CHUNKS < a[2].value) fail("fr32_pad launch does not cover the chunks");
        vector<uint32_t> smem_words(ZQ_FR32_SMEM_WORDS);
        for (uint64_t b = 0; b < grid; b++) {
            for (uint32_t t = 0; t < block; t++)
                zq_fr32_load_phase(P<uint32_t>(a[0]), a[2].value, b, t, block, smem_words.data());
            for (uint32_t t = 0; t < block; t++)
                zq_fr32_pad_phase(P<uint32_t>(a[1]), a[2].value, b, t, block, smem_words.data());
        }
    } else if (kernel == "sha254_level") {
        expect(kernel, a, "ppq");
        uint64_t n = a[2].value;
        if (grid * block < n) fail("sha254_level launch does not cover n");
        for (uint64_t i = 0; i < n; i++) zq_sha254_level_item(P<uint32_t>(a[0]), P<uint32_t>(a[1]), i);
    } else if (kernel == "sha254_subtree") {
        expect(kernel, a, "pppqii");
        ZqShaSubtree s = {P<uint32_t>(a[0]), P<uint32_t>(a[1]), P<uint32_t>(a[2]), a[3].value,
                          (int)a[4].value, (int)a[5].value};
        if (s.k < 1 || s.k > 11) fail("sha254_subtree: k out of range");
        if (block != (1u << (s.k - 1))) fail("sha254_subtree: block must be 2^(k-1) threads");
        if (smem < 4 * zq_sha_subtree_smem_words(s.k)) fail("sha254_subtree: too little shared memory");
        if ((grid << s.k) != s.n_in) fail("sha254_subtree: grid * 2^k must equal n_in");
        vector<uint32_t> smem_words(smem / 4);
        for (uint64_t b = 0; b < grid; b++)
            for (int j = 0; j < s.k; j++)
                for (uint32_t t = 0; t < block; t++) zq_sha254_subtree_phase(s, j, b, t, smem_words.data());
    } else if (kernel == "poseidon_2") {
        expect(kernel, a, "pqqpqpp");
        run_poseidon<2>(a, grid, block);
    } else if (kernel == "poseidon_8") {
        expect(kernel, a, "pqqpqpp");
        run_poseidon<8>(a, grid, block);
    } else if (kernel == "poseidon_11") {
        expect(kernel, a, "pqqpqpp");
        run_poseidon<11>(a, grid, block);
    } else if (kernel == "encode_replica") {
        expect(kernel, a, "pppqp");
        if (grid * block < a[3].value) fail("encode_replica launch does not cover n");
        for (uint64_t i = 0; i < a[3].value; i++)
            zq_encode_item(P<uint64_t>(a[0]), P<uint64_t>(a[1]), P<uint64_t>(a[2]), i, P<uint32_t>(a[4]));
    } else if (kernel == "fill_synthetic") {
        expect(kernel, a, "pqq");
        if (grid * block < a[1].value) fail("fill_synthetic launch does not cover n");
        for (uint64_t i = 0; i < a[1].value; i++) zq_synthetic_item(P<uint64_t>(a[0]), i, a[2].value);
    } else if (kernel == "post_gather") {
        expect(kernel, a, "pppquui");
        uint64_t n_seg = a[3].value;
        uint32_t seg_leaves = (uint32_t)a[4].value, arity = (uint32_t)a[5].value;
        int k = (int)a[6].value;
        uint64_t items = n_seg * zq_post_row_words(arity, k);
        if (grid * block < items) fail("post_gather launch does not cover the rows");
        for (uint64_t i = 0; i < items; i++)
            zq_post_gather_item(P<uint64_t>(a[0]), P<uint32_t>(a[1]), P<uint64_t>(a[2]), i, n_seg, seg_leaves,
                                arity, k);
    } else {
        fail("unknown kernel " + kernel);
    }
}

// ---- unit commands --------------------------------------------------------------------------
static ZqFr fr_from_hex(const string& h) {
    vector<uint8_t> b = unhex(h);
    if (b.size() != 32) fail("a field element is 32 bytes");
    ZqFr x;
    memcpy(x.l, b.data(), 32);  // little-endian limbs on a little-endian host
    return x;
}

static string fr_hex(const ZqFr& x) { return hex(reinterpret_cast<const uint8_t*>(x.l), 32); }

static string fr_op(const string& op, const vector<string>& t) {
    ZqFr a = fr_from_hex(t.at(2));
    if (op == "canon") return zq_fr_is_canonical(a) ? "1" : "0";
    if (op == "to") return fr_hex(zq_fr_to_mont(a));
    if (op == "from") return fr_hex(zq_fr_from_mont(a));
    ZqFr ma = zq_fr_to_mont(a);
    if (op == "sqr") return fr_hex(zq_fr_from_mont(zq_fr_sqr(ma)));
    if (op == "pow5") return fr_hex(zq_fr_from_mont(zq_fr_pow5(ma)));
    ZqFr b = fr_from_hex(t.at(3));
    if (op == "add") return fr_hex(zq_fr_add(a, b));
    if (op == "sub") return fr_hex(zq_fr_sub(a, b));
    if (op == "mul") return fr_hex(zq_fr_from_mont(zq_fr_mul(ma, zq_fr_to_mont(b))));
    fail("unknown fr op " + op);
}

static string sha256_hex(const vector<uint8_t>& msg) {
    vector<uint8_t> m(msg);
    uint64_t bits = (uint64_t)msg.size() * 8;
    m.push_back(0x80);
    while (m.size() % 64 != 56) m.push_back(0);
    for (int i = 7; i >= 0; i--) m.push_back((uint8_t)(bits >> (8 * i)));
    uint32_t st[8];
    zq_sha256_iv(st);
    for (size_t off = 0; off < m.size(); off += 64) {
        uint32_t w[16];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        zq_sha256_compress(st, w);
    }
    uint8_t out[32];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(st[i] >> (24 - 8 * j));
    return hex(out, 32);
}

static string selfcheck() {
    uint32_t w[64] = {0x80000000u};
    w[15] = 512;
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = zq_rotr(w[i - 15], 7) ^ zq_rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = zq_rotr(w[i - 2], 17) ^ zq_rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    for (int i = 0; i < 64; i++)
        if (zq_sha256_k(i) + w[i] != zq_sha256_pad64_kw(i)) return "bad K+W at " + std::to_string(i);
    return "ok";
}

template <int A>
static string layout() {
    typedef ZqPoseidonLayout<A> L;
    std::ostringstream s;
    s << L::T << ' ' << L::RP << ' ' << L::TAG << ' ' << L::FIRST << ' ' << L::PARTIAL << ' ' << L::SPARSE << ' '
      << L::LAST << ' ' << L::SECOND << ' ' << L::MDS << ' ' << L::SIZE;
    return s.str();
}

int main() {
    string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        vector<string> t;
        for (string tok; in >> tok;) t.push_back(tok);
        if (t.empty()) continue;
        const string& cmd = t[0];
        try {
            if (cmd == "alloc") {
                size_t n = std::stoull(t.at(2));
                if (buffers.count(t.at(1))) fail("buffer exists: " + t[1]);
                void* p = nullptr;
                if (posix_memalign(&p, 256, n ? n : 1)) fail("out of memory");
                memset(p, 0, n ? n : 1);
                buffers[t[1]] = Buffer{(uint8_t*)p, n};
            } else if (cmd == "free") {
                free(buffer(t.at(1)).data);
                buffers.erase(t[1]);
            } else if (cmd == "write") {
                vector<uint8_t> b = t.size() > 3 ? unhex(t[3]) : vector<uint8_t>();
                if (!b.empty()) memcpy(span(t.at(1), std::stoull(t.at(2)), b.size()), b.data(), b.size());
            } else if (cmd == "memset") {
                size_t n = std::stoull(t.at(3));
                memset(span(t.at(1), std::stoull(t.at(2)), n), (int)std::stoul(t.at(4)), n);
            } else if (cmd == "copy") {
                size_t n = std::stoull(t.at(5));
                memmove(span(t.at(1), std::stoull(t.at(2)), n), span(t.at(3), std::stoull(t.at(4)), n), n);
            } else if (cmd == "read") {
                size_t n = std::stoull(t.at(3));
                answer(hex(span(t.at(1), std::stoull(t.at(2)), n), n));
            } else if (cmd == "sync") {
                answer("ok");
            } else if (cmd == "launch") {
                vector<Arg> args;
                for (size_t i = 5; i < t.size(); i++) args.push_back(parse_arg(t[i]));
                launch(t.at(1), std::stoull(t.at(2)), (uint32_t)std::stoul(t.at(3)), (uint32_t)std::stoul(t.at(4)),
                       args);
            } else if (cmd == "node") {
                vector<uint8_t> b = unhex(t.at(1));
                if (b.size() != 64) fail("node takes 64 bytes");
                uint32_t words[16], l[8], r[8], h[8], out[8];
                memcpy(words, b.data(), 64);
                zq_load_node(words, l);
                zq_load_node(words + 8, r);
                zq_sha254_node(l, r, h);
                zq_store_node(out, h);
                answer(hex(reinterpret_cast<uint8_t*>(out), 32));
            } else if (cmd == "sha256") {
                answer(sha256_hex(t.size() > 1 ? unhex(t[1]) : vector<uint8_t>()));
            } else if (cmd == "fr") {
                answer(fr_op(t.at(1), t));
            } else if (cmd == "layout") {
                int a = std::stoi(t.at(1));
                answer(a == 2 ? layout<2>() : a == 8 ? layout<8>() : a == 11 ? layout<11>() : "none");
            } else if (cmd == "selfcheck") {
                answer(selfcheck());
            } else {
                fail("unknown command " + cmd);
            }
        } catch (const std::exception& e) {
            fail("bad command '" + cmd + "': " + e.what());
        }
    }
    return 0;
}
