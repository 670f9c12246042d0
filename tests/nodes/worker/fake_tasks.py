"""A quick stand-in task table for tests (`WorkerConfig(table="tests.nodes.worker.fake_tasks")`,
importable from the repository's root): the same task types, params and result structs as
the real one, with hashes instead of proofs. Each stage records itself in the sector's `fake.json`
and refuses to run before the stage it follows, so a test notices work sent to a worker
that lacks the sector's files (a fetch not done). AP fails on a piece starting with
b"fail" (a failing task for tests).
"""
from __future__ import annotations

import hashlib
import json

from zqnode.nodes.wire import params as P
from zqnode.nodes.worker.task import TaskContext

FOLLOWS = {"AP": None, "PC1": "AP", "PC2": "PC1", "C1": "PC2", "FIN": "PC2", "UNS": "PC2",
           "WDP": "PC2"}


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _stages(ctx: TaskContext) -> list[str]:
    path = ctx.sector_dir / "fake.json"
    return json.loads(path.read_text()) if path.exists() else []


def _record(ctx: TaskContext, task: str) -> None:
    done = _stages(ctx)
    need = FOLLOWS[task]
    if need is not None and need not in done:
        raise ValueError(f"fake {task} of sector {ctx.number}: no {need} here (have {done})")
    ctx.sector_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.sector_dir / ".fake.json.tmp"
    tmp.write_text(json.dumps([*done, task] if task not in done else done))
    tmp.replace(ctx.sector_dir / "fake.json")


def _sector(ctx: TaskContext) -> bytes:
    return f"{ctx.miner}/{ctx.number}".encode()


def add_piece(ctx: TaskContext, p: P.APParams) -> P.APResult:
    if p.piece.startswith(b"fail"):
        raise ValueError("fake AP: asked to fail")
    _record(ctx, "AP")
    (ctx.sector_dir / "unsealed").write_bytes(p.piece)
    return P.APResult(comm_p=_h(p.piece), payload_size=len(p.piece), padded_size=len(p.piece),
                      offset=0)


def precommit1(ctx: TaskContext, p: P.PC1Params) -> P.PC1Result:
    _record(ctx, "PC1")
    data = (ctx.sector_dir / "unsealed").read_bytes()
    return P.PC1Result(comm_d=_h(b"d", data), replica_id=_h(b"r", _sector(ctx), p.ticket))


def precommit2(ctx: TaskContext, p: P.PC2Params) -> P.PC2Result:
    _record(ctx, "PC2")
    d = _h(b"d", (ctx.sector_dir / "unsealed").read_bytes())
    return P.PC2Result(comm_d=d, comm_r=_h(b"R", d, _sector(ctx)), comm_c=_h(b"c", d),
                       comm_r_last=_h(b"l", d))


def commit1(ctx: TaskContext, p: P.C1Params) -> P.C1Result:
    _record(ctx, "C1")
    return P.C1Result(proof=_h(b"proof", _sector(ctx), p.seed), challenges=[[1, 2]])


def finalize(ctx: TaskContext, p: P.FINParams) -> P.FINResult:
    _record(ctx, "FIN")
    return P.FINResult(removed=[])


def unseal(ctx: TaskContext, p: P.UNSParams) -> P.UNSResult:
    _record(ctx, "UNS")
    return P.UNSResult(data=(ctx.sector_dir / "unsealed").read_bytes())


def window_post(ctx: TaskContext, p: P.WDPParams) -> P.WDPResult:
    _record(ctx, "WDP")
    return P.WDPResult(partitions=[P.WDPPartition(index=0, sectors=p.sectors,
                                                  proof=_h(b"post", p.randomness))], skipped=[])


TASKS = {"AP": add_piece, "PC1": precommit1, "PC2": precommit2, "C1": commit1,
         "FIN": finalize, "UNS": unseal, "WDP": window_post}
