"""nodes.worker.core: a call's life as exact command lists (run, refused, failed, aborted,
prepared, after a restart), what the scheduler counts as running, and bad moves."""
import itertools

import msgspec
import pytest

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.worker import commands as C
from zqnode.nodes.worker import events as E
from zqnode.nodes.worker.calls import Call, CallError, moved
from zqnode.nodes.worker.core import WorkerCore

S7 = SectorRef(miner=1000, number=7)
CAUSE = "s-1000-7"
replace = msgspec.structs.replace


@pytest.fixture
def core():
    ids = itertools.count(1)
    return WorkerCore(lambda s: f"s-{s.miner}-{s.number}-{next(ids)}")


def run(request="w1", task="PC1", **kw):
    return E.Run(request=request, task=task, sector=S7, sector_size=2048, params=b"p", sources=["w9"],
                 **kw)


def prepare(request="w1", task="PC1"):
    return E.Prepare(request=request, task=task, sector=S7, sector_size=2048, params=b"p",
                     sources=["w9"])


def call(state, call_id="s-1000-7-1", work_id="w1", **kw):
    return Call(call_id=call_id, work_id=work_id, task="PC1", miner=1000, number=7,
                sector_size=2048, params=b"p", sources=["w9"], state=state, **kw)


def save(c, note=""):
    return C.Save(cause=CAUSE, call=c, note=note)


def test_a_call_from_run_to_over(core):
    accepted = call("accepted", created=1.0, updated=1.0)
    assert core.handle(run(), 1.0) == [save(accepted), C.Announce(cause=CAUSE, call=accepted)]
    assert core.handle(run(), 1.5) == []                  # asked again while unfinished: that call
    assert core.live_for("w1") == accepted
    running = replace(accepted, state="running", runs=1, updated=2.0)
    assert core.handle(E.Announced(call_id="s-1000-7-1"), 2.0) == [
        save(running), C.RunTask(cause=CAUSE, call=running, fetch=True)]
    done = replace(running, state="done", ok=True, result=b"r", updated=3.0)
    assert core.handle(E.Ran(call_id="s-1000-7-1", ok=True, result=b"r"), 3.0) == [
        save(done, "done"), C.Return(cause=CAUSE, call=done), C.Report(cause=CAUSE, call=done)]
    assert core.handle(run(), 3.5) == [C.Report(cause=CAUSE, call=done)]   # asked again: told again
    returned = replace(done, returned=True, updated=4.0)
    assert core.handle(E.Returned(call_id="s-1000-7-1"), 4.0) == [save(returned)]
    assert core.live_for("w1") is None                    # asked again now: a new call
    reported = replace(returned, sched_done=True)         # `updated` is the state's, not the flag's
    assert core.handle(E.Reported(call_id="s-1000-7-1"), 5.0) == [save(reported)]
    assert core.calls == {} and core.running() == []
    assert core.handle(E.Reported(call_id="s-1000-7-1"), 6.0) == []   # a second ack: over already


def test_a_call_the_manager_refuses_never_runs_and_returns_nothing(core):
    core.handle(run(), 1.0)
    dropped = call("dropped", returned=True, error="refuse: work is done", created=1.0, updated=2.0)
    assert core.handle(E.Announced(call_id="s-1000-7-1", refused="refuse: work is done"), 2.0) == [
        save(dropped, "the manager refused it (refuse: work is done)"),
        C.Report(cause=CAUSE, call=dropped)]
    assert core.live_for("w1") is None
    assert core.handle(E.Ran(call_id="s-1000-7-1", ok=True), 3.0) == []    # stale


def test_a_failing_task_is_returned_as_failed(core):
    core.handle(run(), 1.0)
    core.handle(E.Announced(call_id="s-1000-7-1"), 2.0)
    failed = call("done", runs=1, ok=False, error="boom", created=1.0, updated=3.0)
    assert core.handle(E.Ran(call_id="s-1000-7-1", ok=False, error="boom"), 3.0) == [
        save(failed, "failed: boom"), C.Return(cause=CAUSE, call=failed),
        C.Report(cause=CAUSE, call=failed)]


def test_abort_ends_an_announced_or_running_call_and_its_answer_is_stale(core):
    core.handle(run("w1"), 1.0)
    aborted = call("done", ok=False, error="aborted", created=1.0, updated=2.0)
    assert core.handle(E.Abort(request="w1"), 2.0) == [
        C.StopCall(cause=CAUSE, call_id="s-1000-7-1"), save(aborted, "failed: aborted"),
        C.Return(cause=CAUSE, call=aborted), C.Report(cause=CAUSE, call=aborted)]
    assert core.handle(E.Announced(call_id="s-1000-7-1"), 3.0) == []
    assert core.handle(E.Abort(request="w1"), 3.0) == []           # nothing left to stop
    assert core.handle(E.Abort(request="nope"), 3.0) == []
    core.handle(run("w2"), 4.0)
    core.handle(E.Announced(call_id="s-1000-7-2"), 4.0)
    stopped = core.handle(E.Abort(request="w2"), 5.0)
    assert [type(c) for c in stopped] == [C.StopCall, C.Save, C.Return, C.Report]
    assert (stopped[1].call.state, stopped[1].call.runs, stopped[1].call.error) == ("done", 1, "aborted")
    assert core.handle(E.Ran(call_id="s-1000-7-2", ok=True, result=b"r"), 6.0) == []


def test_a_preparation_fetches_then_the_run_does_not(core):
    fetch = C.Fetch(cause=CAUSE, request="w1", task="PC1", sector=S7, sector_size=2048, params=b"p",
                    sources=["w9"])
    assert core.handle(prepare(), 1.0) == [fetch]
    assert core.handle(prepare(), 1.5) == []                      # already under way
    assert [(r.request, r.state) for r in core.running()] == [("w1", "preparing")]
    assert core.handle(E.Fetched(request="w1"), 2.0) == [C.TellPrepared(cause=CAUSE, request="w1")]
    assert core.running() == []
    core.handle(run(), 3.0)
    assert core.handle(E.Announced(call_id="s-1000-7-1"), 4.0)[1].fetch is False
    assert core.handle(E.Fetched(request="w1"), 5.0) == []        # stale


def test_get_fetches_when_it_runs_even_when_prepared(core):
    core.handle(prepare(task="GET"), 1.0)
    core.handle(E.Fetched(request="w1"), 2.0)
    core.handle(run(task="GET"), 3.0)
    assert core.handle(E.Announced(call_id="s-1000-7-1"), 4.0)[1].fetch is True


def test_a_failed_or_aborted_preparation_ends_as_a_failed_call(core):
    core.handle(prepare("w1"), 1.0)
    failed = call("done", ok=False, error="fetch failed: no source", created=2.0, updated=2.0)
    assert core.handle(E.Fetched(request="w1", error="fetch failed: no source"), 2.0) == [
        save(failed, "failed: fetch failed: no source"), C.Return(cause=CAUSE, call=failed),
        C.Report(cause=CAUSE, call=failed)]
    assert core.live_for("w1") == failed
    core.handle(prepare("w2"), 3.0)
    aborted = call("done", call_id="s-1000-7-2", work_id="w2", ok=False, error="aborted",
                   created=4.0, updated=4.0)
    assert core.handle(E.Abort(request="w2"), 4.0) == [
        C.StopFetch(cause=CAUSE, request="w2"), save(aborted, "failed: aborted"),
        C.Return(cause=CAUSE, call=aborted), C.Report(cause=CAUSE, call=aborted)]
    assert core.handle(E.Fetched(request="w2"), 5.0) == []        # stale


def test_abort_stops_both_a_preparation_and_a_call_of_the_work(core):
    core.handle(run("w1"), 1.0)
    core.handle(prepare("w1"), 2.0)                   # asked again while it runs
    stopped = core.handle(E.Abort(request="w1"), 3.0)
    assert [type(c) for c in stopped] == [C.StopFetch, C.Save, C.Return, C.Report,
                                          C.StopCall, C.Save, C.Return, C.Report]
    assert stopped[4].call_id == "s-1000-7-1" and stopped[1].call.call_id == "s-1000-7-2"


def test_a_restart_goes_on_with_every_stored_call(core):
    accepted = call("accepted", call_id="a", work_id="wa", created=1.0, updated=1.0)
    running = call("running", call_id="r", work_id="wr", runs=1, created=2.0, updated=2.0)
    stored = call("done", call_id="s", work_id="ws", runs=1, ok=True, result=b"x", updated=3.0)
    returned = replace(stored, call_id="t", work_id="wt", returned=True)
    told = replace(stored, call_id="u", work_id="wu", sched_done=True)
    dropped = call("dropped", call_id="d", work_id="wd", returned=True, error="no")
    over = replace(returned, call_id="o", work_id="wo", sched_done=True)
    core.restore([accepted, running, stored, returned, told, dropped, over])
    rerun = replace(running, runs=2, updated=10.0)
    assert core.handle(E.Restarted(last_beat=7.5), 10.0) == [
        C.Announce(cause=CAUSE, call=accepted),
        save(rerun, "running again after a restart (run 2; about 6s of the last run lost)"),
        C.CountRerun(cause=CAUSE, call=rerun, lost_s=5.5),
        C.RunTask(cause=CAUSE, call=rerun, fetch=True),
        C.Return(cause=CAUSE, call=stored), C.Report(cause=CAUSE, call=stored),
        C.Report(cause=CAUSE, call=returned),
        C.Return(cause=CAUSE, call=told),
        C.Report(cause=CAUSE, call=dropped)]
    assert [c.call_id for c in core.calls.values()] == ["a", "r", "s", "t", "u", "d"]
    assert {w: c for w, c in core.live.items()} == {"wa": "a", "wr": "r", "ws": "s", "wu": "u"}
    assert [r.request for r in core.running()] == ["wa", "wr", "ws", "wt", "wd"]


def test_running_lists_calls_first_then_what_is_being_prepared(core):
    core.handle(prepare("w1"), 1.0)
    core.handle(prepare("w3", task="C1"), 1.0)
    core.handle(run("w2"), 2.0)
    core.handle(run("w1"), 3.0)
    out = core.running()
    assert [(r.request, r.task, r.state) for r in out] == [
        ("w2", "PC1", "running"), ("w1", "PC1", "running"), ("w3", "C1", "preparing")]
    assert out[0].sector == S7 and out[0].sector_size == 2048


def test_an_unrecorded_call_is_forgotten(core):
    core.handle(run(), 1.0)
    assert core.handle(E.Unrecorded(call_id="s-1000-7-1"), 1.0) == []
    assert core.calls == {} and core.live_for("w1") is None
    assert [type(c) for c in core.handle(run(), 2.0)] == [C.Save, C.Announce]   # asked again
    core.handle(E.Announced(call_id="s-1000-7-2"), 3.0)
    with pytest.raises(CallError, match="is running: it was recorded"):
        core.handle(E.Unrecorded(call_id="s-1000-7-2"), 4.0)


def test_taskdone_is_acknowledged_only_after_the_end(core):
    core.handle(run(), 1.0)
    with pytest.raises(CallError, match="is accepted: not ended"):
        core.handle(E.Reported(call_id="s-1000-7-1"), 2.0)
    assert core.calls["s-1000-7-1"].sched_done is False


@pytest.mark.parametrize("state, event, message", [
    ("accepted", "rerun", "is accepted: cannot rerun"),
    ("accepted", "returned", "is accepted: cannot returned"),
    ("running", "start", "is running: cannot start"),
    ("done", "finish", "is done: cannot finish"),
    ("dropped", "start", "is dropped: cannot start"),
])
def test_bad_moves_raise(state, event, message):
    with pytest.raises(CallError, match=message):
        moved(call(state), event)



def test_the_core_needs_no_trio_bus_or_disk():
    import subprocess
    import sys
    code = ("import sys, zqnode.nodes.worker.core; "
            "print(sorted(m for m in ('trio', 'zmq', 'sqlite3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
