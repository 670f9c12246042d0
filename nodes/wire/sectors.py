"""What every role says about sectors and workers: a sector's reference, a worker's
host and paths, and the selectors that say which workers may take a request (tagged by
class name on the wire)."""
from __future__ import annotations

from typing import Literal, Union

import msgspec


class _Tagged(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    pass


# ---- parts -------------------------------------------------------------------------

class SectorRef(msgspec.Struct, frozen=True):
    miner: int
    number: int


class StoragePath(msgspec.Struct, frozen=True, kw_only=True):
    """A storage path a worker can reach (Lotus StoragePath): its id in the manager's
    storage index, and whether it takes sealing scratch files and/or long-term files."""

    id: str
    can_seal: bool = False
    can_store: bool = False


class WorkerResources(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker reports about its host, refreshed by every heartbeat."""

    cpus: int
    mem_physical: int
    mem_used: int = 0  # used outside our tasks (OS, other programs)
    mem_swap: int = 0
    mem_swap_used: int = 0
    gpus: tuple[str, ...] = ()


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    hostname: str
    tasks: tuple[str, ...]  # supported task types (short names)
    resources: WorkerResources
    paths: tuple[StoragePath, ...] = ()
    # Lotus-style resource overrides, e.g. {"PC1_32G_MAX_CONCURRENT": "4"}
    resource_env: dict[str, str] = {}
    ignore_resources: bool = False  # only max-concurrent limits apply (tests, local)


# ---- selectors (which workers may take a request) ------------------------------------

class SelTask(_Tagged, frozen=True, kw_only=True):
    """Any worker supporting the task; workers supporting fewer task types first."""


class SelAlloc(_Tagged, frozen=True, kw_only=True):
    """Workers with a path where new sector files may go: a sealing path ("seal") or a
    long-term one ("store"). `storage_ids`, when given, is the manager's best-allocation
    answer (space, allowed file types, miners): then the path must be one of them."""

    path_type: Literal["seal", "store"] = "seal"
    storage_ids: tuple[str, ...] = ()


class SelExisting(_Tagged, frozen=True, kw_only=True):
    """Workers that hold the sector's files (a path in `locations`) or, with
    `allow_fetch`, any worker with a sealing path that could fetch them."""

    locations: tuple[str, ...] = ()
    allow_fetch: bool = False


class SelMove(_Tagged, frozen=True, kw_only=True):
    """Moving files to long-term storage. Workers holding the sector in one of their
    long-term paths are preferred (others are then not considered); with `allow_remote`
    any worker with a long-term path (one of `storage_ids` when given) may take it."""

    locations: tuple[str, ...] = ()
    allow_remote: bool = True
    storage_ids: tuple[str, ...] = ()


Selector = Union[SelTask, SelAlloc, SelExisting, SelMove]
