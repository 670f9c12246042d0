"""Running one task: `execute(TaskInput) -> TaskOutput`, and the subprocess entry point

    python -m nodes.worker.task            (TaskInput as msgpack on stdin, TaskOutput on stdout)

A task table is a module with `TASKS: dict[task type, function(ctx, params) -> result]`;
params and results are the structs of nodes.wire.params. The subprocess exits when its
worker is gone (it watches its parent), so a worker killed -9 leaves no computation
behind to race the re-run.

Test hooks (environment of the worker, inherited by its tasks):
    ZQNODE_TASK_LOG=FILE    append one JSON line (with a wall-clock `ts`) per task start,
                            end (a result), fail (an error) and kill (stopped by the worker)
    ZQNODE_TASK_HOLD=DIR    write DIR/started-TASK-s-MINER-NUMBER.PID, then wait while
                            DIR/hold-TASK exists (a test holds PC1 to kill its worker)
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import msgspec

from zqnode.nodes.wire import params as P


class TaskInput(msgspec.Struct, kw_only=True):
    table: str
    task: str
    work_id: str
    call_id: str
    worker: str
    miner: int
    number: int
    sector_size: int
    sector_dir: str
    repo: str
    params: bytes
    backend: str = "auto"
    parent_cache: str = ""
    cores: int = 1                     # processes a task may split its work across (PC2)


class TaskOutput(msgspec.Struct, kw_only=True):
    ok: bool
    result: bytes = b""
    error: str = ""


class TaskContext(msgspec.Struct, kw_only=True):
    """What a task function gets besides its params."""
    miner: int
    number: int
    sector_size: int
    sector_dir: Path
    repo: Path
    backend: str
    parent_cache: str | None
    cores: int = 1


def load_table(name: str) -> dict:
    return importlib.import_module(name).TASKS


def task_log(event: str, inp: TaskInput, **extra) -> None:
    path = os.environ.get("ZQNODE_TASK_LOG")
    if not path:
        return
    line = json.dumps({"event": event, "task": inp.task, "work_id": inp.work_id,
                       "call_id": inp.call_id, "worker": inp.worker, "pid": os.getpid(),
                       "sector": inp.number, "ts": time.time(), **extra}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())          # one write with O_APPEND: lines never mix
    finally:
        os.close(fd)


def _hold(inp: TaskInput) -> None:
    folder = os.environ.get("ZQNODE_TASK_HOLD")
    if not folder:
        return
    d = Path(folder)
    (d / f"started-{inp.task}-s-{inp.miner}-{inp.number}.{os.getpid()}").write_text(inp.worker)
    while (d / f"hold-{inp.task}").exists():
        time.sleep(0.05)


def execute(inp: TaskInput, table: dict | None = None) -> TaskOutput:
    """Run the task; any exception becomes a failed output with its message."""
    started = False
    try:
        table = load_table(inp.table) if table is None else table
        fn = table.get(inp.task)
        if fn is None:
            return TaskOutput(ok=False, error=f"task type {inp.task} is not in {inp.table}")
        params = P.decode_params(inp.task, inp.params)
        ctx = TaskContext(miner=inp.miner, number=inp.number, sector_size=inp.sector_size,
                          sector_dir=Path(inp.sector_dir), repo=Path(inp.repo),
                          backend=inp.backend, parent_cache=inp.parent_cache or None, cores=inp.cores)
        task_log("start", inp)
        started = True
        _hold(inp)
        result = fn(ctx, params)
        if _PARENT is not None and os.getppid() != _PARENT:
            os._exit(1)              # its worker died meanwhile: nobody would store this result
        task_log("end", inp)
        return TaskOutput(ok=True, result=P.encode(result))
    except Exception as e:  # the task's failure is its result, not the worker's
        traceback.print_exc(file=sys.stderr)
        error = f"{type(e).__name__}: {e}"
        if started:
            task_log("fail", inp, error=error)
        return TaskOutput(ok=False, error=error)


_PARENT: int | None = None            # the worker that started this task process (main sets it)


def _die_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Exit as soon as the worker that started us is gone. Not PR_SET_PDEATHSIG: that
    fires when the *thread* that started the process exits, and trio starts processes
    from worker threads that exit after 10 s idle, which killed every task past 10 s."""
    if os.getppid() != parent:                     # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    global _PARENT
    parent = _PARENT = int(os.environ.get("ZQNODE_TASK_PARENT", os.getppid()))
    _die_with_parent(parent)
    inp = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=TaskInput)
    out = os.dup(1)
    os.dup2(2, 1)                                  # stray prints go to the log, not the output
    output = execute(inp)
    data = msgspec.msgpack.encode(output)
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    os.close(out)


if __name__ == "__main__":
    main()
