"""`zqnode start`: where the bus address comes from (--bus, $ZQNODE_BUS, the config file,
the default), seen in the configuration the node would run with."""
import pytest
from click.testing import CliRunner

from zqnode.bus.address import DEFAULT_BUS
from zqnode.nodes.cli import main


@pytest.fixture
def address_seen(monkeypatch):
    """Stop `start` right after it loaded the configuration; say the bus address."""
    from zqnode.nodes import runtime

    def stop_here(cfg):
        raise runtime.UnknownRole(f"would run on {cfg.bus.address}")
    monkeypatch.setattr(runtime, "node_runner", stop_here)
    monkeypatch.delenv("ZQNODE_BUS", raising=False)
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")     # keys are checked before: none here

    def start(*args, env=None):
        out = CliRunner().invoke(main, ["start", "--role", "worker", "--name", "w1", *map(str, args)],
                                 env=env)
        assert out.exit_code == 1, out.output
        return out.output.strip().rsplit("would run on ", 1)[1]
    return start


def test_the_config_files_address_is_used_unless_an_option_says_otherwise(tmp_path, address_seen):
    cfg = tmp_path / "w1.toml"
    cfg.write_text('[bus]\naddress = "tcp://10.0.0.5:7800"\n')
    assert address_seen("--config", cfg, "--repo", tmp_path / "w1") == "tcp://10.0.0.5:7800"
    assert address_seen("--config", cfg, "--repo", tmp_path / "w1", "--bus", "tcp://10.0.0.6:7700") == \
        "tcp://10.0.0.6:7700"
    assert address_seen("--config", cfg, "--repo", tmp_path / "w1",
                        env={"ZQNODE_BUS": "tcp://10.0.0.7:7700"}) == "tcp://10.0.0.7:7700"
    assert address_seen("--repo", tmp_path / "w1") == DEFAULT_BUS
