"""The worker's call store: calls saved as the core hands them over, kept exactly across a
reopen and in their order, what a restart resumes, pruning, settings."""
import msgspec
import pytest

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.worker.calls import Call
from zqnode.nodes.worker.store import CallStore, CallStoreError, new_call_id

S1 = SectorRef(miner=1000, number=1)
replace = msgspec.structs.replace


@pytest.fixture
def store(tmp_path):
    s = CallStore(tmp_path / "calls.sqlite")
    yield s
    s.close()


def call(work_id, state="accepted", at=1.0, **kw):
    return Call(call_id=f"c-{work_id}", work_id=work_id, task="PC1", miner=1000, number=1,
                sector_size=2048, params=b"params", sources=["w2"], state=state, created=at,
                updated=at, **kw)


def test_new_call_ids_name_the_sector_and_are_unique():
    a, b = new_call_id(S1), new_call_id(S1)
    assert a.startswith("s-1000-1-") and len(a) == len("s-1000-1-") + 36 and a != b


def test_a_saved_call_survives_a_reopen_exactly(store, tmp_path):
    c = call("w", "done", runs=1, ok=True, result=b"result", error="", returned=True)
    store.save(call("w"))
    store.save(c)
    assert store.get("c-w") == c
    again = CallStore(tmp_path / "calls.sqlite")
    assert again.calls() == [c]
    again.close()
    with pytest.raises(CallStoreError, match="no call 'nope'"):
        store.get("nope")


def test_what_a_restart_resumes_oldest_first(store):
    store.save(call("w-b", at=1.0))
    store.save(call("w-a", at=1.0))                   # the same time: the order they came in
    store.save(call("w-told", "done", at=0.5, ok=True, returned=True, sched_done=True))
    store.save(call("w-stored", "done", at=2.0, ok=True, sched_done=True))
    store.save(replace(call("w-b", at=1.0), state="running", runs=1, updated=3.0))   # keeps its place
    assert [c.work_id for c in store.pending()] == ["w-b", "w-a", "w-stored"]
    assert store.get("c-w-b").state == "running"


def test_prune_forgets_calls_both_acknowledged(store):
    store.save(call("w", "done", at=2.0, returned=True, sched_done=True))
    store.save(call("v", "done", at=2.0, returned=True))
    assert store.prune(before=2.0) == 0 and store.prune(before=2.5) == 1
    assert [c.work_id for c in store.calls()] == ["v"]


def test_settings_persist(store, tmp_path):
    assert store.setting("tasks") is None and store.setting("tasks", ["AP"]) == ["AP"]
    store.set_setting("tasks", ["PC1", "PC2"])
    again = CallStore(tmp_path / "calls.sqlite")
    assert again.setting("tasks") == ["PC1", "PC2"]
    again.close()
