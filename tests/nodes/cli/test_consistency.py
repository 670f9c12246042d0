"""The CLI spells things one way: every command that prints data takes --json, and JSON
shows bytes as hex; a miner is `--miner` (1000, f01000 or t01000) and a deadline index
is the positional INDEX wherever they are taken; roles are choices."""
import json

import click
import msgspec

from zqnode.bus.codec import Envelope
from zqnode.bus.peer import Event
from zqnode.nodes.cli import main
from zqnode.nodes.cli.bus import event_record
from zqnode.nodes.cli.common import MinerId, plain

# Commands that print no data to parse: they run a node, or print a file or JSON lines.
NO_JSON = {"start", "devnet", "config default", "sealing run-pipeline"}


def commands(group: click.Group = main, prefix: str = ""):
    for name, cmd in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path + " ")
        else:
            yield path, cmd


def test_every_command_that_prints_data_takes_json():
    missing = [path for path, cmd in commands()
               if path not in NO_JSON and not any(p.name == "as_json" for p in cmd.params)]
    assert missing == []
    assert len(list(commands())) > 40


def test_a_miner_and_a_deadline_index_are_spelled_one_way():
    for path, cmd in commands():
        for p in cmd.params:
            if "miner" in p.name:
                assert isinstance(p, click.Option) and p.opts == ["--miner"], path
                assert isinstance(p.type, MinerId), path
            if "index" in p.name:
                assert isinstance(p, click.Argument) and p.human_readable_name == "INDEX", path
    assert [MinerId().convert(v, None, None) for v in ("1000", "f01000", "t01000", 7)] == [1000] * 3 + [7]


def test_start_and_config_default_take_the_same_role_choice():
    for cmd in (main.commands["start"], main.commands["config"].commands["default"]):
        role = next(p for p in cmd.params if p.name == "role")
        assert list(role.type.choices) == ["bus", "chain", "manager", "scheduler", "worker", "poster"]


class Blob(msgspec.Struct):
    comm_r: bytes
    parts: list


def test_json_shows_bytes_as_hex_wherever_they_are():
    assert plain(Blob(b"\x01\xff", [b"\x00", {"k": b"\x0a"}])) == {"comm_r": "01ff",
                                                                 "parts": ["00", {"k": "0a"}]}
    env = Envelope(sender="w1", body=msgspec.Raw(msgspec.msgpack.encode(
        {"kind": "X", "ticket": b"\xab\xcd"})), ts=1.0)
    rec = event_record(Event(topic="t", sender="w1", seq=1, body=None, envelope=env))
    assert rec["body"] == {"kind": "X", "ticket": "abcd"} and json.dumps(rec)
