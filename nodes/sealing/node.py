"""The sealing state machine's shell, in the manager process: it owns the SQLite store, a
task per sector carrying out that sector's current command, the chain follower, and the
operator RPC (served on the manager's peer).

Every change goes the same way: the core handles an event and returns commands; `Save`
is committed at once (before anything else happens), the sector's older command is
cancelled if its step is gone, and the new command runs in its own task, whose answer
is the next event. Commands that fail for a reason outside the sector (the chain or the
manager does not answer) come back as TemporaryError: the core retries after a back-off.
At start every sector runs its current handler again; repeated task requests are
answered by the call tracker from what it stored.
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
import time
from typing import Callable

import msgspec
import trio

from zqnode.bus.codec import ErrorCode
from zqnode.bus.permissions import ADMIN, ANYONE
from zqnode.bus.peer import Peer, Refused, Request
from zqnode.bus.retry import backoff
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI, MessageSender, until_answered
from zqnode.nodes.chain.policy import policy as policy_named
from zqnode.nodes import observe
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import procedures
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import states as S
from zqnode.nodes.wire import chain as CW
from zqnode.nodes.wire import sealing as W
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.core import PAUSED, SealingCore, SealingError
from zqnode.nodes.sealing.sector import Piece, SectorInfo
from zqnode.nodes.sealing.store import SealingStore
from zqnode.nodes.sealing.tasks import TaskError, Tasks
from zqnode.proofs import cid as cids
from zqnode.proofs import commp as commp_mod
from zqnode.proofs.files import write_atomic

log = logging.getLogger("zqnode.sealing")

FAULT_CHECK_EPOCHS = 4                 # how often Proving sectors are looked up on chain


class SealingStartError(ValueError):
    pass


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _default_verify_seal(**kw) -> bool:
    from zqnode.proofs.porep import verify_seal
    return verify_seal(**kw)


def summary(s: SectorInfo) -> W.SectorSummary:
    return W.SectorSummary(number=s.number, state=s.state, kind=s.kind, paused=s.paused,
                           retries=s.retries, last_error=s.last_error, updated=s.updated,
                           created=s.created, pieces=len(s.deal_pieces()), pending=len(s.pending),
                           ticket_epoch=s.ticket_epoch, precommit_epoch=s.precommit_epoch,
                           seed_epoch=s.seed_epoch, commit_epoch=s.commit_epoch)


def plain(obj):
    """Builtin types with bytes as hex (for RPC answers and JSON)."""
    return E.hexed(msgspec.to_builtins(obj, builtin_types=(bytes,)))


class SealingService:
    """Runs beside the call tracker in the manager. `peer` is the manager's (the service
    adds its RPC handlers before the peer runs); with `own_peer` the service runs it."""

    def __init__(self, repo: str | pathlib.Path, cfg: SealingConfig, peer: Peer, tasks: Tasks, *,
                 own_peer: bool = False,
                 verify_seal: Callable[..., bool] | None = None,
                 clock: Callable[[], float] = time.time):
        self.scfg = cfg
        self.peer, self.tasks, self.own_peer = peer, tasks, own_peer
        self.verify_seal = verify_seal or _default_verify_seal
        self.clock = clock
        self.chain = BusChainAPI(peer, timeout=self.scfg.chain_timeout_s)
        self.repo = pathlib.Path(repo)
        self.core: SealingCore | None = None
        self.store: SealingStore | None = None
        self.worker = ""                   # the miner's worker address (sends messages)
        self.refused = 0                   # events the core refused (bugs): each logged, counted
        self._running: dict[int, tuple[int, trio.CancelScope]] = {}
        self._head = trio.Event()
        self._next_fault_check = 0
        self._nursery: trio.Nursery | None = None
        self.ready = trio.Event()          # set once the sectors are loaded and running
        for kind, handler in self._handlers().items():
            peer.on(kind, handler)
        # operators change sectors; anyone with a key may look
        peer.allow({W.SealingList: ANYONE, W.SealingStatus: ANYONE, W.SealingPledge: ADMIN,
                    W.SealingAddPiece: ADMIN, W.SealingResume: ADMIN, W.SealingRemove: ADMIN, W.SealingTerminate: ADMIN,
                    W.SealingExtend: ADMIN,
                    W.SealingRebuild: ADMIN, W.SealingUnseal: ADMIN, W.SealingSnapUp: ADMIN,
                    W.SealingAbortUpgrade: ADMIN})

    # -- start-up ---------------------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.store = SealingStore(self.repo / "sealing.sqlite")
        self.sender = MessageSender(self.chain, self.store)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.own_peer:
                    await nursery.start(self.peer.run)
                await self._start_core()
                nursery.start_soon(self._follow_head)
                restarted = self.core.restart(self.clock())
                self._execute(restarted)
                nursery.start_soon(self._tidy, restarted)
                self._due()                         # a pledge target starts here
                log.info("sealing for f0%d: %d sectors (%s)", self.core.miner, len(self.core.sectors),
                         self._counts() or "none")
                self.ready.set()
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self.store.close()

    async def _start_core(self) -> None:
        info = await until_answered(self.chain.info, log, SealingStartError)
        miner = await until_answered(lambda: self.chain.miner(self.scfg.miner), log, SealingStartError)
        self.worker = miner.worker
        self.store.check_setting("miner", str(miner.actor_id))
        self.store.check_setting("seal_proof", str(miner.seal_proof))
        core = SealingCore(miner=miner.actor_id, seal_proof=miner.seal_proof,
                           policy=policy_named(info.network), cfg=self.scfg)
        core.restore(self.store.sectors(), self.store.next_number(self.scfg.first_number))
        core.set_head(info.head.epoch)
        self.core = core

    def _counts(self) -> str:
        counts: dict[str, int] = {}
        for s in self.core.sectors.values():
            counts[s.state] = counts.get(s.state, 0) + 1
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))

    def pledge(self, count: int) -> list[int]:
        """New CC sectors (committed before this returns); their numbers."""
        numbers = []
        for _ in range(count):
            number, commands = self.core.pledge(self.clock())
            self._execute(commands)
            numbers.append(number)
        return numbers

    async def _tidy(self, restarted: list[C.Command]) -> None:
        """After a restart, let the call tracker forget results no sector needs any more
        (committed into a sector just before a kill, never consumed)."""
        tidy = getattr(self.tasks, "tidy", None)
        if tidy is None:
            return
        current = {c.sector: c for c in restarted if isinstance(c, C.RunTask)}
        for number, s in sorted(self.core.sectors.items()):
            if s.state in (S.REMOVED, S.NEW):
                continue
            try:
                await tidy(self.core.miner, number, current.get(number))
            except Exception as e:
                log.warning("tidying sector %d's results: %s", number, _reason(e),
                            extra={"cause": self.core.cause_of(number)})

    # -- the chain's head ----------------------------------------------------------------------------
    async def _follow_head(self) -> None:
        while True:
            try:
                async with self.chain.notify() as updates:
                    async for update in updates:
                        self.core.set_head(update.head.epoch)
                        self._execute(self.core.batches(self.clock()))   # due at this height?
                        self._head.set()
                        self._head = trio.Event()
                        if update.head.epoch >= self._next_fault_check:
                            self._next_fault_check = update.head.epoch + FAULT_CHECK_EPOCHS
                            self._nursery.start_soon(self._check_faults)
            except Exception as e:
                log.warning("following the chain: %s", _reason(e))
                await trio.sleep(1.0)

    async def _next_head(self) -> None:
        await self._head.wait()

    async def _check_faults(self) -> None:
        """Proving sectors the chain lists as faulty are FaultReported; recovered ones Proving."""
        watched = [s.number for s in self.core.sectors.values()
                   if s.state in (S.PROVING, S.FAULTY, S.FAULT_REPORTED)]
        for number in watched:
            try:
                view = await self.chain.sector(self.core.miner, number)
            except Exception as e:
                log.debug("fault check of sector %d: %s", number, _reason(e),
                          extra={"cause": self.core.cause_of(number)})
                return
            if view is None:
                continue
            event = procedures.fault_change(self.core, number, view.state in ("faulty", "recovering"))
            if event is not None:
                self._feed(event)

    # -- events in, commands out ------------------------------------------------------------------------
    def _feed(self, event: E.Event) -> list[C.Command]:
        """Handle an event (synchronously: nothing else runs between the core's decision
        and its Save) and start what it asks for."""
        try:
            commands = self.core.handle(event, self.clock())
        except SealingError as e:
            log.error("sector %d: %s", event.sector, e, extra={"cause": event.cause})
            self.refused += 1
            return []
        self._execute(commands)
        self._due()
        return commands

    def _due(self) -> None:
        self._execute(self.core.due(self.clock()))

    def _execute(self, commands: list[C.Command]) -> None:
        saves = [c for c in commands if isinstance(c, C.Save)]
        if saves:                      # on disk before anything is said or done
            self.store.save([(c.info, c.log, c.next_number) for c in saves])
        for cmd in commands:
            if isinstance(cmd, C.Save):
                self._stop_stale(cmd.sector, cmd.step)
                for entry in cmd.log:
                    level, hint = logging.INFO, ""
                    if entry.note.startswith(PAUSED):      # waits for an operator: alert-worthy
                        level, hint = logging.ERROR, ("; waiting for an operator: zqnode sectors "
                                                      f"resume|rebuild|remove {cmd.sector}")
                    log.log(level, "sector %d: %s -> %s (%s)%s%s", cmd.sector, entry.prev or "new",
                            entry.state, entry.event, f": {entry.note}" if entry.note else "", hint,
                            extra={"cause": cmd.cause})
                self._nursery.start_soon(self._publish, cmd)
            elif isinstance(cmd, C.Consume):
                self._nursery.start_soon(self._consume, cmd.work_id)
            else:
                self._start(cmd)

    def _stop_stale(self, number: int, step: int) -> None:
        running = self._running.get(number)
        if running is not None and running[0] != step:
            running[1].cancel()
            del self._running[number]

    def _start(self, cmd: C.Command) -> None:
        self._stop_stale(cmd.sector, cmd.step)
        scope = trio.CancelScope()
        self._running[cmd.sector] = (cmd.step, scope)
        self._nursery.start_soon(self._carry_out, cmd, scope)

    async def _carry_out(self, cmd: C.Command, scope: trio.CancelScope) -> None:
        observe.set_cause(cmd.cause)                # this sector's log lines
        with scope:
            try:
                event = await self._do(cmd)
            except Exception as e:
                log.warning("sector %d: %s: %s", cmd.sector, type(cmd).__name__, _reason(e))
                event = self.core.event(E.TemporaryError, cmd.sector, step=cmd.step,
                                        error=f"{type(cmd).__name__}: {_reason(e)}")
            if self._running.get(cmd.sector, (None, None))[1] is scope:
                del self._running[cmd.sector]
            for one in event if isinstance(event, list) else [event] if event is not None else []:
                self._feed(one)                     # a batch's answer: one event per member

    async def _publish(self, save: C.Save) -> None:
        entry = save.log[-1] if save.log else None
        msg = W.SealingSectorChanged(sector=summary(save.info), event=entry.event if entry else "",
                                     prev=save.log[0].prev if save.log else "")
        try:
            await self.peer.publish(W.TOPIC_SECTOR, msg, cause=save.cause)
        except Exception as e:             # an event nobody may be listening to: never fatal
            log.debug("publishing sector %d: %s", save.sector, _reason(e), extra={"cause": save.cause})

    async def _consume(self, work_id: str) -> None:
        for delay in backoff(1.0, 30.0):
            try:
                await self.tasks.consume(work_id)
                return
            except Exception as e:
                log.info("consuming %s: %s; again in %.0fs", work_id[:12], _reason(e), delay)
                await trio.sleep(delay)

    # -- commands ---------------------------------------------------------------------------------------
    def _event(self, kind, cmd: C.Command, **fields) -> E.Event:
        return self.core.event(kind, cmd.sector, step=cmd.step, **fields)

    async def _do(self, cmd: C.Command) -> E.Event | None:
        if isinstance(cmd, C.Schedule):
            await trio.sleep(max(0.0, cmd.at - self.clock()))
            return self._event(E.Wake, cmd)
        if isinstance(cmd, C.RunTask):
            return await self._task(cmd)
        proc = procedures.procedure(self.core, cmd)
        answer, error = None, None
        while True:
            try:                                    # an error goes back into the procedure:
                ask = proc.throw(error) if error is not None else proc.send(answer)
            except StopIteration as done:           # it may handle it, else it comes out here
                return done.value
            try:
                answer, error = await self._answer(ask), None
            except Exception as e:
                answer, error = None, e

    async def _answer(self, ask: procedures.Ask):
        """What a procedure (nodes.sealing.procedures) asks, from the chain and the disk."""
        if isinstance(ask, procedures.Head):
            return (await self.chain.head()).epoch
        if isinstance(ask, procedures.NextHead):
            return await self._next_head()
        if isinstance(ask, procedures.PreCommitOf):
            return await self.chain.precommit(ask.miner, ask.number)
        if isinstance(ask, procedures.SectorOf):
            return await self.chain.sector(ask.miner, ask.number)
        if isinstance(ask, procedures.CurrentDeadline):
            return await self.chain.deadline(ask.miner)
        if isinstance(ask, procedures.Randomness):
            return await self.chain.randomness(ask.tag, ask.epoch, ask.entropy)
        if isinstance(ask, procedures.Lookup):
            return await self.chain.lookup(ask.msg_id)
        if isinstance(ask, procedures.Verify):
            return await trio.to_thread.run_sync(lambda: self._verify(**ask.args))
        if isinstance(ask, procedures.Send):
            return await self._send(ask.number, ask.key, ask.params, ask.value)
        if isinstance(ask, procedures.DropWork):
            return await self.tasks.drop_sector(self.core.miner, ask.number)
        if isinstance(ask, procedures.DropFiles):
            await trio.to_thread.run_sync(self._drop_files, ask.number)
            return self.tasks.dropped_files(self.core.miner, ask.number)
        if isinstance(ask, procedures.DropPieces):
            return self._drop_pieces(ask.number)
        raise AssertionError(f"no answer to {ask!r}")

    async def _task(self, cmd: C.RunTask) -> E.Event:
        try:
            work_id = await self.tasks.do(cmd, self.core.miner, self.core.proof.sector_size)
        except TaskError as e:
            return self._event(E.TaskFailed, cmd, task=cmd.task, work_id=e.work_id, error=e.error)
        try:
            r = await self.tasks.wait(work_id)
        except TaskError as e:
            return self._event(E.TaskFailed, cmd, task=cmd.task, work_id=work_id, error=e.error)
        if isinstance(cmd, C.RunUnseal):
            await trio.to_thread.run_sync(write_atomic, cmd.out, r.data)
        return procedures.task_done(self.core, cmd, work_id, r)

    # -- chain helpers ------------------------------------------------------------------------------
    def _verify(self, **kw) -> bool:
        try:
            return self.verify_seal(**kw) is True
        except Exception as e:
            log.warning("verifying a proof: %s", _reason(e))
            return False

    async def _send(self, number: int, key: str, params, value: int = 0) -> str:
        """Send a message once: one stored under `key` that is pending or landed well is
        that message; otherwise a new one (MessageSender: a crash or a lost answer while it
        is pushed does not make two)."""
        for stored in self.store.messages(number, key):
            if procedures.still_counts(await self.chain.lookup(stored.msg_id)):
                return stored.msg_id

        def record(msg: M.Message) -> None:
            self.store.add_message(msg_id=msg.id, number=number, key=key, nonce=msg.nonce,
                                   body=M.encode(msg), created=self.clock())
        msg = M.Message.call(self.worker, self.core.miner, params, value=value)
        return (await self.sender.send(msg, f"sector {number} {key}", record)).id

    # -- storage ----------------------------------------------------------------------------------
    def sector_dirs(self, number: int) -> list[pathlib.Path]:
        """The sector's directories under the storage roots (each holds a sector.json naming
        the miner and the sector)."""
        found = []
        for root in self.scfg.storage:
            for meta in pathlib.Path(root).glob("*/sector.json"):
                try:
                    data = msgspec.json.decode(meta.read_bytes())
                except (OSError, msgspec.DecodeError):
                    continue
                if data.get("miner") == self.core.miner and data.get("sector") == number:
                    found.append(meta.parent)
        return found

    def _drop_files(self, number: int) -> None:
        for path in self.sector_dirs(number):
            shutil.rmtree(path, ignore_errors=True)
            log.info("sector %d: removed %s", number, path, extra={"cause": self.core.cause_of(number)})

    def _drop_pieces(self, number: int) -> None:
        mine = {p.path for p in (*self.core.sectors[number].pieces, *self.core.sectors[number].pending)}
        used = {p.path for n, s in self.core.sectors.items() if n != number and s.state != S.REMOVED
                for p in (*s.pieces, *s.pending)}
        for path in mine - used - {""}:
            pathlib.Path(path).unlink(missing_ok=True)

    # -- RPC --------------------------------------------------------------------------------------
    def _handlers(self) -> dict:
        return {W.SealingPledge: self._rpc_pledge, W.SealingAddPiece: self._rpc_add_piece,
                W.SealingList: self._rpc_list, W.SealingStatus: self._rpc_status,
                W.SealingResume: self._rpc_resume, W.SealingRemove: self._rpc_remove,
                W.SealingTerminate: self._rpc_terminate, W.SealingExtend: self._rpc_extend,
                W.SealingRebuild: self._rpc_rebuild, W.SealingUnseal: self._rpc_unseal,
                W.SealingSnapUp: self._rpc_snap_up, W.SealingAbortUpgrade: self._rpc_abort_upgrade}

    def _ready(self) -> SealingCore:
        if self.core is None:
            raise Refused(W.NOT_READY, "the sealing state machine is starting (waiting for the chain)",
                          retry=True)
        return self.core

    async def _rpc_pledge(self, req: Request) -> W.SealingPledged:
        self._ready()
        count = req.body.count
        if not 1 <= count <= 1000:
            raise Refused(ErrorCode.INVALID, f"pledge count must be in 1..1000, got {count}")
        refusal = self.core.may_pledge(count)
        if refusal:
            raise Refused(ErrorCode.INVALID, refusal)
        return W.SealingPledged(numbers=self.pledge(count))

    async def _rpc_add_piece(self, req: Request) -> W.SealingPieceAssigned:
        core = self._ready()
        if not req.buffers:
            raise Refused(ErrorCode.INVALID, "SealingAddPiece carries the piece as its first buffer: "
                                             "none came")
        data = bytes(req.buffers[0])
        try:
            cp = await trio.to_thread.run_sync(commp_mod.commp, data)
        except commp_mod.CommPError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        if cp.padded_size > core.proof.sector_size:
            raise Refused(ErrorCode.INVALID, f"a piece of {cp.payload_size} bytes needs {cp.padded_size} "
                                             f"padded bytes: more than a {core.proof.sector_size}-byte "
                                             "sector")
        path = self.repo / "pieces" / f"{cids.piece_cid_v1(cp.commitment)}.piece"
        await trio.to_thread.run_sync(write_atomic, path, data)   # kept before it is promised
        piece = Piece(comm_p=cp.commitment, payload_size=cp.payload_size, padded_size=cp.padded_size,
                      path=str(path))
        try:
            number, commands = core.assign_piece(piece, self.clock())
        except SealingError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        self._execute(commands)
        s = core.sectors[number]
        sizes = [p.padded_size for p in (*s.pieces, *s.pending)]
        placed = commp_mod.piece_layout(sizes, s.sector_size)
        offset = next(x.offset for x in placed if x.piece == len(sizes) - 1)
        return W.SealingPieceAssigned(sector=number, piece_cid=cids.piece_cid_v1(cp.commitment),
                                      payload_size=cp.payload_size, padded_size=cp.padded_size,
                                      offset=offset)

    async def _rpc_list(self, req: Request) -> W.SealingSectors:
        core = self._ready()
        wanted = set(req.body.states)
        unknown = wanted - set(S.ALL)
        if unknown:
            raise Refused(ErrorCode.INVALID, f"no state {', '.join(sorted(unknown))} "
                                             f"(states: {', '.join(S.ALL)})")
        return W.SealingSectors(sectors=[summary(s) for n, s in sorted(core.sectors.items())
                                         if not wanted or s.state in wanted], head=core.head)

    def _sector(self, number: int) -> SectorInfo:
        s = self._ready().sectors.get(number)
        if s is None:
            raise Refused(ErrorCode.INVALID, f"no sector {number}")
        return s

    async def _rpc_status(self, req: Request) -> W.SealingSectorStatus:
        s = self._sector(req.body.number)
        info = plain(s)
        info["cause"] = s.cause
        entries = [plain(e) for e in self.store.log(s.number)] if req.body.log else []
        return W.SealingSectorStatus(info=info, log=entries)

    def _operate(self, number: int, kind, **fields) -> W.SealingSectorState:
        self._sector(number)
        try:
            commands = self.core.handle(self.core.event(kind, number, **fields), self.clock())
        except SealingError as e:
            raise Refused(ErrorCode.INVALID, str(e)) from None
        self._execute(commands)
        self._due()
        s = self.core.sectors[number]
        return W.SealingSectorState(number=number, state=s.state, paused=s.paused)

    async def _rpc_resume(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.Resume, state=req.body.state)

    async def _rpc_remove(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.Remove)

    async def _rpc_terminate(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.Terminate)

    async def _rpc_extend(self, req: Request) -> W.SealingExtended:
        """One ExtendSectorExpiration2, tried first (the actor's refusal comes back as it is),
        then sent once."""
        core, n, expiration = self._ready(), req.body.number, req.body.expiration
        self._sector(n)
        view = await self.chain.sector(core.miner, n)
        if view is None:
            raise Refused(CW.NOT_FOUND, f"sector {n} is not on chain (not proven yet, or gone)")
        params = M.ExtendSectorExpiration2Params(extensions=[M.ExpirationExtension2(
            deadline=view.deadline, partition=view.partition, sectors=[n], new_expiration=expiration)])
        tried = await self.chain.simulate(M.Message.call(self.worker, core.miner, params))
        if tried.exit_code != 0:
            raise Refused(ErrorCode.INVALID, f"the chain would refuse it: {tried.error}")
        msg_id = await self._send(n, f"extend:{expiration}", params)
        return W.SealingExtended(number=n, expiration=expiration, msg_id=msg_id)

    async def _rpc_rebuild(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.Rebuild)

    async def _rpc_snap_up(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.SnapUp)

    async def _rpc_abort_upgrade(self, req: Request) -> W.SealingSectorState:
        return self._operate(req.body.number, E.AbortUpgrade)

    async def _rpc_unseal(self, req: Request) -> W.SealingSectorState:
        if not os.path.isabs(req.body.out):
            raise Refused(ErrorCode.INVALID, f"unseal needs an absolute path, got {req.body.out!r}")
        return self._operate(req.body.number, E.Unseal, out=req.body.out, piece=req.body.piece)
