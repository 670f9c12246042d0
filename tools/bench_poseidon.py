"""Poseidon hashing speed: the generated fast path against the textbook permutation.

    python tools/bench_poseidon.py            # readable table
    python tools/bench_poseidon.py --json     # one JSON object on stdout (table on stderr)

Rates are the best of several short runs, which is what a shared machine can measure
fairly; both implementations are measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time

from zqnode.proofs import poseidon as ps

ARITIES = (2, 8, 11)
# An 8 MiB sector's PC2: tree-c columns (2^18 arity-2 hashes), then tree-c and tree-r-last
# (each 2^15 + 2^12 + ... + 1 = 37449 arity-8 hashes).
PC2_8MIB = {2: 2 ** 18, 8: 2 * sum(8 ** k for k in range(6))}


def _best_rate(fn, rows, seconds: float, runs: int = 5) -> float:
    """Best hashes/s over `runs` timed passes of about seconds/runs each."""
    fn(*rows[0])
    best = 0.0
    for _ in range(runs):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / runs
        while True:
            for row in rows:
                fn(*row)
            count += len(rows)
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def measure(seconds: float) -> dict:
    rng = random.Random(1)
    result = {"python": platform.python_version(), "machine": platform.machine(),
              "seconds_per_measurement": seconds, "arities": {}}
    for arity in ARITIES:
        rows = [[rng.randrange(ps.P) for _ in range(arity)] for _ in range(16)]
        fast_fn = ps._compiled(arity)  # the function hash_ints calls, without input checks
        fast = _best_rate(fast_fn, rows, seconds)
        api = _best_rate(lambda *xs: ps.hash_ints(xs), rows, seconds / 2)
        textbook = _best_rate(lambda *xs: ps.reference_hash(xs), rows[:4], seconds / 2)
        level = b"".join(ps.int_to_word(x) for row in rows for x in row)
        words = _best_rate(lambda *_: ps.hash_words(level, arity), [()], seconds / 2) * len(rows)
        result["arities"][str(arity)] = {
            "hashes_per_s": round(fast, 1),
            "us_per_hash": round(1e6 / fast, 1),
            "hash_ints_per_s": round(api, 1),
            "hash_words_per_s": round(words, 1),
            "textbook_hashes_per_s": round(textbook, 1),
            "speedup_vs_textbook": round(fast / textbook, 2),
        }
    rates = result["arities"]
    result["pc2_8mib_estimate_s"] = round(
        sum(n / rates[str(a)]["hashes_per_s"] for a, n in PC2_8MIB.items()), 1)
    return result


def table(result: dict) -> str:
    lines = [f"Poseidon (BLS12-381 Fr), Python {result['python']} on {result['machine']}",
             f"{'arity':>5} {'fast h/s':>10} {'us/hash':>9} {'hash_ints':>10} "
             f"{'hash_words':>10} {'textbook h/s':>13} {'speedup':>8}"]
    for arity, r in result["arities"].items():
        lines.append(f"{arity:>5} {r['hashes_per_s']:>10.0f} {r['us_per_hash']:>9.1f} "
                     f"{r['hash_ints_per_s']:>10.0f} {r['hash_words_per_s']:>10.0f} "
                     f"{r['textbook_hashes_per_s']:>13.0f} {r['speedup_vs_textbook']:>7.2f}x")
    lines.append(f"8 MiB PC2 estimate ({PC2_8MIB[2]} arity-2 + {PC2_8MIB[8]} arity-8 hashes):"
                 f" {result['pc2_8mib_estimate_s']} s")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time spent measuring the fast path per arity (default 2)")
    args = parser.parse_args(argv)
    result = measure(args.seconds)
    if args.json:
        print(table(result), file=sys.stderr)
        print(json.dumps(result))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
