"""Key files, the allow-list, where keys are looked for, and the security setting."""
import os
import stat

import pytest
import zmq

from zqnode.bus import keys
from zqnode.bus.config import BusConfig


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_key_pair_is_made_private_and_reads_back(tmp_path):
    d = tmp_path / "repo" / "w1"
    public = keys.init_key_pair(d)
    assert (mode(d), mode(d / keys.SECRET_FILE), mode(d / keys.PUBLIC_FILE)) == (0o700, 0o600, 0o644)
    pub, secret = keys.read_key_pair(d)
    assert pub.decode() == public == (d / keys.PUBLIC_FILE).read_text().strip()
    assert zmq.curve_public(secret) == pub and len(public) == 40
    with pytest.raises(keys.KeyFileError, match="exists"):
        keys.init_key_pair(d)
    assert keys.init_key_pair(d, overwrite=True) != public
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []   # no temp files left


def test_a_secret_others_can_read_is_refused(tmp_path):
    keys.init_key_pair(tmp_path)
    os.chmod(tmp_path / keys.SECRET_FILE, 0o644)
    with pytest.raises(keys.KeyFileError, match="readable by others .*mode 644.*chmod 600"):
        keys.read_key_pair(tmp_path)


def test_missing_and_malformed_keys_say_what_to_do(tmp_path):
    with pytest.raises(keys.KeyFileError, match=r"no key pair in .*zqnode keys init"):
        keys.read_key_pair(tmp_path / "none")
    (tmp_path / keys.SECRET_FILE).write_text("not a key")
    os.chmod(tmp_path / keys.SECRET_FILE, 0o600)
    with pytest.raises(keys.KeyFileError, match="does not hold a Z85 secret key"):
        keys.read_key_pair(tmp_path)
    assert isinstance(keys.KeyFileError("x"), OSError) and isinstance(keys.KeyFileError("x"), ValueError)


def test_public_keys_are_checked():
    pub, _ = zmq.curve_keypair()
    assert keys.check_public_key(" " + pub.decode() + "\n") == pub.decode()
    for bad in ("", "short", pub.decode()[:-1] + "~", pub.decode() + "x", "é" * 40):
        with pytest.raises(keys.KeyFileError, match="not a Z85 public key"):
            keys.check_public_key(bad)


def test_the_allow_list_round_trips_and_names_bad_lines(tmp_path):
    a, b, c = (zmq.curve_keypair()[0].decode() for _ in range(3))
    allow = keys.AllowList.parse(f"# comment\n\n{a} worker w1\n{b} reader\n  {c}   admin  \n")
    assert allow.role_of(a) == "worker" and allow.role_of(b) == "reader" and allow.role_of(c) == "admin"
    assert allow.role_of("x") is None and allow.pinned("w1") == a and allow.pinned("w2") is None
    path = tmp_path / "hub" / keys.ALLOW_FILE
    allow.save(path)
    assert mode(path) == 0o600
    assert keys.AllowList.load(path).entries == allow.entries
    assert path.read_text() == (f"# zqnode allow-list: PUBLIC-KEY ROLE [NAME]\n{c} admin\n"
                                f"{b} reader\n{a} worker w1\n")
    for text, message in [(f"{a}\n", "line 1: expected PUBLIC-KEY ROLE"),
                          (f"# x\n{a} Worker\n", "line 2: bad role 'Worker'"),
                          (f"{a} worker w/1\n", "line 1: bad node name 'w/1'"),
                          ("abc worker\n", "line 1: not a Z85 public key"),
                          (f"{a} worker w1\n{b} worker w1\n", "name 'w1' is pinned to two keys")]:
        with pytest.raises(keys.KeyFileError, match=message):
            keys.AllowList.parse(text, "allowed_keys")
    assert keys.AllowList.load(tmp_path / "missing").entries == {}
    assert keys.AllowList([keys.Allowed(a, "worker")]).without(a).entries == {}
    with pytest.raises(keys.KeyFileError, match="not on the allow-list"):
        allow.without(zmq.curve_keypair()[0].decode())
    replaced = allow.with_key(keys.Allowed(a, "scheduler"))
    assert (replaced.role_of(a), replaced.pinned("w1"), len(replaced.entries)) == ("scheduler", None, 3)


def test_security_defaults_by_transport_and_environment(monkeypatch):
    monkeypatch.delenv("ZQNODE_BUS_SECURITY", raising=False)
    assert BusConfig(address="tcp://h:1").security_mode() == "curve"
    assert BusConfig(address="ipc:///tmp/x").security_mode() == "none"
    assert BusConfig(address="tcp://h:1", security="none").security_mode() == "none"
    assert BusConfig(address="ipc:///tmp/x", security="curve").security_mode() == "curve"
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")
    assert BusConfig(address="tcp://h:1").security_mode() == "none"
    assert BusConfig(address="tcp://h:1", security="curve").security_mode() == "curve"
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "curve")
    assert BusConfig(address="mem://x").security_mode() == "none"       # in-process: nothing to secure
    assert BusConfig(address="inproc://x").security_mode() == "none"
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "tls")
    with pytest.raises(ValueError, match="ZQNODE_BUS_SECURITY must be one of curve, none"):
        BusConfig(address="tcp://h:1").security_mode()
    with pytest.raises(ValueError, match="security must be one of"):
        BusConfig(security="on")
    with pytest.raises(ValueError, match="curve security is for tcp and ipc"):
        BusConfig(address="inproc://x", security="curve")


def test_where_a_peer_finds_its_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("ZQNODE_HUB_KEY", raising=False)
    monkeypatch.delenv("ZQNODE_KEY_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.key_dir(BusConfig(), "w1") == tmp_path / ".zqnode" / "w1"
    cfg = BusConfig(address="tcp://h:1", key_dir=str(tmp_path / "w1"))
    assert keys.peer_credentials(BusConfig(address="tcp://h:1", security="none"), "w1") is None
    public = keys.init_key_pair(tmp_path / "w1").encode()
    with pytest.raises(keys.KeyFileError, match="the hub's public key is unknown: copy the hub's "
                                                "node.pub to .*hub.pub or set bus.hub_key"):
        keys.peer_credentials(cfg, "w1")
    hub = zmq.curve_keypair()[0]
    monkeypatch.setenv("ZQNODE_HUB_KEY", hub.decode())
    assert keys.peer_credentials(cfg, "w1").server == hub
    monkeypatch.delenv("ZQNODE_HUB_KEY")
    (tmp_path / "w1" / keys.HUB_FILE).write_text(hub.decode() + "\n")
    creds = keys.peer_credentials(cfg, "w1")
    assert (creds.public, creds.server) == (public, hub)
    with pytest.raises(keys.KeyFileError, match="bus.hub_key: not a Z85"):
        keys.peer_credentials(BusConfig(address="tcp://h:1", key_dir=cfg.key_dir, hub_key="x"), "w1")
    monkeypatch.setenv("ZQNODE_KEY_DIR", str(tmp_path / "w1"))
    assert keys.peer_credentials(BusConfig(address="tcp://h:1"), "other").public == public
    assert keys.allow_list_path(BusConfig()) == tmp_path / "w1" / keys.ALLOW_FILE
    assert keys.allow_list_path(BusConfig(allow_list="/etc/zq/allowed")) == keys.pathlib.Path("/etc/zq/allowed")


def test_provision_sets_up_a_local_cluster(tmp_path):
    hub_pub = keys.provision(tmp_path / "hub", [(str(tmp_path / "w1"), "worker", "w1"),
                                                (str(tmp_path / "cli"), "admin", "")])
    assert keys.read_key_pair(tmp_path / "hub")[0].decode() == hub_pub
    allow = keys.AllowList.load(tmp_path / "hub" / keys.ALLOW_FILE)
    w1 = keys.read_key_pair(tmp_path / "w1")[0].decode()
    assert allow.role_of(w1) == "worker" and allow.pinned("w1") == w1
    assert (tmp_path / "cli" / keys.HUB_FILE).read_text().strip() == hub_pub
    assert keys.provision(tmp_path / "hub", [(str(tmp_path / "w1"), "worker", "w1")]) == hub_pub  # kept
    assert keys.read_key_pair(tmp_path / "w1")[0].decode() == w1
