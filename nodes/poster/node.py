"""The poster node's shell: a bus Peer, the chain (BusChainAPI), the core, the store and
the prover.

One task owns the core: head changes (from `chain.head`) and the results of the work
the core asked for arrive on one channel and are handled in order. Database commands
(StoreProofs, RecordOutcome) run at once, before anything after them; the others start
tasks in the runner's name, which Abort cancels: each runs the command's procedure
(nodes.poster.procedures, where the decisions are) and answers what it asks. Messages
are sent once (MessageSender) and stored as the chain pooled them, so a restarted poster
finds them.
"""
from __future__ import annotations

import logging
import math
import pathlib
import time
from typing import Callable

import msgspec
import trio

from zqnode.bus.codec import ErrorCode
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import Peer, Refused, Request
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import CHAIN_RETRY_S, BusChainAPI, MessageSender, until_answered
from zqnode.nodes.chain.policy import policy as policy_named
from zqnode.nodes import observe
from zqnode.nodes.identity import NodeIdentity
from zqnode.nodes.wire import poster as W
from zqnode.nodes.poster import procedures
from zqnode.nodes.poster.checker import SectorChecker, SectorLocator, StorageLocator
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.core import Batch, PosterCore, Runner
from zqnode.nodes.poster.events import (
    Abort, Command, DeclareFaults, DeclareRecoveries, Event, HeadChanged, MinerInfo, MinerTracked,
    ProveFailed, RecordOutcome, SkippedSector, StoreProofs, Tip)
from zqnode.nodes.poster.procedures import reason as _reason
from zqnode.nodes.poster.prover import PartitionInput, Prover, ProveRequest, SectorInput, make_prover
from zqnode.nodes.poster.store import PosterStore
from zqnode.nodes.poster import views
from zqnode.proofs import cid as cids

log = logging.getLogger("zqnode.poster")



class PosterStartError(ValueError):
    pass


class PosterNode:
    def __init__(self, me: NodeIdentity, cfg: PosterConfig, *,
                 prover: Prover | None = None, checker: SectorChecker | None = None,
                 locator: SectorLocator | None = None,
                 trace: Callable[[Event | Command], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.me, self.pcfg, self.clock = me, cfg, clock
        self.checker = checker or SectorChecker(timeout_s=self.pcfg.check_timeout_s,
                                                parallel=self.pcfg.check_parallel)
        self.locator = locator or StorageLocator(self.pcfg.storage)
        self.trace = trace
        self.peer = Peer(name=me.name, role="poster", cfg=me.bus)
        self.prover = prover or make_prover(self.pcfg.prover, self.peer)
        for kind, handler in self._handlers().items():
            self.peer.on(kind, handler)
        self.peer.allow({W.PosterGetInfo: ANYONE, W.PosterListDeadlines: ANYONE,
                         W.PosterGetDeadline: ANYONE, W.PosterListFaults: ANYONE,
                         W.PosterCheckDeadline: ADMIN})
        self.chain = BusChainAPI(self.peer, timeout=self.pcfg.chain_timeout_s)
        self.core: PosterCore | None = None
        self.store: PosterStore | None = None
        self.network = ""
        self.refused = 0               # events the core refused (bugs): each logged, counted
        self._comm_r: dict[tuple[int, int], tuple[bytes, int]] = {}    # -> (comm_r, the head it was read at)
        self._live: set[str] = set()
        self._scopes: dict[str, set[trio.CancelScope]] = {}
        self._head_seen = trio.Event()
        self._send: trio.MemorySendChannel | None = None
        self._nursery: trio.Nursery | None = None
        observe.poster(self)

    # -- start-up -------------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        repo = pathlib.Path(self.me.repo)
        repo.mkdir(parents=True, exist_ok=True)
        self.store = PosterStore(repo / "poster.sqlite")
        self.sender = MessageSender(self.chain, self.store)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.peer.run)
                await self._start_core()
                self._send, receive = trio.open_memory_channel(math.inf)
                nursery.start_soon(self._follow_head)
                task_status.started(self)
                async for event in receive:
                    self._handle(event)
        finally:
            self.prover.close()
            self.store.close()

    async def _start_core(self) -> None:
        info = await until_answered(self.chain.info, log, PosterStartError)
        self.network = info.network
        self.core = PosterCore(policy_named(info.network), self.pcfg)
        for actor in self.pcfg.miners or info.miners:
            m = await until_answered(lambda: self.chain.miner(actor), log, PosterStartError)
            sender = self.pcfg.address or m.worker
            if sender != m.worker and sender not in m.control:
                raise PosterStartError(
                    f"[poster] address {sender} is neither the worker ({m.worker}) nor a control "
                    f"address ({', '.join(m.control) or 'none'}) of f0{m.actor_id}")
            self._handle(MinerTracked(cause="config", miner=MinerInfo(
                actor_id=m.actor_id, sender=sender, seal_proof=m.seal_proof,
                period_offset=m.period_offset, partition_sectors=m.partition_sectors)))
        log.info("proving for %s on %s with the %s prover",
                 ", ".join(f"f0{m}" for m in self.core.miners) or "no miner", self.network,
                 self.prover.name)

    async def _follow_head(self) -> None:
        while True:
            try:
                async with self.chain.notify() as updates:
                    async for u in updates:
                        self._forget_comm_r(u)
                        self._send.send_nowait(HeadChanged(
                            cause=f"head {u.head.epoch}",
                            reverted=[Tip(t.epoch, t.key) for t in u.reverted],
                            applied=[Tip(t.epoch, t.key) for t in u.applied], snapshot=u.current))
            except Exception as e:
                log.warning("following the chain head: %s; again in %.1fs", _reason(e), CHAIN_RETRY_S[0])
                await trio.sleep(CHAIN_RETRY_S[0])

    # -- the core's loop ---------------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if self.trace:
            self.trace(event)
        try:
            commands = self.core.handle(event, self.clock())
        except ValueError as e:
            self.refused += 1
            log.error("poster core refused %s: %s", type(event).__name__, e)
            return
        for cmd in commands:
            if self.trace:
                self.trace(cmd)
            self._execute(cmd)
        if isinstance(event, HeadChanged):        # message waiters look again
            self._head_seen.set()
            self._head_seen = trio.Event()

    def _execute(self, cmd: Command) -> None:
        if isinstance(cmd, (DeclareFaults, DeclareRecoveries)):
            observe.post_declared(self.me.name, cmd.miner, "faults" if isinstance(cmd, DeclareFaults)
                                  else "recoveries", sum(len(d.sectors) for d in cmd.declarations))
        if isinstance(cmd, StoreProofs):
            self.store.save_proofs(cmd)
        elif isinstance(cmd, RecordOutcome):
            o = cmd.outcome
            self.store.save_outcome(o)
            observe.post_outcome(self.me.name, o.miner, o.status, len(o.skipped))
            (log.warning if o.status in ("missed", "unconfirmed") else log.info)(
                "f0%d deadline %d [%d, %d): %s", o.miner, o.index, o.open, o.close, o.status,
                extra={"cause": cmd.cause})
            if o.open - 2 * self.core.policy.proving_period > 0:
                self.store.prune(o.open - 2 * self.core.policy.proving_period)
        elif isinstance(cmd, Abort):
            log.info("%s: stopped: %s", cmd.cause, cmd.reason, extra={"cause": cmd.cause})
            self._live.discard(cmd.cause)
            for scope in self._scopes.pop(cmd.cause, ()):
                scope.cancel()
        else:
            self._live.add(cmd.cause)
            self._nursery.start_soon(self._in_runner, cmd)

    async def _in_runner(self, cmd: Command) -> None:
        runner = cmd.cause
        if runner not in self._live:
            return                                  # aborted before this task started
        observe.set_cause(runner)                   # this runner's log lines
        result = None
        with trio.CancelScope() as scope:
            self._scopes.setdefault(runner, set()).add(scope)
            try:
                result = await self._run(procedures.procedure(self.core, cmd))
            finally:
                scopes = self._scopes.get(runner)
                if scopes is not None:
                    scopes.discard(scope)
                    if not scopes:
                        del self._scopes[runner]
        if isinstance(result, ProveFailed):
            log.warning("%s batch %d attempt %d: %s", cmd.cause, cmd.batch, cmd.attempt, result.reason)
        if result is not None and runner in self._live:
            self._send.send_nowait(result)

    # -- the work ---------------------------------------------------------------------------------------
    async def _run(self, proc: procedures.Procedure) -> Event:
        """Run a procedure (nodes.poster.procedures) to its event, answering what it asks;
        an answer that fails is thrown into it."""
        answer, error = None, None
        while True:
            try:
                ask = proc.send(answer) if error is None else proc.throw(error)
            except StopIteration as done:
                return done.value
            try:
                answer, error = await self._answer(ask), None
            except Exception as e:
                log.info("%s: %s", type(ask).__name__, _reason(e))
                answer, error = None, e

    async def _answer(self, ask: procedures.Ask):
        """What a procedure asks, from the chain, the store, the checker and the prover."""
        if isinstance(ask, procedures.Pause):
            return await trio.sleep(ask.seconds)
        if isinstance(ask, procedures.NextHead):
            return await self._head_seen.wait()
        if isinstance(ask, procedures.Randomness):
            return await self.chain.randomness(ask.tag, ask.epoch, ask.entropy)
        if isinstance(ask, procedures.PartitionsOf):
            return await self.chain.partitions(ask.miner, ask.deadline)
        if isinstance(ask, procedures.StoredProofsOf):
            return self.store.stored_batches(ask.miner, ask.open, ask.randomness)
        if isinstance(ask, procedures.Lookup):
            return await self.chain.lookup(ask.msg_id)
        if isinstance(ask, procedures.MarkMessage):
            return self.store.set_status(ask.msg_id, ask.status, ask.reason)
        if isinstance(ask, procedures.Check):
            sectors = [await self._sector(ask.miner, n) for n in ask.sectors]
            return await self.checker.check(ask.seal_proof, sectors)
        if isinstance(ask, procedures.Prove):
            parts = [PartitionInput(index=p.index,
                                    sectors=[await self._sector(ask.miner, n) for n in p.sectors])
                     for p in ask.partitions]
            return await observe.post_prove(self.me.name, ask.miner, self.prover.prove(ProveRequest(
                miner=ask.miner, seal_proof=ask.seal_proof, randomness=ask.randomness, partitions=parts)))
        if isinstance(ask, procedures.Push):
            return await self._push(ask)
        raise AssertionError(f"no answer to {ask!r}")

    def _forget_comm_r(self, u) -> None:
        """comm_r values read at a reverted epoch, or before a snapshot, may be gone (a
        SnapDeals update the reorg took back): read again."""
        if u.current:
            self._comm_r.clear()
        elif u.reverted:
            lowest = min(t.epoch for t in u.reverted)
            self._comm_r = {k: v for k, v in self._comm_r.items() if v[1] < lowest}

    async def _sector(self, miner: int, number: int) -> SectorInput:
        """The sector's comm_r on chain (SnapDeals changes it) and where its files are. A
        value read recently enough is kept: an update cannot land while the sector's
        deadline is the current or the next, so one read at most window - lookback epochs
        before a proof is the proof's; and a released CC replica is a finality past it."""
        p = self.core.policy
        head = self.core.head.epoch if self.core.head else -1
        comm_r, read_at = self._comm_r.get((miner, number), (b"", -1))
        if not comm_r or not 0 <= head - read_at <= min(p.challenge_window - p.challenge_lookback, p.chain_finality):
            view = await self.chain.sector(miner, number)
            if view is None:
                raise LookupError(f"the chain has no sector {number} of f0{miner}")
            comm_r = cids.parse_sealed_cid(view.sealed_cid)
            self._comm_r[(miner, number)] = (comm_r, head)
        return SectorInput(number=number, comm_r=comm_r, path=self.locator.locate(miner, number))

    async def _push(self, ask: procedures.Push) -> str:
        """Send a message (MessageSender), stored as it is pooled."""
        def record(msg: M.Message) -> None:
            self.store.add_message(msg_id=msg.id, kind=ask.kind, miner=ask.miner, deadline=ask.deadline,
                                   open_=ask.open, randomness=ask.randomness, batch=ask.batch,
                                   nonce=msg.nonce, body=M.encode(msg))
        what = f"{ask.kind} f0{ask.miner} {ask.deadline} {ask.open} {ask.randomness.hex()} {ask.batch}"
        msg = M.Message.call(ask.sender, ask.miner, ask.params)
        return (await self.sender.send(msg, what, record)).id

    # -- RPC ------------------------------------------------------------------------------------------
    def _handlers(self) -> dict:
        return {W.PosterGetInfo: self._rpc_info, W.PosterListDeadlines: self._rpc_deadlines,
                W.PosterGetDeadline: self._rpc_deadline, W.PosterListFaults: self._rpc_faults,
                W.PosterCheckDeadline: self._rpc_check}

    def _ready(self) -> PosterCore:
        if self.core is None:
            raise Refused(ErrorCode.BUSY, "the poster is still starting (waiting for the chain)",
                          retry=True)
        return self.core

    def _miner(self, miner: int) -> int:
        core = self._ready()
        if miner == 0:
            if len(core.miners) != 1:
                raise Refused(ErrorCode.INVALID, f"this poster proves for "
                              f"{', '.join(f'f0{m}' for m in core.miners) or 'no miner'}: name one")
            return next(iter(core.miners))
        if miner not in core.miners:
            raise Refused("not_found", f"this poster does not prove for f0{miner}")
        return miner

    def _index(self, index: int) -> int:
        n = self._ready().policy.period_deadlines
        if not 0 <= index < n:
            raise Refused(ErrorCode.INVALID, f"deadline index {index} out of range 0..{n - 1}")
        return index

    async def _rpc_info(self, req: Request) -> W.PosterInfo:
        core = self._ready()
        miners = []
        for mid, m in sorted(core.miners.items()):
            info = await self.chain.deadline(mid)
            kept = self.store.outcomes(mid, limit=2 * core.policy.period_deadlines)
            counts = {s: sum(o.status == s for o in kept)
                      for s in ("proven", "missed", "unconfirmed", "empty")}
            miners.append(W.MinerSummary(
                actor_id=mid, sender=m.sender, seal_proof=m.seal_proof, current=info,
                runners=[runner_view(r) for r in _runners_of(core, mid)], **counts))
        return W.PosterInfo(node=self.me.name, network=self.network,
                            head=core.head.epoch if core.head else -1, prover=self.prover.name,
                            config=msgspec.to_builtins(self.pcfg), miners=miners)

    async def _rpc_deadlines(self, req: Request) -> W.PosterDeadlines:
        mid = self._miner(req.body.miner)
        core = self.core
        last = {}
        for o in reversed(self.store.outcomes(mid, limit=core.policy.period_deadlines)):
            last[o.index] = o.status

        def runner(i: int) -> str:
            r = core.runner_for(mid, i)
            return r.state if r else ""
        return await views.deadlines(self.chain, core.policy, mid, runner, last)

    async def _rpc_deadline(self, req: Request) -> W.PosterDeadline:
        mid, index = self._miner(req.body.miner), self._index(req.body.index)
        when = views.window(self.core.policy, await self.chain.deadline(mid), index)
        r = self.core.runner_for(mid, index)
        outcomes = self.store.outcomes(mid, index, limit=4)
        shown = r.dl.open if r else outcomes[0].open if outcomes else when.open
        return W.PosterDeadline(miner=mid, info=when, chain=await self.chain.partitions(mid, index),
                                runner=runner_view(r) if r else None, outcomes=outcomes,
                                messages=self.store.messages(mid, shown))

    async def _rpc_faults(self, req: Request) -> W.PosterFaults:
        mid = self._miner(req.body.miner)
        reasons: dict[int, str] = {}
        for o in reversed(self.store.outcomes(mid, limit=2 * self.core.policy.period_deadlines)):
            reasons.update((s.number, s.reason) for s in (*o.declared, *o.skipped))
        skipped = []
        for r in _runners_of(self.core, mid):
            reasons.update(r.declared)
            reasons.update(r.skip)
            skipped += [SkippedSector(n, why) for n, why in sorted(r.skip.items())]
        rows = await views.faults(self.chain, self.core.policy, mid, reasons)
        return W.PosterFaults(miner=mid, faults=rows, skipped=skipped)

    async def _rpc_check(self, req: Request) -> W.PosterCheckReport:
        mid, index = self._miner(req.body.miner), self._index(req.body.index)
        view = await self.chain.partitions(mid, index)
        where = [(p, n) for p in view.partitions for n in p.sectors]
        sectors = [await self._sector(mid, n) for _, n in where]
        failed = await self.checker.check(self.core.miners[mid].seal_proof, sectors)
        out = []
        for p, n in where:
            state = ("recovering" if n in p.recoveries else "faulty" if n in p.faults
                     else "unproven" if n in p.unproven else "active")
            out.append(W.SectorCheck(number=n, partition=p.index, state=state, ok=n not in failed,
                                     reason=failed.get(n, "")))
        return W.PosterCheckReport(miner=mid, index=index, sectors=out)


def _runners_of(core: PosterCore, miner: int) -> list[Runner]:
    return sorted((r for r in core.runners.values() if r.miner == miner), key=lambda r: r.dl.open)


def _batch_view(b: Batch) -> W.BatchView:
    return W.BatchView(index=b.index, partitions=list(b.partitions), state=b.state, attempt=b.attempt,
                       msg_id=b.msg_id, messages=list(b.messages))


def runner_view(r: Runner) -> W.RunnerView:
    return W.RunnerView(
        id=r.id, index=r.dl.index, open=r.dl.open, close=r.dl.close, challenge=r.dl.challenge,
        state=r.state, randomness=r.randomness,
        batches=[_batch_view(b) for _, b in sorted(r.batches.items())],
        skipped=[SkippedSector(n, why) for n, why in sorted(r.skip.items())],
        declarations=[W.DeclarationView(ref=d.ref, state=d.state, declarations=d.declarations,
                                        messages=list(d.messages)) for d in r.decls.values()],
        notes=list(r.notes))

