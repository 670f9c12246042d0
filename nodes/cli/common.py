"""Helpers for commands that talk to a running bus as a client."""
from __future__ import annotations

import uuid
from typing import Awaitable, Callable, TypeVar

import click
import trio

from bus.address import DEFAULT_BUS, AddressError, split
from bus.codec import RemoteError
from bus.config import BusConfig
from bus.peer import CallTimeout, Peer

T = TypeVar("T")

bus_option = click.option("--bus", "bus", default=DEFAULT_BUS, show_default=True,
                          envvar="ZQNODE_BUS", help="The hub's address.")
metrics_option = click.option(
    "--metrics-listen", "metrics_listen", default="", metavar="HOST:PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics [default: the config's "
         "metrics_listen, else none].")


def metrics_runner(listen: str):
    """The `run` of a /metrics server for every node in this process."""
    from nodes.observe import REGISTRY, ListenError, MetricsServer
    try:
        return MetricsServer(listen, REGISTRY).run
    except ListenError as e:
        raise click.ClickException(str(e)) from None


def with_client(bus: str, fn: Callable[[Peer], Awaitable[T]], *, timeout: float = 5.0) -> T:
    """Connect to the hub as a client (not a registered node), run `fn`, disconnect.
    A hub that does not answer, or a refused call, is a one-line error."""
    try:
        split(bus)
    except AddressError as e:
        raise click.ClickException(str(e)) from None

    async def main() -> T:
        peer = Peer(name=f"cli-{uuid.uuid4().hex[:8]}", role="cli", register=False,
                    cfg=BusConfig(address=bus, call_timeout_s=timeout))
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(timeout):
                    await nursery.start(peer.run)
            except trio.TooSlowError:
                raise click.ClickException(f"no hub answers at {bus}") from None
            result = await fn(peer)
            nursery.cancel_scope.cancel()
        return result

    try:
        return trio.run(main)
    except BaseException as e:
        leaf = unwrap(e)
        if isinstance(leaf, click.ClickException):
            raise leaf from None
        if isinstance(leaf, (CallTimeout, RemoteError, OSError)):   # OSError: keys missing
            raise click.ClickException(str(leaf)) from None
        raise


def unwrap(e: BaseException) -> BaseException:
    """The single error inside nested exception groups (Trio nurseries wrap them)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e
