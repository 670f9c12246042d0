"""Every metric zqnode exports, in one place (docs/metrics.md and the Grafana dashboard are
checked against these names). All carry a `node` label: one process may run several
nodes (`zqnode devnet` runs them all), and one `/metrics` serves them together."""
from __future__ import annotations

import time

from zqnode.nodes.observe.metrics import Registry

REGISTRY = Registry()
R = REGISTRY
N = ("node",)

# -- the process ----------------------------------------------------------------------------
NODE_INFO = R.gauge("zqnode_node_info", "A node running in this process (always 1).",
                    ("node", "role"), collected=True)
NODE_PROBLEMS = R.gauge("zqnode_node_problem", "A condition the node reports for an operator "
                        "(1 while it lasts, e.g. problem=\"store\": its database cannot be "
                        "written); `zqnode status` shows the text.", ("node", "problem"),
                        collected=True)
CORE_REFUSALS = R.counter("zqnode_core_refusals_total", "Events a node's pure core refused: a "
                          "bug in zqnode, each logged at ERROR with the event; alert on any.",
                          ("node", "role"), collected=True)
PROCESS_START = R.gauge("zqnode_process_start_time_seconds",
                        "When this process started, seconds since the epoch.")
PROCESS_START.set(time.time())

# -- the bus: every node, and the hub ---------------------------------------------------------
BUS_MESSAGES = R.counter(
    "zqnode_bus_messages_total", "Bus messages by channel (rpc, event), direction (in, out) "
    "and message kind; the hub counts what it routes as `in`.",
    ("node", "channel", "direction", "kind"), collected=True)
BUS_BYTES = R.counter(
    "zqnode_bus_bytes_total", "Bytes of those messages (every frame: route, envelope, buffers).",
    ("node", "channel", "direction", "kind"), collected=True)
RPC_SECONDS = R.histogram(
    "zqnode_bus_rpc_seconds", "Calls this node made, from sending to the reply, by request "
    "kind and outcome (ok, error, timeout).", ("node", "kind", "outcome"))
HANDLER_SECONDS = R.histogram(
    "zqnode_bus_handler_seconds", "Requests this node served, time in the handler, by kind and "
    "outcome (ok, refused, error).", ("node", "kind", "outcome"))
BUS_PENDING = R.gauge("zqnode_bus_pending_calls", "Calls sent and not yet answered.", N,
                      collected=True)
BUS_HANDLERS = R.gauge("zqnode_bus_active_handlers", "Requests being served now.", N,
                       collected=True)
BUS_SUB_QUEUE = R.gauge("zqnode_bus_subscription_queue",
                        "Events received and not yet taken by the node.", N, collected=True)
BUS_DROPPED = R.counter("zqnode_bus_events_dropped_total",
                        "Events dropped because the node's subscription queue was full.", N,
                        collected=True)
BUS_REGISTRATIONS = R.counter("zqnode_bus_registrations_total",
                              "Registrations with the hub (more than one: the hub or the "
                              "link went away).", N, collected=True)
HUB_NODES = R.gauge("zqnode_hub_nodes", "Nodes the hub knows, by role and state (up; down: "
                    "silent; left: stopped cleanly).", ("node", "role", "state"), collected=True)
HUB_NODE_STATES = ("up", "down", "left")
HUB_OPEN = R.gauge("zqnode_hub_open_requests", "Requests routed and not yet answered.", N,
                   collected=True)
HUB_ROUTED = R.counter("zqnode_hub_routed_total", "Messages the hub routed.", N, collected=True)

# -- manager: the call tracker ------------------------------------------------------------------
MANAGER_WORKS = R.gauge("zqnode_manager_works", "Work the call tracker holds, by task and state "
                        "(queued, running, done, failed, aborted).", ("node", "task", "state"),
                        collected=True)
MANAGER_WORK_SECONDS = R.histogram(
    "zqnode_manager_work_seconds", "From a work's request to its end, by task and outcome "
    "(done, failed, aborted).", ("node", "task", "outcome"))
MANAGER_BACKLOG = R.gauge("zqnode_manager_enqueue_backlog",
                          "Works waiting to be handed to the scheduler.", N, collected=True)

# -- sealing: the sector state machine (in the manager) -------------------------------------------
SEALING_SECTORS = R.gauge("zqnode_sealing_sectors", "Sectors by state.", ("node", "state"),
                          collected=True)
SEALING_PAUSED = R.gauge("zqnode_sealing_paused_sectors",
                         "Sectors paused after too many errors in a row (sectors resume).", N,
                         collected=True)

# -- scheduler -----------------------------------------------------------------------------------
SCHED_REQUESTS = R.gauge("zqnode_scheduler_requests", "Requests by task and state (queued, "
                         "assigned, preparing, waiting, running).", ("node", "task", "state"),
                         collected=True)
SCHED_QUEUE = R.gauge("zqnode_scheduler_queue_length", "Requests waiting for a worker.", N,
                      collected=True)
SCHED_WORKERS = R.gauge("zqnode_scheduler_workers", "Workers by state (enabled, disabled).",
                        ("node", "state"), collected=True)
SCHED_OPEN_WINDOWS = R.gauge("zqnode_scheduler_open_windows",
                             "Scheduling windows workers offer and nothing fills.", N,
                             collected=True)
SCHED_WAIT_SECONDS = R.histogram("zqnode_scheduler_wait_seconds",
                                 "From a request's queueing to its Run, by task.",
                                 ("node", "task"))
SCHED_WORKER_CPUS = R.gauge("zqnode_scheduler_worker_cpus",
                            "A worker's CPUs: total, and reserved by the tasks placed there.",
                            ("node", "worker", "use"), collected=True)
SCHED_WORKER_MEMORY = R.gauge("zqnode_scheduler_worker_memory_bytes",
                              "A worker's memory: total, used outside our tasks, reserved by "
                              "the tasks placed there.", ("node", "worker", "use"), collected=True)
SCHED_WORKER_GPUS = R.gauge("zqnode_scheduler_worker_gpus",
                            "A worker's GPUs: total, and reserved.", ("node", "worker", "use"),
                            collected=True)
SCHED_WORKER_UTILIZATION = R.gauge("zqnode_scheduler_worker_utilization",
                                   "A worker's utilization as the assigner sees it (0..1+).",
                                   ("node", "worker"), collected=True)

# -- worker --------------------------------------------------------------------------------------
WORKER_TASKS = R.counter("zqnode_worker_tasks_total", "Tasks run to their end, by type and "
                         "outcome (ok, failed).", ("node", "task", "outcome"))
WORKER_TASK_SECONDS = R.histogram("zqnode_worker_task_seconds",
                                  "Time a task ran (its process), by type and outcome.",
                                  ("node", "task", "outcome"))
WORKER_RUNNING = R.gauge("zqnode_worker_running_tasks", "Tasks running now, by type.",
                         ("node", "task"))
WORKER_RERUNS = R.counter("zqnode_worker_task_reruns_total",
                          "Calls run again after a restart: their run died with the worker.",
                          ("node", "task"))
WORKER_WASTED = R.counter(
    "zqnode_worker_wasted_task_seconds_total", "Task time whose result was thrown away, by why: "
    "failed (the task ended in an error), aborted (stopped by an abort), crashed (died or "
    "stopped with the worker: from its start to the worker's last beat, counted at its restart).",
    ("node", "task", "why"))
WORKER_CPUS = R.gauge("zqnode_worker_cpus", "Logical CPUs of the worker's host.", N, collected=True)
WORKER_CPU_PERCENT = R.gauge("zqnode_worker_cpu_percent", "Host CPU use, percent of all CPUs.",
                             N, collected=True)
WORKER_MEMORY = R.gauge("zqnode_worker_memory_bytes", "Host memory: total and used.",
                        ("node", "use"), collected=True)
WORKER_SWAP = R.gauge("zqnode_worker_swap_bytes", "Host swap: total and used.", ("node", "use"),
                      collected=True)
WORKER_GPUS = R.gauge("zqnode_worker_gpus", "GPUs the worker found.", N, collected=True)
WORKER_STORAGE = R.gauge("zqnode_worker_storage_bytes", "The file system of the worker's sector "
                         "files (REPO/sectors): total and free bytes.", ("node", "use"),
                         collected=True)
TASK_OUTCOMES = ("ok", "failed")

# -- chain ---------------------------------------------------------------------------------------
CHAIN_EPOCH = R.gauge("zqnode_chain_epoch", "The head's epoch.", N, collected=True)
CHAIN_POOL = R.gauge("zqnode_chain_pool_messages", "Messages waiting in the pool.", N,
                     collected=True)
CHAIN_REORGS = R.counter("zqnode_chain_reorgs_total", "Reorgs (forks) so far.", N, collected=True)
CHAIN_POWER = R.gauge("zqnode_chain_miner_power_bytes", "A miner's power: active sectors x size.",
                      ("node", "miner"), collected=True)
CHAIN_SECTORS = R.gauge("zqnode_chain_miner_sectors", "A miner's sectors on chain by state "
                        "(active, unproven, faulty, recovering, precommitted).",
                        ("node", "miner", "state"), collected=True)
CHAIN_PENALTIES = R.counter("zqnode_chain_miner_penalties_total",
                            "Sectors still faulty when their deadline closed.", ("node", "miner"),
                            collected=True)

# -- poster --------------------------------------------------------------------------------------
POST_DEADLINES = R.counter("zqnode_post_deadlines_total", "Deadlines closed, by outcome (proven, "
                           "missed, unconfirmed, empty, unknown).", ("node", "miner", "status"))
POST_STATUSES = ("proven", "missed", "unconfirmed", "empty", "unknown")
POST_PROVE_SECONDS = R.histogram("zqnode_post_prove_seconds",
                                 "Proving one batch of partitions, by outcome (ok, failed).",
                                 ("node", "miner", "outcome"))
POST_DECLARED = R.counter("zqnode_post_declared_sectors_total",
                          "Sectors declared faulty or recovered (kind: faults, recoveries).",
                          ("node", "miner", "kind"))
POST_DECLARED_KINDS = ("faults", "recoveries")
POST_SKIPPED = R.counter("zqnode_post_skipped_sectors_total",
                         "Sectors left out of a deadline's proofs (their checks failed).",
                         ("node", "miner"))
POST_RUNNERS = R.gauge("zqnode_post_runners", "Deadline runners at work now.", N, collected=True)
POST_DEADLINE = R.gauge("zqnode_post_current_deadline", "The current deadline's index.",
                        ("node", "miner"), collected=True)


def reference_markdown() -> str:
    """docs/metrics.md: every family, its type, labels and help, in catalog order."""
    out = ["# Metrics reference", "",
           "<!-- generated by tools/gen_docs.py from nodes/observe/catalog.py; do not edit -->", "",
           "Every node serves these at `http://HOST:PORT/metrics` when started with",
           "`--metrics-listen HOST:PORT` (or `metrics_listen` in its config); `zqnode devnet",
           "--metrics-listen` serves all its nodes on one endpoint. Every sample but the process's",
           "start time has a `node` label: the node's name. `docs/grafana/zqnode.json` is a",
           "dashboard of them; [the troubleshooting page](troubleshooting.md) says what to watch.",
           "",
           "| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for f in R.families.values():
        labels = ", ".join(f"`{n}`" for n in f.labelnames)
        out.append(f"| `{f.name}` | {f.type} | {labels} | {f.help.replace('|', '/')} |")
    return "\n".join(out) + "\n"
