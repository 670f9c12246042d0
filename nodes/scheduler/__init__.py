"""The scheduler's pure core: Lotus's sealing scheduler, exact where it matters, fast at
scale (no trio, zmq, disk, clock or unseeded randomness here; a shell adds those).

Use: `s = Scheduler(SchedulerConfig(...))`, then `s.handle(event, now) -> [Command]` for
each event (`now` is the shell's monotonic clock, in seconds). A shell draining many
events at once may call `s.apply(event, now)` for each and `s.schedule(now)` once. Every
event and command carries a `cause` string; commands inherit their event's cause
("pass N: ..." for window assignments). Invalid events raise a SchedulerError (a
ValueError) and change nothing. `s.diag()` gives a sched-diag snapshot.

Events (in):
  WorkerJoined(worker, session, info)   a worker registers. Same session again: new info.
                                        A new session: the old worker is removed (its
                                        window items requeued) and the new one added.
  WorkerHeartbeat(worker, session, resources)
                                        refreshes resources (memory in use etc.) and
                                        liveness; re-enables a disabled worker; a new
                                        session means restarted: removed and re-added.
  WorkerLeft(worker)                    removed (as below).
  TaskQueued(request, sector, task, sector_size, priority, selector, prepare)
  TaskCancelled(request)                queued/in a window: gone (Cancelled). Preparing
                                        or running: Abort, then Cancelled on its finish.
  TaskPrepared(request)                 its preparing step (fetch) is done.
  TaskFinished(request, ok)             its work (or failed preparing/abort) is over.
  TaskAdopted(request, worker, ...)     a worker runs a request the scheduler does not
                                        know (after a restart): counted as running there.
  Tick()                                liveness: silent > disable_after_s: disabled,
                                        window items requeued; > remove_after_s: removed.

Commands (out):
  WorkerAdded(worker, session)          AssignWindow(worker, window, requests)
  Prepare(worker, request)              run the preparing step; answer TaskPrepared
  Run(worker, request)                  run the work; answer TaskFinished
  Abort(worker, request)                stop it; answer TaskFinished
  Cancelled(request)                    Requeued(worker, requests)
  WorkerDisabled(worker)                WorkerEnabled(worker)
  WorkerRemoved(worker, lost)           `lost` were preparing/running there; forgotten

Model (Lotus storage/sealer): each enabled worker has `windows_per_worker` (2) windows.
A pass fills open windows from the queue (see assign.py for the order and assigners);
a filled window goes to its worker, which starts requests from its oldest window in
order: each reserves 'preparing' resources (its own needs, counted as its prepare task
for max-concurrent limits) while it fetches, then 'active' resources when they fit
(prepared requests wait, oldest first). C1/C2 start straight in 'active' when they fit.
A drained window is replaced by a new open one; newer windows are compacted into older
ones that still fit them. After a pass every request left in the queue is stuck until
windows open or a worker changes; until then a pass only looks at the queue classes
that got new requests, so a new request costs little even behind a large backlog.
Fit and utilization follow Lotus's CanHandleRequest and utilization (usage.py); the
resource table and its env overrides are in resources.py; the pass is in assign.py
(reference.py is a brute-force copy of it, Lotus-style, for tests and the benchmark);
the worker-side window loop is in worker_loop.py. Windows are opened by the core itself
(no window-request event), and a request's start is the Prepare/Run command (no
task-started event).

Deviations from Lotus, on purpose: resources are refreshed on every heartbeat; silent
workers are removed after a while instead of listed forever; bad resource overrides
raise instead of becoming 0; the assigner finds the exact best window (Lotus stops at
the first that is not better) and breaks ties deterministically (join order) where
Lotus shuffles; the utilization assigner spreads equal-utilization ties by tasks
already given this pass (Lotus piles them on one worker); a request without a prepare
step counts as its own task type while preparing (Lotus counts all of them as one
"no-op" type); a request can be cancelled while in a window or running.
Not modelled: Lotus's "experiment-random" assigner, storage free space (pass the
manager's best-allocation paths in the selector's storage_ids instead), PoSt-only
worker pools (WDP/WNP are ordinary queued tasks here).
"""

from zqnode.nodes.wire.scheduler import SchedDiag
from zqnode.nodes.wire.sectors import (SectorRef, SelAlloc, SelExisting, SelMove, SelTask, StoragePath,
                                       WorkerInfo, WorkerResources)
from zqnode.nodes.wire.tasks import ORDER, SECTOR_SIZES, TASK_TYPES

from .core import Scheduler
from .errors import (DuplicateRequest, InvalidTransition, ResourceEnvError, SchedulerError,
                     UnknownRequest, UnknownWorker)
from .events import (Abort, AssignWindow, Cancelled, Command, Event, Prepare, Requeued, Run,
                       SchedulerConfig, TaskAdopted, TaskCancelled, TaskFinished,
                       TaskPrepared, TaskQueued, Tick, WorkerAdded, WorkerDisabled, WorkerEnabled,
                       WorkerHeartbeat, WorkerJoined, WorkerLeft, WorkerRemoved)
from .resources import DEFAULT_TABLE, Resources, parse_resource_env, resource_env_from_config

__all__ = [
    "Abort", "AssignWindow", "Cancelled", "Command", "DEFAULT_TABLE", "DuplicateRequest",
    "Event", "InvalidTransition", "ORDER", "Prepare", "Requeued", "ResourceEnvError",
    "Resources", "Run", "SECTOR_SIZES", "SchedDiag", "Scheduler", "SchedulerConfig",
    "SchedulerError", "SectorRef", "SelAlloc", "SelExisting", "SelMove", "SelTask",
    "StoragePath", "TASK_TYPES", "TaskAdopted", "TaskCancelled", "TaskFinished", "TaskPrepared",
    "TaskQueued", "Tick", "UnknownRequest", "UnknownWorker", "WorkerAdded",
    "WorkerDisabled", "WorkerEnabled", "WorkerHeartbeat", "WorkerInfo", "WorkerJoined",
    "WorkerLeft", "WorkerRemoved", "WorkerResources", "parse_resource_env",
    "resource_env_from_config",
]
