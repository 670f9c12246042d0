#!/usr/bin/env python3
"""Benchmark SDR on this machine: parent cache generation and PC1 labelling.

    python tools/bench_sdr.py                  # readable table
    python tools/bench_sdr.py --json           # one JSON object on stdout, the table on stderr
    python tools/bench_sdr.py --sizes 2KiB,8MiB,512MiB

For each size (V1_1 proof) it generates the parent cache in a fresh directory (and checks
its SHA-256 against rust-fil-proofs' manifest), labels all layers, and compares the node
rate with plain hashlib.sha256 over 1248-byte messages (one label's message) in the same run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from zqnode.proofs.params import SEAL_PROOFS, SealFeature, sector_params
from zqnode.proofs.sdr.cache import Graph, cache_path, file_sha256, parent_cache
from zqnode.proofs.sdr.labels import label_layers

MESSAGE_BYTES = 64 + 37 * 32


def sha256_baseline(seconds: float = 1.0) -> float:
    """Plain hashlib.sha256(1248 bytes).digest() calls per second."""
    msg, sha, done = bytes(MESSAGE_BYTES), hashlib.sha256, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(10_000):
            sha(msg).digest()
        done += 10_000
    return done / elapsed


def bench_size(size_name: str, workdir: Path) -> dict:
    sector = sector_params(size_name)
    proof = next(p for p in SEAL_PROOFS
                 if p.sector_size == sector.size and p.feature is SealFeature.NONE
                 and not p.api_version.legacy)
    graph = Graph.for_proof(proof)
    cache_dir = workdir / f"pc-{sector.name}"

    t0 = time.perf_counter()
    parents = parent_cache(graph, cache_dir)
    cache_s = time.perf_counter() - t0
    digest_ok = file_sha256(cache_path(graph, cache_dir)) == graph.production_digest

    t0 = time.perf_counter()
    parent_cache(graph, cache_dir)
    reopen_s = time.perf_counter() - t0

    replica_id = bytes([9]) * 32
    t0 = time.perf_counter()
    layers = label_layers(replica_id, graph, sector.layers, workdir / f"sector-{sector.name}",
                          parents=parents)
    label_s = time.perf_counter() - t0
    del layers
    labelled = graph.nodes * sector.layers
    return {
        "size": sector.name, "proof": proof.name, "nodes": graph.nodes, "layers": sector.layers,
        "parent_cache_s": round(cache_s, 3), "parent_cache_reopen_s": round(reopen_s, 4),
        "parent_cache_digest_ok": digest_ok,
        "labelling_s": round(label_s, 3), "labels_per_s": round(labelled / label_s),
    }


def table(result: dict) -> str:
    lines = [f"sha256(1248 B) baseline: {result['sha256_1248_per_s']:,.0f} hashes/s",
             f"{'size':>7} {'cache gen s':>11} {'digest':>6} {'reopen s':>9} "
             f"{'label s':>8} {'labels/s':>10} {'vs sha256':>9}"]
    for r in result["sizes"]:
        lines.append(f"{r['size']:>7} {r['parent_cache_s']:>11.3f} "
                     f"{'ok' if r['parent_cache_digest_ok'] else 'BAD':>6} "
                     f"{r['parent_cache_reopen_s']:>9.4f} {r['labelling_s']:>8.3f} "
                     f"{r['labels_per_s']:>10,} {r['labels_vs_sha256']:>9.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--sizes", default="2KiB,8MiB", help="comma-separated sector sizes")
    ap.add_argument("--workdir", help="where to put the caches and layers (default: a temp dir)")
    args = ap.parse_args(argv)

    baseline = sha256_baseline()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        sizes = [bench_size(s.strip(), Path(tmp)) for s in args.sizes.split(",") if s.strip()]
    for r in sizes:
        r["labels_vs_sha256"] = round(r["labels_per_s"] / baseline, 3)
    result = {"python": platform.python_version(), "machine": platform.machine(),
              "sha256_1248_per_s": round(baseline), "sizes": sizes}
    if args.json:
        print(json.dumps(result))
        print(table(result), file=sys.stderr)
    else:
        print(table(result))
    return 0 if all(r["parent_cache_digest_ok"] for r in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
