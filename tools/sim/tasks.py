"""The simulated task table: each task's result, computed from its params and the
sector's files on the worker, in no time; the worker holds the task for the profile's
duration (tools/sim/worker.py). The results are the real result structs, and the proofs
are the ones nodes.chain.verifiers.FAKE accepts, so the chain checks that each C1 was
made for the ticket, seed, comm_d and comm_r it sees, and each WindowPoSt for the
challenge randomness and the partition's sectors.

`SectorFiles` is what a worker has of a sector (like fake_tasks' fake.json): each stage
refuses to run without the stage before it, so work sent to a worker that never got
the sector's files fails loudly instead of simulating nonsense."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from zqnode.nodes.chain.verifiers import fake_seal_proof, fake_window_post_proof
from zqnode.nodes.wire import params as P
from zqnode.proofs import commp as commp_mod

FOLLOWS = {"AP": None, "PC1": None, "PC2": "PC1", "C1": "PC2", "FIN": "PC2", "UNS": "PC2"}


class SimTaskError(ValueError):
    pass


@dataclass
class SectorFiles:
    stages: list[str] = field(default_factory=list)
    ticket: bytes = b""
    comm_d: bytes = b""
    comm_r: bytes = b""

    def copy(self) -> SectorFiles:
        return SectorFiles(list(self.stages), self.ticket, self.comm_d, self.comm_r)


_zero_commd: dict[int, bytes] = {}


def cc_comm_d(sector_size: int) -> bytes:
    """comm_d of a committed-capacity sector (all zeros), as the sealing core expects."""
    if sector_size not in _zero_commd:
        _zero_commd[sector_size] = commp_mod.commd([], sector_size)
    return _zero_commd[sector_size]


def _h(*parts: bytes) -> bytes:
    digest = bytearray(hashlib.sha256(b"".join(parts)).digest())
    digest[31] &= 0x3F                  # a field element, as commitments are
    return bytes(digest)


def run(task: str, miner: int, number: int, sector_size: int, seal_proof: int, params: bytes,
        files: SectorFiles | None) -> tuple[bytes, SectorFiles | None]:
    """(msgpack of the result struct, the sector's files after it). Raises SimTaskError."""
    need = FOLLOWS.get(task)
    if need is not None and (files is None or need not in files.stages):
        have = files.stages if files else []
        raise SimTaskError(f"{task} of sector {number}: no {need} here (have {have})")
    p = P.decode_params(task, params)
    sector = b"%d/%d" % (miner, number)
    if task in FOLLOWS:
        files = files.copy() if files else SectorFiles()
        if task not in files.stages:
            files.stages.append(task)
    if task == "PC1":
        files.ticket, files.comm_d = p.ticket, cc_comm_d(sector_size)
        files.comm_r = _h(b"R", sector, p.ticket)
        result = P.PC1Result(comm_d=files.comm_d, replica_id=_h(b"r", sector, p.ticket))
    elif task == "PC2":
        result = P.PC2Result(comm_d=files.comm_d, comm_r=files.comm_r, comm_c=_h(b"c", files.comm_r),
                             comm_r_last=_h(b"l", files.comm_r))
    elif task == "C1":
        proof = fake_seal_proof(seal_proof=seal_proof, miner=miner, sector=number, ticket=files.ticket,
                                seed=p.seed, comm_d=files.comm_d, comm_r=files.comm_r)
        result = P.C1Result(proof=proof, challenges=[])
    elif task == "FIN":
        result = P.FINResult(removed=["layers", "tree-c"])
    elif task == "UNS":
        result = P.UNSResult(data=b"")
    elif task == "AP":
        result = P.APResult(comm_p=_h(b"p", p.piece), payload_size=len(p.piece),
                            padded_size=len(p.piece), offset=0)
    elif task == "WDP":
        sectors = [(n, c) for n, c in p.sectors]
        proof = fake_window_post_proof(seal_proof=p.seal_proof, randomness=p.randomness, sectors=sectors)
        result = P.WDPResult(partitions=[P.WDPPartition(index=0, sectors=sectors, proof=proof)], skipped=[])
    elif task == "GET":
        result = P.GETResult(files=list(files.stages) if files else [], size=sector_size)
    else:
        raise SimTaskError(f"the simulation has no {task} task")
    return P.encode(result), files
