"""The scheduler role's settings (the `[scheduler]` section of a node's config file):
the core's own SchedulerConfig (assigner, windows per worker, liveness timeouts,
resource overrides)."""
from zqnode.nodes.scheduler.events import SchedulerConfig

__all__ = ["SchedulerConfig"]
