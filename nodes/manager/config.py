"""The manager role's settings (the `[manager]` section of a node's config file)."""
from __future__ import annotations

import msgspec


class ManagerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sync_s: float = 10.0             # how often the scheduler is asked what it lacks
    retry_max_s: float = 4.0         # back-off cap for messages to the scheduler/workers

    def __post_init__(self) -> None:
        if self.sync_s <= 0 or self.retry_max_s <= 0:
            raise ValueError("manager sync_s and retry_max_s must be positive")
