"""SchedulerService: the scheduler node's reconciliation without a bus or a clock
(what both the Trio shell and the simulator run)."""
import pytest

from zqnode.nodes.scheduler import messages as m

from zqnode.nodes.wire import sectors
from zqnode.nodes.scheduler.errors import SchedulerError
from zqnode.nodes.scheduler.service import (
    LOST_AFTER_S,
    LostRun,
    NoJob,
    NotAdopted,
    RunTwice,
    SchedulerService,
)
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
def svc(mk):
    out = []
    s = SchedulerService(mk.sched(), out.append)
    s.out = out
    return s


def emitted(s, kind):
    return [c for c in s.out if isinstance(c, kind)]


def test_enqueue_runs_on_a_worker_and_remembers_when_it_was_sent(svc):
    assert svc.beat("w1", "s1", worker_info(), [], now=0.0) is False
    assert [c.worker for c in emitted(svc, m.WorkerAdded)] == ["w1"]
    assert svc.enqueue(job("r1"), now=5.0, cause="c") is False
    assert [(c.request, c.worker) for c in emitted(svc, m.Run)] == [("r1", "w1")]
    assert svc.sent == {"r1": 5.0} and svc.jobs["r1"].params == b"p"
    assert svc.enqueue(job("r1"), now=6.0) is True          # known: only its params refresh
    assert len(emitted(svc, m.Run)) == 1


def test_a_refused_enqueue_raises_and_keeps_nothing(svc):
    with pytest.raises(SchedulerError):
        svc.enqueue(job("r1", task="NOPE"), now=0.0)
    assert svc.jobs == {} and svc.core.requests == {} and svc.out == []


def test_a_run_the_worker_never_lists_is_lost_and_queued_again(svc):
    svc.beat("w1", "s1", worker_info(), [], now=0.0)
    svc.enqueue(job("r1"), now=0.0)
    svc.beat("w1", "s1", worker_info(), [listed("r1")], now=LOST_AFTER_S + 5)   # listed: fine
    assert svc.lost_runs == 0
    later = 2 * LOST_AFTER_S + 10
    svc.beat("w1", "s1", worker_info(), [], now=later)
    assert emitted(svc, LostRun) == [LostRun("w1", "r1", LOST_AFTER_S + 5)]
    assert svc.lost_runs == 1
    assert len(emitted(svc, m.Run)) == 2 and svc.sent["r1"] == later   # sent again


def test_a_parked_request_is_adopted_from_its_worker_or_queued_without_it(svc):
    svc.enqueue(job("r1", running_on="w1"), now=0.0)
    svc.enqueue(job("r2", running_on="w1"), now=0.0)
    assert svc.parked == {"r1": ("w1", 0.0), "r2": ("w1", 0.0)}
    assert svc.unknown(["r1", "r2", "r3"]) == ["r3"]
    svc.beat("w1", "s1", worker_info(), [listed("r1")], now=1.0)
    assert svc.adopted == 1 and svc.core.requests["r1"].worker == "w1"
    assert svc.parked == {} and svc.core.requests["r2"].state in ("running", "preparing")
    assert [c.request for c in emitted(svc, m.Run)] == ["r2"]      # r2 queued, then run


def test_a_parked_request_whose_worker_stays_away_is_queued_at_a_tick(svc):
    svc.enqueue(job("r1", running_on="w9"), now=0.0)
    limit = svc.core.config.remove_after_s
    svc.tick(now=limit)
    assert "r1" in svc.parked
    svc.tick(now=limit + 1)
    assert svc.parked == {} and svc.core.requests["r1"].state == "queued"


def test_reports_of_other_workers_runs_and_unknown_jobs(svc):
    svc.beat("w1", "s1", worker_info(), [], now=0.0)
    svc.beat("w2", "s1", worker_info(), [], now=0.0)
    svc.enqueue(job("r1"), now=0.0)
    runner = emitted(svc, m.Run)[0].worker
    other = "w2" if runner == "w1" else "w1"
    svc.beat(other, "s1", worker_info(), [listed("r1")], now=1.0)
    assert emitted(svc, RunTwice) == [RunTwice(other, runner, "r1")]
    bad = RunningRequest(request="r9", task="NOPE", sector=SECTOR, sector_size=32 * GiB)
    svc.beat(other, "s1", worker_info(), [bad], now=2.0)
    assert emitted(svc, NotAdopted) == [] and "r9" not in svc.core.requests   # nobody gave it r9
    svc.enqueue(job("r9", running_on=other), now=2.0)     # the manager says it runs there
    svc.beat(other, "s1", worker_info(), [bad], now=2.0)
    assert [c.request for c in emitted(svc, NotAdopted)] == ["r9"]         # but it cannot be adopted
    svc.orphans["r8"] = "w3"                   # lost by a removed worker, never enqueued here
    svc.tick(now=3.0)
    assert emitted(svc, NoJob) == [NoJob("r8")]


def test_done_finishes_and_forgets_after_a_while(svc):
    svc.beat("w1", "s1", worker_info(), [], now=0.0)
    svc.enqueue(job("r1"), now=0.0)
    assert svc.done("w2", "r1", True, now=1.0) is False          # not its worker
    assert svc.done("w1", "r1", True, now=2.0) is True
    assert svc.core.requests == {} and svc.jobs == {} and svc.sent == {}
    svc.beat("w1", "s1", worker_info(), [listed("r1")], now=3.0)   # the beat came late
    assert svc.adopted == 0 and svc.finished == {"r1": 2.0}
    svc.tick(now=100.0)
    assert svc.finished == {}


def test_a_worker_speaks_only_for_work_it_was_given(svc):
    svc.beat("w1", "s1", worker_info(tasks=("AP",)), [], now=0.0)       # w1 cannot run PC1
    svc.beat("evil", "s1", worker_info(tasks=("AP",)), [], now=0.0)
    svc.enqueue(job("r1"), now=0.0)
    assert svc.core.requests["r1"].state == "queued" and svc.assigned("r1") == ""
    svc.beat("evil", "s1", worker_info(tasks=("AP",)), [listed("r1")], now=1.0)   # claims it
    assert svc.core.requests["r1"].state == "queued" and svc.adopted == 0
    assert emitted(svc, NotAdopted) == [NotAdopted("evil", "r1", "it was not given to this worker")]
    assert svc.done("evil", "r1", True, now=2.0) is False                          # "done" it
    assert svc.core.requests["r1"].state == "queued" and "r1" not in svc.finished
    svc.beat("w2", "s1", worker_info(), [], now=3.0)
    assert svc.assigned("r1") == "w2"                                              # given now
    assert svc.done("evil", "r1", True, now=4.0) is False
    assert svc.core.requests["r1"].worker == "w2"
    svc.enqueue(job("r2", running_on="w1"), now=5.0)
    assert svc.assigned("r2") == "w1"                  # the manager's word, until w1's beat
    assert svc.done("w2", "r1", True, now=6.0) is True and "r1" not in svc.core.requests
