"""Starting nodes: the table of roles, and running until SIGINT/SIGTERM."""
from __future__ import annotations

import logging
import signal
from typing import Awaitable, Callable

import trio

from zqnode.bus.hub import ZmqHub
from zqnode.nodes.config import ConfigError, NodeConfig
from zqnode.nodes.preflight import hub_addresses

log = logging.getLogger("zqnode.runtime")


class UnknownRole(ValueError):
    pass


def _bus(cfg: NodeConfig):
    hub = ZmqHub(cfg.bus)
    if cfg.metrics_listen:          # counting by kind costs ~1 us a message: only when served
        from zqnode.nodes import observe
        observe.hub(hub, cfg.name)
    return hub.run


def _worker(cfg: NodeConfig):
    from zqnode.nodes.worker.node import WorkerNode
    try:
        return WorkerNode(cfg.identity, cfg.worker).run
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _manager(cfg: NodeConfig):
    from zqnode.nodes.manager.node import ManagerNode
    return ManagerNode(cfg.identity, cfg.manager, cfg.sealing).run


def _scheduler(cfg: NodeConfig):
    from zqnode.nodes.scheduler.node import SchedulerNode
    try:
        return SchedulerNode(cfg.identity, cfg.scheduler).run
    except ValueError as e:
        raise ConfigError(f"[scheduler] {e}") from None


def _chain(cfg: NodeConfig):
    if cfg.chain.lotus:                 # following a Lotus node
        from zqnode.nodes.chain.lotus.watcher import LotusWatcher
        try:
            return LotusWatcher(cfg.identity, cfg.chain).run
        except OSError as e:
            raise ConfigError(f"[chain] lotus_token_file: {e}") from None
    from zqnode.nodes.chain.node import ChainNode
    return ChainNode(cfg.identity, cfg.chain).run


def _poster(cfg: NodeConfig):
    from zqnode.nodes.poster.node import PosterNode
    return PosterNode(cfg.identity, cfg.poster).run


ROLES: dict[str, Callable[[NodeConfig], Callable[..., Awaitable]]] = {
    "bus": _bus,
    "chain": _chain,
    "manager": _manager,
    "scheduler": _scheduler,
    "worker": _worker,
    "poster": _poster,
}


def listen_addresses(cfg: NodeConfig) -> list[tuple[str, str]]:
    """(what, address) of everything the node `cfg` describes listens on."""
    out = hub_addresses(cfg.bus.address) if cfg.role == "bus" else []
    return out + ([("metrics", cfg.metrics_listen)] if cfg.metrics_listen else [])


def node_runner(cfg: NodeConfig):
    """The `run` coroutine function of the node `cfg` describes."""
    if cfg.role not in ROLES:
        raise UnknownRole(f"unknown role {cfg.role!r} (roles: {', '.join(ROLES)})")
    return ROLES[cfg.role](cfg)


async def serve(*runners: Callable[..., Awaitable], on_started: Callable[[list], None] | None = None) -> None:
    """Start each runner in turn (each calls task_status.started when it serves), then
    run until SIGINT or SIGTERM, and stop cleanly: every node gets its cancellation."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            started = [await nursery.start(r) for r in runners]
            if on_started:
                on_started(started)
            async for signum in signals:
                log.info("%s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
