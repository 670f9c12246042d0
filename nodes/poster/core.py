"""The poster's pure core: per-deadline WindowPoSt runners, driven by head changes.

`PosterCore.handle(event, now) -> list[Command]`; no trio, no bus, no disk, no clock
(`now` is taken, as by every core, but notes are dated by epoch). The shell runs the
commands and feeds their results back as events; every command names its runner
(`cause`), and events about a runner that has ended are ignored (`stale_events`).

Per miner the core tracks the current deadline and, once the head reaches its Challenge
epoch, the next one. Each tracked deadline has one runner:

    waiting --(head >= Challenge + challenge_confirmations)--> LoadDeadline
    loading --DeadlineLoaded--> StartCheck (sectors to prove + sectors of index+2)
    checking --CheckDone--> DeclareFaults / DeclareRecoveries (for deadline index+2,
                            before its FaultCutoff), ProveBatch per batch of partitions
    running: per batch   proving --BatchProven--> StoreProofs, then PushSubmission once
                                   head >= Open + submit_after_open
                         pushing --MessagePushed--> WaitMessage(confidence)
                         waiting --MessageLanded(ok)--> landed
                         a failed receipt or a dropped message: pushed again while open
             a prover error: ProveBatch again after a back-off, until Close, with the reason noted
             skipped sectors in a result: noted, and the batch proven again without them

A runner ends at Close (Abort + RecordOutcome) and is replaced (Abort, then a new runner)
when a revert replaces its Challenge tipset (the randomness may change), or when a
head snapshot hides what happened in between. A new runner reloads what the shell has
stored for the same randomness (proofs, messages), so a replaced or restarted runner
pushes stored proofs instead of proving again and waits for its messages already sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from zqnode.bus.retry import doubling
from zqnode.nodes.chain.policy import DeadlineInfo, Policy, current_deadline, next_deadline
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.events import (
    Abort, BatchProven, CheckDone, CheckFailed, Command, Declaration, DeclareFaults,
    DeclareRecoveries, DeadlineLoaded, DeadlineOutcome, Event, HeadChanged, LoadDeadline,
    LoadFailed, MessageDropped, MessageLanded, MessagePushed, MinerInfo, MinerTracked,
    PartitionProof, PartitionState, PartitionWork, PosterError, PoStPart, ProveBatch, ProveFailed,
    PushFailed, PushSubmission, RecordOutcome, SkippedSector, StartCheck, StoredBatch, StoreProofs,
    Tip, UnexpectedEvent, WaitMessage)


# -- runner state ----------------------------------------------------------------------------------

@dataclass
class Batch:
    index: int
    partitions: list[int]
    state: str               # proving | proven | held (push refused) | pushing | waiting | landed | void
    attempt: int = 0
    failures: int = 0                  # prover errors in a row (the back-off)
    proofs: list[PartitionProof] = field(default_factory=list)
    msg_id: str = ""
    messages: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"batch-{self.index}"


@dataclass
class Decl:
    ref: str                           # faults | recoveries
    declarations: list[Declaration]
    state: str = "pushing"   # pushing | waiting | ready (to push again) | held | landed | expired
    msg_id: str = ""
    messages: list[str] = field(default_factory=list)


@dataclass
class Runner:
    id: str
    miner: int
    dl: DeadlineInfo
    ahead_index: int
    ahead_cutoff: int                  # FaultCutoff of deadline index+2
    state: str = "waiting"             # waiting | loading | checking | running
    randomness: bytes = b""
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    posted: set[int] = field(default_factory=set)
    ahead: list[PartitionState] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)     # partitions for new batches after the check
    skip: dict[int, str] = field(default_factory=dict)
    declared: dict[int, str] = field(default_factory=dict)   # faults declared for index+2: why
    batches: dict[int, Batch] = field(default_factory=dict)
    decls: dict[str, Decl] = field(default_factory=dict)
    load_failures: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return self.state != "waiting"

    def needed(self) -> list[int]:
        """Partitions with sectors the chain expects proven."""
        return sorted(i for i, p in self.partitions.items() if p.live())

    def landed(self) -> list[int]:
        out = set(self.posted)
        for b in self.batches.values():
            if b.state == "landed":
                out.update(b.partitions)
        return sorted(out)

    def work(self, index: int) -> list[int]:
        return [n for n in self.partitions[index].live() if n not in self.skip]

    def skipped_in(self, index: int) -> list[int]:
        return [n for n in self.partitions[index].live() if n in self.skip]


MAX_NOTES = 200
_BEFORE_EVERYTHING = -(1 << 62)       # a revert of unknown depth: below every Challenge epoch


class PosterCore:
    def __init__(self, policy: Policy, cfg: PosterConfig | None = None):
        self.policy = policy
        self.cfg = cfg or PosterConfig()
        self.miners: dict[int, MinerInfo] = {}
        self.head: Tip | None = None
        self.runners: dict[tuple[int, int], Runner] = {}     # (miner, open) -> runner
        self._by_id: dict[str, Runner] = {}
        self._serial = 0
        self.outcomes: list[DeadlineOutcome] = []            # newest last, bounded
        self.stale_events = 0

    @property
    def batch_size(self) -> int:
        limit = self.policy.posted_partitions_max
        if self.cfg.max_partitions_per_message:
            limit = min(limit, self.cfg.max_partitions_per_message)
        return limit

    # -- entry point ------------------------------------------------------------------------------
    def handle(self, event: Event, now: float = 0.0) -> list[Command]:
        if isinstance(event, MinerTracked):
            return self._on_miner(event)
        if isinstance(event, HeadChanged):
            return self._on_head(event)
        runner = self._by_id.get(getattr(event, "runner", None))
        if runner is None:
            if not hasattr(event, "runner"):
                raise UnexpectedEvent(f"unknown event {type(event).__name__}")
            self.stale_events += 1                # a runner that ended: its work no longer counts
            return []
        handler = _RUNNER_TABLE.get((runner.state, type(event)))
        if handler is None:
            raise UnexpectedEvent(f"runner {runner.id} in state {runner.state} cannot take "
                                  f"{type(event).__name__}")
        out: list[Command] = []
        handler(self, runner, event, out)
        self._step(runner, out)
        return out

    # -- miners and head changes ------------------------------------------------------------------
    def _on_miner(self, ev: MinerTracked) -> list[Command]:
        m = ev.miner
        if m.actor_id in self.miners:
            raise PosterError(f"miner f0{m.actor_id} is tracked already")
        if not 0 <= m.period_offset < self.policy.proving_period:
            raise PosterError(f"miner f0{m.actor_id}: period offset {m.period_offset} outside "
                              f"0..{self.policy.proving_period - 1}")
        self.miners[m.actor_id] = m
        out: list[Command] = []
        if self.head is not None:
            self._track(out)
        return out

    def _on_head(self, ev: HeadChanged) -> list[Command]:
        if not ev.applied and not ev.reverted:
            raise PosterError("a head change needs applied or reverted tipsets")
        new = ev.applied[-1] if ev.applied else Tip(min(t.epoch for t in ev.reverted) - 1, "")
        out: list[Command] = []
        lowest: int | None = None
        if ev.snapshot:
            if self.head is not None and new == self.head:
                return out                     # the same head again: nothing happened
            lowest = _BEFORE_EVERYTHING if self.head is not None else None
        elif ev.reverted:
            lowest = min(t.epoch for t in ev.reverted)
        elif self.head is not None and new.epoch <= self.head.epoch:
            return out                         # a duplicate or an older head: already seen
        self.head = new
        wanted = self._wanted()
        self._end_unwanted(wanted, out)
        if lowest is not None:
            why = ("head snapshot: what happened since the last head is unknown" if ev.snapshot
                   else f"revert down to epoch {lowest} replaced the Challenge tipset")
            for key in sorted(self.runners):
                if lowest <= self.runners[key].dl.challenge:
                    self._replace(self.runners[key], why, out)
        self._create_and_step(wanted, out, new_head=True)
        return out

    def _track(self, out: list[Command]) -> None:
        wanted = self._wanted()
        self._end_unwanted(wanted, out)
        self._create_and_step(wanted, out)

    def current_deadlines(self) -> dict[int, DeadlineInfo]:
        """Each miner's deadline at the head."""
        return {mid: current_deadline(self.policy, self.miners[mid].period_offset, self.head.epoch)
                for mid in sorted(self.miners)}

    def _wanted(self) -> dict[tuple[int, int], DeadlineInfo]:
        """The current deadline of each miner, and the next once its Challenge is reached."""
        h = self.head.epoch
        wanted: dict[tuple[int, int], DeadlineInfo] = {}
        for mid, cur in self.current_deadlines().items():
            wanted[(mid, cur.open)] = cur
            nxt = next_deadline(cur, self.policy)
            if h >= nxt.challenge:
                wanted[(mid, nxt.open)] = nxt
        return wanted

    def _end_unwanted(self, wanted: dict, out: list[Command]) -> None:
        h = self.head.epoch
        for key in sorted(self.runners):
            if key not in wanted:
                r = self.runners[key]
                closed = h >= r.dl.close
                self._end(r, "deadline closed" if closed else
                          f"head {h} is before the Challenge epoch {r.dl.challenge}", out,
                          record=closed)

    def _create_and_step(self, wanted: dict, out: list[Command], new_head: bool = False) -> None:
        for key in sorted(wanted):
            if key not in self.runners:
                self._new_runner(key[0], wanted[key])
        for key in sorted(self.runners):
            self._step(self.runners[key], out, new_head)

    def _new_runner(self, miner: int, dl: DeadlineInfo) -> Runner:
        self._serial += 1
        ahead_open = dl.open + 2 * self.policy.challenge_window
        r = Runner(id=f"f0{miner}/d{dl.index}@{dl.open}#{self._serial}", miner=miner, dl=dl,
                   ahead_index=(dl.index + 2) % self.policy.period_deadlines,
                   ahead_cutoff=ahead_open - self.policy.fault_cutoff)
        self.runners[(miner, dl.open)] = r
        self._by_id[r.id] = r
        return r

    def _replace(self, r: Runner, why: str, out: list[Command]) -> None:
        self._end(r, why, out, record=False)
        self._new_runner(r.miner, r.dl)

    def _end(self, r: Runner, why: str, out: list[Command], record: bool) -> None:
        del self.runners[(r.miner, r.dl.open)]
        del self._by_id[r.id]
        if r.started:
            out.append(Abort(cause=r.id, reason=why))
        if record:
            outcome = self._outcome(r)
            self.outcomes.append(outcome)
            del self.outcomes[:-2 * self.policy.period_deadlines * max(len(self.miners), 1)]
            out.append(RecordOutcome(cause=r.id, outcome=outcome))

    def _outcome(self, r: Runner) -> DeadlineOutcome:
        needed, landed = r.needed(), r.landed()
        if r.state in ("waiting", "loading"):
            status = "unknown"
        elif not needed:
            status = "empty"
        elif set(needed) <= set(landed):
            status = "proven"
        else:                       # pushed but not confirmed before Close: the chain knows better
            sent = {i for b in r.batches.values() if b.state == "waiting" for i in b.partitions}
            status = "unconfirmed" if set(needed) <= set(landed) | sent else "missed"
        messages = [m for b in r.batches.values() for m in b.messages]
        return DeadlineOutcome(miner=r.miner, index=r.dl.index, open=r.dl.open, close=r.dl.close,
                               status=status, needed=needed, landed=landed,
                               skipped=[SkippedSector(n, why) for n, why in sorted(r.skip.items())],
                               messages=messages, notes=list(r.notes),
                               declared=[SkippedSector(n, why) for n, why in sorted(r.declared.items())])

    # -- the per-head step: start, push what may be pushed ---------------------------------------------
    def _step(self, r: Runner, out: list[Command], new_head: bool = False) -> None:
        if self.head is None:
            return
        h = self.head.epoch
        if new_head:                       # what the pool refused is offered again
            for t in [*r.batches.values(), *r.decls.values()]:
                if t.state == "held":
                    t.state = "proven" if isinstance(t, Batch) else "ready"
        if r.state == "waiting" and h >= r.dl.challenge + self.cfg.challenge_confirmations:
            r.state = "loading"
            out.append(self._load(r))
        if r.state != "running":
            return
        if h >= r.dl.open + self.cfg.submit_after_open:
            for b in sorted(r.batches.values(), key=lambda b: b.index):
                if b.state == "proven":
                    self._push(r, b, out)
        for d in r.decls.values():
            if d.state == "ready":
                if self._may_declare(r):
                    self._push_decl(r, d, out)
                else:
                    d.state = "expired"
                    self._note(r, f"{d.ref}: too late to declare (fault cutoff {r.ahead_cutoff} "
                                  f"of deadline {r.ahead_index})")

    def _load(self, r: Runner, delay: float = 0.0) -> LoadDeadline:
        return LoadDeadline(cause=r.id, miner=r.miner, index=r.dl.index, open=r.dl.open,
                            challenge=r.dl.challenge, ahead_index=r.ahead_index, delay_s=delay)

    def _may_declare(self, r: Runner) -> bool:
        return self.head.epoch + 1 < r.ahead_cutoff     # it executes in the next tipset at best

    def _backoff(self, failures: int) -> float:
        return doubling(self.cfg.prove_retry_s, self.cfg.prove_retry_max_s, failures)

    def _note(self, r: Runner, text: str) -> None:
        epoch = self.head.epoch if self.head else -1
        r.notes.append(f"epoch {epoch}: {text}")
        del r.notes[:-MAX_NOTES]

    # -- loading and checking ------------------------------------------------------------------------
    def _on_loaded(self, r: Runner, ev: DeadlineLoaded, out: list[Command]) -> None:
        if len(ev.randomness) != 32:
            raise PosterError(f"runner {r.id}: randomness must be 32 bytes, got {len(ev.randomness)}")
        r.randomness = ev.randomness
        r.partitions = {p.index: p for p in ev.partitions}
        r.posted = set(ev.posted)
        r.ahead = list(ev.ahead)
        covered: set[int] = set()
        for sb in sorted(ev.stored, key=lambda s: s.batch):
            b = self._resume(r, sb, out)
            if b is not None:
                covered.update(b.partitions)
        r.todo = [i for i in r.needed() if i not in covered and i not in r.posted]
        to_check = sorted({n for i in r.todo for n in r.partitions[i].live()})
        if self._may_declare(r) and (self.cfg.declare_faults or self.cfg.declare_recoveries):
            to_check = sorted(set(to_check) | {n for p in r.ahead for n in p.sectors})
        if to_check:
            r.state = "checking"
            out.append(StartCheck(cause=r.id, miner=r.miner, sectors=to_check))
        else:
            r.state = "running"
            self._plan(r, [], out)

    def _resume(self, r: Runner, sb: StoredBatch, out: list[Command]) -> Batch | None:
        """A stored batch taken up again, or None when it cannot be (its partitions are then
        proven afresh)."""
        parts = sb.partitions
        if not parts or any(i not in r.partitions for i in parts):
            self._note(r, f"stored batch {sb.batch} names partitions the deadline does not have")
            return None
        b = Batch(index=sb.batch, partitions=list(parts), state="proven", proofs=list(sb.proofs))
        for s in sb.skipped:
            r.skip.setdefault(s.number, s.reason)
        if sb.msg_id and sb.msg_status in ("pending", "landed"):
            b.state, b.msg_id, b.messages = "waiting", sb.msg_id, [sb.msg_id]
            self._note(r, f"{b.ref}: resumed, waiting for message {sb.msg_id[:16]}")
            out.append(self._wait(r, b.ref, sb.msg_id))
        elif set(parts) <= r.posted:
            b.state = "landed"
        elif not self._usable(r, b):
            self._note(r, f"stored batch {sb.batch} does not match the chain's partitions now")
            return None
        else:
            if sb.msg_id:
                b.messages = [sb.msg_id]
            self._note(r, f"{b.ref}: resumed with stored proofs"
                          + (f" (message {sb.msg_id[:16]} {sb.msg_status})" if sb.msg_id else ""))
        r.batches[b.index] = b
        return b

    def _usable(self, r: Runner, b: Batch) -> bool:
        by_index = {p.index: p for p in b.proofs}
        return (sorted(by_index) == sorted(b.partitions)
                and all(by_index[i].proven == r.work(i) and r.work(i) for i in b.partitions))

    def _on_load_failed(self, r: Runner, ev: LoadFailed, out: list[Command]) -> None:
        r.load_failures += 1
        self._note(r, f"loading the deadline failed: {ev.reason}")
        out.append(self._load(r, self._backoff(r.load_failures)))

    def _on_check_done(self, r: Runner, ev: CheckDone, out: list[Command]) -> None:
        failed = {s.number: s.reason for s in ev.failed}
        for i in r.todo:
            for n in r.partitions[i].live():
                if n in failed and n not in r.skip:
                    r.skip[n] = failed[n]
                    self._note(r, f"sector {n} (partition {i}) skipped: {failed[n]}")
        r.state = "running"
        if self._may_declare(r):
            self._declare(r, failed, out)
        self._plan(r, r.todo, out)

    def _on_check_failed(self, r: Runner, ev: CheckFailed, out: list[Command]) -> None:
        r.load_failures += 1
        self._note(r, f"checking sectors failed: {ev.reason}")
        r.state = "loading"
        out.append(self._load(r, self._backoff(r.load_failures)))

    def _declare(self, r: Runner, failed: dict[int, str], out: list[Command]) -> None:
        faults: list[Declaration] = []
        recoveries: list[Declaration] = []
        for p in r.ahead:
            faulty, recovering = set(p.faults), set(p.recoveries)
            new_faults = [n for n in p.sectors if n in failed and (n not in faulty or n in recovering)]
            healthy = [n for n in p.sectors if n in faulty and n not in recovering and n not in failed]
            if new_faults:
                faults.append(Declaration(deadline=r.ahead_index, partition=p.index, sectors=new_faults))
            if healthy:
                recoveries.append(Declaration(deadline=r.ahead_index, partition=p.index, sectors=healthy))
        if faults and self.cfg.declare_faults:
            d = r.decls["faults"] = Decl("faults", faults)
            r.declared.update((n, failed[n]) for f in faults for n in f.sectors)
            self._note(r, f"declaring faults in deadline {r.ahead_index}: {_sectors(faults)}")
            out.append(DeclareFaults(cause=r.id, miner=r.miner, ref=d.ref, declarations=faults))
        if recoveries and self.cfg.declare_recoveries:
            d = r.decls["recoveries"] = Decl("recoveries", recoveries)
            self._note(r, f"declaring recoveries in deadline {r.ahead_index}: {_sectors(recoveries)}")
            out.append(DeclareRecoveries(cause=r.id, miner=r.miner, ref=d.ref,
                                         declarations=recoveries))

    # -- proving ------------------------------------------------------------------------------------
    def _plan(self, r: Runner, todo: list[int], out: list[Command]) -> None:
        """New batches for `todo` (partition indexes, ascending), numbered after any resumed."""
        provable = []
        for i in todo:
            if r.work(i):
                provable.append(i)
            else:
                self._note(r, f"partition {i}: every sector failed the check; nothing to prove")
        first = max(r.batches, default=-1) + 1
        size = self.batch_size
        for k, start in enumerate(range(0, len(provable), size)):
            b = Batch(index=first + k, partitions=provable[start:start + size], state="proving")
            r.batches[b.index] = b
            out.append(self._prove(r, b))

    def _prove(self, r: Runner, b: Batch, delay: float = 0.0) -> ProveBatch:
        b.attempt += 1
        return ProveBatch(cause=r.id, miner=r.miner, deadline=r.dl.index, batch=b.index,
                          randomness=r.randomness,
                          partitions=[PartitionWork(index=i, sectors=r.work(i)) for i in b.partitions],
                          attempt=b.attempt, delay_s=delay)

    def _batch(self, r: Runner, index: int, state: str, event: Event) -> Batch:
        b = r.batches.get(index)
        if b is None or b.state != state:
            raise UnexpectedEvent(f"runner {r.id}: {type(event).__name__} for batch {index} in "
                                  f"state {b.state if b else 'none'} (expected {state})")
        return b

    def _on_proven(self, r: Runner, ev: BatchProven, out: list[Command]) -> None:
        b = self._batch(r, ev.batch, "proving", ev)
        got = {p.index: p for p in ev.partitions}
        if sorted(got) != sorted(b.partitions) or len(got) != len(ev.partitions):
            self._prover_error(r, b, f"the prover answered for partitions {sorted(got)}, "
                                     f"asked for {b.partitions}", out)
            return
        skipped = [s for p in ev.partitions for s in p.skipped if s.number not in r.skip]
        if skipped:
            for s in skipped:
                r.skip[s.number] = s.reason
            self._note(r, f"{b.ref} attempt {b.attempt}: skipped {len(skipped)} sectors "
                          f"({', '.join(f'{s.number}: {s.reason}' for s in skipped)}); proving again "
                          "without them")
            b.partitions = [i for i in b.partitions if r.work(i)]
            if not b.partitions:
                b.state = "void"
                self._note(r, f"{b.ref}: every sector was skipped; nothing to prove")
                return
            out.append(self._prove(r, b))
            return
        for i in b.partitions:
            if got[i].proven != r.work(i):
                self._prover_error(r, b, f"partition {i}: the prover proved sectors "
                                         f"{_short(got[i].proven)}, expected {_short(r.work(i))}", out)
                return
        b.proofs = [got[i] for i in b.partitions]
        b.failures = 0
        b.state = "proven"
        out.append(StoreProofs(cause=r.id, miner=r.miner, deadline=r.dl.index, open=r.dl.open,
                               randomness=r.randomness, batch=b.index, partitions=b.proofs,
                               skipped=self._skipped(r, b)))

    def _skipped(self, r: Runner, b: Batch) -> list[SkippedSector]:
        return [SkippedSector(n, r.skip[n]) for i in b.partitions for n in r.skipped_in(i)]

    def _on_prove_failed(self, r: Runner, ev: ProveFailed, out: list[Command]) -> None:
        b = self._batch(r, ev.batch, "proving", ev)
        self._prover_error(r, b, ev.reason, out)

    def _prover_error(self, r: Runner, b: Batch, reason: str, out: list[Command]) -> None:
        b.failures += 1
        delay = self._backoff(b.failures)
        self._note(r, f"{b.ref} attempt {b.attempt} failed: {reason}; retrying in {delay:g}s")
        out.append(self._prove(r, b, delay))

    # -- submitting -----------------------------------------------------------------------------------
    def _push(self, r: Runner, b: Batch, out: list[Command]) -> None:
        b.state = "pushing"
        out.append(PushSubmission(
            cause=r.id, miner=r.miner, ref=b.ref, deadline=r.dl.index, open=r.dl.open,
            randomness=r.randomness, batch=b.index,
            partitions=[PoStPart(index=i, skipped=r.skipped_in(i)) for i in b.partitions],
            proofs=[p.proof for p in b.proofs], chain_commit_epoch=r.dl.challenge))

    def _push_decl(self, r: Runner, d: Decl, out: list[Command]) -> None:
        d.state = "pushing"
        kind = DeclareFaults if d.ref == "faults" else DeclareRecoveries
        out.append(kind(cause=r.id, miner=r.miner, ref=d.ref, declarations=d.declarations))

    def _wait(self, r: Runner, ref: str, msg_id: str) -> WaitMessage:
        return WaitMessage(cause=r.id, miner=r.miner, deadline=r.dl.index, ref=ref, msg_id=msg_id,
                           confidence=self.cfg.message_confidence)

    def _target(self, r: Runner, ref: str, state: str, event: Event) -> Batch | Decl:
        if ref.startswith("batch-"):
            try:
                index = int(ref[6:])
            except ValueError:
                raise UnexpectedEvent(f"runner {r.id}: bad message ref {ref!r}") from None
            return self._batch(r, index, state, event)
        d = r.decls.get(ref)
        if d is None or d.state != state:
            raise UnexpectedEvent(f"runner {r.id}: {type(event).__name__} for {ref!r} in state "
                                  f"{d.state if d else 'none'} (expected {state})")
        return d

    def _on_pushed(self, r: Runner, ev: MessagePushed, out: list[Command]) -> None:
        t = self._target(r, ev.ref, "pushing", ev)
        t.state, t.msg_id = "waiting", ev.msg_id
        t.messages.append(ev.msg_id)
        out.append(self._wait(r, ev.ref, ev.msg_id))

    def _on_push_failed(self, r: Runner, ev: PushFailed, out: list[Command]) -> None:
        t = self._target(r, ev.ref, "pushing", ev)
        t.state = "held"
        self._note(r, f"{ev.ref}: push failed: {ev.reason}; trying again at the next tipset")

    def _on_landed(self, r: Runner, ev: MessageLanded, out: list[Command]) -> None:
        t = self._target(r, ev.ref, "waiting", ev)
        if ev.msg_id != t.msg_id:
            raise UnexpectedEvent(f"runner {r.id}: {ev.ref} waits for {t.msg_id}, not {ev.msg_id}")
        if ev.exit_code == 0:
            t.state = "landed"
            self._note(r, f"{ev.ref}: message {ev.msg_id[:16]} landed at {ev.epoch}")
            return
        self._note(r, f"{ev.ref}: message {ev.msg_id[:16]} failed at {ev.epoch} "
                      f"(exit code {ev.exit_code}: {ev.error})")
        if isinstance(t, Batch) and set(t.partitions) <= set(ev.posted):
            t.state = "landed"
            self._note(r, f"{ev.ref}: its partitions are proven on chain already")
            return
        self._resend(r, t, out)

    def _on_dropped(self, r: Runner, ev: MessageDropped, out: list[Command]) -> None:
        t = self._target(r, ev.ref, "waiting", ev)
        self._note(r, f"{ev.ref}: message {ev.msg_id[:16]} did not land: {ev.reason}")
        self._resend(r, t, out)

    def _resend(self, r: Runner, t: Batch | Decl, out: list[Command]) -> None:
        t.msg_id = ""
        if isinstance(t, Batch):
            t.state = "proven"              # _step pushes it again (the deadline is open)
        else:
            t.state = "ready"

    # -- views -------------------------------------------------------------------------------------------
    def runner(self, runner_id: str) -> Runner | None:
        return self._by_id.get(runner_id)

    def runner_for(self, miner: int, index: int) -> Runner | None:
        for r in self.runners.values():
            if r.miner == miner and r.dl.index == index:
                return r
        return None


def _sectors(decls: list[Declaration]) -> str:
    return "; ".join(f"partition {d.partition}: {_short(d.sectors)}" for d in decls)


def _short(numbers: list[int], limit: int = 12) -> str:
    text = ",".join(map(str, numbers[:limit]))
    return text + (f",... ({len(numbers)})" if len(numbers) > limit else "") if numbers else "-"


_RUNNER_TABLE = {
    ("loading", DeadlineLoaded): PosterCore._on_loaded,
    ("loading", LoadFailed): PosterCore._on_load_failed,
    ("checking", CheckDone): PosterCore._on_check_done,
    ("checking", CheckFailed): PosterCore._on_check_failed,
    ("running", BatchProven): PosterCore._on_proven,
    ("running", ProveFailed): PosterCore._on_prove_failed,
    ("running", MessagePushed): PosterCore._on_pushed,
    ("running", PushFailed): PosterCore._on_push_failed,
    ("running", MessageLanded): PosterCore._on_landed,
    ("running", MessageDropped): PosterCore._on_dropped,
    # a resumed batch can be waiting for its message while the rest is still being checked
    ("checking", MessageLanded): PosterCore._on_landed,
    ("checking", MessageDropped): PosterCore._on_dropped,
}
