"""`zqnode start` (one node) and `zqnode devnet` (everything in one process)."""
from __future__ import annotations

import functools
import logging

import click
import trio

from bus.address import DEFAULT_BUS
from bus.config import BusConfig
from nodes import runtime
from nodes.cli.common import bus_option, unwrap
from nodes.config import ConfigError, NodeConfig, load


def _run(runners, on_started=None) -> None:
    try:
        trio.run(functools.partial(runtime.serve, *runners, on_started=on_started))
    except KeyboardInterrupt:
        pass
    except BaseException as e:
        leaf = unwrap(e)
        # What an operator can fix (a port in use, a miner the chain does not have, a bad
        # value) is one line; --log-level debug shows the traceback.
        if isinstance(leaf, (OSError, ValueError)):
            logging.getLogger("zqnode").debug("start failed", exc_info=leaf)
            raise click.ClickException(str(leaf)) from None
        raise


@click.command()
@click.option("--role", required=True, help="bus, worker, chain, poster (manager, scheduler: planned)")
@bus_option
@click.option("--name", default="", help="Node id on the bus [default: ROLE-HOSTNAME].")
@click.option("--repo", default="", help="State directory [default: ~/.zqnode/NAME].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
def start(role: str, bus: str, name: str, repo: str, config_path: str | None) -> None:
    """Start one node and run it until SIGINT/SIGTERM."""
    try:
        cfg = load(config_path, role=role, name=name, repo=repo, bus=bus)
        runner = runtime.node_runner(cfg)
    except (ConfigError, runtime.UnknownRole) as e:
        raise click.ClickException(str(e)) from None
    _run([runner], lambda started: click.echo(f"{cfg.role} {cfg.name} running on {cfg.bus.address}"))


@click.command()
@click.option("--bus", default=DEFAULT_BUS, show_default=True, envvar="ZQNODE_BUS",
              help="Address the devnet's hub binds; other zqnode commands use it.")
@click.option("--repo", default="", help="State directory [default: ~/.zqnode/devnet].")
def devnet(bus: str, repo: str) -> None:
    """Run a whole cluster in one process until Ctrl-C."""
    base = repo or NodeConfig(role="devnet", name="devnet").repo
    hub = NodeConfig(role="bus", name="hub", repo=f"{base}/hub", bus=BusConfig(address=bus))
    worker = NodeConfig(role="worker", name="devnet-worker-1", repo=f"{base}/worker-1")

    async def run_all(*, task_status=trio.TASK_STATUS_IGNORED):
        async with trio.open_nursery() as nursery:
            worker.bus.address = await nursery.start(runtime.node_runner(hub))
            await nursery.start(runtime.node_runner(worker))
            click.echo(f"devnet: bus hub at {worker.bus.address} "
                       f"(watch it: zqnode tail --bus {worker.bus.address})")
            click.echo("devnet: running the bus hub and 1 worker (devnet-worker-1); the chain, "
                       "manager, scheduler and poster join as they are built. Ctrl-C stops.")
            task_status.started()

    _run([run_all])


COMMANDS = [start, devnet]
