"""nodes.worker.calls: what a call still needs, and what the scheduler counts as running."""
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.scheduler import RunningRequest
from zqnode.nodes.worker import calls
from zqnode.nodes.worker.store import ACCEPTED, DONE, DROPPED, RUNNING, Call


def call(work_id="w1", state=ACCEPTED, task="PC1", **kw):
    return Call(call_id=f"c-{work_id}", work_id=work_id, task=task, miner=1000, number=7,
                sector_size=2048, params=b"", sources=[], state=state, **kw)


def test_next_steps():
    assert calls.next_steps(call(state=ACCEPTED)) == (calls.DRIVE,)
    assert calls.next_steps(call(state=RUNNING)) == (calls.DRIVE,)
    assert calls.next_steps(call(state=DONE)) == (calls.RETURN, calls.REPORT)
    assert calls.next_steps(call(state=DONE, returned=True)) == (calls.REPORT,)
    assert calls.next_steps(call(state=DONE, sched_done=True)) == (calls.RETURN,)
    assert calls.next_steps(call(state=DROPPED, returned=True)) == (calls.REPORT,)
    assert calls.next_steps(call(state=DONE, returned=True, sched_done=True)) == ()


def test_needs_fetch():
    assert calls.needs_fetch(call(task="PC2"), set())
    assert not calls.needs_fetch(call(task="PC2"), {"w1"})
    assert calls.needs_fetch(call(task="GET"), {"w1"})


def test_running_requests_lists_calls_first_then_what_is_being_prepared():
    preparing = [RunningRequest(request="w1", task="PC1", sector=SectorRef(1000, 7), sector_size=2048,
                                state="preparing"),
                 RunningRequest(request="w3", task="C1", sector=SectorRef(1000, 8), sector_size=2048,
                                state="preparing")]
    out = calls.running_requests([call("w2", state=DONE), call("w1", state=RUNNING)], preparing)
    assert [(r.request, r.state) for r in out] == [("w2", "running"), ("w1", "running"),
                                                   ("w3", "preparing")]
    assert out[0].sector == SectorRef(1000, 7) and out[0].sector_size == 2048
