"""Measure the CUDA kernels against the CPU code, in one run.

    python tools/bench_gpu.py [--json] [--commp-mib 1024] [--cpu-seconds 1.0] [--small]

Each figure comes with the CPU figure of the same run beside it. Work that would take the
CPU hours (Poseidon trees of a 512 MiB or 32 GiB sector, a 2349-sector WindowPoSt
partition) is timed on a measured sample and projected, and marked `cpu_projected`.

GPU figures:
- commp: GB/s of payload, with the payload already on the device and from host memory
  (the streaming path: page-locked buffers, two streams);
- poseidon8: hashes/s of one launch over device-resident input;
- tree_c / tree_r_last 512 MiB: seconds from host data to host results (2 layers, as
  512 MiB sectors have); tree_c / tree_r_last 32 GiB-shaped: seconds on the device alone,
  inputs made there (11 synthetic layers, then data and key), kept rows not copied back;
- post_partition: seconds for 2349 sectors x 10 challenges: segments up, bottom rows
  rebuilt, paths gathered and back.
Without a device (or PyCUDA) it prints why, with the CPU figures, and exits 0.
"""
import argparse
import json
import os
import time

import numpy as np

from zqnode.proofs import commp as cpu_commp
from zqnode.proofs import poseidon, ptree
from zqnode.proofs.poseidon_constants import P

MiB = 1 << 20
SECTORS, CHALLENGES = 2349, 10
SEGMENT = 512  # leaves rehashed per challenge (73 Poseidon-8 hashes)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fr32_like(nbytes: int, seed: int) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
    data[31::32] &= 0x3F
    return data.tobytes()


def tree_hashes(leaves: int, arity: int = 8) -> int:
    total = 0
    while leaves > 1:
        leaves //= arity
        total += leaves
    return total


# --- CPU -------------------------------------------------------------------------------------

def cpu_figures(seconds: float, small: bool) -> dict:
    size = (8 if small else 32) * MiB
    payload = os.urandom(size)
    commp_s, _ = timed(lambda: cpu_commp.commp(payload))

    def rate(arity):
        rows = [[(i * 7919 + j) % P for j in range(arity)] for i in range(64)]
        poseidon.hash_many(rows[:1])  # warm-up: the straight-line function is generated on first use
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            poseidon.hash_many(rows)
            done += len(rows)
        return done / (time.perf_counter() - start)

    rates = {arity: rate(arity) for arity in (2, 8, 11)}
    leaves = fr32_like(32 * SEGMENT * 8, 1)  # an 8^4-leaf tree, kept from level 3
    upper = ptree.build_levels(leaves, 8)[3:]
    challenges = [i * 997 % (SEGMENT * 8) for i in range(4)]

    def paths():
        for i in challenges:
            start = i - i % SEGMENT
            ptree.path_from_upper(upper, leaves[start * 32:(start + SEGMENT) * 32], i, 8)
    per_challenge = timed(paths)[0] / len(challenges)

    def sector_trees(nodes: int, layers: int) -> dict:
        # tree-c: one column hash per node (arity = layers) + the 8-ary tree; tree-r-last: the tree
        tree = tree_hashes(nodes) / rates[8]
        return {"tree_c": nodes / rates[11 if layers == 11 else 2] + tree, "tree_r_last": tree}

    return {
        "commp_gbps": size / commp_s / 1e9,
        "poseidon_hashes_per_s": rates,
        "projected_s": {
            "512MiB": sector_trees(1 << 24, 2),
            "32GiB": sector_trees(1 << 30, 11),
            "post_partition": per_challenge * SECTORS * CHALLENGES,
        },
        "post_s_per_challenge": per_challenge,
    }


# --- GPU -------------------------------------------------------------------------------------

def gpu_figures(backend, commp_mib: int, small: bool) -> dict:
    from zqnode.proofs.gpu import poseidon as gp
    from zqnode.proofs.gpu import post, sha254
    from zqnode.proofs.gpu.launch import Ptr
    ex = backend.executor
    out = {}

    # CommP, payload on the device (synthetic words are as good as any payload)
    size = commp_mib * MiB // 127 * 127
    raw = ex.alloc(size + 256)
    ex.memset(Ptr(raw), size + 256)
    ex.launch(gp.synthetic_launch(Ptr(raw), size // 32, 1))
    ex.synchronize()
    sha254.commp_on_device(ex, Ptr(raw), 127 << 20)  # warm-up: compile and first launches
    seconds, _ = timed(lambda: sha254.commp_on_device(ex, Ptr(raw), size))
    out["commp_device_gbps"] = size / seconds / 1e9
    ex.free(raw)

    payload = np.random.default_rng(2).integers(0, 256, size, dtype=np.uint8).tobytes()
    seconds, _ = timed(lambda: sha254.commp(ex, payload))
    out["commp_host_gbps"] = size / seconds / 1e9

    # Poseidon-8 over device-resident words
    n_out = 1 << (16 if small else 22)
    src, dst = ex.alloc(8 * n_out * 32), ex.alloc(n_out * 32)
    ex.launch(gp.synthetic_launch(Ptr(src), 8 * n_out, 3))
    ex.launch(gp.hash_launch(ex, 8, Ptr(src), 8, 1, Ptr(dst), n_out))
    ex.synchronize()
    seconds, _ = timed(lambda: (ex.launch(gp.hash_launch(ex, 8, Ptr(src), 8, 1, Ptr(dst), n_out)), ex.synchronize()))
    out["poseidon8_hashes_per_s"] = n_out / seconds
    ex.free(src)
    ex.free(dst)

    # 512 MiB sector from host memory
    leaves = 1 << (18 if small else 24)
    layers = [fr32_like(32 * leaves, 10 + j) for j in range(2)]
    out["tree_c_512MiB_s"], _ = timed(lambda: gp.tree_c(ex, layers, 8))
    data, key = fr32_like(32 * leaves, 20), fr32_like(32 * leaves, 21)
    out["tree_r_last_512MiB_s"], _ = timed(lambda: gp.tree_r_last(ex, data, key, 8))

    # 32 GiB-shaped trees, inputs synthesized on the device
    big = 1 << (21 if small else 30)
    shape = ptree.level_arities(big, 8, 8, 0)
    out["tree_c_32GiB_shaped_s"], _ = timed(lambda: _device_tree(ex, big, shape, layers=11))
    out["tree_r_last_32GiB_shaped_s"], _ = timed(lambda: _device_tree(ex, big, shape, layers=0))

    # one WindowPoSt partition: random segments (the rebuild does not care what they hold)
    count = (64 if small else SECTORS) * CHALLENGES
    segments = [fr32_like(32 * SEGMENT, 1000 + i % 50) for i in range(count)]
    offsets = [i * 37 % SEGMENT for i in range(count)]
    out["post_partition_s"], _ = timed(lambda: post.bottom_rows(ex, segments, offsets, 8, 3))
    out["post_partition_challenges"] = count
    return out


def _device_tree(ex, n: int, shape, layers: int) -> bytes:
    """Root of a tree-c (layers > 0) or tree-r-last (layers == 0) over synthetic device inputs."""
    from zqnode.proofs.gpu import poseidon as gp
    from zqnode.proofs.gpu.launch import Ptr
    inputs = layers if layers else 2
    chunk = gp.default_chunk_leaves(ex, n, shape, (inputs + 2) * 32)
    src, leaves_buf = ex.alloc(inputs * chunk * 32), ex.alloc(chunk * 32)
    levels_buf = ex.alloc(max(1, chunk // 7 + 1) * 32)
    m, size = 0, 1
    while m < len(shape) and size * shape[m] <= chunk:
        size *= shape[m]
        m += 1
    roots = bytearray()
    try:
        for first in range(0, n, chunk):
            ex.launch(gp.synthetic_launch(Ptr(src), inputs * chunk, first))
            if layers:
                ex.launch(gp.hash_launch(ex, layers, Ptr(src), 1, chunk, Ptr(leaves_buf), chunk))
            else:
                ex.launch(gp.encode_launch(Ptr(src), Ptr(src, chunk * 32), Ptr(leaves_buf), chunk, gp._bad_flag(ex)))
            made = gp._levels_launches(ex, Ptr(leaves_buf), chunk, shape[:m], Ptr(levels_buf))
            ptr, count = made[-1] if made else (Ptr(leaves_buf), 1)
            roots += ex.read(ptr, count * 32).tobytes()
    finally:
        for buf in (src, leaves_buf, levels_buf):
            ex.free(buf)
    if m == len(shape):
        return bytes(roots)
    return gp.build_levels(ex, bytes(roots), shape[m:])[-1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--commp-mib", type=int, default=1024, help="CommP payload on the device (MiB)")
    parser.add_argument("--cpu-seconds", type=float, default=1.0, help="time for each CPU hash-rate sample")
    parser.add_argument("--small", action="store_true", help="small sizes everywhere (a quick smoke run)")
    args = parser.parse_args(argv)

    from zqnode.proofs import gpu
    usable, reason = gpu.available()
    result = {"gpu_available": usable, "device" if usable else "reason": reason,
              "cpu": cpu_figures(args.cpu_seconds, args.small)}
    if usable:
        with gpu.CudaBackend() as backend:
            result["gpu"] = gpu_figures(backend, 64 if args.small else args.commp_mib, args.small)
        result["small"] = args.small
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
