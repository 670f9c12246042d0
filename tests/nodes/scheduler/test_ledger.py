"""SchedulerLedger: the scheduler node's bookkeeping and reconciliation without a bus or a clock
(what both the Trio shell and the simulator run)."""
import pytest

from zqnode.nodes.scheduler import events as m
from zqnode.nodes.scheduler.errors import SchedulerError
from zqnode.nodes.scheduler.ledger import (
    LOST_AFTER_S,
    LostRun,
    NoJob,
    NotAdopted,
    RunTwice,
    SchedulerLedger,
)
from zqnode.nodes.wire import sectors
from zqnode.nodes.wire.scheduler import RunningRequest, SchedEnqueue

GiB = 1 << 30
SECTOR = sectors.SectorRef(miner=1000, number=1)


def worker_info(tasks=("PC1",)):
    return sectors.WorkerInfo(hostname="h", tasks=tasks, resources=sectors.WorkerResources(
        cpus=32, mem_physical=256 * GiB, mem_used=0, mem_swap=0, mem_swap_used=0, gpus=()))


def job(rid, running_on="", task="PC1"):
    return SchedEnqueue(request=rid, sector=SECTOR, task=task, sector_size=32 * GiB,
                        params=b"p", running_on=running_on)


def listed(rid, state="running"):
    return RunningRequest(request=rid, task="PC1", sector=SECTOR, sector_size=32 * GiB, state=state)


@pytest.fixture
def ledger(mk):
    out = []
    s = SchedulerLedger(mk.sched(), out.append)
    s.out = out
    return s


def emitted(s, kind):
    return [c for c in s.out if isinstance(c, kind)]


def test_enqueue_runs_on_a_worker_and_remembers_when_it_was_sent(ledger):
    assert ledger.beat("w1", "s1", worker_info(), [], now=0.0) is False
    assert [c.worker for c in emitted(ledger, m.WorkerAdded)] == ["w1"]
    assert ledger.enqueue(job("r1"), now=5.0, cause="c") is False
    assert [(c.request, c.worker) for c in emitted(ledger, m.Run)] == [("r1", "w1")]
    assert ledger.sent == {"r1": 5.0} and ledger.jobs["r1"].params == b"p"
    assert ledger.enqueue(job("r1"), now=6.0) is True          # known: only its params refresh
    assert len(emitted(ledger, m.Run)) == 1


def test_a_refused_enqueue_raises_and_keeps_nothing(ledger):
    with pytest.raises(SchedulerError):
        ledger.enqueue(job("r1", task="NOPE"), now=0.0)
    assert ledger.jobs == {} and ledger.core.requests == {} and ledger.out == []


def test_a_run_the_worker_never_lists_is_lost_and_queued_again(ledger):
    ledger.beat("w1", "s1", worker_info(), [], now=0.0)
    ledger.enqueue(job("r1"), now=0.0)
    ledger.beat("w1", "s1", worker_info(), [listed("r1")], now=LOST_AFTER_S + 5)   # listed: fine
    assert ledger.lost_runs == 0
    later = 2 * LOST_AFTER_S + 10
    ledger.beat("w1", "s1", worker_info(), [], now=later)
    assert emitted(ledger, LostRun) == [LostRun("w1", "r1", LOST_AFTER_S + 5)]
    assert ledger.lost_runs == 1
    assert len(emitted(ledger, m.Run)) == 2 and ledger.sent["r1"] == later   # sent again


def test_a_parked_request_is_adopted_from_its_worker_or_queued_without_it(ledger):
    ledger.enqueue(job("r1", running_on="w1"), now=0.0)
    ledger.enqueue(job("r2", running_on="w1"), now=0.0)
    assert ledger.parked == {"r1": ("w1", 0.0), "r2": ("w1", 0.0)}
    assert ledger.unknown(["r1", "r2", "r3"]) == ["r3"]
    ledger.beat("w1", "s1", worker_info(), [listed("r1")], now=1.0)
    assert ledger.adopted == 1 and ledger.core.requests["r1"].worker == "w1"
    assert ledger.parked == {} and ledger.core.requests["r2"].state in ("running", "preparing")
    assert [c.request for c in emitted(ledger, m.Run)] == ["r2"]      # r2 queued, then run


def test_a_parked_request_whose_worker_stays_away_is_queued_at_a_tick(ledger):
    ledger.enqueue(job("r1", running_on="w9"), now=0.0)
    limit = ledger.core.config.remove_after_s
    ledger.tick(now=limit)
    assert "r1" in ledger.parked
    ledger.tick(now=limit + 1)
    assert ledger.parked == {} and ledger.core.requests["r1"].state == "queued"


def test_reports_of_other_workers_runs_and_unknown_jobs(ledger):
    ledger.beat("w1", "s1", worker_info(), [], now=0.0)
    ledger.beat("w2", "s1", worker_info(), [], now=0.0)
    ledger.enqueue(job("r1"), now=0.0)
    runner = emitted(ledger, m.Run)[0].worker
    other = "w2" if runner == "w1" else "w1"
    ledger.beat(other, "s1", worker_info(), [listed("r1")], now=1.0)
    assert emitted(ledger, RunTwice) == [RunTwice(other, runner, "r1")]
    bad = RunningRequest(request="r9", task="NOPE", sector=SECTOR, sector_size=32 * GiB)
    ledger.beat(other, "s1", worker_info(), [bad], now=2.0)
    assert emitted(ledger, NotAdopted) == [] and "r9" not in ledger.core.requests   # nobody gave it r9
    ledger.enqueue(job("r9", running_on=other), now=2.0)     # the manager says it runs there
    ledger.beat(other, "s1", worker_info(), [bad], now=2.0)
    assert [c.request for c in emitted(ledger, NotAdopted)] == ["r9"]         # but it cannot be adopted
    ledger.orphans["r8"] = "w3"                   # lost by a removed worker, never enqueued here
    ledger.tick(now=3.0)
    assert emitted(ledger, NoJob) == [NoJob("r8")]


def test_done_finishes_and_forgets_after_a_while(ledger):
    ledger.beat("w1", "s1", worker_info(), [], now=0.0)
    ledger.enqueue(job("r1"), now=0.0)
    assert ledger.done("w2", "r1", True, now=1.0) is False          # not its worker
    assert ledger.done("w1", "r1", True, now=2.0) is True
    assert ledger.core.requests == {} and ledger.jobs == {} and ledger.sent == {}
    ledger.beat("w1", "s1", worker_info(), [listed("r1")], now=3.0)   # the beat came late
    assert ledger.adopted == 0 and ledger.finished == {"r1": 2.0}
    ledger.tick(now=100.0)
    assert ledger.finished == {}


def test_a_worker_speaks_only_for_work_it_was_given(ledger):
    ledger.beat("w1", "s1", worker_info(tasks=("AP",)), [], now=0.0)       # w1 cannot run PC1
    ledger.beat("evil", "s1", worker_info(tasks=("AP",)), [], now=0.0)
    ledger.enqueue(job("r1"), now=0.0)
    assert ledger.core.requests["r1"].state == "queued" and ledger.assigned("r1") == ""
    ledger.beat("evil", "s1", worker_info(tasks=("AP",)), [listed("r1")], now=1.0)   # claims it
    assert ledger.core.requests["r1"].state == "queued" and ledger.adopted == 0
    assert emitted(ledger, NotAdopted) == [NotAdopted("evil", "r1", "it was not given to this worker")]
    assert ledger.done("evil", "r1", True, now=2.0) is False                          # "done" it
    assert ledger.core.requests["r1"].state == "queued" and "r1" not in ledger.finished
    ledger.beat("w2", "s1", worker_info(), [], now=3.0)
    assert ledger.assigned("r1") == "w2"                                              # given now
    assert ledger.done("evil", "r1", True, now=4.0) is False
    assert ledger.core.requests["r1"].worker == "w2"
    ledger.enqueue(job("r2", running_on="w1"), now=5.0)
    assert ledger.assigned("r2") == "w1"                  # the manager's word, until w1's beat
    assert ledger.done("w2", "r1", True, now=6.0) is True and "r1" not in ledger.core.requests
