"""Every command block of the README and docs/ (docs/protocol.md aside: wire details for
client writers, no commands) run as it is written, over real processes, so a doc command
that stops working fails CI.

What the text says and how it runs:

- A ```sh block runs line by line (a `\\` continuation, a heredoc or a for loop is one
  command) in bash, in a fresh HOME, with no `--repo` added. The word after `sh` names
  the scenario the blocks share, so one cluster serves many blocks: `devnet` (the tour's
  `zqnode devnet`, then every block that looks at a running cluster), `cluster` (the
  tour's cluster over tcp with keys; a role page's `zqnode start` replaces the node of
  that name), `bus` (the README's "The bus"), `security` (the README's security walk),
  `local` (nothing running), `gpu` (run when a GPU is there).
- `# on HUB`, `# on w1`, `# on your machine` pick the machine (its own HOME) of the
  lines after them; `HUB` is 127.0.0.1.
- `zqnode start`, `zqnode devnet`, `zqnode tail` and a live `zqnode status` run until
  stopped: they start in the background (a node must say "running on", the devnet that
  its sectors are Proving, status print its first screen); tail and status are stopped
  with Ctrl-C at the end of their block (status 130, one line), nodes at the end of the
  scenario (status 0). An `export` line holds for the rest of the block's machine.
- `[...]` is optional: the line runs without it and with it. Upper-case words are
  placeholders, given values from the running cluster (`Scenario.value`).
- Substitutions: the bus port 7700 (7701, 7702) and the metrics ports 94xx become free
  ports, and `$ZQNODE_BUS` is the default address on that port; `/mnt/` is a directory
  of the test whose `w1` links to w1's sector files (the tour's mount); `--days` of
  tools/simulate.py is 0.05. tools/chaos.py lines are parsed (each option must exist)
  and not run: tests/tools/test_chaos.py runs chaos.py end to end. `pip` and `pytest`
  lines are CI's own commands (.ci/run).
- A ```console block runs each `$ ` line and compares what it prints (stdout and stderr)
  with the lines under it; a line ending in `...` matches by its start.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest

from zqnode.bus.address import free_tcp_address

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "protocol.md")]
FENCE = re.compile(r"^```(\w+)(?:[ \t]+(\S+))?[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
SCENARIOS = ("devnet", "cluster", "bus", "security", "local", "gpu")
MACHINE = re.compile(r"#\s*on (HUB|w1|your machine)\b")
PLACEHOLDER = re.compile(r"(?<!\w)(HUB_NODE_PUB|W1_PUBLIC_KEY|PUBLIC_KEY|MSG_ID|NUMBER|INDEX|EPOCH|MINER|"
                         r"JOB|FILE|PIECE|HUB|N|S|I)(?!\w)")
OPTIONAL = re.compile(r" \[([^\[\]]+)\]")
COMMAND_TIMEOUT_S = 120


# -- the blocks --------------------------------------------------------------------------------
@dataclass
class Block:
    page: str
    line: int
    lang: str
    scenario: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def all_blocks() -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            out.append(Block(page.name, text.count("\n", 0, m.start()) + 1, m[1], m[2] or "", m[3]))
    return out


def blocks_of(scenario: str) -> list[Block]:
    return [b for b in all_blocks() if b.lang in ("sh", "console") and b.scenario == scenario]


def commands(text: str):
    """("machine", name) switches and ("run", command) items of a block's text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = MACHINE.match(stripped)
            if m:
                yield "machine", m[1]
            continue
        cmd = line
        while cmd.endswith("\\"):
            cmd += "\n" + lines[i]
            i += 1
        heredoc = re.search(r"<<\s*'?(\w+)'?", cmd)
        ends = heredoc[1] if heredoc else ("done" if re.match(r"(for|while) ", stripped) else None)
        if ends:
            while lines[i].strip() != ends:
                cmd += "\n" + lines[i]
                i += 1
            cmd += "\n" + lines[i]
            i += 1
        yield "run", cmd


def without_comment(cmd: str) -> str:
    """A one-line command without its trailing `# ...` (outside quotes)."""
    quote = ""
    for k, ch in enumerate(cmd):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or cmd[k - 1].isspace()):
            return cmd[:k].rstrip()
    return cmd.rstrip()


def variants(cmd: str) -> list[str]:
    """The line without its optional parts, and with them."""
    if not OPTIONAL.search(cmd):
        return [cmd]
    return [OPTIONAL.sub("", cmd), OPTIONAL.sub(r" \1", cmd)]


def words(cmd: str) -> list[str]:
    """The command's words, leading VAR=value assignments left out."""
    out = cmd.split()
    while out and re.fullmatch(r"\w+=\S*", out[0]):
        out.pop(0)
    return out


def until_stopped(cmd: str) -> str:
    """'start', 'devnet', 'tail' or 'status' for a command that runs until stopped."""
    w = words(cmd)
    if w[:1] != ["zqnode"] or len(w) < 2:
        return ""
    if w[1] in ("start", "devnet", "tail") or (w[1] == "status" and "--once" not in w):
        return w[1]
    return ""


# -- machines and their processes -------------------------------------------------------------
class Background:
    """A command running until stopped: its stdout lines, its stderr in a file."""

    def __init__(self, cmd: str, machine: "Machine"):
        self.cmd, self.kind = cmd, words(cmd)[1]
        self.err = tempfile.TemporaryFile()
        assignments, rest = cmd.split("zqnode", 1)      # exec: Ctrl-C reaches zqnode itself
        self.p = subprocess.Popen(["bash", "-c", f"{machine.prelude()}{assignments}exec zqnode{rest}"],
                                  cwd=machine.home, env=machine.env, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def wait_for(self, pred, timeout: float, where: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(pred(line) for line in self.lines):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{where}: `{self.cmd}` did not come up: stdout {self.lines[-5:]}; "
                             f"stderr {self.stderr()[-2000:]}")

    def stop(self, where: str) -> None:
        """Ctrl-C: a node or the devnet ends with 0, tail and status with 130 and one line."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
                raise AssertionError(f"{where}: `{self.cmd}` did not stop on Ctrl-C")
        if self.kind in ("tail", "status"):
            assert (self.p.returncode, self.stderr().splitlines()[-1:]) == (
                130, [f"zqnode {self.kind}: stopped (Ctrl-C)"]), (where, self.cmd, self.stderr()[-2000:])
        else:
            assert self.p.returncode == 0, (where, self.cmd, self.stderr()[-2000:])

    def kill(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(10)


def _option(w: list[str], name: str) -> str:
    return w[w.index(name) + 1] if name in w[:-1] else ""


@dataclass
class Machine:
    name: str
    home: pathlib.Path
    env: dict
    exports: list[str] = field(default_factory=list)
    nodes: dict = field(default_factory=dict)          # name -> Background (start, devnet)
    watchers: list = field(default_factory=list)       # tail, status: stopped with their block

    def prelude(self) -> str:
        return "".join(f"{e}\n" for e in self.exports)

    def run(self, cmd: str, where: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(["bash", "-c", self.prelude() + cmd], cwd=self.home, env=self.env,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        if check:
            assert out.returncode == 0, (f"{where} on {self.name}: `{cmd}` exited {out.returncode}:"
                                         f"\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        return out

    def json(self, cmd: str):
        return json.loads(self.run(cmd, "a placeholder's value").stdout)


class Scenario:
    """The machines of one scenario, its ports and the placeholders' values."""

    def __init__(self, tmp: pathlib.Path, name: str):
        self.tmp, self.name = tmp, name
        self.port = int(free_tcp_address().rsplit(":", 1)[1])
        self.metrics: dict[str, int] = {}
        self.machines: dict[str, Machine] = {}
        self.stopped: list[Background] = []          # tail and status, once their block ended
        self.here = self.machine("HUB")
        self.files = 0
        (tmp / "mnt").mkdir()
        (tmp / "mnt" / "w1").symlink_to(self.machine("w1").home / ".zqnode" / "w1" / "sectors")

    def machine(self, name: str) -> Machine:
        if name not in self.machines:
            home = self.tmp / name.replace(" ", "-") / "home"
            home.mkdir(parents=True)
            (home / "tools").symlink_to(ROOT / "tools")       # `python tools/...` as in the repo
            env = {k: v for k, v in os.environ.items() if not k.startswith("ZQNODE_")}
            env.update(HOME=str(home), PYTHONUNBUFFERED="1", ZQNODE_BUS=f"tcp://127.0.0.1:{self.port}",
                       PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
            self.machines[name] = Machine(name, home, env)
        return self.machines[name]

    # -- a block ------------------------------------------------------------------------------
    def run_block(self, block: Block) -> None:
        if block.lang == "console":
            return self.run_console(block)
        self.here = self.machine("HUB")
        exports = {name: list(m.exports) for name, m in self.machines.items()}
        for what, item in commands(block.text):
            if what == "machine":
                self.here = self.machine(item)
                continue
            one_line = "\n" not in item
            for cmd in variants(without_comment(item)) if one_line else [item]:
                self.run_command(cmd, block)
        for m in self.machines.values():
            for w in m.watchers:
                w.stop(str(block))
                self.stopped.append(w)
            m.watchers.clear()
            m.exports = exports.get(m.name, [])

    def run_command(self, cmd: str, block: Block) -> None:
        w = words(cmd)
        if w[:1] in (["pip"], ["pytest"]):
            return                                             # CI's own commands
        cmd = self.substitute(cmd)
        if w[:1] == ["export"]:
            self.here.exports.append(cmd)
            return
        if w[:2] == ["python", "tools/chaos.py"]:
            return self.parse_chaos(cmd)
        kind = until_stopped(cmd)
        if not kind:
            self.here.run(cmd, str(block))
            return
        w = words(cmd)
        name = "devnet" if kind == "devnet" else (
            _option(w, "--name") or ("hub" if _option(w, "--role") == "bus" else ""))
        if kind in ("start", "devnet") and name in self.here.nodes:
            self.here.nodes.pop(name).stop(str(block))        # the page's command replaces it
        proc = Background(cmd, self.here)
        if kind == "start":
            proc.wait_for(lambda line: "running on" in line, 60, str(block))
            self.here.nodes[name or cmd] = proc
        elif kind == "devnet":
            proc.wait_for(lambda line: re.match(r"devnet: all \d+ sectors are Proving", line), 240,
                          str(block))
            self.here.nodes[name] = proc
        elif kind == "status":
            proc.wait_for(lambda line: line.startswith("zqnode status at"), 60, str(block))
            self.here.watchers.append(proc)
        else:
            time.sleep(1.0)            # let tail's subscription reach the hub first
            self.here.watchers.append(proc)

    def run_console(self, block: Block) -> None:
        lines = block.text.splitlines()
        runs = [(k, line[2:]) for k, line in enumerate(lines) if line.startswith("$ ")]
        for n, (k, cmd) in enumerate(runs):
            expected = lines[k + 1:runs[n + 1][0] if n + 1 < len(runs) else len(lines)]
            out = self.here.run(self.substitute(cmd), str(block), check=False)
            got = (out.stdout + out.stderr).splitlines()
            assert len(got) == len(expected), (str(block), cmd, got)
            for want, line in zip(expected, got):
                assert line.startswith(want[:-3]) if want.endswith("...") else line == want, \
                    (str(block), cmd, want, line)

    def parse_chaos(self, cmd: str) -> None:
        from tools import chaos
        chaos.main.make_context("chaos.py", shlex.split(cmd)[2:])    # a wrong option raises

    # -- substitutions and placeholders --------------------------------------------------------
    def substitute(self, cmd: str) -> str:
        cmd = PLACEHOLDER.sub(lambda m: self.value(m[1], cmd, m.start()), cmd)
        cmd = re.sub(r"(?<=:)770([0-2])\b", lambda m: str(self.port + int(m[1])), cmd)
        cmd = re.sub(r"(?<=:)94\d\d\b", lambda m: str(self.metrics_port(m[0])), cmd)
        cmd = cmd.replace("/mnt/", f"{self.tmp}/mnt/")
        if "tools/simulate.py" in cmd:
            cmd = re.sub(r"--days \S+", "--days 0.05", cmd)
        return cmd

    def metrics_port(self, port: str) -> int:
        if port not in self.metrics:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.metrics[port] = s.getsockname()[1]
        return self.metrics[port]

    def value(self, word: str, cmd: str, at: int) -> str:
        before = cmd[:at].split()
        hub = self.machine("HUB")
        if word == "HUB":
            return "127.0.0.1"
        if word in ("HUB_NODE_PUB", "W1_PUBLIC_KEY", "PUBLIC_KEY"):
            home, name = {"HUB_NODE_PUB": (hub.home, "hub"), "W1_PUBLIC_KEY": (self.machine("w1").home, "w1"),
                          "PUBLIC_KEY": (self.machine("your machine").home, "client")}[word]
            return (home / ".zqnode" / name / "node.pub").read_text().strip()
        if word == "MINER":
            return "f01000"
        if word in ("N", "I"):
            return "1" if word == "N" else "0"
        if word in ("FILE", "PIECE"):
            self.files += 1
            if before[-1:] == ["--out"]:
                return str(self.here.home / f"out-{self.files}.data")
            piece = self.here.home / f"piece-{self.files}.bin"
            piece.write_bytes(bytes(range(256)) * 4)
            return str(piece)
        if word == "JOB":
            return self.active_job()
        if word == "NUMBER":
            return str(self.sector_for(" ".join(before[1:3])))
        sector = hub.json("zqnode sectors status 1 --json")["info"]
        if word == "S":
            return sector["state"]
        if word == "MSG_ID":
            return sector["precommit_msg"]
        if word == "INDEX":
            return str(hub.json("zqnode chain sector 1 --json")["sector"]["deadline"])
        if word == "EPOCH":                          # a later expiration for sector 1
            return str(hub.json("zqnode chain sector 1 --json")["sector"]["expiration"] + 1000)
        raise AssertionError(f"no value for {word}")

    def sector_for(self, command: str) -> int:
        """A Proving sector: 1, but 2 to rebuild, 3 to unseal and 4 to terminate (once back
        to Proving from the last time); 1 to abort its upgrade (snap-up marked it); to
        remove, the newest (a sector pledged for it when there is none)."""
        hub = self.machine("HUB")
        if command == "sectors abort-upgrade":
            return 1                                   # the sector `sectors snap-up` marked
        if command != "sectors remove":
            number = {"sectors rebuild": 2, "sectors unseal": 3, "sectors terminate": 4}.get(command, 1)
            deadline = time.monotonic() + 90           # done with the last rebuild or unseal
            while hub.json(f"zqnode sectors status {number} --json")["info"]["state"] != "Proving":
                assert time.monotonic() < deadline, f"sector {number} is not Proving again"
                time.sleep(0.5)
            return number
        numbers = [s["number"] for s in hub.json("zqnode sectors list --json")["sectors"]]
        if max(numbers) <= 4:
            hub.run("zqnode sectors pledge", "a sector to remove")
            return max(numbers) + 1
        return max(numbers)

    def active_job(self) -> str:
        """A queued job (pledging a sector when none is): the docs abort one while no worker
        takes its task, so it cannot end first."""
        hub = self.machine("HUB")
        deadline = time.monotonic() + 90
        pledged = False
        while time.monotonic() < deadline:
            jobs = [j for j in hub.json("zqnode sealing jobs --json") if j["status"] == "queued"]
            if jobs:
                return jobs[0]["work_id"][:12]
            if not pledged:
                hub.run("zqnode sectors pledge", "a job to abort")
                pledged = True
            time.sleep(0.5)
        raise AssertionError("no job became active to abort")

    def close(self) -> None:
        errors = []
        for m in self.machines.values():
            for p in [*m.watchers, *reversed(list(m.nodes.values()))]:
                try:
                    p.stop(f"the end of the {self.name} scenario")
                except AssertionError as e:
                    errors.append(str(e))
                finally:
                    p.kill()
        assert not errors, errors


def run_scenario(tmp_path: pathlib.Path, name: str) -> Scenario:
    blocks = blocks_of(name)
    assert blocks, f"no ```sh {name} block"
    scenario = Scenario(tmp_path, name)
    try:
        for block in blocks:
            scenario.run_block(block)
    except BaseException:
        for m in scenario.machines.values():
            for p in [*m.watchers, *m.nodes.values()]:
                p.kill()
        raise
    return scenario


# -- the tests ----------------------------------------------------------------------------------
def test_every_command_block_belongs_to_a_scenario():
    blocks = all_blocks()
    run = [b for b in blocks if b.lang in ("sh", "console")]
    assert [str(b) for b in run if b.scenario not in SCENARIOS] == []
    assert {b.scenario for b in run} == set(SCENARIOS)
    assert len(run) >= 30
    for page in PAGES:                  # no command outside a fence (CI's set-up lines aside)
        text = FENCE.sub("", page.read_text())
        loose = [line for line in text.splitlines() if re.match(r" {4}(zqnode|python3?|curl|grep|pip|pytest)\b", line)]
        assert loose == ([] if page.name != "README.md" else [
            "    python3 -m venv .venv && . .venv/bin/activate && pip install -e . && zqnode devnet",
            "    python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"]), page


def test_lines_split_into_commands_as_bash_would():
    text = ("# on HUB: first\nzqnode a \\\n    --b   # c\nfor x in 1 2; do\n  echo $x\ndone\n"
            "cat > f <<'EOF'\nx = 1\nEOF\n# on w1\nzqnode d [--json] [--miner MINER]\n")
    assert list(commands(text)) == [
        ("machine", "HUB"), ("run", "zqnode a \\\n    --b   # c"),
        ("run", "for x in 1 2; do\n  echo $x\ndone"), ("run", "cat > f <<'EOF'\nx = 1\nEOF"),
        ("machine", "w1"), ("run", "zqnode d [--json] [--miner MINER]")]
    assert variants(without_comment("zqnode d [--json] [--miner MINER]  # see [x]")) == [
        "zqnode d", "zqnode d --json --miner MINER"]
    assert until_stopped("PC1_32G_MAX_CONCURRENT=2 zqnode start --role worker") == "start"
    assert until_stopped("zqnode status --once --json") == ""


def test_local_blocks(tmp_path):
    run_scenario(tmp_path, "local").close()


def test_the_bus_section_on_a_fresh_machine(tmp_path):
    scenario = run_scenario(tmp_path, "bus")
    scenario.close()
    tail = next(p for p in scenario.stopped if p.cmd == "zqnode tail")
    assert any(" Ping " in line and "->worker-1" in line for line in tail.lines), tail.lines[-5:]


def test_the_security_walk(tmp_path):
    scenario = run_scenario(tmp_path, "security")
    w1 = scenario.machine("w1")
    assert (w1.home / ".zqnode" / "w1" / "hub.pub").read_text().strip() == \
        (scenario.machine("HUB").home / ".zqnode" / "hub" / "node.pub").read_text().strip()
    scenario.close()


def test_the_tour_cluster_over_several_machines(tmp_path):
    scenario = run_scenario(tmp_path, "cluster")
    try:
        hub = scenario.machine("HUB")
        nodes = {n["node_id"]: n["state"] for n in hub.json("zqnode bus nodes --json")}
        assert {k: nodes.get(k) for k in ("chain-1", "manager-1", "scheduler-1", "poster-1", "w1")} == \
            dict.fromkeys(("chain-1", "manager-1", "scheduler-1", "poster-1", "w1"), "up")
        # the storage the tour gives the manager and the poster is where w1 writes sectors
        mounted = tmp_path / "mnt" / "w1"
        deadline = time.monotonic() + 60
        while not list(mounted.glob("s-1000-*")):
            assert time.monotonic() < deadline, "no sector of the state machine under /mnt/w1"
            time.sleep(0.5)
        assert hub.json("zqnode config check poster.toml --json")["poster"]["storage"] == [str(mounted)]
    finally:
        scenario.close()


def test_the_devnet_and_every_block_that_looks_at_a_cluster(tmp_path):
    scenario = run_scenario(tmp_path, "devnet")
    scenario.close()


def test_the_gpu_blocks(tmp_path):
    from zqnode.proofs import gpu
    ok, why = gpu.available()
    if not ok:
        pytest.skip(f"no GPU here: {why}")
    run_scenario(tmp_path, "gpu").close()
