"""The call tracker's pure core: every transition of the table, dedup of returns, waits,
consume, abort in each state, and bad input that changes nothing."""
import copy

import msgspec
import pytest

from zqnode.nodes.manager import tracker as T
from zqnode.nodes.wire.sectors import SelAlloc, SelExisting, SelTask
from zqnode.nodes.wire import params as P

K2 = 2048


def fresh(task="PC2", params=None, number=1, miner=1000, t=None):
    t = t or T.Tracker()
    work, commands = t.do(task, params if params is not None else P.PC2Params(), miner, number, K2,
                          now=10.0)
    return t, work, commands


def snapshot(t: T.Tracker):
    return (msgspec.to_builtins(list(t.works.values())), dict(t.locations),
            copy.deepcopy(t._waiters))


def test_do_persists_then_enqueues_and_the_same_work_is_the_same_id():
    t, work, commands = fresh()
    assert work.state == "queued" and work.created == 10.0 and work.cause == "s-1000-1"
    assert work.work_id == P.work_id("PC2", 1000, 1, P.encode(P.PC2Params()))
    assert commands == [T.Save(work), T.Enqueue(work, SelTask(), None, (), "")]
    again, commands = t.do("PC2", P.PC2Params(), 1000, 1, K2, now=20.0)
    assert again is work and commands == []
    other, _ = t.do("PC2", P.PC2Params(), 1000, 2, K2, now=20.0)      # another sector
    assert other.work_id != work.work_id
    # params given as their msgpack bytes are the same work
    same, _ = t.do("PC1", P.encode(P.PC1Params(seal_proof=5, ticket=b"t" * 32)), 1000, 1, K2, now=1)
    assert same.work_id == t.do("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32), 1000, 1, K2,
                                now=2)[0].work_id


def test_the_table_has_every_state_for_every_event():
    assert set(T.TRANSITIONS) == {"do", "started", "returned", "abort", "wait", "consume", "resend"}
    for event, row in T.TRANSITIONS.items():
        assert set(row) <= {None, *T.STATES}, event


def test_started_moves_queued_to_running_once():
    t, work, _ = fresh()
    verdict, commands = t.started(work.work_id, "call-1", "w1", "w1", 11.0)
    assert verdict == "run" and work.state == "running" and (work.call_id, work.worker) == ("call-1", "w1")
    assert commands == [T.Save(work)]
    assert t.started(work.work_id, "call-1", "w1", "w1", 12.0) == ("run", [])     # said twice
    # another call (the scheduler gave it to another worker after losing the first)
    verdict, commands = t.started(work.work_id, "call-2", "w2", "w2", 13.0)
    assert verdict == "run" and (work.call_id, work.worker) == ("call-2", "w2") and commands == [T.Save(work)]


def test_a_start_from_a_worker_the_work_was_not_given_to_is_refused():
    t, work, _ = fresh()
    before = snapshot(t)
    assert t.started(work.work_id, "evil", "w9", "w1", 11.0) == (
        "refuse: not assigned to w9 (the scheduler gave it to w1)", [])
    assert t.started(work.work_id, "evil", "w9", "", 11.0) == (
        "refuse: not assigned to w9 (the scheduler gave it to no worker)", [])
    assert snapshot(t) == before
    t.started(work.work_id, "c1", "w1", "w1", 12.0)
    before = snapshot(t)
    assert t.started(work.work_id, "evil", "w9", "w1", 13.0)[0].startswith("refuse: not assigned")
    assert snapshot(t) == before


@pytest.mark.parametrize("state", ["done", "failed", "aborted"])
def test_started_is_refused_when_the_work_is_finished(state):
    t, work, _ = fresh()
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    if state == "aborted":
        t.abort(work.work_id, 12.0)
    else:
        t.returned(work.work_id, "c1", "w1", state == "done", b"r", "" if state == "done" else "x", 12.0)
    before = snapshot(t)
    verdict, commands = t.started(work.work_id, "c9", "w2", "w2", 13.0)
    assert verdict == f"refuse: work is {state}" and commands == []
    assert snapshot(t) == before


def test_started_for_unknown_work_is_refused():
    t = T.Tracker()
    assert t.started("nope", "c1", "w1", "w1", 1.0) == ("refuse: no such work (consumed, or never asked for)", [])


def test_a_result_is_stored_once_and_duplicates_change_nothing():
    t, work, _ = fresh()
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    outcome, commands = t.returned(work.work_id, "c1", "w1", True, b"result", "", 12.0)
    assert outcome == "stored" and work.state == "done" and work.result == b"result"
    assert commands == [T.Save(work), T.Located(1000, 1, "w1")]     # PC2 leaves files at w1
    assert t.locations == {(1000, 1): "w1"}
    before = snapshot(t)
    assert t.returned(work.work_id, "c1", "w1", True, b"result", "", 13.0) == ("duplicate", [])
    # another call's late result (it ran twice before a result was stored) is not taken
    assert t.returned(work.work_id, "c2", "w2", True, b"other", "", 14.0) == ("duplicate", [])
    assert t.returned(work.work_id, "c2", "w2", False, b"", "boom", 14.0) == ("duplicate", [])
    assert snapshot(t) == before


def test_only_the_call_that_runs_the_work_may_return_its_result():
    t, work, _ = fresh("C1", P.C1Params(seed=b"s" * 32))
    before = snapshot(t)
    assert t.returned(work.work_id, "c1", "w1", True, b"forged", "", 12.0) == ("refused", [])
    t.started(work.work_id, "c1", "w1", "w1", 13.0)
    before = snapshot(t)
    assert t.returned(work.work_id, "c9", "w9", True, b"forged", "", 14.0) == ("refused", [])
    assert t.returned(work.work_id, "c9", "w1", True, b"forged", "", 14.0) == ("refused", [])
    assert snapshot(t) == before
    outcome, commands = t.returned(work.work_id, "c1", "w1", True, b"proof", "", 15.0)
    assert outcome == "stored" and work.state == "done" and commands == [T.Save(work)]   # C1 moves no files


def test_a_failure_is_stored_with_its_error():
    t, work, _ = fresh()
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    outcome, commands = t.returned(work.work_id, "c1", "w1", False, b"ignored", "SectorError: bad", 12.0)
    assert outcome == "stored" and work.state == "failed" and work.error == "SectorError: bad"
    assert work.result == b"" and commands == [T.Save(work)] and t.locations == {}


def test_results_for_aborted_or_unknown_work_are_ignored():
    t, work, _ = fresh()
    t.abort(work.work_id, 11.0)
    before = snapshot(t)
    assert t.returned(work.work_id, "c1", "w1", True, b"late", "", 12.0) == ("ignored", [])
    assert t.returned("unknown", "c1", "w1", True, b"x", "", 12.0) == ("ignored", [])
    assert snapshot(t) == before


def test_waits_wake_on_the_result_and_at_once_when_finished():
    t, work, _ = fresh()
    assert t.wait(work.work_id, 1) == [] and t.wait(work.work_id, 2) == []
    t.unwait(work.work_id, 2)                                # the second gave up
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    _, commands = t.returned(work.work_id, "c1", "w1", True, b"r", "", 12.0)
    assert commands[-1] == T.Wake(1, work) and not any(isinstance(c, T.Wake) and c.waiter == 2
                                                        for c in commands)
    assert t.wait(work.work_id, 3) == [T.Wake(3, work)]      # finished: at once
    assert t._waiters == {}


def test_consume_deletes_finished_work_only():
    t, work, _ = fresh()
    with pytest.raises(T.InvalidTransition, match="is queued: cannot consume"):
        t.consume(work.work_id)
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    with pytest.raises(T.InvalidTransition, match="is running: cannot consume"):
        t.consume(work.work_id)
    t.returned(work.work_id, "c1", "w1", True, b"r", "", 12.0)
    assert t.consume(work.work_id) == [T.Delete(work.work_id)]
    assert work.work_id not in t.works
    with pytest.raises(T.UnknownWork):
        t.consume(work.work_id)
    # asked again after consumption: new work (the requester wants it done again)
    again, commands = t.do("PC2", P.PC2Params(), 1000, 1, K2, now=30.0)
    assert again.work_id == work.work_id and again.state == "queued" and len(commands) == 2
    # where the files are now is remembered: the new work goes where they are
    assert commands[1].selector == SelExisting(locations=("w1",), allow_fetch=True)
    assert commands[1].prepare == "GET" and commands[1].sources == ("w1",)


def test_a_sector_whose_files_were_dropped_is_sealed_again_from_nothing():
    # a rebuild deletes the replica where it was: its PC1 (the same work again) must not
    # be sent to fetch files from there (the worker would answer "not held" forever)
    t, work, _ = fresh("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32))
    t.started(work.work_id, "c1", "w1", "w1", 11.0)
    t.returned(work.work_id, "c1", "w1", True, b"r", "", 12.0)
    t.consume(work.work_id)
    assert t.dropped(1000, 1) == [T.Located(1000, 1, "")] and t.locations == {}
    assert t.dropped(1000, 1) == []                        # nothing known: nothing to say
    again, commands = t.do("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32), 1000, 1, K2, now=30.0)
    assert commands == [T.Save(again), T.Enqueue(again, SelTask(), None, (), "")]


def test_dropping_a_sector_aborts_its_unfinished_work_and_forgets_all_of_it():
    t, done, _ = fresh("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32))
    t.started(done.work_id, "c1", "w1", "w1", 11.0)
    t.returned(done.work_id, "c1", "w1", True, b"r", "", 12.0)
    t, running, _ = fresh(t=t)                               # PC2, running at w1
    t.started(running.work_id, "c2", "w1", "w1", 13.0)
    t, other, _ = fresh(number=2, t=t)                       # another sector: untouched
    t.wait(running.work_id, 7)
    commands = t.drop_sector(1000, 1, 14.0)
    assert commands == [T.Delete(done.work_id), T.Save(running), T.Cancel(running.work_id, "w1"),
                        T.Wake(7, running), T.Delete(running.work_id)]
    assert running.state == "aborted" and list(t.works) == [other.work_id]


@pytest.mark.parametrize("state", ["queued", "running"])
def test_abort_of_queued_or_running_work(state):
    t, work, _ = fresh()
    t.wait(work.work_id, 7)
    if state == "running":
        t.started(work.work_id, "c1", "w1", "w1", 11.0)
    commands = t.abort(work.work_id, 12.0)
    assert work.state == "aborted" and work.error == "aborted"
    assert commands == [T.Save(work), T.Cancel(work.work_id, "w1" if state == "running" else ""),
                        T.Wake(7, work)]
    assert t.consume(work.work_id) == [T.Delete(work.work_id)]


@pytest.mark.parametrize("state", ["done", "failed", "aborted"])
def test_abort_of_finished_work_raises_and_changes_nothing(state):
    t, work, _ = fresh()
    if state == "aborted":
        t.abort(work.work_id, 11.0)
    else:
        t.started(work.work_id, "c1", "w1", "w1", 10.0)
        t.returned(work.work_id, "c1", "w1", state == "done", b"r", "e", 11.0)
    before = snapshot(t)
    with pytest.raises(T.InvalidTransition, match=f"is {state}: cannot abort"):
        t.abort(work.work_id, 12.0)
    assert snapshot(t) == before


def test_find_takes_a_unique_prefix():
    t, a, _ = fresh(number=1)
    _, b, _ = fresh(number=2, t=t)
    assert t.find(a.work_id[:20]) == a.work_id
    common = next(i for i in range(64) if a.work_id[i] != b.work_id[i])
    if common:
        with pytest.raises(T.AmbiguousJob):
            t.find(a.work_id[:common])
    with pytest.raises(T.UnknownWork):
        t.find("zz")
    with pytest.raises(T.UnknownWork):
        t.find("")


def test_resend_enqueues_queued_and_running_work_with_where_it_runs():
    t, queued, _ = fresh(number=1)
    _, running, _ = fresh(number=2, t=t)
    _, done, _ = fresh(number=3, t=t)
    t.started(running.work_id, "c2", "w2", "w2", 11.0)
    t.started(done.work_id, "c3", "w3", "w3", 11.0)
    t.returned(done.work_id, "c3", "w3", True, b"r", "", 11.0)
    commands = t.resend()
    assert [(c.work.work_id, c.running_on) for c in commands] == [
        (queued.work_id, ""), (running.work_id, "w2")]
    assert t.resend([done.work_id, "unknown", queued.work_id]) == [commands[0]]
    assert t.unfinished() == [queued.work_id, running.work_id]


def test_placement_follows_the_storage_index():
    t = T.Tracker()
    ap, cmds = t.do("AP", P.APParams(seal_proof=5, piece=b"p" * 100), 1000, 5, K2, now=1.0)
    assert (cmds[1].selector, cmds[1].prepare, cmds[1].sources) == (SelAlloc(path_type="seal"), None, ())
    t.started(ap.work_id, "c", "w2", "w2", 2.0)
    t.returned(ap.work_id, "c", "w2", True, b"", "", 2.0)
    pc1, cmds = t.do("PC1", P.PC1Params(seal_proof=5, ticket=b"t" * 32), 1000, 5, K2, now=3.0)
    assert (cmds[1].selector, cmds[1].prepare, cmds[1].sources) == (
        SelExisting(locations=("w2",), allow_fetch=True), "GET", ("w2",))
    t.locations[(1000, 6)] = "w3"
    wdp, cmds = t.do("WDP", P.WDPParams(seal_proof=5, randomness=b"r" * 32,
                                        sectors=[(5, b"c" * 32), (6, b"d" * 32)]), 1000, 5, K2, now=4.0)
    assert cmds[1].sources == ("w2", "w3") and cmds[1].prepare == "GET"
    get, cmds = t.do("GET", P.GETParams(), 1000, 5, K2, now=5.0)
    assert (cmds[1].selector, cmds[1].prepare, cmds[1].sources) == (SelTask(), None, ("w2",))


@pytest.mark.parametrize("args, message", [
    (("XX", P.PC2Params(), 1000, 1, K2), "unknown task type 'XX'"),
    (("PC1", P.PC2Params(), 1000, 1, K2), "must be PC1Params, got PC2Params"),
    (("PC1", b"\x01\x02", 1000, 1, K2), "do not decode as PC1Params"),
    (("PC2", P.PC2Params(), -1, 1, K2), "must be >= 0"),
    (("PC2", P.PC2Params(), 1000, True, K2), "number must be an int"),
    (("PC2", P.PC2Params(), 1000, 1, 4096), "unsupported sector size 4096"),
])
def test_bad_requests_raise_and_change_nothing(args, message):
    t, _, _ = fresh()
    before = snapshot(t)
    with pytest.raises(T.TrackerError, match=message):
        t.do(*args, now=1.0)
    assert snapshot(t) == before


def test_bad_worker_reports_raise_and_change_nothing():
    t, work, _ = fresh()
    before = snapshot(t)
    with pytest.raises(T.TrackerError, match="needs a call id and a worker"):
        t.started(work.work_id, "", "w1", "w1", 1.0)
    with pytest.raises(T.TrackerError, match="when not ok, an error text"):
        t.returned(work.work_id, "c1", "w1", False, b"", "", 1.0)
    with pytest.raises(T.UnknownWork):
        t.wait("nope", 1)
    with pytest.raises(T.UnknownWork):
        t.abort("nope", 1.0)
    assert snapshot(t) == before


def test_restore_refuses_unknown_states():
    t, work, _ = fresh()
    bad = msgspec.structs.replace(work, state="lost")
    with pytest.raises(T.TrackerError, match="unknown state 'lost'"):
        T.Tracker.restore([bad], {})
    restored = T.Tracker.restore([work], {(1000, 1): "w1"})
    assert restored.works == {work.work_id: work} and restored.locations == {(1000, 1): "w1"}
