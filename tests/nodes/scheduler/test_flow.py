"""Queue order, windows, preparing/active accounting, limits and compaction, driven by
events with exact command lists."""
import pytest

from zqnode.nodes.scheduler import (AssignWindow, Prepare, ResourceEnvError, Run, SchedulerConfig,
                                    Scheduler, TaskFinished, TaskPrepared, WorkerAdded)

GiB, KiB, MiB = 1 << 30, 1 << 10, 1 << 20
G32, K2, M512 = 32 * GiB, 2 * KiB, 512 * MiB


def aw(worker, window, *rids, cause):
    return AssignWindow(worker=worker, window=window, requests=rids, cause=cause)


def prepared(rid):
    return TaskPrepared(request=rid, cause=f"prep {rid}")


def finished(rid, ok=True):
    return TaskFinished(request=rid, ok=ok, cause=f"done {rid}")


def batch(s, events, now=0.0):
    """A shell draining several events at once: apply each, then one schedule."""
    out = []
    for e in events:
        out += s.apply(e, now)
    return out + s.schedule(now)


def test_queue_order_is_lotus_order(mk):
    s = mk.sched()
    events = [mk.queued("a", "PC1", number=5), mk.queued("b", "PC1", number=3),
              mk.queued("c", "PC2", number=9), mk.queued("d", "AP", number=1, prio=1024),
              mk.queued("e", "FIN", number=7), mk.queued("f", "WDP", number=8),
              mk.queued("g", "GET", number=2, prio=10), mk.queued("h", "PC1", number=3)]
    assert batch(s, events) == []  # no workers: nothing to do
    # negative-order tasks first (then by priority, then order), then higher priority,
    # then lower task order, then lower sector number, then arrival
    assert [r.request for r in s.diag().requests] == ["g", "f", "e", "d", "c", "b", "h", "a"]


def test_windows_are_filled_in_queue_order(mk):
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=100 * GiB), 0.0)  # one 32G PC1 per window
    cmds = batch(s, [mk.queued("low", number=1), mk.queued("high", number=9, prio=5),
                     mk.queued("mid", number=2)])
    assert cmds == [aw("w1", 1, "high", cause="pass 1: q mid"),
                    aw("w1", 2, "low", cause="pass 1: q mid"),
                    Run(worker="w1", request="high", cause="q mid"),
                    # "low" is prepared and waits for 'active'; its window drained
                    aw("w1", 3, "mid", cause="pass 2: q mid")]
    assert s.diag().workers[0].running == (("high", "running"), ("low", "waiting"))


def test_preparing_then_active(mk):
    # 128 GiB, no swap: a 32G PC1 (min 56G, max 64G + 10M base) fits once per window,
    # once in 'preparing' and once in 'active'
    s = mk.sched()
    assert s.handle(mk.joined("w1", tasks=("PC1",), mem=128 * GiB), 0.0) == [
        WorkerAdded(worker="w1", session="s1", cause="join w1")]
    q = [mk.queued(f"r{i}", number=i, prepare="GET") for i in range(4)]
    assert s.handle(q[0], 1.0) == [aw("w1", 1, "r0", cause="pass 1: q r0"),
                                   Prepare(worker="w1", request="r0", cause="q r0")]
    assert s.handle(q[1], 1.0) == [aw("w1", 2, "r1", cause="pass 2: q r1")]
    assert s.handle(q[2], 1.0) == [aw("w1", 3, "r2", cause="pass 3: q r2")]
    assert s.handle(q[3], 1.0) == []  # both windows are taken
    assert s.handle(prepared("r0"), 2.0) == [
        Run(worker="w1", request="r0", cause="prep r0"),  # preparing -> active
        Prepare(worker="w1", request="r1", cause="prep r0"),  # preparing is free again
        aw("w1", 4, "r3", cause="pass 4: prep r0")]  # window 2 drained: a new one
    w = s.diag().workers[0]
    assert (w.active.mem_used_min, w.active.mem_used_max, w.active.cpu_use) == (
        56 * GiB, 64 * GiB, 1)
    assert (w.preparing.mem_used_min, w.preparing.mem_used_max) == (56 * GiB, 64 * GiB)
    assert w.running == (("r0", "running"), ("r1", "preparing"))
    assert [(win.window, win.requests) for win in w.windows] == [(3, ("r2",)), (4, ("r3",))]
    assert w.task_counts == {"GET:32G": 1, "PC1:32G": 1}
    assert s.handle(finished("r0"), 3.0) == []  # r2 waits for 'preparing', not 'active'
    assert s.handle(prepared("r1"), 4.0) == [Run(worker="w1", request="r1", cause="prep r1"),
                                             Prepare(worker="w1", request="r2", cause="prep r1")]
    assert s.handle(prepared("r2"), 5.0) == []  # 'active' is full: r2 waits, prepared
    assert s.diag().workers[0].running[-1] == ("r2", "waiting")
    assert s.handle(finished("r1"), 6.0) == [Run(worker="w1", request="r2", cause="done r1"),
                                             Prepare(worker="w1", request="r3", cause="done r1")]


def test_commit_tasks_go_straight_to_active_and_gpu_limits(mk):
    s = mk.sched()
    s.handle(mk.joined("g", tasks=("C2",), cpus=64, gpus=1), 0.0)
    cmds = batch(s, [mk.queued("c0", "C2", number=0, size=K2),
                     mk.queued("c1", "C2", number=1, size=K2)])
    # one GPU: one C2 (GPU 1.0) per window; C2 runs without a preparing step
    assert cmds == [aw("g", 1, "c0", cause="pass 1: q c1"), aw("g", 2, "c1", cause="pass 1: q c1"),
                    Run(worker="g", request="c0", cause="q c1")]
    assert s.diag().workers[0].running == (("c0", "running"), ("c1", "waiting"))
    assert s.handle(finished("c0"), 1.0) == [Run(worker="g", request="c1", cause="done c0")]


def test_no_gpu_no_gpu_limit(mk):
    s = mk.sched()
    s.handle(mk.joined("cpu", tasks=("C2",), cpus=64, gpus=0), 0.0)
    cmds = batch(s, [mk.queued("c0", "C2", number=0, size=K2),
                     mk.queued("c1", "C2", number=1, size=K2)])
    assert cmds == [aw("cpu", 1, "c0", "c1", cause="pass 1: q c1"),
                    Run(worker="cpu", request="c0", cause="q c1"),
                    Run(worker="cpu", request="c1", cause="q c1")]


def test_threads_limit(mk):
    # PC2 512M uses all threads (-1 = 92% of 8 CPUs = 7): one per window, one active
    s = mk.sched()
    s.handle(mk.joined("w", tasks=("PC2",), cpus=8), 0.0)
    cmds = batch(s, [mk.queued(f"p{i}", "PC2", number=i, size=M512) for i in range(3)])
    assert cmds == [aw("w", 1, "p0", cause="pass 1: q p2"), aw("w", 2, "p1", cause="pass 1: q p2"),
                    Run(worker="w", request="p0", cause="q p2"),
                    aw("w", 3, "p2", cause="pass 2: q p2")]
    w = s.diag().workers[0]
    assert (w.active.cpu_use, w.preparing.cpu_use) == (7, 7)
    assert w.running == (("p0", "running"), ("p1", "waiting"))


def test_memory_limit_and_min_memory(mk):
    # 64 GiB + 64 GiB swap: C2 32G needs 30G + 32G base in RAM and 150G + 32G virtual
    s = mk.sched()
    s.handle(mk.joined("w", tasks=("C2",), mem=64 * GiB, swap=64 * GiB), 0.0)
    assert s.handle(mk.queued("c", "C2"), 1.0) == []  # 182G > 128G virtual memory
    s.handle(mk.joined("big", tasks=("C2",), mem=256 * GiB, cpus=64, gpus=1), 2.0)
    assert s.diag().requests == ()
    assert s.diag().workers[1].running == (("c", "running"),)


def test_max_concurrent_from_worker_env(mk):
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=1024 * GiB, cpus=128,
                       env={"PC1_32G_MAX_CONCURRENT": "1"}), 0.0)
    cmds = batch(s, [mk.queued(f"r{i}", number=i) for i in range(3)])
    # one per window and pass; one at a time in preparing + active together
    assert cmds == [aw("w1", 1, "r0", cause="pass 1: q r2"),
                    aw("w1", 2, "r1", cause="pass 1: q r2"),
                    Run(worker="w1", request="r0", cause="q r2"),
                    aw("w1", 3, "r2", cause="pass 2: q r2")]
    assert s.handle(finished("r0"), 1.0) == [Run(worker="w1", request="r1", cause="done r0")]
    assert s.handle(finished("r1"), 1.0) == [Run(worker="w1", request="r2", cause="done r1")]


def test_max_concurrent_limits_active_only_when_a_fetch_prepares(mk):
    # Lotus PrepResourceSpec: while preparing, a request counts as its prepare task (GET),
    # so PC1_MAX_CONCURRENT=1 lets several fetch but only one run
    s = Scheduler(SchedulerConfig(resource_env={"PC1_MAX_CONCURRENT": "1"}))
    s.handle(mk.joined("w1", tasks=("PC1",), mem=1024 * GiB, cpus=128), 0.0)
    cmds = batch(s, [mk.queued(f"r{i}", number=i, prepare="GET") for i in range(2)])
    assert cmds == [aw("w1", 1, "r0", cause="pass 1: q r1"),
                    aw("w1", 2, "r1", cause="pass 1: q r1"),
                    Prepare(worker="w1", request="r0", cause="q r1"),
                    Prepare(worker="w1", request="r1", cause="q r1")]
    assert s.handle(prepared("r0"), 1.0) == [Run(worker="w1", request="r0", cause="prep r0")]
    assert s.handle(prepared("r1"), 1.0) == []
    assert s.handle(finished("r0"), 1.0) == [Run(worker="w1", request="r1", cause="done r0")]


def test_bad_env_on_join_raises_and_changes_nothing(mk):
    s = mk.sched()
    s.handle(mk.joined("w1"), 0.0)
    before = s.diag()
    with pytest.raises(ResourceEnvError, match="PC1_32G_MAX_CONCURRENT='x'"):
        s.handle(mk.joined("w2", env={"PC1_32G_MAX_CONCURRENT": "x"}), 1.0)
    with pytest.raises(ResourceEnvError, match="PC1_32G_MAX_CONCURRENT='x'"):
        s.handle(mk.joined("w1", env={"PC1_32G_MAX_CONCURRENT": "x"}), 1.0)
    assert s.diag() == before
    with pytest.raises(ResourceEnvError, match="C2_MAX_CONCURRENT='1.0'"):
        Scheduler(SchedulerConfig(resource_env={"C2_MAX_CONCURRENT": "1.0"}))
    with pytest.raises(ResourceEnvError, match="PC1_32G_MAX_CONCURENT: not a resource"):
        Scheduler(SchedulerConfig(resource_env={"PC1_32G_MAX_CONCURENT": "1"}))


def test_window_compaction(mk):
    # 256 GiB: three 32G PC1 (64G + 10M virtual each) fit in one window or in 'preparing'
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=256 * GiB), 0.0)
    q = [mk.queued(f"r{i}", number=i, prepare="GET") for i in range(7)]
    for i in range(3):
        assert s.handle(q[i], 1.0) == [aw("w1", i + 1, f"r{i}", cause=f"pass {i + 1}: q r{i}"),
                                       Prepare(worker="w1", request=f"r{i}", cause=f"q r{i}")]
    assert s.handle(q[3], 1.0) == [aw("w1", 4, "r3", cause="pass 4: q r3")]  # preparing full
    # r4 arrives in window 5, then moves into window 4, which still fits it
    assert s.handle(q[4], 1.0) == [aw("w1", 5, "r4", cause="pass 5: q r4")]
    d = s.diag()
    assert [(w.window, w.requests) for w in d.workers[0].windows] == [(4, ("r3", "r4"))]
    assert d.open_windows == ("w1",)
    assert s.handle(q[5], 1.0) == [aw("w1", 6, "r5", cause="pass 6: q r5")]
    assert s.handle(q[6], 1.0) == [aw("w1", 7, "r6", cause="pass 7: q r6")]
    d = s.diag()
    assert [(w.window, w.requests) for w in d.workers[0].windows] == [
        (4, ("r3", "r4", "r5")), (7, ("r6",))]  # window 4 is full: r6 stays
    assert d.open_windows == ()
    assert d.workers[0].windows[0].allocated.mem_used_max == 3 * 64 * GiB


def test_heartbeat_refreshes_resources(mk):
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=128 * GiB, used=100 * GiB), 0.0)
    assert s.handle(mk.queued("r0"), 1.0) == []  # 128 - 100 < 64G virtual
    from zqnode.nodes.scheduler import WorkerHeartbeat
    same = WorkerHeartbeat(worker="w1", session="s1", cause="hb 1",
                           resources=mk.res(mem=128 * GiB, used=100 * GiB))
    assert s.handle(same, 2.0) == []
    freed = WorkerHeartbeat(worker="w1", session="s1", cause="hb 2",
                            resources=mk.res(mem=128 * GiB, used=10 * GiB))
    assert s.handle(freed, 3.0) == [aw("w1", 1, "r0", cause="pass 1: hb 2"),
                                    Run(worker="w1", request="r0", cause="hb 2")]
    assert s.diag().workers[0].resources.mem_used == 10 * GiB
