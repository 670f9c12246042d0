"""`--lotus URL [--lotus-token FILE]`: read a miner straight from a Lotus node (mainnet,
calibration, a devnet's API), without a cluster: `zqnode proving deadlines|deadline|faults`
and `zqnode chain miner` take them."""
from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import click
import trio

from zqnode.nodes.chain.core import NotFound
from zqnode.nodes.chain.lotus.client import LotusClient, LotusDisconnected, LotusError
from zqnode.nodes.chain.lotus.reader import LotusReader, NodeAnswerError
from zqnode.nodes.groups import unwrap

T = TypeVar("T")


def lotus_options(f):
    f = click.option("--lotus-token", "lotus_token", default="", metavar="FILE",
                     type=click.Path(dir_okay=False),
                     help="With --lotus: a file holding an API token (reading needs none on Lotus).")(f)
    return click.option("--lotus", "lotus", default="", metavar="URL",
                        help="Read the chain from this Lotus node (ws://HOST:1234/rpc/v1), not the "
                             "cluster's: needs --miner.")(f)


def from_lotus(url: str, token_file: str, miner: int, fn: Callable[[LotusReader], Awaitable[T]]) -> T:
    """`fn(reader)` against the Lotus node at `url`; what goes wrong, as a ClickException."""
    if not miner:
        raise click.UsageError("--lotus reads one miner: give --miner f0...")
    try:
        token = Path(token_file).read_text().strip() if token_file else ""
    except OSError as e:
        raise click.ClickException(f"--lotus-token: {e}") from None

    async def go() -> T:
        async with LotusClient.connect(url, token) as lotus:
            return await fn(LotusReader(lotus.call, await lotus.call("StateNetworkName")))
    try:
        return trio.run(go)
    except* (LotusDisconnected, LotusError, NodeAnswerError, NotFound, OSError, ValueError) as group:
        raise click.ClickException(f"{url}: {unwrap(group)}") from None
