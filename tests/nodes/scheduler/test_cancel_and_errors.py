"""Cancelling at every stage, and invalid events (they raise and change nothing)."""
import pytest

from zqnode.nodes.scheduler import (Abort, AssignWindow, Cancelled, DuplicateRequest,
                                    InvalidTransition, Prepare,
                                    SchedulerError, SelAlloc, TaskCancelled, TaskFinished,
                                    TaskPrepared, UnknownRequest, UnknownWorker, WorkerAdded,
                                    WorkerHeartbeat, WorkerLeft)

GiB = 1 << 30


def cancel(rid):
    return TaskCancelled(request=rid, cause=f"cancel {rid}")


def busy(mk):
    """w1 (128 GiB): r0 preparing, r1 in window 2, r2 in window 3, r3 queued."""
    s = mk.sched()
    s.handle(mk.joined("w1", tasks=("PC1",), mem=128 * GiB), 0.0)
    for i in range(4):
        s.handle(mk.queued(f"r{i}", number=i, prepare="GET"), 0.0)
    d = s.diag()
    assert [(w.window, w.requests) for w in d.workers[0].windows] == [(2, ("r1",)), (3, ("r2",))]
    assert [r.request for r in d.requests] == ["r3"]
    return s


def test_cancel_queued(mk):
    s = busy(mk)
    assert s.handle(cancel("r3"), 1.0) == [Cancelled(request="r3", cause="cancel r3")]
    assert s.diag().requests == ()


def test_cancel_in_a_window_frees_the_window(mk):
    s = busy(mk)
    assert s.handle(cancel("r1"), 1.0)[0] == Cancelled(request="r1", cause="cancel r1")
    d = s.diag()
    # window 2 emptied and went away; the new open window took r3
    assert [(w.window, w.requests) for w in d.workers[0].windows] == [(3, ("r2",)), (4, ("r3",))]


def test_cancel_preparing_aborts_then_frees_on_finish(mk):
    s = busy(mk)
    assert s.handle(cancel("r0"), 1.0) == [Abort(worker="w1", request="r0", cause="cancel r0")]
    with pytest.raises(InvalidTransition, match="already being cancelled"):
        s.handle(cancel("r0"), 1.0)
    assert s.handle(TaskPrepared(request="r0", cause="late prep"), 2.0) == []  # not run
    assert s.handle(TaskFinished(request="r0", ok=False, cause="aborted"), 3.0) == [
        Cancelled(request="r0", cause="aborted"),
        Prepare(worker="w1", request="r1", cause="aborted"),
        AssignWindow(worker="w1", window=4, requests=("r3",), cause="pass 4: aborted")]
    assert "r0" not in s.requests


def test_invalid_events_raise_and_change_nothing(mk):
    s = busy(mk)
    before = s.diag()
    bad = [
        (WorkerHeartbeat(worker="nobody", session="s", resources=mk.res(), cause="x"),
         UnknownWorker, "'nobody'"),
        (WorkerLeft(worker="nobody", cause="x"), UnknownWorker, "'nobody'"),
        (mk.queued("r1"), DuplicateRequest, "'r1'"),
        (mk.queued("n", task="PC3"), SchedulerError, "unknown task type 'PC3'"),
        (mk.queued("n", size=16 * GiB), SchedulerError, "unsupported sector size"),
        (mk.queued("n", prepare="FETCH"), SchedulerError, "unknown prepare task 'FETCH'"),
        (mk.queued("n", sel=SelAlloc(path_type="tape")), SchedulerError, "path_type"),
        (TaskPrepared(request="r3", cause="x"), InvalidTransition, "queued, not preparing"),
        (TaskFinished(request="r1", cause="x"), InvalidTransition, "not started"),
        (TaskFinished(request="zz", cause="x"), UnknownRequest, "'zz'"),
        (cancel("zz"), UnknownRequest, "'zz'"),
        (mk.joined("w9", tasks=("PC9",)), SchedulerError, "unknown task types ['PC9']"),
        (mk.joined("w9", cpus=0), SchedulerError, "cpus >= 1"),
        (WorkerHeartbeat(worker="w1", session="s1", resources=mk.res(used=-1), cause="x"),
         SchedulerError, "mem_used must be an int >= 0"),
        (WorkerAdded(worker="w1", session="s1", cause="x"), SchedulerError,
         "not a scheduler event"),
    ]
    for event, error, message in bad:
        with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
            s.handle(event, 5.0)
        assert s.diag() == before, event


def test_bad_config(mk):
    with pytest.raises(SchedulerError, match="windows_per_worker"):
        mk.sched(windows_per_worker=0)
    with pytest.raises(SchedulerError, match="disable_after_s"):
        mk.sched(disable_after_s=700.0, remove_after_s=600.0)
