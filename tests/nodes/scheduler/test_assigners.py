"""How each assigner spreads one pass's requests over workers."""
import pytest

from zqnode.nodes.scheduler import AssignWindow, SchedulerError

GiB, K2 = 1 << 30, 2 << 10


def placed(cmds):
    out = {}
    for c in cmds:
        if isinstance(c, AssignWindow):
            out.setdefault(c.worker, []).extend(c.requests)
    return out


def batch(s, events, now=1.0):
    out = []
    for e in events:
        out += s.apply(e, now)
    return out + s.schedule(now)


def two_workers(mk, assigner, w1_used=0, tasks=("AP",)):
    s = mk.sched(assigner=assigner)
    s.handle(mk.joined("w1", tasks=tasks, used=w1_used), 0.0)
    s.handle(mk.joined("w2", tasks=tasks), 0.0)
    return s


def aps(n, start=0, task="AP"):
    from zqnode.nodes.scheduler import SectorRef, SelTask, TaskQueued
    return [TaskQueued(request=f"{task.lower()}{i}", sector=SectorRef(miner=1, number=i),
                       task=task, sector_size=K2, selector=SelTask(), cause="q")
            for i in range(start, start + n)]


def test_utilization_alternates_between_equal_workers(mk):
    s = two_workers(mk, "utilization")
    # each 2K AP takes 1 of 32 threads: the other worker is then less utilised
    assert placed(batch(s, aps(4))) == {"w1": ["ap0", "ap2"], "w2": ["ap1", "ap3"]}


def test_utilization_fills_the_least_utilised_worker(mk):
    s = two_workers(mk, "utilization", w1_used=100 * GiB)  # w1 starts at 0.78 (2 x 0.39)
    assert placed(batch(s, aps(4))) == {"w2": ["ap0", "ap1", "ap2", "ap3"]}


def test_spread_counts_tasks_not_utilization(mk):
    s = two_workers(mk, "spread", w1_used=100 * GiB)
    # equal counts: the less utilised (at the start of the pass) first
    assert placed(batch(s, aps(4))) == {"w1": ["ap1", "ap3"], "w2": ["ap0", "ap2"]}


def test_spread_qcount_counts_tasks_already_there(mk):
    for assigner, expect in (("spread", {"w1": ["ap3", "ap5"], "w2": ["ap2", "ap4"]}),
                             ("experiment-spread-qcount", {"w1": ["ap5"],
                                                           "w2": ["ap2", "ap3", "ap4"]})):
        s = mk.sched(assigner=assigner)
        s.handle(mk.joined("w1", tasks=("AP",)), 0.0)
        batch(s, aps(2))  # both run on w1, the only worker
        s.handle(mk.joined("w2", tasks=("AP",)), 0.0)
        assert placed(batch(s, aps(4, start=2))) == expect, assigner


def test_spread_tasks_counts_per_task_type(mk):
    tasks = ("AP", "PC1")
    for assigner, expect in (("spread", {"w1": ["pc10", "pc12"], "w2": ["pc11", "ap0"]}),
                             ("experiment-spread-tasks", {"w1": ["pc10", "pc12", "ap0"],
                                                          "w2": ["pc11"]})):
        s = two_workers(mk, assigner, tasks=tasks)
        # queue order: PC1 (order 5) before AP (order 9)
        assert placed(batch(s, aps(1) + aps(3, task="PC1"))) == expect, assigner


def test_spread_tasks_qcount_counts_that_type_already_there(mk):
    tasks = ("AP", "PC1")
    for assigner, expect in (("experiment-spread-qcount", {"w1": ["ap1"],
                                                           "w2": ["pc10", "pc11"]}),
                             ("experiment-spread-tasks-qcount", {"w1": ["pc11"],
                                                                 "w2": ["pc10", "ap1"]})):
        s = mk.sched(assigner=assigner)
        s.handle(mk.joined("w1", tasks=tasks), 0.0)
        batch(s, aps(1))  # ap0 runs on w1
        s.handle(mk.joined("w2", tasks=tasks), 0.0)
        assert placed(batch(s, aps(2, task="PC1") + aps(1, start=1))) == expect, assigner


def test_unknown_assigner(mk):
    with pytest.raises(SchedulerError, match="unknown assigner 'random'"):
        mk.sched(assigner="random")
