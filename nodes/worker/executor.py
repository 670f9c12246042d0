"""How a worker runs a task: in a subprocess (the real thing: killable, and a long PC1
never blocks the event loop), or inline (tests under a mock clock).

`await executor.run(inp)` returns the TaskOutput; cancelling it stops the task (the
subprocess is killed and reaped before the cancellation goes on).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from zqnode.nodes.worker.task import TaskInput, TaskOutput, execute, load_table, task_log


class SubprocessExecutor:
    def __init__(self, log_dir: str | os.PathLike):
        self.log_dir = Path(log_dir)
        self.pids: dict[str, int] = {}         # call id -> pid of its running process

    async def run(self, inp: TaskInput) -> TaskOutput:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{inp.call_id}.log"
        # The same interpreter finds the installed zqnode package (editable or not) as this
        # process did: no PYTHONPATH of ours (the repository root holds no `zqnode` folder).
        env = {**os.environ, "ZQNODE_TASK_PARENT": str(os.getpid())}
        with open(log_path, "ab") as log:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "zqnode.nodes.worker.task"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=env)
        self.pids[inp.call_id] = proc.pid
        try:
            out = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_feed, proc.stdin, msgspec.msgpack.encode(inp))
                while chunk := await proc.stdout.receive_some(1 << 20):
                    out += chunk
            code = await proc.wait()
        except BaseException:
            proc.kill()                          # aborted (or the worker is stopping)
            task_log("kill", inp)
            raise
        finally:
            self.pids.pop(inp.call_id, None)
            with trio.CancelScope(shield=True):
                for stream in (proc.stdin, proc.stdout):
                    await stream.aclose()
                await proc.wait()                # reaped: no zombie left behind
        if code == 0:
            try:
                return msgspec.msgpack.decode(bytes(out), type=TaskOutput)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
        tail = _tail(log_path)
        error = f"task process exited with status {code}" + (f": {tail}" if tail else "")
        task_log("fail", inp, error=error)           # it died: it could not say so itself
        return TaskOutput(ok=False, error=error)


async def _feed(stream, data: bytes) -> None:
    async with stream:
        await stream.send_all(data)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class InlineExecutor:
    """Runs the task function in the event loop (fast fake tables under a MockClock).
    `gates[task]`, when set, is awaited before the task runs (a test holds it there);
    `runs` lists the work ids run, in order."""

    def __init__(self, table: str, gates: dict[str, trio.Event] | None = None,
                 before: Callable[[TaskInput], None] | None = None):
        self.table = load_table(table)
        self.gates = gates if gates is not None else {}
        self.before = before
        self.runs: list[str] = []
        self.finished: list[str] = []

    async def run(self, inp: TaskInput) -> TaskOutput:
        self.runs.append(inp.work_id)
        gate = self.gates.get(inp.task)
        if gate is not None:
            await gate.wait()
        else:
            await trio.lowlevel.checkpoint()
        if self.before is not None:
            self.before(inp)
        out = execute(inp, self.table)
        self.finished.append(inp.work_id)
        return out
