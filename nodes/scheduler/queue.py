"""The request queue, kept in Lotus's order without ever re-sorting it.

Requests are grouped in classes of identical requests (same task type, sector size,
priority and selector): everything the assignment depends on except the sector number.
Each class keeps its requests sorted by (sector number, arrival), and the queue order is
the merge of the classes by Lotus's key (see tasks.queue_key). Inserting costs a binary
search in one class; a scheduling pass takes requests off the front of classes.
"""
from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.tasks import queue_key


class Request:
    """One scheduling request and where it is. `state` is one of: queued, assigned (in a
    worker's window), preparing, waiting (prepared, waiting for active resources),
    running."""

    __slots__ = ("rid", "sector", "task", "size", "priority", "selector", "prepare", "seq",
                 "queued_at", "entry", "cls", "state", "worker", "window", "cancelled",
                 "need", "threads", "prep_key", "prep_need", "prep_threads")

    def __init__(self, rid: str, sector: SectorRef, task: str, size: int, priority: int,
                 selector: object, prepare: str | None, seq: int, queued_at: float) -> None:
        self.rid, self.sector, self.task, self.size = rid, sector, task, size
        self.priority, self.selector, self.prepare = priority, selector, prepare
        self.seq, self.queued_at = seq, queued_at
        # full sort key; seq is unique so comparisons never reach the request itself
        self.entry = (*queue_key(task, priority), sector.number, seq, self)
        self.cls: RequestClass | None = None
        self.state = "queued"
        self.worker: str | None = None
        self.window: int | None = None
        self.cancelled = False
        # what was reserved for it, so freeing matches reserving even if the worker's
        # resource table or CPU count changes meanwhile
        self.need = self.prep_need = None
        self.threads = self.prep_threads = 0
        self.prep_key: tuple | None = None


class RequestClass:
    """Identical requests in queue order; `entries[head:]` are the ones still queued."""

    __slots__ = ("key", "task", "size", "selector", "entries", "head", "fam_pass", "fam")

    def __init__(self, key: tuple, task: str, size: int, selector: object) -> None:
        self.key, self.task, self.size, self.selector = key, task, size, selector
        self.entries: list[tuple] = []
        self.head = 0
        self.fam_pass = -1  # the pass that resolved `fam`
        self.fam = None

    def __len__(self) -> int:
        return len(self.entries) - self.head

    def compact(self) -> None:
        if self.head:
            del self.entries[:self.head]
            self.head = 0


class RequestQueue:
    def __init__(self) -> None:
        self.classes: dict[tuple, RequestClass] = {}
        self.fresh: dict[tuple, RequestClass] = {}  # classes pushed to since the last pass
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, req: Request) -> None:
        key = (req.task, req.size, req.priority, req.selector)
        cls = self.classes.get(key)
        if cls is None:
            cls = self.classes[key] = RequestClass(key, req.task, req.size, req.selector)
        entries = cls.entries
        if not entries or entries[-1] < req.entry:
            entries.append(req.entry)  # the common case: sectors arrive in order
        else:
            bisect.insort(entries, req.entry, lo=cls.head)
        req.cls = cls
        req.state = "queued"
        self.size += 1
        self.fresh[key] = cls

    def remove(self, req: Request) -> None:
        cls = req.cls
        i = bisect.bisect_left(cls.entries, req.entry, lo=cls.head)
        assert cls.entries[i] is req.entry
        del cls.entries[i]
        req.cls = None
        self.size -= 1
        if not cls:
            del self.classes[cls.key]
            self.fresh.pop(cls.key, None)

    def took(self, cls: RequestClass, n: int) -> None:
        """A pass took `n` requests off the front of `cls` (already advanced `head`)."""
        self.size -= n
        if not cls:
            del self.classes[cls.key]
        elif cls.head > 64 and cls.head * 2 > len(cls.entries):
            cls.compact()

    def __iter__(self) -> Iterator[Request]:
        """All queued requests in Lotus order (a merge of the classes)."""
        runs = [iter(c.entries[c.head:]) for c in self.classes.values()]
        for entry in heapq.merge(*runs):
            yield entry[-1]
