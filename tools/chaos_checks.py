"""The invariants tools/chaos.py checks after a chaos run, each a function over what the
nodes left on disk (and, for deadlines, when the harness had each node up). Each returns
`(violations, info)`: a list of Violation (empty: the invariant holds) and a dict of
figures for the report.

- sectors_proving_once  (check_sectors): every pledged sector's sealing log records its
  step FinalizeSector -> Proving exactly once and it is sealed now (Proving, or faulty:
  Faulty/FaultReported, which the deadline check judges), and on chain its
  PreCommitSector and its ProveCommitSector each landed (exit code 0) exactly once; no
  sector the run did not pledge is on chain or in the store.
- results_once  (check_results): no task result was computed again after it was stored,
  and none was lost. From the workers' task log (ZQNODE_TASK_LOG, appended in order):
  once a call's last run ended (the run whose result its worker stored; a worker killed
  between a run's end and its store runs the same call again), no other call of the same
  work (same task, sector and params) starts. From each worker's call store: no call
  started more often than the store counts runs, and no stored ok result was left
  unacknowledged by the manager (lost between worker and manager).
- deadlines_made  (check_deadlines): the chain is replayed from genesis; each WindowPoSt
  deadline occurrence holding sectors ends "proven" (every partition that needed a proof
  was posted, none skipped a sector, no fault declared for it, no sector faulty), "missed"
  (a partition that needed a proof was not posted), "faulted" (sectors skipped or declared
  faulty for it) or "faulty" (sectors faulty since an earlier occurrence and not declared
  recovered: excused, since recoveries are declared two deadlines ahead).
  A missed or faulted occurrence is a violation when the policy could have made it: the
  hub, the chain and the poster were each up without a break from `warmup` seconds
  before the tipset of the Open epoch of the deadline two before it (when the poster
  checks the sectors of the deadline two ahead and declares faults or recoveries; its
  Challenge comes later) to the tipset of its last epoch (times are the tipsets'
  timestamps and the harness's clock: both wall clock), their links to the hub never
  delayed or cut meanwhile, and no reorg replaced an epoch from that Open to its end.
- databases_intact  (check_databases): `PRAGMA integrity_check` says ok for every file.

Besides the invariants, `work` counts what the chaos cost (figures, never violations):
task runs and re-runs, and the task time thrown away, per task type and why.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
from collections import defaultdict

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain import miner as actor
from zqnode.nodes.chain.core import Chain, ChainState, Genesis, Verifiers
from zqnode.nodes.chain.policy import deadline_info
from zqnode.nodes.chain.store import ChainStore
from zqnode.nodes.sealing.store import SealingStore
from zqnode.nodes.worker.calls import Call
from zqnode.nodes.worker.store import CallStore

INVARIANTS = ("sectors_proving_once", "results_once", "deadlines_made", "databases_intact")


class Violation(msgspec.Struct, frozen=True):
    invariant: str
    detail: str


@contextlib.contextmanager
def _opened(store_class, path: pathlib.Path):
    """A node's store, read through its own class (never created here when missing)."""
    if not pathlib.Path(path).exists():
        raise FileNotFoundError(f"no database at {path}")
    store = store_class(path)
    try:
        yield store
    finally:
        store.close()


def read_tipsets(chain_db: pathlib.Path) -> tuple[Genesis, list[M.Tipset]]:
    with _opened(ChainStore, chain_db) as store:
        return store.genesis(), store.tipsets()


def head_state(chain_db: pathlib.Path) -> tuple[int, ChainState]:
    """The head epoch and the chain state after it."""
    with _opened(ChainStore, chain_db) as store:
        return store.head_state()


def next_closes(genesis: Genesis, state: ChainState, miner: int, from_epoch: int) -> dict[int, int]:
    """For each deadline holding sectors, the close of its first occurrence whose sectors
    are checked (at the Open of the deadline two before it) at `from_epoch` or later."""
    pol = Chain(genesis, _trusting()).policy
    m = state.miners[miner]
    closes = {}
    for index, dl in enumerate(m.deadlines):
        if dl.total_sectors:
            d = actor.proving_deadline(m, pol, from_epoch)
            d = deadline_info(pol, d.period_start, index, from_epoch)
            while d.open - 2 * pol.challenge_window < from_epoch:
                d = deadline_info(pol, d.period_start + pol.proving_period, index, from_epoch)
            closes[index] = d.close
    return closes


def _landed(tipsets: list[M.Tipset]):
    """(epoch, message, decoded params) of every message that landed with exit code 0."""
    for ts in tipsets:
        for msg, receipt in zip(ts.messages, ts.receipts):
            if receipt.exit_code == 0:
                yield ts.epoch, msg, M.decode_params(msg.method, msg.params)


# -- sectors_proving_once -------------------------------------------------------------------

SEALED = ("Proving", "Faulty", "FaultReported")   # sealed and on chain (maybe faulty now)


def sealing_states(sealing_db: pathlib.Path) -> dict[int, str]:
    with _opened(SealingStore, sealing_db) as store:
        return {s.number: s.state for s in store.sectors()}


def times_finalized(sealing_db: pathlib.Path) -> dict[int, int]:
    """Per sector, how often its log records Finalized -> Proving."""
    with _opened(SealingStore, sealing_db) as store:
        return {s.number: n for s in store.sectors()
                if (n := sum(1 for e in store.log(s.number) if (e.event, e.state) == ("Finalized", "Proving")))}


def check_sectors(chain_db: pathlib.Path, sealing_db: pathlib.Path, pledged: list[int],
                  miner: int) -> tuple[list[Violation], dict]:
    name = "sectors_proving_once"
    out: list[Violation] = []
    _, tipsets = read_tipsets(chain_db)
    counts: dict[str, dict[int, int]] = {"PreCommitSector": defaultdict(int),
                                         "ProveCommitSector": defaultdict(int)}
    for _, msg, params in _landed(tipsets):
        if msg.to == miner and msg.method in counts:
            counts[msg.method][params.sector_number] += 1
    states, finalized = sealing_states(sealing_db), times_finalized(sealing_db)
    for n in pledged:
        for method, per_sector in counts.items():
            if per_sector.get(n, 0) != 1:
                out.append(Violation(name, f"sector {n}: {method} landed {per_sector.get(n, 0)} "
                                           f"times on chain (want exactly once)"))
        if finalized.get(n, 0) != 1 or states.get(n) not in SEALED:
            out.append(Violation(name, f"sector {n} reached Proving {finalized.get(n, 0)} times "
                                       f"(want once) and is {states.get(n, 'missing')} in the sealing store"))
    strangers = sorted((set(counts["PreCommitSector"]) | set(states)) - set(pledged))
    if strangers:
        out.append(Violation(name, f"sectors {strangers} were never pledged but are on chain or "
                                   f"in the sealing store"))
    proving = sum(1 for n in pledged if states.get(n) == "Proving")
    faulty = sum(1 for n in pledged if states.get(n) in SEALED[1:])
    return out, {"pledged": len(pledged), "proving": proving, "faulty_now": faulty,
                 "head_epoch": tipsets[-1].epoch}


# -- results_once ---------------------------------------------------------------------------

def read_task_log(task_log: pathlib.Path) -> list[dict]:
    if not task_log.exists():
        return []
    return [json.loads(line) for line in task_log.read_text().splitlines() if line.strip()]


def worker_calls(worker_db: pathlib.Path) -> list[Call]:
    with _opened(CallStore, worker_db) as store:
        return store.calls()


def check_results(task_log: pathlib.Path, worker_dbs: dict[str, pathlib.Path]) -> tuple[list[Violation], dict]:
    name = "results_once"
    out: list[Violation] = []
    events = read_task_log(task_log)
    last_end: dict[str, int] = {}                 # call -> index of its last end
    call_work: dict[str, str] = {}
    for i, e in enumerate(events):
        call_work[e["call_id"]] = e["work_id"]
        if e["event"] == "end":
            last_end[e["call_id"]] = i
    stored_at: dict[str, list[tuple[int, str]]] = defaultdict(list)   # work -> (index, call)
    for call, i in last_end.items():
        stored_at[call_work[call]].append((i, call))
    flagged = set()
    for i, e in enumerate(events):
        if e["event"] != "start" or (e["work_id"], e["call_id"]) in flagged:
            continue
        earlier = [c for j, c in stored_at.get(e["work_id"], ()) if j < i and c != e["call_id"]]
        if earlier:
            flagged.add((e["work_id"], e["call_id"]))
            out.append(Violation(name, f"{e['task']} of sector {e['sector']} (work {e['work_id'][:12]}) "
                                       f"started again by call {e['call_id']} on {e['worker']} after "
                                       f"call {earlier[0]} had computed it"))
    starts: dict[str, int] = defaultdict(int)
    for e in events:
        if e["event"] == "start":
            starts[e["call_id"]] += 1
    calls = 0
    for worker, path in sorted(worker_dbs.items()):
        for c in worker_calls(path):
            calls += 1
            if starts.get(c.call_id, 0) > c.runs:
                out.append(Violation(name, f"call {c.call_id} ({c.task} of sector {c.number}) on "
                                           f"{worker} started {starts[c.call_id]} times but its "
                                           f"store counts {c.runs} runs"))
            if c.state == "done" and c.ok and not c.returned:
                out.append(Violation(name, f"the result of call {c.call_id} ({c.task} of sector "
                                           f"{c.number}) on {worker} was stored but never "
                                           f"acknowledged by the manager"))
    ends = sum(1 for e in events if e["event"] == "end")
    works = len({e["work_id"] for e in events})
    return out, {"task_starts": sum(starts.values()), "task_ends": ends, "works": works,
                 "calls_in_stores": calls}


# -- work: re-runs and wasted task time ----------------------------------------------------

def work(task_log: pathlib.Path, up: dict[str, list[tuple[float, float]]]) -> dict:
    """Task runs and what they wasted, from the task log. A run ends at the call's next
    line: `end` (a result), `fail` (an error), `kill` (the worker stopped it); a run with
    none (the next line is the call's start again, or nothing) died with its worker, at
    the end of the worker's `up` interval it started in."""
    events = read_task_log(task_log)
    per_task: dict[str, dict] = defaultdict(lambda: {"runs": 0, "results": 0, "wasted_s": 0.0})
    why_s: dict[str, float] = defaultdict(float)
    lines: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        lines[e["call_id"]].append(e)
    for call in lines.values():
        for i, e in enumerate(call):
            if e["event"] != "start":
                continue
            t = per_task[e["task"]]
            t["runs"] += 1
            after = call[i + 1] if i + 1 < len(call) else None
            if after is not None and after["event"] == "end":
                t["results"] += 1
                continue
            if after is not None and after["event"] in ("fail", "kill"):
                why, until = ("failed" if after["event"] == "fail" else "killed"), after.get("ts", 0)
            else:
                why = "crashed"
                until = next((b for a, b in up.get(e["worker"], []) if a <= e.get("ts", 0) <= b),
                             after.get("ts", 0) if after else e.get("ts", 0))
            lost = max(0.0, until - e.get("ts", 0))
            t["wasted_s"] += lost
            why_s[why] += lost
    runs = sum(t["runs"] for t in per_task.values())
    return {"task_runs": runs, "reruns": runs - len({e["work_id"] for e in events}),
            "wasted_task_s": round(sum(why_s.values()), 1),
            "wasted_by_why": {k: round(v, 1) for k, v in sorted(why_s.items())},
            "per_task": {k: {**v, "wasted_s": round(v["wasted_s"], 1)} for k, v in sorted(per_task.items())}}


# -- deadlines_made -------------------------------------------------------------------------

class Outcome(msgspec.Struct, kw_only=True):
    index: int
    open: int
    close: int
    status: str                        # proven | missed | faulted | faulty
    detail: str = ""
    excused: str = ""                  # why the policy could not have made it ("": it could)


def _trusting() -> Verifiers:
    """Every message replayed already passed the real verifiers (its receipt is ok)."""
    return Verifiers(verify_seal=lambda **_: True, verify_window_post=lambda **_: True)


def deadline_outcomes(genesis: Genesis, tipsets: list[M.Tipset], miner: int) -> list[Outcome]:
    """Replay the chain's messages that landed and each epoch's end; the outcome of every
    deadline occurrence that held sectors when it closed."""
    chain = Chain(genesis, _trusting())
    pol = chain.policy
    chain.tipsets = []
    outcomes: list[Outcome] = []
    skipped: dict[int, set] = defaultdict(set)        # deadline index -> skipped this window
    declared: dict[int, set] = defaultdict(set)       # deadline index -> declared faulty
    for ts in tipsets:
        chain._index(ts)
        if ts.epoch == 0:
            continue
        for msg, receipt in zip(ts.messages, ts.receipts):
            if receipt.exit_code != 0 or msg.to != miner:
                continue
            r = chain._execute(msg, ts.epoch)
            if r.exit_code != 0:
                raise ValueError(f"replaying {msg.method} at epoch {ts.epoch} failed: {r.error}")
            p = M.decode_params(msg.method, msg.params)
            if msg.method == "SubmitWindowedPoSt":
                skipped[p.deadline] |= {n for part in p.partitions for n in part.skipped}
            elif msg.method == "DeclareFaults":
                for d in p.faults:
                    declared[d.deadline] |= set(d.sectors)
        m = chain.state.miners[miner]
        di = actor.proving_deadline(m, pol, ts.epoch)
        if ts.epoch == di.close - 1:
            dl = m.deadlines[di.index]
            if dl.total_sectors:
                missed = [i for i, part in enumerate(dl.partitions) if i not in dl.posted
                          and (part.recoveries or part.faults != set(part.sectors))]
                faulted = sorted(skipped.pop(di.index, set()) | declared.pop(di.index, set()))
                carried = sorted(set().union(*(p.faults for p in dl.partitions)) - set(faulted))
                o = Outcome(index=di.index, open=di.open, close=di.close, status="proven")
                if missed:
                    o.status, o.detail = "missed", f"partitions {missed} not proven"
                elif faulted:
                    o.status, o.detail = "faulted", f"sectors {faulted} skipped or declared faulty"
                elif carried:     # faulty since an earlier occurrence, not declared recovered
                    o.status, o.detail = "faulty", f"sectors {carried} still faulty"
                    o.excused = "its sectors were faulty before it"
                outcomes.append(o)
            skipped.pop(di.index, None)
            declared.pop(di.index, None)
        actor.end_of_epoch(m, pol, ts.epoch)
    return outcomes


def _covered(intervals: list[tuple[float, float]], start: float, end: float) -> bool:
    return any(a <= start and end <= b for a, b in intervals)


def check_deadlines(chain_db: pathlib.Path, up: dict[str, list[tuple[float, float]]], miner: int,
                    warmup: float, needed: tuple[str, ...],
                    reorgs: list[list[int]] = ()) -> tuple[list[Violation], dict]:
    """`up`: node name -> the (start, end) wall-clock intervals it ran (and reached the
    hub) without a break; `needed`: the nodes a deadline needs (the hub, the chain, the
    poster); `reorgs`: the epochs each reorg replaced (its messages landed again later,
    maybe too late: an occurrence they fall in is excused)."""
    name = "deadlines_made"
    genesis, tipsets = read_tipsets(chain_db)
    pol = Chain(genesis, _trusting()).policy
    out: list[Violation] = []
    outcomes = deadline_outcomes(genesis, tipsets, miner)
    for o in outcomes:
        checked = max(o.open - 2 * pol.challenge_window, 0)   # its sectors checked, faults declared
        start, end = tipsets[checked].timestamp - warmup, tipsets[o.close - 1].timestamp
        down = [n for n in needed if not _covered(up.get(n, []), start, end)]
        reverted = [r for r in reorgs if r and r[0] <= o.close - 1 and checked <= r[-1]]
        if down:
            o.excused = f"{', '.join(down)} not up throughout"
        elif reverted:
            o.excused = f"a reorg replaced epochs {reverted[0][0]}..{reverted[0][-1]}"
        elif o.status != "proven" and not o.excused:
            out.append(Violation(name, f"deadline {o.index} [{o.open},{o.close}) {o.status}: {o.detail} "
                                       f"while {', '.join(needed)} were up"))
    counts: dict[str, int] = defaultdict(int)
    for o in outcomes:
        counts[o.status + (" (excused)" if o.excused else "")] += 1
    return out, {"occurrences": len(outcomes), "qualifying": sum(1 for o in outcomes if not o.excused),
                 **dict(sorted(counts.items()))}


# -- databases_intact -----------------------------------------------------------------------

def check_databases(paths: list[pathlib.Path]) -> tuple[list[Violation], dict]:
    name = "databases_intact"
    out: list[Violation] = []
    for path in paths:
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
            finally:
                db.close()
        except sqlite3.DatabaseError as e:
            rows = [str(e)]
        if rows != ["ok"]:
            out.append(Violation(name, f"{path}: {'; '.join(rows)[:300]}"))
    return out, {"databases": len(paths)}
