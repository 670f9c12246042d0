"""A small sealing driver: AP -> PC1 -> PC2 -> C1 for a few sectors through any
requester (`zqnode sealing run-pipeline`). It is a test and demo driver, NOT the sector
state machine (no chain, no persistence of its own, no failure handling beyond
reporting): tickets, seeds and pieces are derived from the sector number.

`hold(task, sector, work_id)`, when given, is awaited between a result's arrival and
its consumption, so a test can kill the manager exactly there. After a hold the driver
asks `do` again, as a requester that restarted would, and checks it gets the same
WorkID and the same result back at once.
"""
from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from zqnode.nodes.manager.api import Requester
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire import params as P
from zqnode.proofs.params import seal_proof as lookup_seal_proof

Hold = Callable[[str, SectorRef, str], Awaitable[bool]]   # True: it held


class PipelineError(Exception):
    pass


def derived(kind: str, miner: int, number: int, size: int = 32) -> bytes:
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"zqnode/{kind}/{miner}/{number}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def piece_for(miner: int, number: int, sector_size: int) -> bytes:
    """A piece filling the sector (its unpadded capacity, 127/128 of the size)."""
    return derived("piece", miner, number, sector_size // 128 * 127)


async def _step(req: Requester, task: str, params, sector: SectorRef, size: int,
                hold: Hold | None, log: Callable[[str], None]):
    wid = await req.do(task, params, sector, size)
    log(f"{task} s-{sector.miner}-{sector.number} asked: {wid}")
    blob = await req.wait(wid)
    log(f"{task} s-{sector.miner}-{sector.number} returned: {wid}")
    if hold is not None and await hold(task, sector, wid):
        again = await req.do(task, params, sector, size)
        if again != wid:
            raise PipelineError(f"{task}: asked again after the hold, got work {again}, not {wid}")
        if await req.wait(again) != blob:
            raise PipelineError(f"{task}: the stored result changed across the hold")
        log(f"{task} s-{sector.miner}-{sector.number} asked again: same work, same result")
    await req.consume(wid)
    return P.decode_result(task, blob)


async def seal_sector(req: Requester, miner: int, number: int, seal_proof: str | int, *,
                      hold: Hold | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    proof = lookup_seal_proof(seal_proof)
    size = proof.sector_size
    sector = SectorRef(miner=miner, number=number)
    ticket, seed = derived("ticket", miner, number), derived("seed", miner, number)
    ap = await _step(req, "AP", P.APParams(seal_proof=proof.id, piece=piece_for(miner, number, size)),
                     sector, size, hold, log)
    pc1 = await _step(req, "PC1", P.PC1Params(seal_proof=proof.id, ticket=ticket), sector, size,
                      hold, log)
    pc2 = await _step(req, "PC2", P.PC2Params(ticket=ticket), sector, size, hold, log)
    if pc2.comm_d != pc1.comm_d:
        raise PipelineError(f"s-{miner}-{number}: PC2's comm_d differs from PC1's")
    c1 = await _step(req, "C1", P.C1Params(seed=seed, ticket=ticket), sector, size, hold, log)
    return {"miner": miner, "sector": number, "seal_proof": proof.id, "sector_size": size,
            "comm_p": ap.comm_p.hex(), "comm_d": pc2.comm_d.hex(), "comm_r": pc2.comm_r.hex(),
            "ticket": ticket.hex(), "seed": seed.hex(), "proof": c1.proof.hex()}
