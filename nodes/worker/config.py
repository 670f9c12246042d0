"""The worker role's settings (the `[worker]` section of a node's config file)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.wire.tasks import ORDER

DEFAULT_TABLE = "zqnode.nodes.worker.sealing"       # the real sealing functions (proofs/)


class WorkerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tasks: list[str] = []            # task types offered; [] = every type the table has
    table: str = DEFAULT_TABLE       # module with TASKS: task type -> function
    limits: dict[str, int] = {}      # at most this many calls of a task type at once here
    # named shared locks (damocles ext_locks): each lock is held by one call at a time,
    # e.g. {"gpu" = ["PC2", "C2"]} makes PC2 and C2 take turns on one GPU
    locks: dict[str, list[str]] = {}
    resource_env: dict[str, str] = {}   # Lotus-style overrides sent to the scheduler
    ignore_resources: bool = False   # only max-concurrent limits apply (tests, small hosts)
    beat_s: float = 1.0              # heartbeat to the scheduler (fresh resources each time)
    retry_max_s: float = 4.0         # back-off cap for returns and reports
    fetch_chunk: int = 4 << 20       # bytes per WorkerFetch
    fetch_attempts: int = 3          # tries per chunk before the source is given up
    backend: str = "auto"            # proofs backend for the sealing functions
    parent_cache: str = ""           # SDR parent cache ("": $ZQNODE_PARENT_CACHE, else the proofs default)
    cores: int = 1                   # processes one PC2 (and tree-d) splits its hashing across (CPU backend)

    def __post_init__(self) -> None:
        unknown = [t for t in [*self.tasks, *self.limits, *(t for ts in self.locks.values() for t in ts)]
                   if t not in ORDER]
        if unknown:
            raise ValueError(f"worker: unknown task types {sorted(set(unknown))} "
                             f"(known: {', '.join(ORDER)})")
        if any(n < 1 for n in self.limits.values()):
            raise ValueError("worker limits must be >= 1")
        if self.beat_s <= 0 or self.retry_max_s <= 0:
            raise ValueError("worker beat_s and retry_max_s must be positive")
        if self.cores < 1:
            raise ValueError(f"worker cores must be >= 1, got {self.cores}")
        if self.fetch_chunk < 1024 or self.fetch_attempts < 1:
            raise ValueError("worker fetch_chunk must be >= 1024 and fetch_attempts >= 1")
