"""The sealing state machine, pure: no trio, no bus, no disk, no clock (`now` is given).

    core = SealingCore(miner=1000, seal_proof=5, policy=DEVNET, cfg=SealingConfig())
    number, commands = core.pledge(now)             # a CC sector
    commands = core.handle(event, now)              # an answer, a timer, an operator
    commands = core.restart(now)                    # every sector runs its handler again

`handle` looks the event up in the transition table (nodes.sealing.table), records it in
a copy of the sector (the event's `apply`), moves the copy to the next state, and runs
that state's handler, which either asks the shell for something (commands) or decides
at once (an internal event, handled the same way, and logged). The result starts with
`Save` (the sector and its new log entries): the shell commits it before it does
anything else. An event the state does not take raises InvalidTransition and changes
nothing; an answer to a command of an older step is stale and dropped.

Errors: an error event counts one more consecutive error; the sector waits
`cfg.backoff(n)` before its handler runs again (failure states then decide how to go
on, as Lotus's failure handlers do), and after `cfg.max_retries` it pauses, its last
error shown, until an operator resumes, rebuilds or removes it. Progress resets the
count. As Lotus: PreCommit1 failing is retried after a cool-down, PreCommit2 failing
more than 3 times goes back to PreCommit1, a second invalid proof goes back to
PreCommit1.

Our own faults (a task that failed, was killed or aborted, a worker gone, a chain that
does not answer) never remove a sector: they back off, then pause it. Only the chain
can doom a sector (its pre-commit expired, or can no longer be proven): a CC sector is
then removed, as Lotus does; a sector holding deal data pauses for the operator's word.
"""
from __future__ import annotations

from typing import Callable

import msgspec

from zqnode.nodes.chain.policy import Policy
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.sector import ChainFacts, LogEntry, Piece, SectorInfo, cause_of
from zqnode.nodes.sealing.table import APPLY, DECIDE, PROGRESS, SAME, TABLE
from zqnode.proofs import commp as commp_mod
from zqnode.proofs import fr32
from zqnode.proofs import params as proof_params
from zqnode.proofs.merkle import zero_commitment_at_height

DEFAULT_LIFETIME = 540 * 2880   # epochs: Lotus's CommittedCapacitySectorLifetime
MIN_AGGREGATED_SECTORS = 4      # the miner actor aggregates no fewer proofs (builtin-actors policy)
BATCHING = (S.SUBMIT_PRE_COMMIT_BATCH, S.SUBMIT_COMMIT_AGGREGATE, S.TERMINATING)
MAX_INTERNAL = 32          # decisions chained in one handle(): more is a table bug
PAUSED = "paused"          # how a log note of a pause starts (the shell raises an alert)


class SealingError(ValueError):
    pass


class UnknownSector(SealingError):
    pass


class InvalidTransition(SealingError):
    pass


class BadResume(SealingError):
    pass


class PieceTooLarge(SealingError):
    pass


class SealingCore:
    def __init__(self, *, miner: int, seal_proof: int, policy: Policy, cfg: SealingConfig):
        self.miner = miner
        self.proof = proof_params.seal_proof(seal_proof)
        self.policy, self.cfg = policy, cfg
        self.sectors: dict[int, SectorInfo] = {}
        self.next_number = cfg.first_number
        self.head = -1                     # the chain's head epoch, as last told (set_head)
        self.batching: set[int] = set()    # sectors in a batching state (batches() looks at these)
        self._forming = False              # batches() is putting sectors in a batch

    # -- state ---------------------------------------------------------------------------
    def restore(self, sectors: list[SectorInfo], next_number: int) -> None:
        for s in sectors:
            if s.state not in TABLE:
                raise SealingError(f"stored sector {s.number} has unknown state {s.state!r}")
            if s.miner != self.miner:
                raise SealingError(f"stored sector {s.number} belongs to miner {s.miner}, "
                                   f"not {self.miner}")
        self.sectors = {s.number: s for s in sectors}
        self.batching = {s.number for s in sectors if s.state in BATCHING}
        self.next_number = max([next_number, self.cfg.first_number,
                                *(n + 1 for n in self.sectors)])

    def set_head(self, epoch: int) -> None:
        self.head = epoch

    def cause_of(self, number: int) -> str:
        return cause_of(self.miner, number)

    def event(self, kind: type[E.Event], number: int, step: int = 0, **fields) -> E.Event:
        """An event about sector `number`, with its cause id."""
        return kind(sector=number, cause=self.cause_of(number), step=step, **fields)

    # -- new sectors ------------------------------------------------------------------------
    def pledge(self, now: float) -> tuple[int, list[C.Command]]:
        """A new committed-capacity sector."""
        s = self._new("cc", now)
        return s.number, self.handle(self.event(E.StartCC, s.number), now)

    def expiration(self, s: SectorInfo) -> int:
        """The expiration a sector's PreCommit asks for: from its ticket, so the same
        sector always asks the same (a PreCommit sent again is the same message)."""
        lifetime = self.cfg.sector_lifetime or DEFAULT_LIFETIME
        return s.ticket_epoch + min(lifetime, self.policy.max_sector_expiration_extension)

    def sealing_count(self) -> int:
        return sum(1 for s in self.sectors.values() if s.state in S.SEALING_NOW)

    def may_pledge(self, count: int) -> str:
        """Why `count` more sectors may not be pledged now ("" if they may)."""
        limit, sealing = self.cfg.max_sealing_sectors, self.sealing_count()
        if limit and sealing + count > limit:
            return (f"{sealing} sectors are sealing and max_sealing_sectors is {limit}: "
                    f"{max(limit - sealing, 0)} more may be pledged now")
        return ""

    def top_up(self, now: float) -> list[C.Command]:
        """CC sectors pledged while fewer than cfg.pledge_target are sealing (and
        max_sealing_sectors allows), so a cluster keeps itself busy."""
        commands: list[C.Command] = []
        if not self.cfg.pledge_target:
            return commands
        while self.sealing_count() < self.cfg.pledge_target and not self.may_pledge(1):
            commands += self.pledge(now)[1]
        return commands

    def assign_piece(self, piece: Piece, now: float) -> tuple[int, list[C.Command]]:
        """Put a deal piece into the open deal sector it fits (the lowest number), or a new
        one. Raises PieceTooLarge (nothing changes) when no sector could hold it."""
        if piece.padded_size > self.proof.sector_size:
            raise PieceTooLarge(f"a piece of {piece.payload_size} bytes needs {piece.padded_size} "
                                f"padded bytes: more than a {self.proof.sector_size}-byte sector")
        if not piece.path:
            raise SealingError("a deal piece needs the path of its data")
        commands: list[C.Command] = []
        target = next((s for n, s in sorted(self.sectors.items()) if self._takes(s, piece)), None)
        if target is None:
            target = self._new("deal", now)
            commands += self.handle(self.event(E.StartDeals, target.number), now)
        commands += self.handle(self.event(E.AssignPiece, target.number, piece=piece), now)
        return target.number, commands

    def _new(self, kind: str, now: float) -> SectorInfo:
        number = self.next_number
        self.next_number += 1
        s = SectorInfo(miner=self.miner, number=number, seal_proof=self.proof.id,
                       sector_size=self.proof.sector_size, kind=kind, created=now, updated=now)
        self.sectors[number] = s
        return s

    def _takes(self, s: SectorInfo, piece: Piece) -> bool:
        if s.kind != "deal" or s.paused or s.pack_requested:
            return False
        if s.state not in (S.WAIT_DEALS, S.ADD_PIECE, S.ADD_PIECE_FAILED, S.SNAP_DEALS_WAIT_DEALS,
                           S.SNAP_DEALS_ADD_PIECE, S.SNAP_DEALS_ADD_PIECE_FAILED):
            return False
        return _fits([p.padded_size for p in (*s.pieces, *s.pending, piece)], s.sector_size)

    # -- events -------------------------------------------------------------------------------
    def handle(self, event: E.Event, now: float) -> list[C.Command]:
        s = self.sectors.get(event.sector)
        if s is None:
            raise UnknownSector(f"no sector {event.sector} (sectors: "
                                f"{', '.join(map(str, sorted(self.sectors))) or 'none'})")
        if event.cause != s.cause:
            raise SealingError(f"an event for sector {s.number} must carry cause {s.cause!r}, "
                               f"not {event.cause!r}")
        if event.step and event.step != s.step:
            return []                      # answers a command of an older step: stale
        work = s.copy()
        log: list[LogEntry] = []
        consumed: list[C.Command] = []
        out: E.Event | list[C.Command] = event
        for _ in range(MAX_INTERNAL):
            out = self._step(work, out, now, log, consumed)
            if not isinstance(out, E.Event):
                break
        else:
            raise SealingError(f"sector {s.number}: more than {MAX_INTERNAL} decisions in a row "
                               f"(last: {type(out).__name__} in {work.state})")
        work.updated = now
        self.sectors[s.number] = work
        if isinstance(event, E.UpgradeAborted):      # its deal pieces go to other deal sectors
            for piece in [*s.deal_pieces(), *s.pending]:
                out += self.assign_piece(msgspec.structs.replace(piece, offset=-1), now)[1]
        if work.state in BATCHING:
            self.batching.add(s.number)
        else:
            self.batching.discard(s.number)
        return [C.Save(sector=s.number, cause=s.cause, step=work.step, info=work.copy(), log=log,
                       next_number=self.next_number), *consumed, *out]

    def restart(self, now: float) -> list[C.Command]:
        """Every sector's handler again (after a restart): the same requests as before,
        which the call tracker answers from what it has (nothing is computed twice)."""
        commands: list[C.Command] = []
        for number in sorted(self.sectors):
            commands += self.rerun(number, now)
        return commands

    def admit(self, now: float) -> list[C.Command]:
        """Sectors waiting in Packing for room in the sealing window (cfg.max_sealing),
        lowest number first, go on while there is room. The shell asks after every event."""
        commands: list[C.Command] = []
        if not self.cfg.max_sealing:
            return commands
        for number, s in sorted(self.sectors.items()):
            if self._window_full():
                break
            if s.state == S.PACKING and not s.paused and s.retry_at <= now:
                commands += self.rerun(number, now)
        return commands

    def due(self, now: float) -> list[C.Command]:
        """What is due without a sector's own event, asked by the shell after every event:
        pledges for the target, room in the sealing window, batches."""
        return self.top_up(now) + self.admit(now) + self.batches(now)

    def batches(self, now: float) -> list[C.Command]:
        """Batches that are due (Lotus's PreCommitBatcher, CommitBatcher and TerminateBatcher):
        a full batch at once; everything waiting (at least the least) once the oldest has
        waited its wait, or once the head is within the slack of the earliest cutoff (a
        ticket's expiry, a prove-by epoch). The shell asks after every event and head."""
        return [c for state in BATCHING for c in self._batches(state, now)]

    def _batch_rules(self, state: str) -> tuple[int, int, float, int, Callable[[SectorInfo], float]]:
        """(size, least, wait seconds, slack epochs, cutoff epoch of a sector) of a batching state."""
        cfg, pol = self.cfg, self.policy
        if state == S.SUBMIT_PRE_COMMIT_BATCH:
            return (cfg.max_precommit_batch, 1, cfg.precommit_batch_wait_s, cfg.precommit_batch_slack,
                    lambda s: s.ticket_epoch + pol.max_ticket_age)
        if state == S.SUBMIT_COMMIT_AGGREGATE:
            return (cfg.max_commit_batch, 1, cfg.commit_batch_wait_s, cfg.commit_batch_slack,
                    lambda s: s.precommit_epoch + pol.max_prove_commit_duration)
        return (cfg.terminate_batch_max, cfg.terminate_batch_min, cfg.terminate_batch_wait_s, 0,
                lambda s: float("inf"))

    def _batches(self, state: str, now: float) -> list[C.Command]:
        waiting = [s for s in map(self.sectors.get, sorted(self.batching))
                   if s.state == state and not s.batch and not s.paused and s.retry_at <= now]
        if not waiting:
            return []
        size, least, wait, slack, cutoff = self._batch_rules(state)
        urgent = (now >= min(s.batch_since for s in waiting) + wait
                  or self.head >= min(map(cutoff, waiting)) - slack)
        commands: list[C.Command] = []
        for i in range(0, len(waiting), size):
            group = waiting[i:i + size]
            if len(group) < size and not (urgent and len(group) >= least):
                break
            batch = f"{group[0].number}:{group[0].step}"      # its owner: the lowest member
            self._forming = True           # a new step for each: its waiting timer is stale now
            try:
                for s in group:
                    commands += self.handle(self.event(E.BatchFormed, s.number, batch=batch), now)
            finally:
                self._forming = False
            commands.append(self._batch_command(state, batch))
        return commands

    def _batch_command(self, state: str, batch: str, also: SectorInfo | None = None) -> C.Command:
        """The batch's send, with its members still waiting (`also`: one being handled)."""
        found = {n: s for n, s in ((n, self.sectors[n]) for n in self.batching)
                 if s.batch == batch and s.state == state}
        if also is not None:
            found[also.number] = also
        members = [found[n] for n in sorted(found)]
        first = members[0]
        kw = dict(sector=first.number, cause=first.cause, step=first.step, batch=batch,
                  members=[C.BatchMember(number=s.number, step=s.step) for s in members])
        if state == S.SUBMIT_PRE_COMMIT_BATCH:
            return C.SendPreCommitBatch(**kw)
        if state == S.TERMINATING:
            return C.SendTerminateBatch(**kw)
        # fewer than MinCommitBatch (or the actor's minimum): one proof per sector, as Lotus
        return C.SendCommitAggregate(**kw, aggregate=len(members) >= max(self.cfg.min_commit_batch,
                                                                         MIN_AGGREGATED_SECTORS))

    def _window_full(self) -> bool:
        busy = sum(1 for s in self.sectors.values() if s.state in S.TICKETED and not s.paused)
        return bool(self.cfg.max_sealing) and busy >= self.cfg.max_sealing

    def rerun(self, number: int, now: float) -> list[C.Command]:
        s = self.sectors[number]
        if s.state == S.NEW:
            return []
        out = self._handler(s, now)
        if isinstance(out, E.Event):       # a decision: handle it as it were new
            return self.handle(msgspec.structs.replace(out, step=s.step), now)
        return out

    def _step(self, s: SectorInfo, event: E.Event, now: float, log: list[LogEntry],
              consumed: list[C.Command]) -> E.Event | list[C.Command]:
        prev = s.state
        why = event.refused(s)
        if why:
            raise InvalidTransition(why)
        target = TABLE[prev].get(type(event))
        if target is None:
            raise InvalidTransition(f"sector {s.number} in {prev or 'no state'} does not take "
                                    f"{type(event).__name__}")
        event = self._validate(s, event)            # a bad result becomes TaskFailed
        target = TABLE[prev].get(type(event))
        if target is None:
            raise InvalidTransition(f"sector {s.number} in {prev} does not take "
                                    f"{type(event).__name__}")
        work_id = getattr(event, "work_id", "")
        if work_id:
            consumed.append(C.Consume(sector=s.number, cause=s.cause, step=s.step, work_id=work_id))
        if target == DECIDE:
            decision = self._decide(s, event.facts)
            log.append(self._entry(s, event, now, prev, prev))
            return msgspec.structs.replace(decision, step=s.step)
        if isinstance(event, E.Resume):
            target = self._resume_target(s, event)
        event.apply(s, now)
        new = prev if target in (SAME, APPLY) else target
        s.state = new
        note = self._account(s, event, prev, now)
        log.append(self._entry(s, event, now, prev, new, note))
        if target == APPLY:
            return []
        s.step += 1
        log[-1] = msgspec.structs.replace(log[-1], step=s.step)
        out = self._handler(s, now)
        if isinstance(out, E.Event):
            return msgspec.structs.replace(out, step=s.step)
        return out

    def _entry(self, s, event, now, prev, new, note="") -> LogEntry:
        return LogEntry(ts=now, step=s.step, event=type(event).__name__, data=E.to_plain(event),
                        prev=prev, state=new, note=note)

    def _account(self, s: SectorInfo, event: E.Event, prev: str, now: float) -> str:
        """Error counts, back-off and pause; the note for the log."""
        if isinstance(event, PROGRESS):
            s.retries, s.last_error = 0, ""
        if s.state == S.SEAL_PRE_COMMIT1_FAILED and prev != s.state:
            s.pc1_fails += 1
        if s.state == S.SEAL_PRE_COMMIT2_FAILED and prev != s.state:
            s.pc2_fails += 1
        if isinstance(event, E.Stuck):
            s.paused, s.last_error = True, event.error
            return f"{PAUSED}: {event.error}"
        if isinstance(event, E.GiveUp):
            s.last_error = event.error
            return f"giving up: {event.error}"
        if not isinstance(event, E.ErrorEvent):
            return ""
        s.last_error = event.error
        if not (prev in S.FAILURES and s.state in S.FAILURES and prev != s.state):
            s.retries += 1                 # a new error, not a failure handler's next step
        if s.retries > self.cfg.max_retries:
            s.paused = True
            return f"{PAUSED} after {s.retries} errors in a row: {event.error}"
        delay = self.cfg.backoff(s.retries)
        s.retry_at = now + delay
        return f"error {s.retries} of {self.cfg.max_retries}: retry in {delay:g}s"

    # -- results are checked against what the sector expects -------------------------------------
    def _validate(self, s: SectorInfo, event: E.Event) -> E.Event:
        problem = ""
        rebuild = s.state in S.REBUILD
        if isinstance(event, E.PieceAdded):
            want, offset = self._next_piece(s)
            if want is None:
                problem = "a piece was added, but none was waiting"
            elif (event.comm_p, event.padded_size, event.payload_size) != \
                    (want.comm_p, want.padded_size, want.payload_size):
                problem = (f"AddPiece gave piece {event.comm_p.hex()[:16]} "
                           f"({event.payload_size} bytes), expected {want.comm_p.hex()[:16]} "
                           f"({want.payload_size} bytes)")
            elif event.offset != offset:
                problem = f"AddPiece placed the piece at {event.offset}, expected {offset}"
        elif isinstance(event, E.PreCommit1Done):
            want = s.comm_d if rebuild else self._comm_d(s)
            if event.comm_d != want:
                problem = f"PreCommit1 gave comm_d {event.comm_d.hex()}, expected {want.hex()}"
        elif isinstance(event, E.PreCommit2Done):
            if event.comm_d != s.comm_d:
                problem = f"PreCommit2 gave comm_d {event.comm_d.hex()}, expected {s.comm_d.hex()}"
            elif rebuild and event.comm_r != s.comm_r:
                problem = (f"the rebuilt replica has comm_r {event.comm_r.hex()}, the chain's is "
                           f"{s.comm_r.hex()}")
        elif isinstance(event, E.ReplicaUpdated) and event.comm_d_new != self._comm_d(s):
            problem = (f"ReplicaUpdate gave comm_d {event.comm_d_new.hex()}, the pieces make "
                       f"{self._comm_d(s).hex()}")
        elif isinstance(event, E.ReplicaUpdateProven) and not event.proof:
            problem = "ProveReplicaUpdate gave an empty proof"
        elif isinstance(event, E.Commit1Done) and not event.proof:
            problem = "Commit1 gave an empty proof"
        elif isinstance(event, E.ProofChecked) and not event.ok:
            problem = f"the rebuilt replica's proof does not verify: {event.error or 'invalid'}"
        if not problem:
            return event
        task = {E.PieceAdded: "AP", E.PreCommit1Done: "PC1", E.PreCommit2Done: "PC2",
                E.Commit1Done: "C1", E.ProofChecked: "verify", E.ReplicaUpdated: "RU",
                E.ReplicaUpdateProven: "PR1"}[type(event)]
        return E.TaskFailed(sector=event.sector, cause=event.cause, step=event.step, task=task,
                            work_id=getattr(event, "work_id", ""), error=problem)

    def _next_piece(self, s: SectorInfo) -> tuple[Piece | None, int]:
        """The piece AddPiece is adding, and the offset it must get."""
        if s.state in S.REBUILD:
            deal = s.deal_pieces()
            if s.rebuild_added >= len(deal):
                return None, -1
            return deal[s.rebuild_added], deal[s.rebuild_added].offset
        if not s.pending:
            return None, -1
        sizes = [p.padded_size for p in (*s.pieces, s.pending[0])]
        slots = commp_mod.piece_layout(sizes, s.sector_size)
        return s.pending[0], next(x.offset for x in slots if x.piece == len(sizes) - 1)

    def _comm_d(self, s: SectorInfo) -> bytes:
        deal = s.deal_pieces()
        return commp_mod.commd([(p.padded_size, p.comm_p) for p in deal], s.sector_size)

    # -- handlers: what each state does ---------------------------------------------------------
    def _handler(self, s: SectorInfo, now: float) -> E.Event | list[C.Command]:
        if s.paused or s.state in S.FINAL:
            return []
        if s.retry_at > now:
            return [self._cmd(C.Schedule, s, at=s.retry_at)]
        return HANDLERS[s.state](self, s, now)

    def _cmd(self, kind: type[C.Command], s: SectorInfo, **fields) -> C.Command:
        return kind(sector=s.number, cause=s.cause, step=s.step, **fields)

    def _ev(self, kind: type[E.Event], s: SectorInfo, **fields) -> E.Event:
        return kind(sector=s.number, cause=s.cause, step=s.step, **fields)

    def _priority(self, s: SectorInfo) -> int:
        return self.cfg.deal_priority if s.kind == "deal" else 0

    def _wait_deals(self, s, now):
        if s.pending:
            return self._ev(E.AddNextPiece, s)
        if not s.pieces:
            return []                      # a new deal sector: its first piece comes next
        if s.pack_requested or not _fits([p.padded_size for p in s.pieces] + [128], s.sector_size):
            return self._ev(E.StartPacking, s)
        pack_at = s.deals_since + self.cfg.wait_deals_s
        if now >= pack_at:
            return self._ev(E.StartPacking, s)
        return [self._cmd(C.Schedule, s, at=pack_at)]

    def _add_piece(self, s, now):
        piece, _ = self._next_piece(s)
        if piece is None:
            if s.state == S.REBUILD_ADD_PIECE:
                return self._ev(E.PiecesReady, s)
            return self._ev(E.Stuck, s, error="AddPiece has no piece to add")
        index = s.rebuild_added if s.state == S.REBUILD_ADD_PIECE else len(s.pieces)
        return [self._cmd(C.RunAddPiece, s, task="AP", priority=self._priority(s),
                          seal_proof=s.seal_proof, index=index, path=piece.path,
                          payload_size=piece.payload_size, update=s.state == S.SNAP_DEALS_ADD_PIECE)]

    def _packing(self, s, now):
        if s.state == S.PACKING and self._window_full():
            return []                      # admit() packs it once a sector leaves the window
        sizes = [p.padded_size for p in s.pieces]
        slots = commp_mod.piece_layout(sizes, s.sector_size)
        fillers = [Piece(comm_p=zero_commitment_at_height(x.size.bit_length() - 6),
                         payload_size=fr32.unpadded_size(x.size), padded_size=x.size, offset=x.offset)
                   for x in slots if x.piece is None]
        return self._ev(E.Packed, s, fillers=fillers)

    def _pre_commit1(self, s, now):
        if s.state == S.PRE_COMMIT1 and (not s.ticket or self.ticket_expired(
                s.ticket_epoch, self.head + self.cfg.ticket_margin)):
            return self._ev(E.OldTicket, s)
        return [self._cmd(C.RunPreCommit1, s, task="PC1", priority=self._priority(s),
                          seal_proof=s.seal_proof, ticket=s.ticket)]

    def _pre_commit2(self, s, now):
        return [self._cmd(C.RunPreCommit2, s, task="PC2", priority=self._priority(s),
                          ticket=s.ticket)]

    def _committing(self, s, now):
        return [self._cmd(C.RunCommit1, s, task="C1", priority=self._priority(s), seed=s.seed,
                          ticket=s.ticket)]

    def _finalize(self, s, now):
        keep = s.kind == "deal" and self.cfg.keep_unsealed
        return [self._cmd(C.RunFinalize, s, task="FIN", priority=self._priority(s), keep_unsealed=keep)]

    def _unsealing(self, s, now):
        return [self._cmd(C.RunUnseal, s, task="UNS", piece=s.unseal_piece, out=s.unseal_out)]

    def _get_ticket(self, s, now):
        return [self._cmd(C.GetTicket, s)]

    def _pre_committing(self, s, now):
        return [self._cmd(C.SendPreCommit, s, seal_proof=s.seal_proof, ticket=s.ticket,
                          ticket_epoch=s.ticket_epoch, comm_d=s.comm_d, comm_r=s.comm_r)]

    def _in_batch(self, s, now):
        if not s.batch:                    # waits; batches() forms it (this wakes it in time)
            due = s.batch_since + self._batch_rules(s.state)[2]
            return [self._cmd(C.Schedule, s, at=due)] if now < due else []
        if self._forming:
            return []                      # batches() sends it once every member is in
        command = self._batch_command(s.state, s.batch, also=s)
        return [command] if command.sector == s.number else []   # its lowest member sends it

    def _pre_commit_wait(self, s, now):
        return [self._cmd(C.WaitPreCommit, s, msg_id=s.precommit_msg, comm_r=s.comm_r)]

    def _wait_seed(self, s, now):
        return [self._cmd(C.WaitSeed, s, comm_r=s.comm_r)]

    def _submit_commit(self, s, now):
        return [self._cmd(C.SendProveCommit, s, ticket=s.ticket, ticket_epoch=s.ticket_epoch,
                          seed=s.seed, seed_epoch=s.seed_epoch, comm_d=s.comm_d, comm_r=s.comm_r,
                          proof=s.proof)]

    def _commit_wait(self, s, now):
        return [self._cmd(C.WaitProveCommit, s, msg_id=s.commit_msg)]

    def _check_chain(self, s, now):
        return [self._cmd(C.CheckChain, s, precommit_msg=s.precommit_msg, commit_msg=s.commit_msg,
                          ticket=s.ticket, ticket_epoch=s.ticket_epoch, seed=s.seed,
                          comm_d=s.comm_d, comm_r=s.comm_r, proof=s.proof)]

    def _verify(self, s, now):
        return [self._cmd(C.VerifyProof, s, ticket=s.ticket, seed=s.seed, comm_d=s.comm_d,
                          comm_r=s.comm_r, proof=s.proof)]

    def _nothing(self, s, now):
        return []

    # SnapDeals
    def _replica_update(self, s, now):
        return [self._cmd(C.RunReplicaUpdate, s, task="RU", priority=self._priority(s), comm_r_old=s.comm_r)]

    def _prove_replica_update(self, s, now):
        return [self._cmd(C.RunProveReplicaUpdate, s, task="PR1", priority=self._priority(s),
                          comm_r_new=s.update_comm_r)]

    def _finalize_replica_update(self, s, now, release_key: bool = False):
        return [self._cmd(C.RunFinalizeReplicaUpdate, s, task="FRU", priority=self._priority(s),
                          keep_unsealed=self.cfg.keep_unsealed, release_key=release_key,
                          comm_r_new=s.update_comm_r if release_key else b"")]

    def _replica_update_failed(self, s, now):
        """Lotus's handleSubmitReplicaUpdateFailed, from what the sector has: the step that
        is missing, or the send again (a landed update is found by the send's own check)."""
        if not s.update_comm_r:
            return self._ev(E.RetryReplicaUpdate, s)
        if not s.update_proof:
            return self._ev(E.RetryProveReplicaUpdate, s)
        if s.update_msg:
            return self._ev(E.RetryReplicaUpdateWait, s)
        return self._ev(E.RetrySubmitReplicaUpdate, s)

    # failure handlers (after their back-off): Lotus's states_failed.go
    def _seal_pre_commit2_failed(self, s, now):
        if s.pc2_fails > 3:
            return self._ev(E.RetryPreCommit1, s)
        return self._ev(E.RetryPreCommit2, s)

    def _compute_proof_failed(self, s, now):
        if s.invalid_proofs > 1:
            return self._ev(E.SealPreCommit1Failed, s, error="consecutive compute fails")
        return self._ev(E.RetryComputeProof, s)

    # -- decisions on the chain's facts ------------------------------------------------------------
    def ticket_expired(self, ticket_epoch: int, landing_epoch: int) -> bool:
        """Would a pre-commit landing at `landing_epoch` find the ticket too old?"""
        return ticket_epoch < landing_epoch - self.policy.max_ticket_age

    def _precommit_expired(self, s: SectorInfo, head: int) -> bool:
        """Past the epoch by which a ProveCommit had to land after our pre-commit."""
        limit = s.precommit_epoch + self.policy.max_prove_commit_duration
        return s.precommit_epoch >= 0 and head > limit

    def _give_up(self, s: SectorInfo, why: str) -> E.Event:
        """The chain dooms the sector: a CC sector is removed; one holding deal data
        waits for the operator (the client's data is not ours to delete)."""
        if s.deal_pieces():
            return self._ev(E.Stuck, s, error=f"{why}; sector {s.number} holds deal data: "
                                              "remove it with `zqnode sectors remove`")
        return self._ev(E.GiveUp, s, error=why)

    def _decide(self, s: SectorInfo, f: ChainFacts) -> E.Event:
        if s.state == S.PRE_COMMIT_FAILED:
            return self._decide_precommit_failed(s, f)
        return self._decide_commit_failed(s, f)

    def _decide_precommit_failed(self, s: SectorInfo, f: ChainFacts) -> E.Event:
        if f.on_chain:
            return self._ev(E.Stuck, s, error=f"sector {s.number} is already proven on chain")
        if f.precommit is not None:
            if f.precommit.comm_r == s.comm_r:
                return self._ev(E.PreCommitLanded, s, precommit_epoch=f.precommit.precommit_epoch,
                                seed_epoch=f.precommit.seed_epoch)
            return self._ev(E.Stuck, s, error=f"the chain holds a pre-commit of sector {s.number} "
                                              f"with comm_r {f.precommit.comm_r.hex()}, not ours")
        if f.precommit_msg.status == "pending" or (f.precommit_msg.status == "landed"
                                                   and f.precommit_msg.exit_code == 0):
            if self._precommit_expired(s, f.head):
                return self._give_up(s, "the pre-commit expired on chain")
            if f.precommit_msg.status == "pending":
                return self._ev(E.RetryPreCommitWait, s)
        if f.ticket_matches is False:
            return self._ev(E.TicketExpired, s, reason=f"the chain's ticket at epoch "
                                                       f"{s.ticket_epoch} changed (a reorg)")
        if self.ticket_expired(s.ticket_epoch, f.head + 1):
            return self._ev(E.TicketExpired, s, reason=f"ticket of epoch {s.ticket_epoch} is too "
                                                       f"old at epoch {f.head + 1}")
        return self._ev(E.RetryPreCommit, s)

    def _decide_commit_failed(self, s: SectorInfo, f: ChainFacts) -> E.Event:
        if f.on_chain:
            return self._ev(E.CommitLanded, s, epoch=f.activation)
        if f.commit_msg.status == "pending" or (f.commit_msg.status == "landed"
                                                and f.commit_msg.exit_code == 0):
            return self._ev(E.RetryCommitWait, s)
        pc = f.precommit
        if pc is None:
            if f.precommit_msg.status == "pending":
                return self._ev(E.RetryPreCommitWait, s)
            if self._precommit_expired(s, f.head):
                return self._give_up(s, "the pre-commit expired before it was proven")
            return self._ev(E.RetryPreCommit, s)
        if pc.comm_r != s.comm_r:
            return self._ev(E.Stuck, s, error=f"the chain holds a pre-commit of sector {s.number} "
                                              f"with comm_r {pc.comm_r.hex()}, not ours")
        if f.ticket_matches is False:
            return self._give_up(s, f"a reorg changed the ticket of epoch {s.ticket_epoch} under "
                                    "the landed pre-commit: it cannot be proven")
        if f.head >= pc.prove_by:
            return self._give_up(s, f"too late to prove (prove-by epoch {pc.prove_by})")
        if pc.seed_epoch != s.seed_epoch or f.seed_matches is False:
            return self._ev(E.RetryWaitSeed, s)
        if not s.proof:
            return self._ev(E.RetryComputeProof, s)
        if f.proof_valid is False:
            if s.invalid_proofs > 0:
                return self._ev(E.SealPreCommit1Failed, s, error="consecutive invalid proofs")
            return self._ev(E.RetryInvalidProof, s)
        return self._ev(E.RetrySubmitCommit, s)

    def precommit_decision(self, s: SectorInfo, f: ChainFacts) -> E.Event | None:
        """Before sending PreCommitSector: None to send it, else the event to handle."""
        if f.on_chain:
            return self._ev(E.ChainPreCommitFailed, s, error=f"sector {s.number} is already proven")
        if f.precommit is not None:
            if f.precommit.comm_r == s.comm_r:
                return self._ev(E.PreCommitLanded, s, precommit_epoch=f.precommit.precommit_epoch,
                                seed_epoch=f.precommit.seed_epoch)
            return self._ev(E.ChainPreCommitFailed, s, error="the chain holds a pre-commit of this "
                                                             "sector with another comm_r")
        if f.ticket_matches is False:
            return self._ev(E.TicketExpired, s, reason=f"the chain's ticket at epoch "
                                                       f"{s.ticket_epoch} changed (a reorg)")
        if self.ticket_expired(s.ticket_epoch, f.head + 1):
            return self._ev(E.TicketExpired, s, reason=f"ticket of epoch {s.ticket_epoch} is too "
                                                       f"old at epoch {f.head + 1}")
        if s.ticket_epoch > f.head + 1 - self.policy.seal_randomness_lookback:
            return self._ev(E.TemporaryError, s, error=f"ticket of epoch {s.ticket_epoch} is too "
                                                       f"recent at epoch {f.head + 1}")
        return None

    def commit_decision(self, s: SectorInfo, f: ChainFacts) -> E.Event | None:
        """Before sending ProveCommitSector: None to send it, else the event to handle."""
        if f.on_chain:
            return self._ev(E.CommitLanded, s, epoch=f.activation)
        pc = f.precommit
        if pc is None:
            return self._ev(E.CommitFailed, s, error="no pre-commit on chain")
        if f.head + 1 <= pc.seed_epoch:
            return self._ev(E.TemporaryError, s, error=f"too early to prove: seed epoch {pc.seed_epoch}")
        if pc.seed_epoch != s.seed_epoch or f.seed_matches is False:
            return self._ev(E.CommitFailed, s, error="the seed changed (a reorg)")
        if f.ticket_matches is False:
            return self._ev(E.CommitFailed, s, error="the ticket changed (a reorg)")
        if f.proof_valid is False:
            return self._ev(E.CommitFailed, s, error="the proof does not verify")
        return None

    def _resume_target(self, s: SectorInfo, event: E.Resume) -> str:
        want = event.state
        if not want or want == s.state:
            return SAME
        if want == S.ABORTED:
            return S.ABORTED
        if want not in S.ALL:
            raise BadResume(f"no state {want!r} (states: {', '.join(S.ALL)})")
        if want in S.NOT_RESUMABLE:
            raise BadResume(f"cannot resume into {want}: the machine enters it itself")
        if want == S.ABORT_UPGRADE and E.upgrade_abort_refused(s):
            raise BadResume(f"sector {s.number}'s update was sent to the chain: the upgrade cannot be aborted")
        if s.kind == "cc" and want in (S.WAIT_DEALS, S.ADD_PIECE):
            raise BadResume(f"sector {s.number} is a CC sector: it takes no pieces")
        missing = [f for f in S.REQUIRES.get(want, ()) if not getattr(s, f)]
        if missing:
            raise BadResume(f"sector {s.number} cannot go to {want}: it has no {', '.join(missing)}")
        return want


def _fits(sizes: list[int], sector_size: int) -> bool:
    try:
        commp_mod.piece_layout(sizes, sector_size)
        return True
    except commp_mod.PiecesDoNotFit:
        return False


def _retry(kind):
    return lambda core, s, now: core._ev(kind, s)


HANDLERS = {
    S.WAIT_DEALS: SealingCore._wait_deals,
    S.ADD_PIECE: SealingCore._add_piece,
    S.PACKING: SealingCore._packing,
    S.GET_TICKET: SealingCore._get_ticket,
    S.PRE_COMMIT1: SealingCore._pre_commit1,
    S.PRE_COMMIT2: SealingCore._pre_commit2,
    S.PRE_COMMITTING: SealingCore._pre_committing,
    S.SUBMIT_PRE_COMMIT_BATCH: SealingCore._in_batch,
    S.PRE_COMMIT_BATCH_WAIT: SealingCore._pre_commit_wait,
    S.PRE_COMMIT_WAIT: SealingCore._pre_commit_wait,
    S.WAIT_SEED: SealingCore._wait_seed,
    S.COMMITTING: SealingCore._committing,
    S.SUBMIT_COMMIT: SealingCore._submit_commit,
    S.SUBMIT_COMMIT_AGGREGATE: SealingCore._in_batch,
    S.COMMIT_AGGREGATE_WAIT: SealingCore._commit_wait,
    S.COMMIT_WAIT: SealingCore._commit_wait,
    S.FINALIZE_SECTOR: SealingCore._finalize,
    S.PROVING: SealingCore._nothing,
    S.ADD_PIECE_FAILED: _retry(E.RetryAddPiece),
    S.SEAL_PRE_COMMIT1_FAILED: _retry(E.RetryPreCommit1),
    S.SEAL_PRE_COMMIT2_FAILED: SealingCore._seal_pre_commit2_failed,
    S.PRE_COMMIT_FAILED: SealingCore._check_chain,
    S.COMPUTE_PROOF_FAILED: SealingCore._compute_proof_failed,
    S.COMMIT_FAILED: SealingCore._check_chain,
    S.FINALIZE_FAILED: _retry(E.RetryFinalize),
    S.FAULTY: SealingCore._nothing,
    S.FAULT_REPORTED: SealingCore._nothing,
    S.TERMINATING: SealingCore._in_batch,
    S.TERMINATE_WAIT: lambda core, s, now: [core._cmd(C.WaitTerminate, s, msg_id=s.terminate_msg)],
    S.TERMINATE_FAILED: _retry(E.Terminate),
    S.REMOVING: lambda core, s, now: [core._cmd(C.RemoveSector, s)],
    S.REMOVE_FAILED: _retry(E.Remove),
    S.ABORTED: lambda core, s, now: [core._cmd(C.AbortWork, s)],
    S.REBUILD_CLEAN: lambda core, s, now: [core._cmd(C.CleanSector, s)],
    S.REBUILD_ADD_PIECE: SealingCore._add_piece,
    S.REBUILD_PRE_COMMIT1: SealingCore._pre_commit1,
    S.REBUILD_PRE_COMMIT2: SealingCore._pre_commit2,
    S.REBUILD_CHECK: SealingCore._committing,
    S.REBUILD_VERIFY: SealingCore._verify,
    S.REBUILD_FINALIZE: SealingCore._finalize,
    S.REBUILD_FAILED: _retry(E.RetryRebuild),
    S.UNSEALING: SealingCore._unsealing,
    S.UNSEAL_FAILED: _retry(E.RetryUnseal),
    S.SNAP_DEALS_WAIT_DEALS: SealingCore._wait_deals,
    S.SNAP_DEALS_ADD_PIECE: SealingCore._add_piece,
    S.SNAP_DEALS_PACKING: SealingCore._packing,
    S.UPDATE_REPLICA: SealingCore._replica_update,
    S.PROVE_REPLICA_UPDATE: SealingCore._prove_replica_update,
    S.SUBMIT_REPLICA_UPDATE: lambda core, s, now: [core._cmd(C.SendReplicaUpdate, s, comm_r_new=s.update_comm_r,
                                                             proof=s.update_proof)],
    S.REPLICA_UPDATE_WAIT: lambda core, s, now: [core._cmd(C.WaitReplicaUpdate, s, msg_id=s.update_msg,
                                                           comm_r_new=s.update_comm_r)],
    S.FINALIZE_REPLICA_UPDATE: SealingCore._finalize_replica_update,
    S.UPDATE_ACTIVATING: lambda core, s, now: [core._cmd(C.WaitUpdateActive, s, comm_r_new=s.update_comm_r,
                                                         landed=s.update_epoch)],
    S.RELEASE_SECTOR_KEY: lambda core, s, now: core._finalize_replica_update(s, now, release_key=True),
    S.SNAP_DEALS_ADD_PIECE_FAILED: _retry(E.RetryAddPiece),
    S.REPLICA_UPDATE_FAILED: SealingCore._replica_update_failed,
    S.FINALIZE_REPLICA_UPDATE_FAILED: _retry(E.RetryFinalizeReplicaUpdate),
    S.RELEASE_SECTOR_KEY_FAILED: _retry(E.RetryReleaseSectorKey),
    S.ABORT_UPGRADE: lambda core, s, now: [core._cmd(C.RunFinalizeReplicaUpdate, s, task="FRU", drop_update=True)],
}
