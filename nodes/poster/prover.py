"""Who computes WindowPoSt proofs for the poster: one small interface, three kinds.

    proofs = await prover.prove(ProveRequest(miner=..., seal_proof=..., randomness=raw,
                                             partitions=[PartitionInput(index, sectors)]))

A `Prover` returns one PartitionProof per partition asked for: the proof of exactly the
sectors given, or (with no usable proof) the sectors it could not prove, each with a
reason, so the core can prove the batch again without them. Anything else it cannot do
it raises (the core notes the reason and retries after a back-off until Close).

- `LocalProver`: proofs.post.generate_window_post in a worker thread or in a process
  pool (`mode`), so the event loop never waits on the proving; each proof is checked
  with proofs.post.verify_window_post before it is used (`verify`).
- `FakeProver`: proofs the chain's FAKE verifier accepts (devnets without sectors, tests).
- `SchedulerProver`: WDP tasks through the manager and the scheduler to workers, one
  per partition (the workers then need the sectors' files, or fetch them).

`randomness` is the chain's raw beacon draw; proofs.post wants it canonical
(rand[31] &= 0x3f), which LocalProver applies itself.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Callable, Protocol

import msgspec
import trio

from zqnode.nodes.poster.config import ProverConfig
from zqnode.nodes.poster.events import PartitionProof, SkippedSector


class ProverError(RuntimeError):
    pass


class SectorInput(msgspec.Struct, frozen=True):
    number: int
    comm_r: bytes
    path: str = ""                     # the sector's directory ("" if storage does not know it)


class PartitionInput(msgspec.Struct, kw_only=True):
    index: int
    sectors: list[SectorInput]         # ascending


class ProveRequest(msgspec.Struct, kw_only=True):
    miner: int
    seal_proof: int
    randomness: bytes                  # the chain's raw 32 bytes
    partitions: list[PartitionInput]


class Prover(Protocol):
    name: str

    async def prove(self, req: ProveRequest) -> list[PartitionProof]: ...

    def close(self) -> None: ...


_enc = msgspec.msgpack.Encoder()
_request = msgspec.msgpack.Decoder(ProveRequest)
_result = msgspec.msgpack.Decoder(list[PartitionProof])


def prove_with_proofs(request: bytes, backend: str, verify: bool) -> bytes:
    """proofs.post for every partition of a msgpack ProveRequest; msgpack list of
    PartitionProof out. Runs in a worker thread or process: plain bytes in and out."""
    from zqnode.proofs import post                    # the heavy import happens where the work runs
    req = _request.decode(request)
    randomness = post.canonical_randomness(req.randomness)
    out = []
    for part in req.partitions:
        refs = [post.SectorRef(s.number, s.path, s.comm_r) for s in part.sectors]
        result = post.generate_window_post(req.seal_proof, randomness, refs, backend=backend)
        if result.skipped:
            proven = [n for p in result.partitions for n, _ in p.sectors]
            out.append(PartitionProof(index=part.index, proof=b"", proven=proven,
                                      skipped=[SkippedSector(n, why) for n, why in result.skipped]))
            continue
        if len(result.partitions) != 1:
            raise ProverError(f"partition {part.index}: proofs.post made {len(result.partitions)} "
                              f"partitions of {len(refs)} sectors, expected 1")
        made = result.partitions[0]
        if verify and not post.verify_window_post(seal_proof=req.seal_proof, randomness=randomness,
                                                  sectors=made.sectors, proof=made.proof):
            raise ProverError(f"partition {part.index}: the proof just made does not verify")
        out.append(PartitionProof(index=part.index, proof=made.proof,
                                  proven=[n for n, _ in made.sectors]))
    return _enc.encode(out)


class LocalProver:
    """Proves in this node: in a worker thread (`thread`) or a spawned process pool
    (`process`; the GIL then never slows the event loop). At most `parallel` requests
    run at once. A cancelled request is abandoned, not interrupted: its thread or
    process finishes the work and the result is dropped."""

    def __init__(self, mode: str = "thread", backend: str = "auto", verify: bool = True,
                 parallel: int = 1, prove_fn: Callable[[bytes, str, bool], bytes] = prove_with_proofs):
        if mode not in ("thread", "process"):
            raise ValueError(f"LocalProver mode must be thread or process, not {mode!r}")
        self.name = f"local-{mode}"
        self.mode, self.backend, self.verify = mode, backend, verify
        self.prove_fn = prove_fn
        self._limit = trio.CapacityLimiter(parallel)
        self._parallel = parallel
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def prove(self, req: ProveRequest) -> list[PartitionProof]:
        data = _enc.encode(req)
        async with self._limit:
            if self.mode == "thread":
                out = await trio.to_thread.run_sync(self.prove_fn, data, self.backend, self.verify,
                                                    abandon_on_cancel=True)
            else:
                future = self._executor().submit(self.prove_fn, data, self.backend, self.verify)
                try:
                    out = await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)
                finally:
                    future.cancel()            # not started yet: never starts
        return _result.decode(out)

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._parallel, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class FakeProver:
    """Proofs that nodes.chain.verifiers.FAKE accepts, from the sectors' comm_r alone.
    `seconds` of (mock) time per request; `fail(req)` may return a reason to raise;
    sectors in `skip` are reported skipped with their reason."""

    name = "fake"

    def __init__(self, *, seconds: float = 0.0, fail: Callable[[ProveRequest], str | None] | None = None,
                 skip: dict[int, str] | None = None):
        self.seconds, self.fail = seconds, fail
        self.skip = skip if skip is not None else {}
        self.requests: list[ProveRequest] = []

    async def prove(self, req: ProveRequest) -> list[PartitionProof]:
        from zqnode.nodes.chain.verifiers import fake_window_post_proof
        self.requests.append(req)
        if self.seconds:
            await trio.sleep(self.seconds)
        reason = self.fail(req) if self.fail else None
        if reason:
            raise ProverError(reason)
        out = []
        for part in req.partitions:
            skipped = [SkippedSector(s.number, self.skip[s.number]) for s in part.sectors
                       if s.number in self.skip]
            kept = [s for s in part.sectors if s.number not in self.skip]
            proof = b"" if skipped else fake_window_post_proof(
                seal_proof=req.seal_proof, randomness=req.randomness,
                sectors=[(s.number, s.comm_r) for s in kept])
            out.append(PartitionProof(index=part.index, proof=proof,
                                      proven=[s.number for s in kept], skipped=skipped))
        return out

    def close(self) -> None:
        pass


class SchedulerProver:
    """WindowPoSt as WDP tasks through the manager and the scheduler to workers (Lotus's
    WindowPoSt task type: order -5, so it goes before any sealing work in the queue). One
    task per partition, all of a batch at once; the manager's call tracker makes a
    repeated request (after a poster restart) return the stored result, not redo it."""

    name = "scheduler"

    def __init__(self, peer, manager: str = "@manager"):
        from zqnode.nodes.manager.api import BusRequester
        self.requester = BusRequester(peer, manager=manager)

    async def prove(self, req: ProveRequest) -> list[PartitionProof]:
        out: list[PartitionProof | None] = [None] * len(req.partitions)

        async def one(i: int, part: PartitionInput) -> None:
            out[i] = await self._prove_partition(req, part)
        async with trio.open_nursery() as nursery:
            for i, part in enumerate(req.partitions):
                nursery.start_soon(one, i, part)
        return out

    async def _prove_partition(self, req: ProveRequest, part: PartitionInput) -> PartitionProof:
        from zqnode.nodes.manager.api import run_task
        from zqnode.nodes.manager.errors import WorkAborted, WorkFailed
        from zqnode.proofs.params import seal_proof
        params, where = wdp_task(req.miner, req.seal_proof, req.randomness, part.index,
                                 [(s.number, s.comm_r) for s in part.sectors])
        try:
            res = await run_task(self.requester, "WDP", params, where,
                                 seal_proof(req.seal_proof).sector_size)
        except (WorkFailed, WorkAborted) as e:
            raise ProverError(f"partition {part.index}: WDP task: {e}") from None
        return wdp_proof(part.index, [s.number for s in part.sectors], res)

    def close(self) -> None:
        pass


def wdp_task(miner: int, seal_proof: int, randomness: bytes, index: int,
             sectors: list[tuple[int, bytes]]):
    """(WDPParams, SectorRef) of the WDP task proving partition `index` (`sectors`: number
    and comm_r each). The partition's first sector picks the worker (it holds it, or fetches
    the rest)."""
    from zqnode.nodes.wire.params import WDPParams
    from zqnode.nodes.wire.sectors import SectorRef
    return (WDPParams(seal_proof=seal_proof, randomness=randomness, sectors=sectors),
            SectorRef(miner=miner, number=sectors[0][0]))


def wdp_proof(index: int, sectors: list[int], res) -> PartitionProof:
    """Partition `index`'s proof from a WDP task's result (WDPResult), which may name only
    the partition's `sectors`: ProverError otherwise."""
    named = {n for n, _ in res.skipped} | {n for p in res.partitions for n, _ in p.sectors}
    if not named <= set(sectors):
        raise ProverError(f"partition {index}: the WDP result names sectors not in it: "
                          f"{sorted(named - set(sectors))[:8]}")
    if res.skipped:
        return PartitionProof(index=index, proof=b"",
                              proven=[n for p in res.partitions for n, _ in p.sectors],
                              skipped=[SkippedSector(n, why) for n, why in res.skipped])
    if len(res.partitions) != 1:
        raise ProverError(f"partition {index}: the WDP task made {len(res.partitions)} "
                          f"partitions of {len(sectors)} sectors, expected 1")
    made = res.partitions[0]
    return PartitionProof(index=index, proof=made.proof, proven=[n for n, _ in made.sectors])


def make_prover(cfg: ProverConfig, peer=None) -> Prover:
    if cfg.kind == "local":
        return LocalProver(mode=cfg.mode, backend=cfg.backend, verify=cfg.verify, parallel=cfg.parallel)
    if cfg.kind == "fake":
        return FakeProver()
    return SchedulerProver(peer)
