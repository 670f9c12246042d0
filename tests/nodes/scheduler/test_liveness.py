"""Silent workers are disabled (their window items requeued), then removed; a new
session means a restarted worker."""
import pytest

from zqnode.nodes.scheduler import (AssignWindow, Prepare, Requeued, Tick, UnknownRequest,
                                    UnknownWorker, WorkerAdded, WorkerDisabled, WorkerEnabled,
                                    WorkerHeartbeat, WorkerRemoved, TaskFinished)

GiB = 1 << 30


def hb(worker, session="s1", cause=None, **res):
    from zqnode.nodes.scheduler import WorkerResources
    r = WorkerResources(cpus=32, mem_physical=res.get("mem", 128 * GiB))
    return WorkerHeartbeat(worker=worker, session=session, resources=r,
                           cause=cause or f"hb {worker}")


def busy_w1(mk):
    """w1 (128 GiB): r0 preparing, r1 waiting in its second window."""
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=128 * GiB), 0.0)
    s.handle(mk.queued("r0", number=0, prepare="GET"), 0.0)
    s.handle(mk.queued("r1", number=1, prepare="GET"), 0.0)
    assert [(w.window, w.requests) for w in s.diag().workers[0].windows] == [(2, ("r1",))]
    return s


def test_silent_worker_disabled_requeued_then_removed(mk):
    s = busy_w1(mk)
    assert s.handle(mk.joined("w2", tasks=("PC1",), mem=128 * GiB), 1.0) == [
        WorkerAdded(worker="w2", session="s1", cause="join w2")]
    assert s.handle(Tick(), 15.0) == []  # 15 s silent is not more than 15 s
    assert s.handle(hb("w2"), 14.0) == []
    assert s.handle(Tick(cause="tick 16"), 16.0) == [
        Requeued(worker="w1", requests=("r1",), cause="tick 16: silent for 16s (> 15s)"),
        WorkerDisabled(worker="w1", cause="tick 16: silent for 16s (> 15s)"),
        AssignWindow(worker="w2", window=3, requests=("r1",), cause="pass 3: tick 16"),
        Prepare(worker="w2", request="r1", cause="tick 16")]
    d = s.diag()
    assert [(w.worker, w.enabled, w.open_windows) for w in d.workers] == [
        ("w1", False, 0), ("w2", True, 2)]
    assert d.workers[0].running == (("r0", "preparing"),)  # what runs there stays
    assert d.open_windows == ("w2", "w2")

    # it answers again: enabled, windows open again
    assert s.handle(hb("w1", cause="hb back"), 20.0) == [
        WorkerEnabled(worker="w1", cause="hb back")]
    assert s.diag().open_windows == ("w1", "w1", "w2", "w2")
    assert s.handle(Tick(cause="t40"), 40.0) == [
        WorkerDisabled(worker="w1", cause="t40: silent for 20s (> 15s)"),
        WorkerDisabled(worker="w2", cause="t40: silent for 26s (> 15s)")]
    s.handle(hb("w2"), 619.0)
    assert s.handle(Tick(cause="t621"), 621.0) == [
        WorkerRemoved(worker="w1", lost=("r0",), cause="t621: silent for 601s (> 600s)")]
    assert [w.worker for w in s.diag().workers] == ["w2"]
    with pytest.raises(UnknownWorker, match="'w1'"):
        s.handle(hb("w1"), 622.0)
    with pytest.raises(UnknownRequest, match="'r0'"):
        s.handle(TaskFinished(request="r0", cause="late"), 622.0)


def test_new_session_is_a_restart(mk):
    s = busy_w1(mk)
    cause = "hb: session changed from s1 to s2 (worker restarted)"
    assert s.handle(hb("w1", session="s2", cause="hb"), 5.0) == [
        Requeued(worker="w1", requests=("r1",), cause=cause),
        WorkerRemoved(worker="w1", lost=("r0",), cause=cause),
        WorkerAdded(worker="w1", session="s2", cause="hb"),
        AssignWindow(worker="w1", window=3, requests=("r1",), cause="pass 3: hb"),
        Prepare(worker="w1", request="r1", cause="hb")]
    w = s.diag().workers[0]
    assert (w.session, w.running) == ("s2", (("r1", "preparing"),))


def test_rejoin_with_a_new_session_is_a_restart(mk):
    s = busy_w1(mk)
    cause = "again: session changed from s1 to s9 (worker restarted)"
    cmds = s.handle(mk.joined("w1", session="s9", cause="again", tasks=("PC1",),
                              mem=128 * GiB), 5.0)
    assert cmds[:3] == [Requeued(worker="w1", requests=("r1",), cause=cause),
                        WorkerRemoved(worker="w1", lost=("r0",), cause=cause),
                        WorkerAdded(worker="w1", session="s9", cause="again")]
    assert s.diag().workers[0].running == (("r1", "preparing"),)


def test_rejoin_with_the_same_session_updates_info(mk):
    s = busy_w1(mk)
    assert s.handle(mk.joined("w1", tasks=("PC1", "AP"), mem=128 * GiB), 5.0) == []
    w = s.diag().workers[0]
    assert w.tasks == ("AP", "PC1")
    assert w.running == (("r0", "preparing"),)
