"""Task types, their queue order, and the sector sizes the scheduler knows.

Task types are named by Lotus's short names (sealtasks/task.go); `LOTUS_NAMES` maps them
to Lotus's long names. `ORDER` is Lotus's `order` table: negative values are
"run before everything else" tasks (WinningPoSt most urgent), and among the others a
lower value goes first. Task types Lotus leaves out of that table (FRU) get 0, as a Go
map lookup would.
"""
from __future__ import annotations

LOTUS_NAMES: dict[str, str] = {
    "DC": "seal/v0/datacid",
    "AP": "seal/v0/addpiece",
    "PC1": "seal/v0/precommit/1",
    "PC2": "seal/v0/precommit/2",
    "C1": "seal/v0/commit/1",
    "C2": "seal/v0/commit/2",
    "FIN": "seal/v0/finalize",
    "FUS": "seal/v0/finalizeunsealed",
    "GET": "seal/v0/fetch",
    "UNS": "seal/v0/unseal",
    "RU": "seal/v0/replicaupdate",
    "PR1": "seal/v0/provereplicaupdate/1",
    "PR2": "seal/v0/provereplicaupdate/2",
    "GSK": "seal/v0/regensectorkey",
    "FRU": "seal/v0/finalize/replicaupdate",
    "DL": "seal/v0/download/sector",
    "WDP": "post/v0/windowproof",
    "WNP": "post/v0/winningproof",
}

TASK_TYPES: tuple[str, ...] = tuple(LOTUS_NAMES)

ORDER: dict[str, int] = {
    "GSK": 11,  # least urgent
    "DC": 10,
    "AP": 9,
    "RU": 8,
    "PR2": 7,
    "PR1": 6,
    "PC1": 5,
    "PC2": 4,
    "C2": 3,
    "C1": 2,
    "UNS": 1,
    "FRU": 0,  # absent from Lotus's table, so 0 there too
    "GET": -1,
    "DL": -2,
    "FIN": -3,
    "FUS": -4,
    "WDP": -5,
    "WNP": -6,  # most urgent
}

# Tasks a worker starts straight into 'active' without a preparing phase, when they fit
# (Lotus's assignReadyWork hard-codes these two).
READY_TASKS = frozenset({"C1", "C2"})

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# Sector size in bytes -> the short form Lotus uses in resource env names ("32G").
SECTOR_SIZES: dict[int, str] = {
    2 * KiB: "2K",
    8 * MiB: "8M",
    512 * MiB: "512M",
    32 * GiB: "32G",
    64 * GiB: "64G",
}


def queue_key(task: str, priority: int) -> tuple[bool, int, int]:
    """The part of Lotus's request ordering that does not depend on the sector.

    Lotus (request_queue.go) puts a negative-order task before a non-negative one; within
    the same sign, higher priority first, then lower order. Sorting by this tuple, then by
    sector number, gives exactly that order.
    """
    order = ORDER[task]
    return (order >= 0, -priority, order)
