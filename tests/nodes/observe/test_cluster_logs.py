"""The log lines of a devnet-like run (two CC sectors sealed to Proving, deadlines proven)
that concern a sector or a deadline's job carry its cause id: the sealing state
machine's transitions, the workers' calls, the poster's deadlines."""
import io
import re

import pytest

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.nodes.observe import logs
from tests.nodes.observe.cluster import start_cluster, until


@pytest.fixture
def lines():
    stream = io.StringIO()
    logs.setup("info", "kv", stream=stream)
    yield lambda: stream.getvalue().splitlines()
    logs.setup("warning", "kv", stream=io.StringIO())


def field(line: str, key: str) -> str:
    m = re.search(rf'(?:^| ){key}=("(?:[^"\\]|\\.)*"|\S+)', line)
    return m.group(1).strip('"') if m else ""


async def test_sector_and_job_lines_carry_their_cause(nursery, tmp_path, autojump_clock, lines):
    hub = MemoryHub(BusConfig(address="mem://cluster-logs"))
    address = await nursery.start(hub.run)
    c = await start_cluster(nursery, address, tmp_path, "lg")
    c.manager.sealing.pledge(2)
    await until(lambda: [s.state for s in c.manager.sealing.core.sectors.values()] == ["Proving"] * 2)
    await until(lambda: any(o.status == "proven" for o in c.poster.core.outcomes))

    sealing = [line for line in lines() if field(line, "logger") == "zqnode.sealing"
               and field(line, "msg").startswith("sector ")]
    transitions = [line for line in sealing if " -> " in line]
    assert len(transitions) == 2 * 12          # new -> Packing ... FinalizeSector -> Proving
    for line in sealing:
        number = field(line, "msg").split()[1].rstrip(":")
        assert field(line, "cause") == f"s-1000-{number}", line

    calls = [line for line in lines() if field(line, "logger") == "zqnode.worker"]
    assert len(calls) == 8                     # PC1, PC2, C1, FIN of each sector
    for line in calls:
        call = field(line, "msg").split()[1]   # "call s-1000-N-<uuid> (PC1) done"
        assert call.startswith(field(line, "cause") + "-"), line

    deadlines = [line for line in lines() if field(line, "logger") == "zqnode.poster"
                 and " deadline " in field(line, "msg")]
    assert any(field(line, "msg").endswith(": proven") for line in deadlines)
    assert all(field(line, "cause").startswith("f01000/d") for line in deadlines), deadlines
