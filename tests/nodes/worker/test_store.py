"""The worker's call store: its transitions, what a restart finds, and bad moves that
change nothing."""
import pytest

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.worker.store import CallStore, CallStoreError

S1 = SectorRef(miner=1000, number=1)


@pytest.fixture
def store(tmp_path):
    s = CallStore(tmp_path / "calls.sqlite")
    yield s
    s.close()


def test_a_call_from_accepted_to_returned(store, tmp_path):
    call = store.add("work-1", "PC1", S1, 2048, b"params", ["w2"], 1.0)
    assert call.call_id.startswith("s-1000-1-") and len(call.call_id) == len("s-1000-1-") + 36
    assert (call.state, call.runs, call.ok, call.returned, call.sched_done) == (
        "accepted", 0, None, False, False)
    assert store.start(call.call_id, 2.0).state == "running"
    done = store.finish(call.call_id, True, b"result", "", 3.0)
    assert (done.state, done.ok, done.result, done.runs) == ("done", True, b"result", 1)
    assert store.mark_returned(call.call_id, 4.0).returned
    store.mark_sched_done(call.call_id)
    assert store.pending() == [] and store.unreported() == []
    # survives a reopen exactly
    again = CallStore(tmp_path / "calls.sqlite")
    assert again.get(call.call_id) == store.get(call.call_id)
    again.close()


def test_what_a_restart_resumes(store):
    running = store.add("w-run", "PC1", S1, 2048, b"", [], 1.0)
    store.start(running.call_id, 1.0)
    stored = store.add("w-stored", "PC2", S1, 2048, b"", [], 2.0)
    store.start(stored.call_id, 2.0)
    store.finish(stored.call_id, True, b"r", "", 2.5)
    told = store.add("w-told", "C1", S1, 2048, b"", [], 3.0)
    store.start(told.call_id, 3.0)
    store.finish(told.call_id, True, b"r", "", 3.5)
    store.mark_returned(told.call_id, 3.6)
    store.mark_sched_done(told.call_id)
    assert [c.work_id for c in store.pending()] == ["w-run", "w-stored"]
    assert store.rerun(running.call_id, 5.0).runs == 2
    assert [c.work_id for c in store.unreported()] == ["w-run", "w-stored"]


def test_live_for_finds_the_unreturned_call_of_a_work(store):
    first = store.add("w", "AP", S1, 2048, b"", [], 1.0)
    assert store.live_for("w").call_id == first.call_id
    store.start(first.call_id, 1.0)
    store.finish(first.call_id, False, b"", "boom", 2.0)
    assert store.live_for("w").call_id == first.call_id     # its failure is not returned yet
    store.mark_returned(first.call_id, 3.0)
    assert store.live_for("w") is None                        # asked again: a new call
    assert store.live_for("other") is None


def test_a_refused_call_is_dropped_and_needs_no_return(store):
    call = store.add("w", "AP", S1, 2048, b"", [], 1.0)
    dropped = store.refuse(call.call_id, "refuse: work is done", 2.0)
    assert (dropped.state, dropped.returned, dropped.error, dropped.runs) == ("dropped", True,
                                                                              "refuse: work is done", 0)
    assert [c.call_id for c in store.unreported()] == [call.call_id]


@pytest.mark.parametrize("setup, move, message", [
    ([], "rerun", "is accepted: cannot rerun"),
    ([], "returned", "is accepted: cannot returned"),
    (["start"], "start", "is running: cannot start"),
    (["start", "finish"], "finish", "is done: cannot finish"),
    (["refuse"], "start", "is dropped: cannot start"),
])
def test_bad_moves_raise_and_change_nothing(store, setup, move, message):
    call = store.add("w", "AP", S1, 2048, b"", [], 1.0)
    do = {"start": lambda: store.start(call.call_id, 2.0),
          "rerun": lambda: store.rerun(call.call_id, 2.0),
          "finish": lambda: store.finish(call.call_id, True, b"", "", 2.0),
          "refuse": lambda: store.refuse(call.call_id, "no", 2.0),
          "returned": lambda: store.mark_returned(call.call_id, 2.0)}
    for step in setup:
        do[step]()
    before = store.get(call.call_id)
    with pytest.raises(CallStoreError, match=message):
        do[move]()
    assert store.get(call.call_id) == before
    with pytest.raises(CallStoreError, match="no call 'nope'"):
        store.get("nope")


def test_sched_done_only_after_the_end_and_prune(store):
    call = store.add("w", "AP", S1, 2048, b"", [], 1.0)
    with pytest.raises(CallStoreError, match="not ended"):
        store.mark_sched_done(call.call_id)
    store.start(call.call_id, 1.0)
    store.finish(call.call_id, True, b"", "", 2.0)
    store.mark_returned(call.call_id, 3.0)
    store.mark_sched_done(call.call_id)
    assert store.prune(before=3.0) == 0 and store.prune(before=3.5) == 1 and store.calls() == []


def test_settings_persist(store, tmp_path):
    assert store.setting("tasks") is None and store.setting("tasks", ["AP"]) == ["AP"]
    store.set_setting("tasks", ["PC1", "PC2"])
    again = CallStore(tmp_path / "calls.sqlite")
    assert again.setting("tasks") == ["PC1", "PC2"]
    again.close()
