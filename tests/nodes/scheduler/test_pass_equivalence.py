"""The fast pass gives exactly the result of the brute-force Lotus-style pass
(nodes/scheduler/reference.py) on random clusters, queues and earlier history."""
import random

import msgspec
import pytest

from zqnode.nodes.scheduler import (AssignWindow, SchedulerConfig, Scheduler, SectorRef, SelAlloc,
                                    SelExisting, TaskFinished, TaskPrepared,
                                    SelMove, SelTask, StoragePath, TaskQueued, Tick, WorkerHeartbeat,
                                    WorkerInfo, WorkerJoined, WorkerResources)
from zqnode.nodes.scheduler.assign import run_pass
from zqnode.nodes.scheduler.events import ASSIGNERS
from zqnode.nodes.scheduler.reference import reference_pass

GiB = 1 << 30
TASKS = ["AP", "PC1", "PC2", "C1", "C2", "FIN", "GET", "RU", "WDP", "DC"]
SIZES = [2 << 10, 512 << 20, 32 * GiB, 64 * GiB]


def random_selector(rng, paths):
    where = tuple(rng.sample(paths + ["ghost"], rng.randint(0, 2)))
    ids = tuple(rng.sample(paths, min(len(paths), rng.randint(0, 2)))) if rng.random() < 0.3 else ()
    return rng.choice([
        SelTask(),
        SelAlloc(path_type=rng.choice(["seal", "store"]), storage_ids=ids),
        SelExisting(locations=where, allow_fetch=rng.random() < 0.5),
        SelMove(locations=where, allow_remote=rng.random() < 0.7, storage_ids=ids),
    ])


def random_task(rng, i, paths):
    return TaskQueued(request=f"r{i}", sector=SectorRef(miner=1, number=rng.randrange(50)),
                      task=rng.choice(TASKS), sector_size=rng.choice(SIZES),
                      priority=rng.choice([0, 0, 0, 1024, -1]),
                      selector=random_selector(rng, paths),
                      prepare=rng.choice([None, "GET"]), cause="random")


def build(seed, assigner):
    rng = random.Random(seed)
    s = Scheduler(SchedulerConfig(assigner=assigner, windows_per_worker=rng.choice([1, 2, 3])))
    paths, names = join_random_workers(rng, s)
    n = 0
    for _ in range(rng.randint(0, 40)):  # history: windows fill, work starts
        s.handle(random_task(rng, n, paths), 1.0)
        n += 1
    for name in names[1:]:  # the first worker goes silent and is disabled
        w = s.workers[name]
        s.apply(WorkerHeartbeat(worker=name, session="s", resources=w.resources, cause="hb"), 10.0)
    if rng.random() < 0.5:
        s.apply(Tick(), 20.0)
    for _ in range(rng.randint(1, 150)):  # waiting for the compared pass
        s.apply(random_task(rng, n, paths), 21.0)
        n += 1
    return s


def join_random_workers(rng, s):
    paths, names = [], []
    for i in range(rng.randint(2, 9)):
        worker_paths = []
        if rng.random() < 0.7:
            worker_paths.append(StoragePath(id=f"p{i}s", can_seal=True))
        if rng.random() < 0.4:
            worker_paths.append(StoragePath(id=f"p{i}t", can_store=True))
        if rng.random() < 0.2 and paths:  # a shared path
            worker_paths.append(StoragePath(id=rng.choice(paths), can_store=True))
        paths += [p.id for p in worker_paths if p.id not in paths]
        res = WorkerResources(cpus=rng.choice([4, 16, 64]),
                              mem_physical=rng.choice([64, 256, 1024]) * GiB,
                              mem_used=rng.choice([0, 8, 40]) * GiB,
                              mem_swap=rng.choice([0, 64]) * GiB,
                              gpus=tuple(f"g{g}" for g in range(rng.choice([0, 0, 1, 2]))))
        env = {"PC1_MAX_CONCURRENT": "2"} if rng.random() < 0.3 else {}
        info = WorkerInfo(hostname=f"h{i}", tasks=tuple(rng.sample(TASKS, rng.randint(1, 6))),
                          resources=res, paths=tuple(worker_paths), resource_env=env)
        s.handle(WorkerJoined(worker=f"w{i}", session="s", info=info, cause="join"), 0.0)
        names.append(f"w{i}")
    return paths, names


def outcome(s, pass_fn):
    filled = pass_fn(s._pass_id + 1, list(s.workers.values()), s.queue,
                     s.config.windows_per_worker, s.config.assigner, s._path_owners)
    return ([(pw.w.name, pw.k, [r.rid for r in pw.todo]) for pw in filled],
            [r.rid for r in s.queue])


@pytest.mark.parametrize("assigner", ASSIGNERS)
def test_fast_pass_equals_reference(assigner):
    assigned = 0
    for seed in range(40):
        fast = outcome(build(seed, assigner), run_pass)
        ref = outcome(build(seed, assigner), reference_pass)
        assert fast == ref, (assigner, seed)
        assigned += sum(len(rids) for _, _, rids in fast[0])
    assert assigned > 200  # the cases do assign things


def run_history(seed, assigner, always_full):
    """Random events through `handle`; with `always_full` every pass looks at the whole
    queue instead of only the classes with new requests."""
    rng = random.Random(seed)
    s = Scheduler(SchedulerConfig(assigner=assigner, windows_per_worker=rng.choice([1, 2])))
    paths, names = join_random_workers(rng, s)
    commands = []
    for step in range(250):
        now = float(step)
        by_state = {}
        for rid in sorted(s.requests):
            by_state.setdefault(s.requests[rid].state, []).append(rid)
        roll = rng.random()
        if roll < 0.55 or not (by_state.get("preparing") or by_state.get("running")):
            event = random_task(rng, step, paths)
        elif roll < 0.75 and by_state.get("preparing"):
            event = TaskPrepared(request=rng.choice(by_state["preparing"]), cause="prep")
        elif roll < 0.95 and by_state.get("running"):
            event = TaskFinished(request=rng.choice(by_state["running"]), cause="done")
        else:
            name = rng.choice(names)
            w = s.workers[name]
            used = rng.choice([0, 8, 40]) * GiB
            event = WorkerHeartbeat(worker=name, session="s", cause="hb",
                                    resources=msgspec.structs.replace(w.resources, mem_used=used))
        if always_full:
            s._full_pass = True
        commands += s.handle(event, now)
    return commands


@pytest.mark.parametrize("assigner", ["utilization", "experiment-spread-tasks-qcount"])
def test_passes_over_new_requests_only_equal_full_passes(assigner):
    for seed in range(15):
        partial = run_history(seed, assigner, always_full=False)
        assert partial == run_history(seed, assigner, always_full=True), (assigner, seed)
        assert sum(isinstance(c, AssignWindow) for c in partial) > 5
