"""Nodes on a real hub in a Trio thread, for synchronous tests (click's CliRunner)."""
import contextlib
import threading

import trio


@contextlib.contextmanager
def trio_thread(start, what: str = "the nodes", timeout: float = 20.0):
    """Runs `await start(nursery)` (it starts a hub and nodes and returns a dict of what the
    test needs) in trio.run on a daemon thread; yields that dict, plus `call(fn, *args)`
    to run an async function there. Everything is cancelled on exit."""
    box, ready = {}, threading.Event()

    async def serve():
        with trio.CancelScope() as cs:
            box["cancel"], box["token"] = cs, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                try:
                    box.update(await start(nursery))
                finally:
                    ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    assert ready.wait(timeout) and thread.is_alive(), f"{what} did not start"
    box["call"] = lambda fn, *args: trio.from_thread.run(fn, *args, trio_token=box["token"])
    try:
        yield box
    finally:
        trio.from_thread.run_sync(box["cancel"].cancel, trio_token=box["token"])
        thread.join(10)
