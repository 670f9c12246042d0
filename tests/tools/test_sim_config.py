"""The simulator's inputs: the shipped files load; every mistake names the file and key."""
from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from sim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_PROFILE,
    GiB,
    SimConfigError,
    load_cluster,
    load_profile,
)

GOOD_PROFILE = """sector_size = "32GiB"
[seconds]
PC1 = 100
PC2 = 10
C1 = 1
FIN = 1
GET = 1
WDP = 1
"""
GOOD_CLUSTER = """[[group]]
name = "pc1"
count = 2
cpus = 64
ram_gib = 512
tasks = ["PC1"]
limits = { PC1 = 4 }

[[group]]
name = "gpu"
count = 1
cpus = 32
ram_gib = 256
gpus = 1
tasks = ["PC2", "C1", "FIN", "WDP"]
"""


def write(tmp_path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_profile_and_cluster_load():
    p = load_profile(DEFAULT_PROFILE)
    assert p.sector_size == 32 * GiB and p.seal_proof == 8          # StackedDrg32GiBV1_1
    assert p.seconds["PC1"] == 12600 and p.jitter == 0.05
    c = load_cluster(DEFAULT_CLUSTER)
    assert [(g.name, g.count) for g in c.groups] == [("pc1", 60), ("gpu", 36), ("post", 4)]
    assert c.workers == 100
    assert c.groups[0].limits == {"PC1": 14} and c.groups[0].ram == 1024 * GiB
    assert "GET" in c.groups[1].tasks                                # every worker fetches


def test_scaling_keeps_the_mix_and_every_group():
    c = load_cluster(DEFAULT_CLUSTER)
    assert [g.count for g in c.scaled(100).groups] == [60, 36, 4]
    assert [g.count for g in c.scaled(10).groups] == [6, 3, 1]
    assert [g.count for g in c.scaled(3).groups] == [1, 1, 1]
    assert [g.count for g in c.scaled(1000).groups] == [600, 360, 40]
    with pytest.raises(SimConfigError, match="--workers must be >= 1"):
        c.scaled(0)
    with pytest.raises(SimConfigError, match=r"--workers 2: too few .* \(no worker would run WDP\)"):
        c.scaled(2)


@pytest.mark.parametrize("text, message", [
    (GOOD_PROFILE.replace("PC1 = 100", "PC1 = -1"), "seconds.PC1 must be a number >= 0, got -1"),
    (GOOD_PROFILE.replace("PC1 = 100", "PC1 = 'x'"), "seconds.PC1 must be a number"),
    (GOOD_PROFILE.replace("PC1 = 100", "PC3 = 100"), "seconds.PC3: unknown task type"),
    (GOOD_PROFILE.replace("WDP = 1\n", ""), "seconds.WDP is missing"),
    (GOOD_PROFILE.replace('"32GiB"', '"3GiB"'), "sector_size"),
    (GOOD_PROFILE + "jitter = 2\n", "jitter"),
    ("colour = 1\n" + GOOD_PROFILE, "unknown key colour"),
    ("sector_size = \n", "not valid TOML"),
])
def test_profile_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, "bad-profile.toml", text)
    with pytest.raises(SimConfigError) as e:
        load_profile(path)
    assert "bad-profile.toml" in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("old, new, message", [
    ("cpus = 64", "cpus = 0", "group pc1: cpus must be an integer >= 1, got 0"),
    ("ram_gib = 512", "ram_gib = true", "group pc1: ram_gib must be a number >= 1, got True"),
    ('tasks = ["PC1"]', 'tasks = ["PC9"]', "group pc1: tasks must be a list of task types"),
    ("limits = { PC1 = 4 }", "limits = { PC1 = 0 }", "group pc1: limits.PC1 must be an integer >= 1"),
    ("limits = { PC1 = 4 }", "limits = { XX = 4 }", "group pc1: limits.XX: unknown task type"),
    ('name = "gpu"', 'name = "pc1"', "group 2: name must be a unique identifier"),
    ("count = 2", "count = 2\nspeed = 3", "group pc1: unknown key speed"),
    ('"PC2", ', "", "no group runs PC2"),
])
def test_cluster_errors_name_the_file_and_the_key(tmp_path, old, new, message):
    assert old in GOOD_CLUSTER
    path = write(tmp_path, "bad-cluster.toml", GOOD_CLUSTER.replace(old, new, 1))
    with pytest.raises(SimConfigError) as e:
        load_cluster(path)
    assert str(e.value).startswith("bad-cluster.toml: ") and message in str(e.value)


def test_a_missing_file_and_a_bad_scheduler_section(tmp_path):
    with pytest.raises(SimConfigError, match="nope.toml: cannot read"):
        load_cluster(tmp_path / "nope.toml")
    path = write(tmp_path, "c.toml", GOOD_CLUSTER + '[scheduler]\nassigner = "fastest"\n')
    with pytest.raises(SimConfigError, match=r"c.toml: \[scheduler\]: .*assigner"):
        load_cluster(path)
