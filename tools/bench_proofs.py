"""Proof speeds on this machine, end to end: CommP, sealing, Poseidon, WindowPoSt.

    python tools/bench_proofs.py            # readable table
    python tools/bench_proofs.py --json     # one JSON object on stdout (table on stderr)
    python tools/bench_proofs.py --no-8m    # skip the 8 MiB seal (1 to 2 minutes)
    python tools/bench_proofs.py --quick    # skip the 512 MiB seal and proof (about 40 minutes
                                            # on 2 cores: Poseidon in Python is most of it)

CommP and its sha256 baseline come from tools/bench_commp.py's `measure`, Poseidon rates
from tools/bench_poseidon.py's `measure`. Seal times are PC1 + PC2 (the SDR parent cache
is built beforehand and not counted); 2 KiB timings are the best of a few runs, after a
warm-up that compiles Poseidon. The target for seal_8m_s is under 120 s on one core. The
8 MiB PC2 runs again on 2 processes (`pc2_speedup_2_procs`, target >= 1.8; its files must
be the same bytes). PC1 labelling of one 8 MiB layer is set against a hashlib loop over
the same bytes (`pc1_labels_per_s` / `pc1_labels_per_s_hashlib_baseline`, target >= 0.5).

Unless `--quick`, a 512 MiB committed-capacity sector is sealed by `zqnode proofs seal
--procs 2` in a child process (`seal_512m_s`, PC1 + PC2, the parent cache built before),
its memory sampled every 0.2 s over the process and its children: the peak of their own
memory (`seal_512m_peak_rss_bytes`: resident and not file-backed; target < 1 GiB) and,
apart, of the file pages they map (`seal_512m_peak_file_rss_bytes`: the layers and the
parent cache, which are the OS's cache and give way under memory pressure). Then one
WindowPoSt partition over that sector (`post_512m_partition_s`). With the 8 MiB seal, the
sealed sector is also snapped up with 8 MiB of data (SnapDeals: `snap_8m_encode_s`, and
`snap_8m_vs_seal` against the seal's PC1 + PC2; `snap_8m_prove_s` for its vanilla proof). The machine's load
average is recorded, since other work on it slows every number.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import bench_commp  # noqa: E402
import bench_poseidon  # noqa: E402

from zqnode.proofs import post, seal, snap  # noqa: E402
from zqnode.proofs.backend import get_backend  # noqa: E402
from zqnode.proofs.sdr.cache import Graph, parent_cache  # noqa: E402
from zqnode.proofs.sdr.labels import label_layer  # noqa: E402
from zqnode.proofs.sector import P_AUX, TREE_C, TREE_R_LAST, cache_file, sealed_path  # noqa: E402


def _seal(base: Path, name: str, proof: int, sector: int, cache: Path, backend) -> dict:
    sector_dir = base / name
    t0 = time.perf_counter()
    seal.precommit1(sector_dir, bytes([sector]) * 32, seal_proof=proof, miner=1000, sector=sector,
                    parent_cache_dir=cache, backend=backend)
    t1 = time.perf_counter()
    seal.precommit2(sector_dir, backend=backend)
    t2 = time.perf_counter()
    return {"dir": sector_dir, "pc1": t1 - t0, "pc2": t2 - t1, "total": t2 - t0}


class _PeakMemory:
    """The peak, over samples, of a process tree's own resident memory and of its
    file-backed resident pages (psutil: rss - shared, shared)."""

    def __init__(self, pid: int):
        self.root, self.own, self.file = psutil.Process(pid), 0, 0

    def sample(self) -> None:
        own = file = 0
        try:
            for proc in [self.root, *self.root.children(recursive=True)]:
                info = proc.memory_info()
                own, file = own + info.rss - info.shared, file + info.shared
        except psutil.Error:                 # a child ended between the listing and the read
            return
        self.own, self.file = max(self.own, own), max(self.file, file)


def _seal_512m(base: Path, cache: Path, backend, randomness: bytes, say) -> dict:
    say("512 MiB parent cache")
    t0 = time.perf_counter()
    parent_cache(Graph.for_proof(7), cache)
    out = {"parent_cache_512m_s": round(time.perf_counter() - t0, 2)}
    sector_dir = base / "s512m"
    say("512 MiB seal (PC1 + PC2 on 2 processes), in a child process")
    command = [sys.executable, "-m", "zqnode.nodes.cli", "proofs", "seal", "--sector-size", "512MiB",
               "--miner", "1000", "--sector", "1", "--ticket", "07" * 32, "--out", str(sector_dir),
               "--procs", "2", "--backend", backend.name, "--parent-cache", str(cache), "--json",
               "--progress"]
    t0 = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = _PeakMemory(child.pid)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(child.stderr), daemon=True)
    reader.start()
    while child.poll() is None:
        peak.sample()
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    reader.join()
    if child.returncode:
        raise RuntimeError(f"the 512 MiB seal failed: {''.join(lines[-5:])}")
    out.update(seal_512m_s=round(seconds, 1), seal_512m_peak_rss_bytes=peak.own,
               seal_512m_peak_file_rss_bytes=peak.file)
    say("512 MiB WindowPoSt partition (its one sector)")
    t0 = time.perf_counter()
    proven = post.generate_window_post(7, randomness, [post.SectorRef(1, str(sector_dir))],
                                       backend=backend)
    out["post_512m_partition_s"] = round(time.perf_counter() - t0, 2)
    assert not proven.skipped
    (part,) = proven.partitions
    assert post.verify_window_post(seal_proof=7, randomness=randomness, sectors=part.sectors,
                                   proof=part.proof)
    return out


def _pc2_files(sector_dir: Path) -> list[str]:
    """Digests of what PC2 writes."""
    names = [cache_file(sector_dir, n) for n in (TREE_C, TREE_R_LAST, P_AUX)] + [sealed_path(sector_dir)]
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in names]


def _label_rates(cache: Path) -> dict:
    """One 8 MiB layer (a layer > 1: base and expander parents) labelled, against a hashlib
    loop hashing the same bytes, one message of 64 + 37 * 32 bytes per label."""
    graph = Graph.for_proof(6)
    parents = parent_cache(graph, cache)
    prev = np.random.default_rng(1).integers(0, 256, (graph.nodes, 32), np.uint8)
    prev[:, 31] &= 0x3F
    out = np.zeros(graph.nodes * 32, np.uint8)
    t0 = time.perf_counter()
    label_layer(bytes(32), 2, parents, out, prev)
    labels = graph.nodes / (time.perf_counter() - t0)
    message, sha256 = bytes(64 + 37 * 32), hashlib.sha256
    t0 = time.perf_counter()
    for _ in range(graph.nodes):
        sha256(message).digest()
    baseline = graph.nodes / (time.perf_counter() - t0)
    return {"pc1_labels_per_s": round(labels), "pc1_labels_per_s_hashlib_baseline": round(baseline),
            "pc1_labels_ratio": round(labels / baseline, 3)}


def measure(backend_name: str, with_8m: bool, commp_mib: int, poseidon_seconds: float,
            progress=None, with_512m: bool = False) -> dict:
    say = progress or (lambda message: None)
    backend = get_backend(backend_name)
    result = {"python": platform.python_version(), "cpu": bench_commp.cpu_model(),
              "backend": backend.name, "load_average_before": round(os.getloadavg()[0], 2)}

    say(f"CommP over {commp_mib} MiB")
    commp = bench_commp.measure(commp_mib, rounds=2, pairs=0)
    result["commp_mb_per_s"] = commp["commp_payload_mb_per_s"]
    result["commp_nodes_per_s"] = commp["commp_nodes_per_s"]
    result["sha256_64b_per_s_baseline"] = commp["baseline_sha256_64b_per_s"]

    say("Poseidon")
    rates = bench_poseidon.measure(poseidon_seconds)["arities"]
    result["poseidon_per_s"] = {arity: r["hashes_per_s"] for arity, r in rates.items()}

    with tempfile.TemporaryDirectory(prefix="bench-proofs-") as tmp:
        base, cache = Path(tmp), Path(tmp) / "parent-cache"
        say("2 KiB seals")
        parent_cache(Graph.for_proof(5), cache)
        _seal(base, "warm", 5, 99, cache, backend)          # compiles Poseidon
        runs = [_seal(base, f"s{n}", 5, n, cache, backend) for n in (1, 2, 3)]
        result["seal_2k_s"] = round(min(r["total"] for r in runs), 4)

        randomness = bytes(31) + b"\x01"
        refs = [post.SectorRef(n, str(runs[n - 1]["dir"])) for n in (1, 2)]
        times, verify_times = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            out = post.generate_window_post(5, randomness, refs, backend=backend)
            t1 = time.perf_counter()
            (part,) = out.partitions
            assert post.verify_window_post(seal_proof=5, randomness=randomness,
                                           sectors=part.sectors, proof=part.proof)
            times.append(t1 - t0)
            verify_times.append(time.perf_counter() - t1)
        result["post_2k_partition_s"] = round(min(times), 4)
        result["post_2k_partition_verify_s"] = round(min(verify_times), 4)

        t0 = time.perf_counter()
        c1 = seal.commit1(runs[0]["dir"], bytes(32), backend=backend)
        result["c1_2k_s"] = round(time.perf_counter() - t0, 4)
        result["c1_2k_proof_bytes"] = len(c1.proof)

        if with_8m:
            say("8 MiB parent cache")
            t0 = time.perf_counter()
            parent_cache(Graph.for_proof(6), cache)
            result["parent_cache_8m_s"] = round(time.perf_counter() - t0, 2)
            say("PC1 labels against hashlib")
            result.update(_label_rates(cache))
            say("8 MiB seal (PC1 + PC2)")
            big = _seal(base, "s8m", 6, 1, cache, backend)
            result["seal_8m_s"] = round(big["total"], 2)
            result["pc1_8m_s"] = round(big["pc1"], 2)
            result["pc2_8m_s"] = round(big["pc2"], 2)
            say("8 MiB PC2 again on 2 processes")
            one = _pc2_files(big["dir"])
            t0 = time.perf_counter()
            seal.precommit2(big["dir"], backend=backend, procs=2)
            result["pc2_8m_2_procs_s"] = round(time.perf_counter() - t0, 2)
            result["pc2_speedup_2_procs"] = round(big["pc2"] / result["pc2_8m_2_procs_s"], 2)
            assert _pc2_files(big["dir"]) == one, "PC2 on 2 processes wrote other files"
            t0 = time.perf_counter()
            out = post.generate_window_post(6, randomness, [post.SectorRef(1, str(big["dir"]))],
                                            backend=backend)
            result["post_8m_sector_s"] = round(time.perf_counter() - t0, 3)
            assert not out.skipped
            say("8 MiB SnapDeals: the sealed sector updated with 8 MiB of data, and proven")
            t0 = time.perf_counter()
            data = os.urandom(8 * (1 << 20) // 128 * 127)
            snap.encode(big["dir"], data, base / "s8m-snap", backend=backend)
            result["snap_8m_encode_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            snap.prove(base / "s8m-snap", big["dir"], backend=backend)
            result["snap_8m_prove_s"] = round(time.perf_counter() - t0, 2)
            result["snap_8m_vs_seal"] = round(result["snap_8m_encode_s"] / result["seal_8m_s"], 3)
        else:
            result["seal_8m_s"] = None
        if with_512m:
            result.update(_seal_512m(base, cache, backend, randomness, say))
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    return result


def table(result: dict) -> str:
    width = max(map(len, result))
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"arity {k}: {v:.0f}/s" for k, v in value.items())
        lines.append(f"{key:<{width}}  {value}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--no-8m", dest="with_8m", action="store_false", help="skip the 8 MiB seal")
    parser.add_argument("--quick", action="store_true", help="skip the 512 MiB seal and proof")
    parser.add_argument("--backend", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--commp-mib", type=int, default=16, help="CommP payload (padded MiB)")
    parser.add_argument("--poseidon-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = measure(args.backend, args.with_8m, args.commp_mib, args.poseidon_seconds,
                     progress=lambda m: print(f"[{time.perf_counter() - start:6.1f}s] {m}",
                                              file=sys.stderr), with_512m=not args.quick)
    if args.json:
        print(table(result), file=sys.stderr)
        print(json.dumps(result))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
