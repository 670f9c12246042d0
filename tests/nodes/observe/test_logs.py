"""Log lines: key=value and JSON, levels per module, the cause id of the task's work."""
import io
import json
import logging

import pytest
import trio

from zqnode.nodes.observe import logs


@pytest.fixture
def captured():
    stream = io.StringIO()
    yield stream
    logs.setup("warning", "kv", stream=io.StringIO())      # leave quiet handlers behind


def test_key_value_lines_carry_the_cause_of_the_context(captured):
    logs.setup("info", "kv", stream=captured)
    log = logging.getLogger("zqnode.test.kv")
    log.info("plain")
    with logs.cause("s-1000-3"):
        log.info("PreCommit1 done in %.1fs", 2.25)
    log.warning("explicit", extra={"cause": "s-1000-9", "work": "ab12"})
    lines = captured.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "level=info logger=zqnode.test.kv msg=plain",
        'level=info logger=zqnode.test.kv cause=s-1000-3 msg="PreCommit1 done in 2.2s"',
        "level=warning logger=zqnode.test.kv cause=s-1000-9 msg=explicit work=ab12"]
    assert all(line.startswith("ts=20") and line.split(" ", 1)[0].endswith("Z") for line in lines)


def test_json_lines(captured):
    logs.setup("info", "json", stream=captured)
    with logs.cause("s-1000-4"):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("zqnode.test.json").exception("it \"failed\"")
    record = json.loads(captured.getvalue())
    assert {k: record[k] for k in ("level", "logger", "cause", "msg")} == {
        "level": "error", "logger": "zqnode.test.json", "cause": "s-1000-4", "msg": 'it "failed"'}
    assert record["exc"].endswith("ValueError: boom")


def test_levels_per_module(captured):
    logs.setup("zqnode.test.loud=debug,zqnode.test.quiet=error,warning", stream=captured)
    logging.getLogger("zqnode.test.loud.sub").debug("shown")
    logging.getLogger("zqnode.test.quiet").warning("hidden")
    logging.getLogger("zqnode.test.other").info("hidden")
    logging.getLogger("zqnode.test.other").warning("shown too")
    assert [line.rsplit("msg=", 1)[1] for line in captured.getvalue().splitlines()] == [
        "shown", '"shown too"']
    logs.setup("info", stream=captured)          # a later setup forgets the per-module levels
    assert logging.getLogger("zqnode.test.quiet").level == logging.NOTSET


def test_bad_level_specs():
    assert logs.parse_levels("debug") == (logging.DEBUG, {})
    assert logs.parse_levels("zqnode.bus=debug, info") == (logging.INFO, {"zqnode.bus": logging.DEBUG})
    for spec, message in (("loud", "'loud' in 'loud' is not one of"),
                          ("zqnode.bus=chatty", "'chatty'"), ("=debug", "a logger name is needed")):
        with pytest.raises(logs.LogSpecError, match=message):
            logs.parse_levels(spec)


async def test_tasks_inherit_the_cause_and_keep_their_own():
    seen = {}

    async def sector(number: int) -> None:
        logs.set_cause(f"s-1000-{number}")
        await trio.sleep(0)
        async with trio.open_nursery() as inner:     # started from here: inherits it
            inner.start_soon(child, number)
        seen[number] = logs.CAUSE.get()

    async def child(number: int) -> None:
        seen[f"child-{number}"] = logs.CAUSE.get()

    async with trio.open_nursery() as nursery:
        for n in (1, 2):
            nursery.start_soon(sector, n)
    assert seen == {1: "s-1000-1", 2: "s-1000-2", "child-1": "s-1000-1", "child-2": "s-1000-2"}
    assert logs.CAUSE.get() == ""                    # the parent's context is untouched
