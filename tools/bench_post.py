"""How long one WindowPoSt partition's worth of sectors takes to prove on the CPU, and how
much of it is reading the sector files.

    python tools/bench_post.py [--sectors 2349] [--backend cpu] [--json]

Setup (not timed): one 2 KiB sector is sealed (proofs.seal), then copied under new sector
numbers (each copy's sector.json renumbered), so every copy is a valid sealed sector with
its own challenges. Then, with the files in the page cache:

- `partition_seconds`: proofs.post.generate_window_post over all the sectors (10
  challenges each: leaves, tree-r-last paths, p_aux against comm_r), as the poster's
  LocalProver runs it, best of --repeat;
- `read_seconds`: the same files read without any hashing (metadata, p_aux, the stored
  tree-r-last rows, the sealed file), best of --repeat; `read_share` is their ratio.

2349 is a 32 GiB partition's sector count (2 KiB sectors make partitions of 2, so the
library splits the call; the total work is what is timed). Prints one JSON object with
--json, else a short table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import msgspec

from zqnode.proofs import post, seal
from zqnode.proofs import sector as layout

MINER, SEAL_PROOF = 1000, 5            # StackedDrg2KiBV1_1
RAW_RANDOMNESS = bytes(range(32))


def make_sectors(base: Path, count: int, backend: str) -> list[str]:
    first = base / "s-1"
    seal.add_piece(first, (bytes(range(256)) * 8)[:2032], seal_proof=SEAL_PROOF, miner=MINER,
                   sector=1, backend=backend)
    seal.precommit1(first, bytes([7]) * 32, parent_cache_dir=base / "parents", backend=backend)
    seal.precommit2(first, backend=backend)
    dirs = [str(first)]
    meta = layout.load_meta(first)
    for n in range(2, count + 1):
        d = base / f"s-{n}"
        shutil.copytree(first, d, ignore=shutil.ignore_patterns("*layer*", "unsealed", "*tree-c*",
                                                                 "*tree-d*"))   # PoSt reads none
        layout.save_meta(d, msgspec.structs.replace(meta, sector=n))
        dirs.append(str(d))
    return dirs


def read_everything(dirs: list[str]) -> int:
    """The bytes the prover reads, read plainly: returns how many."""
    total = 0
    for d in dirs:
        for path in (layout.meta_path(d), layout.cache_file(d, layout.P_AUX),
                     layout.cache_file(d, layout.TREE_R_LAST), layout.sealed_path(d)):
            with open(path, "rb") as f:
                total += len(f.read())
    return total


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sectors", type=int, default=2349)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.sectors < 1 or args.repeat < 1:
        ap.error("--sectors and --repeat must be >= 1")

    with tempfile.TemporaryDirectory(prefix="bench-post-") as tmp:
        t = time.perf_counter()
        dirs = make_sectors(Path(tmp), args.sectors, args.backend)
        setup = time.perf_counter() - t
        refs = [post.SectorRef(n + 1, d) for n, d in enumerate(dirs)]
        randomness = post.canonical_randomness(RAW_RANDOMNESS)
        read_everything(dirs)                                  # warm the page cache
        prove_s, result = best_of(args.repeat, lambda: post.generate_window_post(
            SEAL_PROOF, randomness, refs, backend=args.backend))
        read_s, nbytes = best_of(args.repeat, lambda: read_everything(dirs))
    if result.skipped:
        raise SystemExit(f"bench sectors were skipped: {result.skipped[:3]}")
    out = {
        "sectors": args.sectors,
        "challenges_per_sector": 10,
        "backend": result.partitions[0].backend,
        "partitions_made": len(result.partitions),
        "partition_seconds": round(prove_s, 4),
        "read_seconds": round(read_s, 4),
        "read_share": round(read_s / prove_s, 4),
        "sectors_per_second": round(args.sectors / prove_s, 1),
        "bytes_read": nbytes,
        "setup_seconds": round(setup, 2),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}  {v}")
    return out


if __name__ == "__main__":
    main()
