"""`zqnode config default|check`: the printed default loads back as it is; a wrong key is
one line naming the file and the key; --json shows only the sections the role reads."""
import json

import pytest
from click.testing import CliRunner

from zqnode.nodes.cli import main


def zq(*args):
    return CliRunner().invoke(main, ["config", *map(str, args)])


@pytest.mark.parametrize("role", ["bus", "chain", "manager", "scheduler", "worker", "poster"])
def test_the_default_checks_clean(tmp_path, role):
    printed = zq("default", "--role", role)
    assert printed.exit_code == 0 and printed.stdout.startswith(f"# zqnode {role} node: ")
    path = tmp_path / f"{role}.toml"
    path.write_text(printed.stdout.replace('name = ""', 'name = "n1"'))
    checked = zq("check", path, "--json")
    assert checked.exit_code == 0, checked.output
    cfg = json.loads(checked.stdout)
    assert (cfg["role"], cfg["name"]) == (role, "n1")
    sections = {k for k, v in cfg.items() if isinstance(v, dict)}
    assert sections == {"bus", *{"chain": ["chain"], "manager": ["manager", "sealing"],
                                 "scheduler": ["scheduler"], "worker": ["worker"],
                                 "poster": ["poster"]}.get(role, [])}


def test_a_wrong_key_is_one_line(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('role = "worker"\n[worker]\nbeat_s = 1.0\nlimit = { PC1 = 2 }\n')
    result = zq("check", path)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {path}: $.worker.limit: unknown key (worker keys: tasks, table, limits, locks, "
        "resource_env, ignore_resources, beat_s, retry_max_s, fetch_chunk, fetch_attempts, "
        "backend, parent_cache, cores)"]
    assert zq("default", "--role", "miner").exit_code == 2


def test_a_file_for_another_role_fails_the_check(tmp_path):
    path = tmp_path / "poster.toml"
    path.write_text(zq("default", "--role", "poster").stdout)
    assert zq("check", path).exit_code == 0
    result = zq("check", path, "--role", "worker")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {path}: $.role: the file is for a poster node, not a worker\n"
