"""A node's config file: a wrong key or value names the file, the key's path and the
reason; the annotated default of every role loads back to the defaults; Lotus-style
resource variables of a worker's environment are taken."""
import pytest

from zqnode.nodes.config import ConfigError, NodeConfig, load
from zqnode.nodes.configdoc import ROLE_SECTIONS, default_toml


def _load(tmp_path, text: str, **overrides):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load(str(path), environ={}, **overrides)


@pytest.mark.parametrize("text, message", [
    ("[bus]\nheartbeat_s = -1\n", "$.bus.heartbeat_s: heartbeat_s must be positive"),
    ("[bus]\nheartbeat_s = \"often\"\n", "$.bus.heartbeat_s: Expected `float`, got `str`"),
    ("nmae = \"w1\"\n", "$.nmae: unknown key (keys: role, name, repo, metrics_listen, bus,"),
    ("[worker]\ntaks = [\"PC1\"]\n", "$.worker.taks: unknown key (worker keys: tasks, table,"),
    ("[worker]\ntasks = [\"PC9\"]\n", "$.worker: worker: unknown task types ['PC9']"),
    ("[worker]\nlimits = { PC2 = 1, PC1 = \"2\" }\n", "$.worker.limits.PC1: Expected `int`, got `str`"),
    ("[worker.locks]\ngpu = [\"PC2\", 3]\n", "$.worker.locks.gpu[1]: Expected `str`, got `int`"),
    ("role = \"poster\"\n", "$.role: the file is for a poster node, not a worker"),
    ("[sealing]\nretry_base_s = -2\n", "$.sealing.retry_base_s: sealing retry_base_s must be > 0"),
    ("[worker.resource_env]\nPC1_MAX_CONCURRENT = \"many\"\n",
     "$.worker.resource_env: PC1_MAX_CONCURRENT='many'"),
    ("metrics_listen = \"nowhere\"\n", "$.metrics_listen: metrics_listen must be HOST:PORT"),
    ("bus = 3\n", "$.bus: expected a table, got int"),
    ("[bus\n", "not valid TOML"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text, role="worker", bus="tcp://127.0.0.1:7700")
    assert str(err.value).startswith(f"{tmp_path / 'node.toml'}: ")
    assert message in str(err.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: cannot read: No such file"):
        load(str(tmp_path / "nope.toml"), role="worker")


@pytest.mark.parametrize("role", list(ROLE_SECTIONS))
def test_the_annotated_default_loads_back_to_the_defaults(tmp_path, role):
    text = default_toml(role)
    assert "\n[bus]\n" in text and "# default RPC timeout\ncall_timeout_s = 30.0\n" in text
    for section in ROLE_SECTIONS[role]:
        assert f"\n[{section}]\n" in text
    cfg = _load(tmp_path, text, name="n1", repo=str(tmp_path))
    assert cfg == NodeConfig(role=role, name="n1", repo=str(tmp_path))


def test_options_win_over_the_file(tmp_path):
    cfg = _load(tmp_path, 'role = "worker"\nname = "from-file"\n[bus]\naddress = "tcp://a:1"\n',
                name="from-option", bus="tcp://b:2", metrics_listen=":9400")
    assert (cfg.name, cfg.bus.address, cfg.metrics_listen) == ("from-option", "tcp://b:2", ":9400")


def test_lotus_resource_variables_of_the_environment(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[worker.resource_env]\nPC1_MAX_CONCURRENT = "1"\nC2_MAX_MEMORY = "7"\n')
    environ = {"PC1_32G_MAX_CONCURRENT": "2", "PC1_MAX_CONCURRENT": "3", "HOME": "/root",
               "FIL_PROOFS_USE_MULTICORE_SDR": "1", "XX_MAX_MEMORY": "9"}
    cfg = load(str(path), environ=environ, role="worker")
    assert cfg.worker.resource_env == {"PC1_MAX_CONCURRENT": "3", "C2_MAX_MEMORY": "7",
                                       "PC1_32G_MAX_CONCURRENT": "2",
                                       "FIL_PROOFS_USE_MULTICORE_SDR": "1"}
    assert load(str(path), environ=environ, role="manager").worker.resource_env == {
        "PC1_MAX_CONCURRENT": "1", "C2_MAX_MEMORY": "7"}      # only a worker reads them
    with pytest.raises(ConfigError, match="environment: PC1_MAX_CONCURRENT='lots'"):
        load(str(path), environ={"PC1_MAX_CONCURRENT": "lots"}, role="worker")
