"""What the commands share: talking to a running bus as a client, the options every
command spells the same way (--bus, --json, --miner, --metrics-listen), and JSON output
(bytes always as hex)."""
from __future__ import annotations

import json
import uuid
from typing import Any, Awaitable, Callable, TypeVar

import click
import msgspec
import trio

from zqnode.bus.address import DEFAULT_BUS, AddressError, split
from zqnode.bus.codec import RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.peer import CallTimeout, Peer
from zqnode.nodes import preflight
from zqnode.nodes.chain.filecoin import address as fil
from zqnode.nodes.groups import unwrap

T = TypeVar("T")

bus_option = click.option("--bus", "bus", default=DEFAULT_BUS, show_default=True,
                          envvar="ZQNODE_BUS", help="The hub's address.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
metrics_option = click.option(
    "--metrics-listen", "metrics_listen", default="", metavar="HOST:PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics [default: the config's "
         "metrics_listen, else none].")


def metrics_runner(listen: str):
    """The `run` of a /metrics server for every node in this process."""
    from zqnode.nodes.observe import REGISTRY, ListenError, MetricsServer
    try:
        return MetricsServer(listen, REGISTRY).run
    except ListenError as e:
        raise click.ClickException(str(e)) from None


class MinerId(click.ParamType):
    """A miner actor: 1000, f01000 or t01000."""
    name = "MINER"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            return fil.Address.parse(text if text[:1] in fil.NETWORKS else f"f0{text}").actor_id
        except fil.AddressError:
            self.fail(f"{value!r} is not a miner actor id (1000, f01000 or t01000)", param, ctx)


def miner_option(help: str):
    return click.option("--miner", type=MinerId(), default=0, help=help)


# -- JSON ---------------------------------------------------------------------------------------
def plain(obj) -> Any:
    """`obj` (structs, dicts, lists, bytes ...) as JSON-ready data, bytes as hex."""
    return _hex(msgspec.to_builtins(obj, builtin_types=(bytes,)))


def _hex(x):
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x).hex()
    if isinstance(x, dict):
        return {(_hex(k) if isinstance(k, bytes) else k): _hex(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_hex(v) for v in x]
    return x


def to_json(obj) -> str:
    return json.dumps(plain(obj))


def emit_json(obj) -> None:
    click.echo(to_json(obj))


# -- the bus ------------------------------------------------------------------------------------
def with_client(bus: str, fn: Callable[[Peer], Awaitable[T]], *, timeout: float = 5.0) -> T:
    """Connect to the hub as a client (not a registered node), run `fn`, disconnect.
    A hub that does not answer, a refused call or missing keys is a one-line error."""
    try:
        split(bus)
        cfg = BusConfig(address=bus, call_timeout_s=timeout)
        preflight.check_keys(cfg, role="admin", name="client")
    except (AddressError, OSError) as e:       # OSError: keys missing or unreadable
        raise click.ClickException(str(e)) from None

    async def main() -> T:
        peer = Peer(name=f"cli-{uuid.uuid4().hex[:8]}", role="cli", register=False, cfg=cfg)
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
        if interrupted(e):
            raise KeyboardInterrupt from None       # the `zqnode` group says it in one line
        leaf = unwrap(e)
        if isinstance(leaf, click.ClickException):
            raise leaf from None
        if isinstance(leaf, (CallTimeout, RemoteError, OSError)):
            raise click.ClickException(str(leaf)) from None
        raise


def interrupted(e: BaseException) -> bool:
    """Ctrl-C, however deep in a nursery's exception groups it arrived."""
    if isinstance(e, BaseExceptionGroup):
        return e.subgroup(KeyboardInterrupt) is not None
    return isinstance(e, KeyboardInterrupt)


def size_text(n: float) -> str:
    """Bytes as an operator reads them: 1.5 GiB."""
    if n < 0:
        return "-" + size_text(-n)
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def age_text(seconds: float) -> str:
    """A duration as 4m05s, or 2h17m from an hour on."""
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
