"""tools/simulate.py end to end: small clusters sealing and proving on the mainnet policy,
the same seed giving the same run (chaos included), chaos losing nothing, the CLI and
the PNG."""
from __future__ import annotations

import json
import pathlib
import struct
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

TOOLS = pathlib.Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))
import simulate
from sim import png

PROFILE = """# tiny and exact: no jitter
sector_size = "32GiB"
[seconds]
PC1 = 3600
PC2 = 600
C1 = 30
FIN = 60
GET = 60
WDP = 120
"""
CLUSTER = """[[group]]
name = "pc1"
count = 1
cpus = 64
ram_gib = 512
tasks = ["PC1"]
limits = { PC1 = 2 }

[[group]]
name = "gpu"
count = 1
cpus = 32
ram_gib = 256
gpus = 1
tasks = ["PC2", "C1", "FIN"]

[[group]]
name = "post"
count = 1
cpus = 16
ram_gib = 128
gpus = 1
tasks = ["WDP"]
"""
UNSTABLE = ("wall_seconds", "cpu_seconds")


@pytest.fixture
def small(tmp_path):
    (tmp_path / "profile.toml").write_text(PROFILE)
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    return {"cluster": tmp_path / "cluster.toml", "profile": tmp_path / "profile.toml"}


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in UNSTABLE}


def test_a_small_cluster_seals_every_pledged_sector_and_proves_every_deadline(small):
    s = simulate.simulate(**small, sectors=5000, seal=4, days=0.25, seed=1)
    # two PC1 slots: sectors 5001-5002 start at once, 5003-5004 when those leave PC1; each
    # then takes GET + PC2 + PreCommit + 150 epochs of seed delay + C1 + ProveCommit + FIN
    assert (s["sectors_pledged"], s["sectors_sealed"], s["sectors_in_progress"]) == (4, 4, {})
    assert (s["proving_sectors_at_start"], s["proving_sectors"]) == (5000, 5004)    # the end state
    assert s["task_runs"] == {"C1": 4, "FIN": 4, "PC1": 4, "PC2": 4, "WDP": 2}
    assert s["pc1_slots"] == 2 and s["epochs"] == 720
    # the actor packs 5000 sectors into full partitions: deadlines 0, 1 and 2 (2349, 2349,
    # 302 sectors). The run starts in deadline 37: of the twelve windows that close in six
    # hours (37 to 47 and 0) only deadline 0 holds sectors
    assert (s["deadlines_proven"], s["deadlines_missed"], s["deadlines_late"]) == (1, 0, 0)
    assert s["deadlines_empty"] == 11 and s["faulty_sectors_on_chain"] == 0
    # the second of a pair asks for PC2 when its PC1 ends and starts when the first PC2
    # (after its GET, 60 s + 600 s) frees the one GPU
    assert s["queue_wait"]["PC2"]["max_s"] == pytest.approx(660, abs=0.1)
    assert s["errors"] == []


def test_batching_sends_fewer_messages_per_sealed_sector(small):
    one = simulate.simulate(**small, sectors=5000, seal=4, days=0.25, seed=1)
    batched = simulate.simulate(**small, sectors=5000, seal=4, days=2.5, seed=1, batching=True)
    assert one["sealing_messages"] == {"precommit": 4, "provecommit": 4, "per_sealed_sector": 2.0}
    # Lotus's defaults: the four wait for each batch (24 h, twice), then go together,
    # four PreCommits in one message, four proofs in one aggregate
    assert batched["sectors_sealed"] == 4 and batched["errors"] == []
    assert batched["sealing_messages"] == {"precommit": 1, "provecommit": 1, "per_sealed_sector": 0.5}


def test_without_a_limit_the_pledger_keeps_every_pc1_slot_busy(small):
    s = simulate.simulate(**small, sectors=0, days=0.5, seed=1)
    pc1 = s["utilisation"]["workers"]["pc1-001"]
    assert s["task_runs"]["PC1"] == 22 and s["sectors_sealed"] == 20
    assert s["sectors_pledged"] == s["sectors_sealed"] + sum(s["sectors_in_progress"].values())
    assert s["sectors_in_progress"]["PreCommit1"] == 2          # both slots still busy at the end
    assert pc1["ram"] > 0.2
    # the new sectors land in deadlines 0 and 2, both proven once before the end
    assert (s["deadlines_proven"], s["deadlines_missed"], s["faulty_sectors_on_chain"]) == (2, 0, 0)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(small):
    a = simulate.simulate(workers=10, sectors=2000, days=0.5, seed=5, chaos=True)
    b = simulate.simulate(workers=10, sectors=2000, days=0.5, seed=5, chaos=True)
    c = simulate.simulate(workers=10, sectors=2000, days=0.5, seed=6, chaos=True)
    assert json.dumps(stable(a), sort_keys=True) == json.dumps(stable(b), sort_keys=True)
    assert stable(a) != stable(c)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chaos_loses_no_sector_and_misses_no_deadline(seed):
    s = simulate.simulate(workers=10, sectors=2000, days=0.5, seed=seed, chaos=True)
    f = s["failures"]
    assert f["worker_crashes"] and f["manager_restarts"] and f["reorgs"] and f["messages_lost"]
    # every pledged sector is sealed or still on its way: none removed, paused or aborted
    assert s["sectors_pledged"] == s["sectors_sealed"] + sum(s["sectors_in_progress"].values())
    assert not {"Removed", "Aborted", "Removing"} & set(s["sectors_in_progress"])
    assert s["sectors_paused"] == 0 and s["sectors_sealed"] > 140
    assert s["deadlines_missed"] == 0 and s["deadlines_unconfirmed"] == 0
    assert s["deadlines_proven"] >= 2 and s["faulty_sectors_on_chain"] == 0
    assert f["results_duplicate"] == 0 and s["errors"] == []


def test_the_cli_prints_one_json_object_and_writes_the_png(small, tmp_path):
    out = tmp_path / "t.png"
    r = CliRunner().invoke(simulate.main, [
        "--cluster", str(small["cluster"]), "--profile", str(small["profile"]), "--sectors", "5000",
        "--seal", "4", "--days", "0.25", "--seed", "1", "--json", "--quiet", "--png", str(out)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    for key in ("wall_seconds", "sectors_sealed", "sectors_sealed_per_day", "sectors_sealed_per_day_steady",
                "deadlines_proven", "deadlines_late", "deadlines_missed", "queue_wait", "utilisation"):
        assert key in s
    assert s["sectors_sealed"] == 4 and s["sectors_sealed_per_day"] == 16.0
    assert set(s["utilisation"]["workers"]) == {"pc1-001", "gpu-001", "post-001"}
    assert set(s["utilisation"]["resources"]) == {"cpu", "ram", "gpu"}
    data = out.read_bytes()
    width, height, row = png.size(3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (width, height) == (1400, png.size(3)[1])
    assert s["png"] == {"path": str(out), "width": width, "height": height}
    img = _decode(data)
    assert (img == png.COLOURS["PC1"]).all(axis=2).sum() > 1000       # the PC1 row is drawn
    # WindowPoSt stays visible: its task at least MIN_WIDTH wide, a mark per deadline proven
    wdp = (img == png.COLOURS["WDP"]).all(axis=2)[png.TOP:png.TOP + 3 * row, png.LEFT:]
    assert wdp.any(axis=0).sum() >= png.MIN_WIDTH["WDP"] * s["task_runs"]["WDP"]
    lane = png.TOP + 3 * row + png.GAP
    marks = (img[lane + 2, png.LEFT:] == png.POST_MARKS["proven"]).all(axis=1)
    assert marks.sum() == png.MARK_W * s["deadlines_proven"]
    # every group has its label beside its rows, and the time axis its labels (ink)
    for i in range(3):
        assert (img[png.TOP + i * row:png.TOP + (i + 1) * row, :png.LEFT - 8] == 0).all(axis=2).any()
    axis_labels = img[height - png.AXIS_H + 8:height, png.LEFT:]
    inked = (axis_labels == 0).all(axis=2).any(axis=0).sum()
    assert inked >= 8 * len(png.ticks(0.25 * 86400))           # a glyph or more per tick
    assert [label for _, label in png.ticks(0.25 * 86400)] == ["0H", "1H", "2H", "3H", "4H", "5H", "6H"]
    assert [label for _, label in png.ticks(3 * 86400)][:3] == ["0H", "6H", "12H"]
    assert [label for _, label in png.ticks(8 * 86400)][-1] == "DAY 8"


def _decode(data: bytes) -> np.ndarray:
    """The (height, width, 3) RGB pixels of a PNG this module wrote (one IDAT, filter 0):
    checks the CRCs."""
    pos, idat, (w, h) = 8, b"", struct.unpack(">II", data[16:24])
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_bad_options_are_usage_errors(small, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(PROFILE.replace("PC1 = 3600", "PC1 = -5"))
    r = CliRunner().invoke(simulate.main, ["--profile", str(bad), "--quiet"])
    assert r.exit_code == 2 and "bad.toml: seconds.PC1 must be a number >= 0, got -5" in r.output
    r = CliRunner().invoke(simulate.main, ["--workers", "2", "--quiet"])
    assert r.exit_code == 2 and "no worker would run WDP" in r.output


def test_two_processes_with_different_hash_seeds_print_the_same_run():
    """Nothing depends on set or dict orders that change between processes."""
    import os
    import subprocess
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        r = subprocess.run([sys.executable, str(TOOLS / "simulate.py"), "--workers", "4", "--sectors",
                            "300", "--days", "0.3", "--seed", "9", "--chaos", "--json", "--quiet"],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        outs.append(stable(json.loads(r.stdout)))
    assert outs[0] == outs[1] and outs[0]["failures"]["messages_lost"] > 0


def test_the_simulation_runs_the_node_cores_themselves(small):
    from sim.cluster import Simulation
    from sim.config import load_cluster, load_profile

    from zqnode.nodes.chain.core import Chain
    from zqnode.nodes.chain.policy import MAINNET
    from zqnode.nodes.manager.tracker import Tracker
    from zqnode.nodes.poster.core import PosterCore
    from zqnode.nodes.scheduler.core import Scheduler
    from zqnode.nodes.sealing.core import SealingCore
    from zqnode.nodes.worker.core import WorkerCore

    sim = Simulation(load_cluster(small["cluster"]), load_profile(small["profile"]), MAINNET, seal=1,
                     days=0.01)
    sim.run()
    assert type(sim.scheduler.core) is Scheduler and type(sim.manager.tracker) is Tracker
    assert type(sim.sealing.core) is SealingCore and type(sim.poster.core) is PosterCore
    assert isinstance(sim.chain, Chain) and sim.chain.policy is MAINNET
    assert sim.workers and all(type(w.core) is WorkerCore for w in sim.workers.values())
    assert sim.sealing.core.policy is MAINNET and sim.poster.core.policy is MAINNET
    # the sector went through the core's own states, saved before each step
    assert sim.sealing.store[1].state == "PreCommit1" and sim.manager.tracker.works
    # the PC1 worker's core runs the sector's PC1 call, saved as the core handed it over
    pc1, = (c for w in sim.workers.values() for c in w.core.calls.values() if c.task == "PC1")
    assert pc1.state == "running" and pc1.runs == 1
    assert sim.workers[sim.scheduler.ledger.assigned(pc1.work_id)].store[pc1.call_id] == pc1
