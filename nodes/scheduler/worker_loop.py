"""What a worker does with its filled windows (Lotus sched_worker.go): compaction, then
starting requests from the oldest window. Functions of one Worker; each returns whether
a window went away, which means a new open window and so a full scheduling pass."""
from __future__ import annotations

from zqnode.nodes.wire.tasks import READY_TASKS

from zqnode.nodes.scheduler import events as m
from .queue import Request
from .usage import can_handle
from .workers import Worker


def process(w: Worker, commands: list[m.Command], cause: str) -> bool:
    """Start what the worker's state allows now."""
    wake(w, commands, cause)
    gone = compact(w)
    gone |= assign_ready(w, commands, cause)
    gone |= assign_preparing(w, commands, cause)
    return gone


def compact(w: Worker) -> bool:
    """Move requests from a newer window into the one before it while they fit there,
    so drained windows free up sooner; drop empty windows."""
    r, ignore = w.resources, w.info.ignore_resources
    windows = w.windows
    for i in range(1, len(windows)):
        lower, window = windows[i - 1], windows[i]
        keep = []
        for req in window.todo:
            key = (req.task, req.size)
            need = w.table[key]
            if can_handle(lower.usage, need, r, key, req.rid, ignore):
                threads = w.threads(need)
                lower.usage.add(key, req.rid, need, threads)
                window.usage.free(key, req.rid, req.need, req.threads)
                lower.todo.append(req)
                req.window, req.need, req.threads = lower.id, need, threads
            else:
                keep.append(req)
        window.todo = keep
    kept = [win for win in windows if win.todo]
    if len(kept) == len(windows):
        return False
    w.windows = kept
    return True


def _take_first(w: Worker, i: int) -> tuple[Request, bool]:
    """Take request i of the oldest window; the window goes when it is empty (the
    scheduler's allotment for it is kept until then, as Lotus does)."""
    first = w.windows[0]
    req = first.todo.pop(i)
    if first.todo:
        return req, False
    del w.windows[0]
    return req, True


def assign_ready(w: Worker, commands: list[m.Command], cause: str) -> bool:
    """C1/C2 go straight to 'active' when they fit, unless prepared work waits."""
    if w.waiting:
        return False
    r, ignore = w.resources, w.info.ignore_resources
    gone = False
    start = 0  # what did not fit before still does not: 'active' only fills up
    while w.windows:
        todo, found = w.windows[0].todo, -1
        for i in range(start, len(todo)):
            req = todo[i]
            if req.task in READY_TASKS:
                key = (req.task, req.size)
                if can_handle(w.active, w.table[key], r, key, req.rid, ignore):
                    found = i
                    break
        if found < 0:
            break
        req, drained = _take_first(w, found)
        gone |= drained
        start = 0 if drained else found
        w.running[req.rid] = req
        start_active(w, req, commands, cause)
    return gone


def assign_preparing(w: Worker, commands: list[m.Command], cause: str) -> bool:
    """Start preparing requests of the oldest window, in order, while they fit."""
    r, ignore = w.resources, w.info.ignore_resources
    gone = False
    # What did not fit before still does not: 'preparing' only fills up. (A request
    # without a prepare step leaves it at once, which puts it back as it was: the
    # waiting ones did not fit 'active' when processing began, and 'active' only fills.)
    start = 0
    while w.windows:
        todo, found = w.windows[0].todo, -1
        for i in range(start, len(todo)):
            req = todo[i]
            need = w.prep_need(req.task, req.size, req.prepare)
            key = (req.prepare or req.task, req.size)
            if can_handle(w.preparing, need, r, key, req.rid, ignore):
                found = i
                break
        if found < 0:
            break
        req, drained = _take_first(w, found)
        gone |= drained
        start = 0 if drained else found
        req.prep_key, req.prep_need, req.prep_threads = key, need, w.threads(need)
        w.preparing.add(key, req.rid, need, req.prep_threads)
        req.state = "preparing"
        w.running[req.rid] = req
        if req.prepare is None:  # nothing to fetch: prepared at once
            prepared(w, req, commands, cause)
        else:
            commands.append(m.Prepare(worker=w.name, request=req.rid, cause=cause))
    return gone


def prepared(w: Worker, req: Request, commands: list[m.Command], cause: str) -> None:
    req.state = "waiting"
    w.waiting.append(req)
    wake(w, commands, cause)


def wake(w: Worker, commands: list[m.Command], cause: str) -> None:
    """Prepared requests take 'active' resources as soon as they fit, oldest first."""
    if not w.waiting:
        return
    r, ignore = w.resources, w.info.ignore_resources
    still = []
    for req in w.waiting:
        key = (req.task, req.size)
        if can_handle(w.active, w.table[key], r, key, req.rid, ignore):
            start_active(w, req, commands, cause)
            free_preparing(w, req)
        else:
            still.append(req)
    w.waiting = still


def start_active(w: Worker, req: Request, commands: list[m.Command], cause: str) -> None:
    need = w.table[(req.task, req.size)]
    req.need, req.threads = need, w.threads(need)
    w.active.add((req.task, req.size), req.rid, need, req.threads)
    req.state = "running"
    commands.append(m.Run(worker=w.name, request=req.rid, cause=cause))


def free_preparing(w: Worker, req: Request) -> None:
    w.preparing.free(req.prep_key, req.rid, req.prep_need, req.prep_threads)
    req.prep_key = req.prep_need = None
