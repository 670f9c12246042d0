"""Real `zqnode` processes for the end-to-end tests: `Proc` runs one in its own process
group, `zqnode` runs a command to its end, `until` polls a condition, `sealing_events`
reads a devnet's sector log while it runs."""
import os
import pathlib
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

from zqnode.nodes.sealing.store import SealingStore

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(env: dict | None) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}


class Proc:
    """A `zqnode ...` process in its own process group (so `kill9` takes its task processes
    too): stdout lines, without their newline, on a queue; stderr in a file (a pipe nobody
    reads would stall a chatty node)."""

    def __init__(self, *args: str, env: dict | None = None):
        self.args = args
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen([sys.executable, "-m", "zqnode.nodes.cli", *args], cwd=ROOT, env=_env(env),
                                  stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def stderr(self, tail: int = 3000) -> str:
        self.err.seek(0)
        return self.err.read().decode(errors="replace")[-tail:]

    def wait_for_stderr(self, text: str, timeout: float = 60.0) -> None:
        """Until `text` is in what the process said on stderr."""
        until(lambda: text in self.stderr() or self.p.poll() is not None, timeout, f"{text!r} on stderr")
        assert text in self.stderr(), self.stderr()

    def wait_for(self, pred, timeout: float = 60.0) -> str:
        """The first stdout line (from here on) for which pred is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if pred(line):
                return line
        raise AssertionError(f"{' '.join(self.args[:3])}: nothing matched within {timeout}s; "
                             f"stdout: {self.seen[-6:]}; stderr: {self.stderr()}")

    def kill9(self) -> None:
        """kill -9 the whole process group: no goodbye, no clean-up."""
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait(10)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> str:
        """Signal the process (not its group) and wait; what it said on stderr."""
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.stderr()


def zqnode(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zqnode.nodes.cli", *args], cwd=ROOT, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)


def until(pred, timeout: float = 60.0, what: str = "", every: float = 0.1):
    """pred()'s first true value, polled every `every` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


def devnet_chain(repo: pathlib.Path):
    """The chain a stopped devnet left in its repo, loaded with the real verifiers."""
    from zqnode.nodes.chain.store import ChainStore
    from zqnode.nodes.chain.verifiers import proofs_verifiers
    store = ChainStore(repo / "chain" / "chain.sqlite")
    try:
        return store.load(store.genesis(), proofs_verifiers())
    finally:
        store.close()


def sealing_events(repo: pathlib.Path, number: int) -> list[str]:
    """The events of a devnet sector's sealing log, oldest first."""
    store = SealingStore(repo / "manager" / "sealing.sqlite")
    try:
        return [entry.event for entry in store.log(number)]
    finally:
        store.close()
