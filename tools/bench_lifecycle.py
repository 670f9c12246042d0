"""Messages per sector with and without batching, on an in-process devnet.

    python tools/bench_lifecycle.py [--json] [--sectors 16] [--epoch-seconds 0.2]

Runs `zqnode devnet` in this process twice (real 2 KiB proofs, two workers, no poster),
once with PreCommit batching and commit aggregation on (`Devnet(batching=True)`: one
batch of every sector, sent when full or after 60 s) and once off, each until every
sector is Proving, and counts the PreCommit and ProveCommit messages that landed on its
chain and the gas they used (nodes.chain.funds' schedule). Prints one JSON object with
--json (`sectors`, `precommit_messages`, `provecommit_messages`, `sealing_gas`, their
`_unbatched` counts, and each run's seconds), else a table.
"""
from __future__ import annotations

import argparse
import json
import tempfile

import trio

from zqnode.nodes import devnet as dn
from zqnode.nodes.sealing import states as S

PRECOMMITS = ("PreCommitSector", "PreCommitSectorBatch2")
PROVECOMMITS = ("ProveCommitSector", "ProveCommitSectors3")


def landed(chain, methods) -> int:
    return sum(1 for ts in chain.tipsets for m, r in zip(ts.messages, ts.receipts)
               if m.method in methods and r.exit_code == 0)


def gas(chain, methods) -> int:
    return sum(r.gas_used for ts in chain.tipsets for m, r in zip(ts.messages, ts.receipts)
               if m.method in methods)


async def one_run(sectors: int, epoch_seconds: float, batching: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="zqnode-bench-lifecycle-") as base:
        net = dn.Devnet(base=base, bus=f"inproc://bench-lifecycle-{batching}", sectors=sectors,
                        epoch_seconds=epoch_seconds, workers=2, poster=False, batching=batching,
                        refresh=3600.0, say=lambda line: None)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            while not (len(net.sealing.core.sectors) >= sectors and all(
                    s.state == S.PROVING for s in net.sealing.core.sectors.values())):
                await trio.sleep(0.2)
            chain = net.chain.chain
            out = {"precommits": landed(chain, PRECOMMITS), "provecommits": landed(chain, PROVECOMMITS),
                   "gas": gas(chain, PRECOMMITS + PROVECOMMITS),
                   "seconds": round(trio.current_time() - started, 1), "epochs": chain.head.epoch}
            nursery.cancel_scope.cancel()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sectors", type=int, default=16)
    ap.add_argument("--epoch-seconds", type=float, default=0.2)
    args = ap.parse_args(argv)
    on = trio.run(one_run, args.sectors, args.epoch_seconds, True)
    off = trio.run(one_run, args.sectors, args.epoch_seconds, False)
    result = {"sectors": args.sectors,
              "precommit_messages": on["precommits"], "provecommit_messages": on["provecommits"],
              "precommit_messages_unbatched": off["precommits"],
              "provecommit_messages_unbatched": off["provecommits"],
              "messages_per_sector": round((on["precommits"] + on["provecommits"]) / args.sectors, 3),
              "messages_per_sector_unbatched": round((off["precommits"] + off["provecommits"]) / args.sectors, 3),
              "sealing_gas": on["gas"], "sealing_gas_unbatched": off["gas"],
              "seconds": on["seconds"], "seconds_unbatched": off["seconds"],
              "epochs": on["epochs"], "epochs_unbatched": off["epochs"]}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'':24} {'batched':>8} {'unbatched':>10}")
    for name, key in (("PreCommit messages", "precommit_messages"),
                      ("ProveCommit messages", "provecommit_messages"),
                      ("messages per sector", "messages_per_sector"), ("gas of those", "sealing_gas"),
                      ("seconds to Proving", "seconds"),
                      ("epochs to Proving", "epochs")):
        print(f"{name:24} {result[key]:>8} {result[key + '_unbatched']:>10}")
    print(f"({args.sectors} sectors of 2 KiB, {args.epoch_seconds:g} s epochs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
