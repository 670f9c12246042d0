"""Measure CommP speed against the CPU ceiling: one hashlib.sha256 call per tree node.

    python tools/bench_commp.py [--mib 64] [--rounds 5] [--pairs 15] [--json]

The payload is 127/128 of the padded size, so the tree is full and every one of its
padded/32 - 1 internal nodes is hashed. The baseline is a plain loop of
hashlib.sha256(m).digest() over ready-made 64-byte messages (32768 of them, reused).

Two ratios, because other work on a shared machine moves single timings a lot:
- ratio_best: best CommP time over --rounds runs of the whole payload against the best
  baseline time over as many runs, alternated;
- ratio_paired_median: the median over --pairs back-to-back pairs (the baseline over
  2^18 messages, then the CommP of one 8 MiB piece, 2^18 - 1 nodes), so both halves of
  a pair see the same machine.
"""
import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from zqnode.proofs import fr32
from zqnode.proofs.commp import DEFAULT_CHUNK, commp

PAIR_PIECE = 8 << 20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def baseline_loop(messages, repeats=1):
    sha256 = hashlib.sha256

    def run():
        for _ in range(repeats):
            for message in messages:
                sha256(message).digest()
    return run


def pad_like_commp(payload: bytes):
    def run():
        out = np.empty(fr32.padded_size(DEFAULT_CHUNK), dtype=np.uint8)
        raw = np.frombuffer(payload, dtype=np.uint8)
        for start in range(0, raw.size, DEFAULT_CHUNK):
            fr32.pad_chunks(raw[start:start + DEFAULT_CHUNK], out=out)
    return run


def measure(mib: int, rounds: int, pairs: int) -> dict:
    padded = mib << 20
    payload = os.urandom(fr32.unpadded_size(padded))
    nodes = padded // 32 - 1
    # 32768 distinct messages (2 MiB), reused: as cache-friendly as CommP's 1 MiB chunks.
    messages = [os.urandom(64) for _ in range(1 << 15)]
    repeats = (nodes + 1) // len(messages)

    best = {"baseline": float("inf"), "commp": float("inf"), "pad": float("inf")}
    result = None

    def run_commp():
        nonlocal result
        result = commp(payload)

    for _ in range(rounds):
        best["baseline"] = min(best["baseline"], timed(baseline_loop(messages, repeats)))
        best["commp"] = min(best["commp"], timed(run_commp))
        best["pad"] = min(best["pad"], timed(pad_like_commp(payload)))
    assert result.padded_size == padded

    pair_piece = min(PAIR_PIECE, padded)
    pair_nodes = pair_piece // 32 - 1
    pair_repeats = max(1, (pair_nodes + 1) // len(messages))
    pair_baseline = baseline_loop(messages, pair_repeats)
    pieces = [payload[i:i + fr32.unpadded_size(pair_piece)]
              for i in range(0, len(payload), fr32.unpadded_size(pair_piece))]
    ratios = []
    for i in range(pairs):
        baseline_rate = len(messages) * pair_repeats / timed(pair_baseline)
        piece = pieces[i % len(pieces)]
        commp_rate = pair_nodes / timed(lambda piece=piece: commp(piece))
        ratios.append(commp_rate / baseline_rate)

    commp_rate = nodes / best["commp"]
    baseline_rate = len(messages) * repeats / best["baseline"]
    return {
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "payload_bytes": len(payload),
        "padded_bytes": padded,
        "rounds": rounds,
        "commp_seconds": round(best["commp"], 3),
        "commp_payload_mb_per_s": round(len(payload) / best["commp"] / 1e6, 2),
        "commp_nodes_per_s": round(commp_rate),
        "fr32_pad_mb_per_s": round(len(payload) / best["pad"] / 1e6, 1),
        "baseline_sha256_64b_per_s": round(baseline_rate),
        "ratio_best": round(commp_rate / baseline_rate, 3),
        "pairs": pairs,
        "ratio_paired_median": round(statistics.median(ratios), 3) if ratios else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="padded piece size in MiB (a power of two)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    fr32.check_padded_piece_size(args.mib << 20)
    numbers = measure(args.mib, args.rounds, args.pairs)
    if args.json:
        print(json.dumps(numbers))
        return
    width = max(map(len, numbers))
    for key, value in numbers.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
