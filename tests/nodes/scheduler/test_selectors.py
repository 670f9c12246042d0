"""Which workers each selector lets a request go to."""
from zqnode.nodes.scheduler import AssignWindow, SelAlloc, SelExisting, SelMove, SelTask

GiB = 1 << 30


def placed(cmds):
    """{worker: [requests]} from the AssignWindow commands."""
    out = {}
    for c in cmds:
        if isinstance(c, AssignWindow):
            out.setdefault(c.worker, []).extend(c.requests)
    return out


def cluster(mk, *workers, **config):
    s = mk.sched(**config)
    for name, kw in workers:
        s.handle(mk.joined(name, **kw), 0.0)
    return s


def test_alloc_needs_a_path_of_the_right_kind(mk):
    s = cluster(mk, ("bare", dict(tasks=("AP",))),
                ("store", dict(tasks=("AP",), store=("st1",))),
                ("seal", dict(tasks=("AP",), seal=("se1",))),
                ("seal2", dict(tasks=("PC1",), seal=("se2",))))  # no AP
    assert placed(s.handle(mk.queued("a", "AP", sel=SelAlloc(path_type="seal")), 1.0)) == {
        "seal": ["a"]}
    assert placed(s.handle(mk.queued("b", "AP", sel=SelAlloc(path_type="store")), 1.0)) == {
        "store": ["b"]}
    # the manager's best-allocation answer narrows it down to these paths
    assert s.handle(mk.queued("c", "AP", sel=SelAlloc(storage_ids=("se2", "nope"))), 1.0) == []
    assert placed(s.handle(mk.queued("d", "AP", sel=SelAlloc(storage_ids=("se1",))), 1.0)) == {
        "seal": ["d"]}


def test_existing_needs_the_sector_unless_it_may_fetch(mk):
    s = cluster(mk, ("a", dict(tasks=("PC2",), seal=("pa",), cpus=64)),
                ("b", dict(tasks=("PC2",), seal=("pb",), cpus=64)),
                ("c", dict(tasks=("PC2",), store=("pc",), cpus=64)))
    sel = SelExisting(locations=("pb",), allow_fetch=False)
    assert placed(s.handle(mk.queued("x", "PC2", sel=sel), 1.0)) == {"b": ["x"]}
    # allowed to fetch: any worker with a sealing path, no preference for the holder
    # (as Lotus); "a" is the least utilised and first
    sel = SelExisting(locations=("pb",), allow_fetch=True)
    assert placed(s.handle(mk.queued("y", "PC2", sel=sel), 1.0)) == {"a": ["y"]}
    # a holder without a sealing path qualifies through its copy
    sel = SelExisting(locations=("pc",), allow_fetch=False)
    assert placed(s.handle(mk.queued("z", "PC2", sel=sel), 1.0)) == {"c": ["z"]}
    assert s.handle(mk.queued("n", "PC2", sel=SelExisting(locations=("gone",))), 1.0) == []


def test_move_prefers_the_holder_even_when_busier(mk):
    s = cluster(mk, ("holder", dict(tasks=("GET",), store=("s1",), used=100 * GiB)),
                ("idle", dict(tasks=("GET",), store=("s2",))),
                ("sealer", dict(tasks=("GET",), seal=("p1",))))
    sel = SelMove(locations=("s1",), allow_remote=True)
    assert placed(s.handle(mk.queued("m1", "GET", sel=sel), 1.0)) == {"holder": ["m1"]}
    # the sector in a sealing path is not a reason to prefer: least utilised store worker
    sel = SelMove(locations=("p1",), allow_remote=True)
    assert placed(s.handle(mk.queued("m2", "GET", sel=sel), 1.0)) == {"idle": ["m2"]}
    # no holder and no remote moves: it waits
    sel = SelMove(locations=("p1",), allow_remote=False)
    assert s.handle(mk.queued("m3", "GET", sel=sel), 1.0) == []
    # storage_ids narrows the long-term paths, also for the preference
    sel = SelMove(locations=("s1",), allow_remote=True, storage_ids=("s2",))
    assert placed(s.handle(mk.queued("m4", "GET", sel=sel), 1.0)) == {"idle": ["m4"]}


def test_preferred_holder_without_an_open_window_is_not_waited_for(mk):
    # as Lotus: preference is decided among workers with an open window
    s = cluster(mk, ("holder", dict(tasks=("GET", "PC1"), store=("s1",), mem=128 * GiB)),
                ("other", dict(tasks=("GET",), store=("s2",))),
                windows_per_worker=1)
    s.handle(mk.queued("p0", "PC1", number=0, prepare="GET"), 1.0)  # preparing
    assert placed(s.handle(mk.queued("p1", "PC1", number=1, prepare="GET"), 1.0)) == {
        "holder": ["p1"]}  # cannot start: its window stays, the holder has no open one
    sel = SelMove(locations=("s1",))
    assert placed(s.handle(mk.queued("m", "GET", sel=sel), 1.0)) == {"other": ["m"]}


def test_task_selector_prefers_workers_that_do_less(mk):
    s = cluster(mk, ("both", dict(tasks=("C2", "PC2"), cpus=64, gpus=1)),
                ("c2only", dict(tasks=("C2",), cpus=64, gpus=1)))
    assert placed(s.handle(mk.queued("c", "C2", size=2 << 10, sel=SelTask()), 1.0)) == {
        "c2only": ["c"]}
    assert placed(s.handle(mk.queued("p", "PC2", size=2 << 10), 1.0)) == {"both": ["p"]}


def test_unsupported_task_goes_nowhere(mk):
    s = cluster(mk, ("w", dict(tasks=("PC1",))))
    assert s.handle(mk.queued("c", "C2"), 1.0) == []
    assert [r.request for r in s.diag().requests] == ["c"]
