"""What an operator sees of a running node: Prometheus metrics (`--metrics-listen`),
structured logs with cause ids, and the hooks the node shells call to be counted.

    from zqnode.nodes import observe
    observe.worker(self)                  # end of WorkerNode.__init__: its metrics
    observe.set_cause("s-1000-3")         # this task's log lines carry the cause
    server = observe.MetricsServer("127.0.0.1:9400", observe.REGISTRY)

Modules: `metrics` (the registry and text format), `catalog` (every metric, one place),
`bus` (a peer's and the hub's traffic), `nodes` (per-role collectors and hooks), `http`
(the /metrics endpoint), `logs` (formats, levels per module, cause ids), `progress`
(progress of long commands)."""
from zqnode.nodes.observe.catalog import REGISTRY
from zqnode.nodes.observe.http import ListenError, MetricsServer, parse_listen
from zqnode.nodes.observe.logs import CAUSE, cause, sector_cause, set_cause
from zqnode.nodes.observe.nodes import (chain, hub, manager, post_declared, post_outcome, post_prove,
                                        poster, scheduler, scheduler_sent, work_ended, worker,
                                        worker_rerun, worker_task)

__all__ = ["CAUSE", "REGISTRY", "ListenError", "MetricsServer", "cause", "chain", "hub", "manager",
           "parse_listen", "post_declared", "post_outcome", "post_prove", "poster", "scheduler",
           "scheduler_sent", "sector_cause", "set_cause", "work_ended", "worker", "worker_rerun",
           "worker_task"]
