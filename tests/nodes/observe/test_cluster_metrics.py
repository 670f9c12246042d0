"""After a devnet-like run (a whole cluster in memory under a mock clock: two CC sectors
sealed to Proving and a deadline proven), a scrape has every family an operator needs,
with the values the cluster's own state gives: the hub's per-kind counts equal what
the peers sent, the workers' task counts equal the scheduler's Runs, the poster's
deadline counts equal its store's outcomes. What has not failed yet is there at 0, so
dashboards and alerts have a series on a healthy cluster."""
import itertools
from collections import Counter

import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.nodes import observe
from zqnode.nodes.observe import catalog as K
from zqnode.nodes.observe.metrics import parse
from tests.nodes.observe.cluster import start_cluster, until

_names = itertools.count()


def samples(scrape: dict, name: str, **match) -> dict:
    """{labels (without those matched): value} of one family, filtered by label values."""
    out = {}
    for labels, value in scrape.get(name, {}).items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in match.items()):
            out[tuple(sorted((k, v) for k, v in d.items() if k not in match))] = value
    return out


def one(scrape: dict, name: str, **match) -> float:
    found = samples(scrape, name, **match)
    assert len(found) == 1, (name, match, found)
    return next(iter(found.values()))


async def test_a_scrape_after_a_devnet_run(nursery, tmp_path, autojump_clock):
    n = next(_names)
    hub = MemoryHub(BusConfig(address=f"mem://metrics-{n}"))
    observe.hub(hub, f"hub{n}")
    address = await nursery.start(hub.run)
    pc2 = trio.Event()
    c = await start_cluster(nursery, address, tmp_path, f"m{n}", clock=trio.current_time,
                            gates={"PC2": pc2})
    sealing = c.manager.sealing
    sealing.pledge(2)

    await until(lambda: [w.state for w in c.manager.jobs() if w.task == "PC2"] == ["running"] * 2)
    mid = parse(observe.REGISTRY.render())       # while PC2 runs (held at its gate)
    assert samples(mid, "zqnode_manager_works", node=f"m{n}-manager") == {
        (("state", "running"), ("task", "PC2")): 2}
    assert sum(samples(mid, "zqnode_worker_running_tasks", task="PC2").values()) == 2
    assert samples(mid, "zqnode_scheduler_requests", node=f"m{n}-scheduler") == {
        (("state", "running"), ("task", "PC2")): 2}
    assert samples(mid, "zqnode_sealing_sectors", node=f"m{n}-manager") == {
        (("state", "PreCommit2"),): 2}
    pc2.set()

    await until(lambda: all(s.state == "Proving" for s in sealing.core.sectors.values()))
    await until(lambda: any(o.status == "proven" for o in c.poster.core.outcomes))
    text = observe.REGISTRY.render()
    scrape = parse(text)

    for family in K.REGISTRY.families:               # every family is announced
        assert f"# TYPE {family} " in text

    # chain, sealing, hub
    assert one(scrape, "zqnode_chain_epoch", node=f"m{n}-chain") == c.chain.chain.head.epoch
    assert one(scrape, "zqnode_chain_miner_power_bytes", node=f"m{n}-chain", miner="f01000") == 4096
    assert one(scrape, "zqnode_chain_miner_sectors", node=f"m{n}-chain", miner="f01000",
               state="active") == 2
    assert samples(scrape, "zqnode_sealing_sectors", node=f"m{n}-manager") == {
        (("state", "Proving"),): 2}
    assert samples(scrape, "zqnode_hub_nodes", node=f"hub{n}") == {
        (("role", r), ("state", s)): k if s == "up" else 0 for r, k in
        (("chain", 1), ("manager", 1), ("scheduler", 1), ("worker", 2), ("poster", 1))
        for s in ("up", "down", "left")}

    # bus traffic: every RPC message a peer sent went through the hub, counted there too
    peers = [f"m{n}-{x}" for x in ("chain", "manager", "scheduler", "worker-1", "worker-2", "poster")]
    sent: Counter = Counter()
    sent_bytes: Counter = Counter()
    for peer in peers:
        out = samples(scrape, "zqnode_bus_messages_total", node=peer, channel="rpc", direction="out")
        out_bytes = samples(scrape, "zqnode_bus_bytes_total", node=peer, channel="rpc",
                            direction="out")
        for (labels), count in out.items():
            kind = dict(labels)["kind"]
            sent[kind] += count
            sent_bytes[kind] += out_bytes[labels] + count * len(peer)   # + the hub's route frame
    routed = {dict(k)["kind"]: v for k, v in samples(
        scrape, "zqnode_bus_messages_total", node=f"hub{n}", channel="rpc", direction="in").items()}
    routed_bytes = {dict(k)["kind"]: v for k, v in samples(
        scrape, "zqnode_bus_bytes_total", node=f"hub{n}", channel="rpc", direction="in").items()}
    assert routed == dict(sent) and routed_bytes == dict(sent_bytes)
    assert {"SchedEnqueue", "WorkerRun", "CallReturn", "ChainPush", "Register"} <= set(routed)
    assert sum(routed.values()) == one(scrape, "zqnode_hub_routed_total", node=f"hub{n}") + sum(
        count for kind, count in routed.items() if kind in ("Register", "Heartbeat", "Goodbye"))
    events = samples(scrape, "zqnode_bus_messages_total", node=f"m{n}-chain", channel="event",
                     direction="out")
    assert events[(("kind", "ChainHeadChanged"),)] >= c.chain.chain.head.epoch

    # RPC latency (client side) and handler time (server side) count every call and request
    for node, kind in ((f"m{n}-worker-1", "CallReturn"), (f"m{n}-manager", "SchedEnqueue"),
                       (f"m{n}-scheduler", "WorkerRun")):
        calls = one(scrape, "zqnode_bus_rpc_seconds_count", node=node, kind=kind, outcome="ok")
        assert calls == one(scrape, "zqnode_bus_messages_total", node=node, channel="rpc",
                            direction="out", kind=kind) > 0
    served = one(scrape, "zqnode_bus_handler_seconds_count", node=f"m{n}-manager", kind="CallReturn",
                 outcome="ok")
    assert served == one(scrape, "zqnode_bus_messages_total", node=f"m{n}-manager", channel="rpc",
                         direction="in", kind="CallReturn") == 8      # 4 tasks x 2 sectors
    assert one(scrape, "zqnode_bus_pending_calls", node=f"m{n}-manager") >= 0

    # tasks: what the workers ran is what the scheduler started and the manager finished
    ran: Counter = Counter()
    for w in ("worker-1", "worker-2"):
        for labels, count in samples(scrape, "zqnode_worker_tasks_total", node=f"m{n}-{w}",
                                     outcome="ok").items():
            ran[dict(labels)["task"]] += count
    ran = +ran                                        # the tasks offered and not run are at 0
    assert dict(ran) == {"PC1": 2, "PC2": 2, "C1": 2, "FIN": 2}
    offered = set(c.workers[0].tasks)
    assert {dict(k)["task"] for k in samples(scrape, "zqnode_worker_tasks_total",
                                             node=f"m{n}-worker-1", outcome="failed")} == offered
    assert [v for w in ("worker-1", "worker-2") for v in samples(
        scrape, "zqnode_worker_tasks_total", node=f"m{n}-{w}", outcome="failed").values() if v] == []
    assert one(scrape, "zqnode_worker_storage_bytes", node=f"m{n}-worker-1", use="total") >= \
        one(scrape, "zqnode_worker_storage_bytes", node=f"m{n}-worker-1", use="free") > 0
    waits = {dict(k)["task"]: v for k, v in samples(
        scrape, "zqnode_scheduler_wait_seconds_count", node=f"m{n}-scheduler").items()}
    assert waits == dict(ran)
    done = {dict(k)["task"]: v for k, v in samples(
        scrape, "zqnode_manager_work_seconds_count", node=f"m{n}-manager", outcome="done").items()}
    assert done == dict(ran)
    assert one(scrape, "zqnode_scheduler_queue_length", node=f"m{n}-scheduler") == 0
    assert one(scrape, "zqnode_scheduler_workers", node=f"m{n}-scheduler", state="enabled") == 2
    assert one(scrape, "zqnode_scheduler_worker_cpus", node=f"m{n}-scheduler", worker=f"m{n}-worker-1",
               use="total") == 8
    snap = c.workers[0].peer.capabilities["resources"]
    assert one(scrape, "zqnode_worker_cpus", node=f"m{n}-worker-1") == snap["cpus"]
    assert one(scrape, "zqnode_worker_memory_bytes", node=f"m{n}-worker-1", use="total") == \
        snap["memory_total"]

    # proving: the deadlines counted are the outcomes the poster stored
    stored = Counter(o.status for o in c.poster.store.outcomes(1000, limit=100_000))
    counted = {dict(k)["status"]: v for k, v in samples(
        scrape, "zqnode_post_deadlines_total", node=f"m{n}-poster", miner="f01000").items()}
    assert counted == {s: stored.get(s, 0) for s in K.POST_STATUSES} and counted["proven"] >= 1
    assert samples(scrape, "zqnode_post_declared_sectors_total", node=f"m{n}-poster", miner="f01000") \
        == {(("kind", "faults"),): 0, (("kind", "recoveries"),): 0}
    assert one(scrape, "zqnode_post_skipped_sectors_total", node=f"m{n}-poster", miner="f01000") == 0
    assert one(scrape, "zqnode_post_prove_seconds_count", node=f"m{n}-poster", miner="f01000",
               outcome="failed") == 0
    assert one(scrape, "zqnode_post_prove_seconds_count", node=f"m{n}-poster", miner="f01000",
               outcome="ok") >= counted["proven"]
    assert one(scrape, "zqnode_post_current_deadline", node=f"m{n}-poster", miner="f01000") == \
        c.chain.chain.miner_view(1000).deadline.index
