"""`zqnode start` (one node) and `zqnode devnet` (everything in one process)."""
from __future__ import annotations

import contextlib
import functools
import logging
import pathlib

import click
import msgspec
import trio

from zqnode.bus.address import DEFAULT_BUS
from zqnode.nodes import preflight, repo as repos, runtime
from zqnode.nodes.cli.common import metrics_option, metrics_runner
from zqnode.nodes.groups import unwrap
from zqnode.nodes.chain.config import ChainConfig
from zqnode.nodes.config import ConfigError, NodeConfig, load


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
@click.option("--role", required=True, type=click.Choice(list(runtime.ROLES)))
@click.option("--bus", default=None, envvar="ZQNODE_BUS",
              help=f"The hub's address [default: the config's bus.address, else {DEFAULT_BUS}].")
@click.option("--name", default="", help="Node id on the bus [default: ROLE-HOSTNAME; the hub: hub].")
@click.option("--repo", default="", help="State directory [default: ~/.zqnode/NAME].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--lotus", default="", metavar="URL",
              help="Chain role: follow this Lotus API (ws://HOST:1234/rpc/v1) instead of running "
                   "a devnet chain ([chain] lotus).")
@click.option("--lotus-token", default="", metavar="FILE", type=click.Path(dir_okay=False),
              help="Chain role: the file holding the Lotus API token ([chain] lotus_token_file).")
@metrics_option
def start(role: str, bus: str | None, name: str, repo: str, config_path: str | None, lotus: str,
          lotus_token: str, metrics_listen: str) -> None:
    """Start one node and run it until SIGINT/SIGTERM."""
    try:
        cfg = load(config_path, role=role, name=name, repo=repo, bus=bus,
                   metrics_listen=metrics_listen)
        if lotus or lotus_token:
            if role != "chain":
                raise ConfigError("--lotus and --lotus-token are the chain role's")
            fields = msgspec.structs.asdict(cfg.chain)
            fields.update({k: v for k, v in (("lotus", lotus), ("lotus_token_file", lotus_token)) if v})
            cfg = msgspec.structs.replace(cfg, chain=ChainConfig(**fields))
    except (ConfigError, runtime.UnknownRole) as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:
        raise click.ClickException(f"--lotus: {e}") from None
    with contextlib.ExitStack() as held:
        try:       # before anything starts: the repo is ours, the keys are there, ports free
            held.enter_context(repos.hold(cfg.repo))
            preflight.check_keys(cfg.bus, role=cfg.role, name=cfg.name)
            preflight.check_free(runtime.listen_addresses(cfg))
        except OSError as e:
            raise click.ClickException(str(e)) from None
        try:
            runner = runtime.node_runner(cfg)
        except (ConfigError, runtime.UnknownRole) as e:     # a node's own checks, at start
            raise click.ClickException(f"{config_path or 'options'}: {e}") from None
        runners = [runner]
        if cfg.metrics_listen:
            runners.append(metrics_runner(cfg.metrics_listen))

        def started(urls) -> None:
            click.echo(f"{cfg.role} {cfg.name} running on {cfg.bus.address}"
                       + (f"; metrics on {urls[-1]}" if cfg.metrics_listen else ""))
        _run(runners, started)


@click.command()
@click.option("--bus", default=DEFAULT_BUS, show_default=True, envvar="ZQNODE_BUS",
              help="Address the devnet's hub binds; other zqnode commands use it.")
@click.option("--repo", default="", help="State directory [default: ~/.zqnode/devnet].")
@click.option("--sectors", "count", default=4, show_default=True, type=click.IntRange(0, 256),
              help="CC sectors the devnet has (pledged once: a resumed devnet adds none it has).")
@click.option("--sector-size", default="", help="2KiB, 8MiB or 512MiB [default: 2KiB, or the repo's].")
@click.option("--epoch-seconds", default=0.0, type=click.FloatRange(min=0.0),
              help="Chain epoch length [default: the devnet policy's 1 s].")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--refresh", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between progress lines.")
@click.option("--no-poster", is_flag=True,
              help="Leave the poster out, to run it as its own node (the devnet says how).")
@click.option("--batch", is_flag=True,
              help="Batch PreCommits and aggregate ProveCommits (one batch of every sector, 60 s at most).")
@click.option("--synthetic", is_flag=True,
              help="The miner seals with synthetic PoRep (FIP-0059; fixed when the devnet is created).")
@click.option("--lotus-listen", default="", metavar="HOST:PORT",
              help="Serve the chain's Lotus JSON-RPC API there (websocket and HTTP, /rpc/v1); "
                   "the admin token goes to REPO/lotus-token.")
@click.option("--via-lotus", is_flag=True,
              help="The cluster reaches the chain through the chain-watcher over the Lotus API, "
                   "as it would a Lotus node (the API on --lotus-listen, or a free port).")
@click.option("--lotus", default="", metavar="URL",
              help="With --via-lotus: the chain-watcher reaches the API at URL, a proxy or tunnel in "
                   "front of --lotus-listen [default: the API's own address].")
@metrics_option
def devnet(bus: str, repo: str, count: int, sector_size: str, epoch_seconds: float, workers: int,
           refresh: float, no_poster: bool, batch: bool, synthetic: bool, lotus_listen: str,
           via_lotus: bool, lotus: str, metrics_listen: str) -> None:
    """Run a whole cluster in one process until Ctrl-C: hub, chain, manager with the
    sealing state machine, scheduler, workers and poster. It pledges --sectors CC
    sectors and prints its progress; run again with the same --repo to resume."""
    from zqnode.nodes.devnet import Devnet, DevnetError
    base = pathlib.Path(repo or NodeConfig(role="devnet", name="devnet").repo).expanduser()
    if lotus and not (via_lotus and lotus_listen):
        raise click.UsageError("--lotus is where the chain-watcher of --via-lotus reaches --lotus-listen: "
                               "give all three")
    with contextlib.ExitStack() as held:
        try:       # before anything starts: the repos are ours, every port is free
            held.enter_context(repos.hold(base))
            preflight.check_free(preflight.hub_addresses(bus)
                                 + ([("metrics", metrics_listen)] if metrics_listen else [])
                                 + ([("the Lotus API", lotus_listen)] if lotus_listen else []))
            net = Devnet(base=base, bus=bus, sectors=count, sector_size=sector_size,
                         epoch_seconds=epoch_seconds, workers=workers, refresh=refresh,
                         poster=not no_poster, batching=batch, synthetic=synthetic,
                         lotus_listen=lotus_listen, via_lotus=via_lotus, lotus=lotus, say=lambda line: click.echo(line))
            for node_repo in net.repos():
                held.enter_context(repos.hold(node_repo))
        except (OSError, DevnetError) as e:
            raise click.ClickException(str(e)) from None
        runners = [net.run]
        if metrics_listen:
            runners.append(metrics_runner(metrics_listen))
        _log_to(base / "devnet.log")
        click.echo(f"devnet: state in {base} (the same --repo resumes it); logs in {base / 'devnet.log'}")

        def started(urls) -> None:
            if metrics_listen:
                click.echo(f"devnet: metrics on {urls[-1]}")
        _run(runners, started)
    click.echo(f"devnet: stopped; state kept in {base}")


def _log_to(path: pathlib.Path) -> None:
    """Logs go to the file (at the chosen level); only errors to the terminal, which
    shows the progress lines."""
    from zqnode.nodes.observe import logs
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    terminal = logging.StreamHandler()
    terminal.setLevel(logging.ERROR)
    terminal.setFormatter(logging.Formatter("devnet: %(levelname)s %(name)s: %(message)s"))
    root.addHandler(logs.handler(path, logs.current_format()))
    root.addHandler(terminal)


COMMANDS = [start, devnet]
