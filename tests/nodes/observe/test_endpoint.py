"""`--metrics-listen`: after a short devnet-like run over real sockets (two CC sectors
sealed and committed on chain, their FIN held running; deadlines closing every 0.4 s),
GET /metrics over HTTP has every family the issue lists, with the values the cluster
holds."""
import time
import urllib.request

from zqnode.nodes.observe.metrics import parse
from tests.nodes.observe.cluster import cluster_in_thread

# what an operator asked for -> the families that answer it
ASKED = {
    "bus messages and bytes by kind": ["zqnode_bus_messages_total", "zqnode_bus_bytes_total"],
    "RPC latency": ["zqnode_bus_rpc_seconds_count", "zqnode_bus_handler_seconds_count"],
    "queue lengths": ["zqnode_scheduler_queue_length", "zqnode_manager_enqueue_backlog",
                      "zqnode_bus_subscription_queue", "zqnode_bus_pending_calls"],
    "tasks by type and state with durations": [
        "zqnode_manager_works", "zqnode_scheduler_requests", "zqnode_worker_tasks_total",
        "zqnode_worker_task_seconds_count", "zqnode_manager_work_seconds_count",
        "zqnode_scheduler_wait_seconds_count"],
    "worker resource use": ["zqnode_worker_cpu_percent", "zqnode_worker_memory_bytes",
                            "zqnode_scheduler_worker_cpus", "zqnode_scheduler_worker_memory_bytes"],
    "sectors by state": ["zqnode_sealing_sectors", "zqnode_chain_miner_sectors"],
    "deadlines proven, faulted, missed": ["zqnode_post_deadlines_total",
                                          "zqnode_post_current_deadline"],
    "proof times": ["zqnode_worker_task_seconds_bucket"],   # (C1, C2 are tasks; the
}                                      # poster's zqnode_post_prove_seconds: test_cluster_metrics)


def ours(scrape: dict, name: str, prefix: str) -> dict:
    return {labels: v for labels, v in scrape.get(name, {}).items()
            if dict(labels).get("node", "").startswith(prefix)}


def total(scrape: dict, name: str, prefix: str, **match) -> float:
    return sum(v for labels, v in ours(scrape, name, prefix).items()
               if all(dict(labels).get(k) == want for k, want in match.items()))


def test_the_endpoint_after_a_devnet_run(tmp_path):
    with cluster_in_thread(tmp_path, "ep", metrics_listen="127.0.0.1:0", pledge=2,
                           hold=("FIN",)) as running:
        c = running.cluster
        deadline = time.monotonic() + 60
        while not ([w.state for w in c.manager.jobs() if w.task == "FIN"] == ["running"] * 2
                   and len(c.poster.core.outcomes) >= 2):
            assert time.monotonic() < deadline, "the sectors did not reach FIN"
            time.sleep(0.05)
        with urllib.request.urlopen(running.metrics_url, timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            scrape = parse(reply.read().decode())
        outcomes = len(c.poster.core.outcomes)

    for what, names in ASKED.items():
        for name in names:
            assert ours(scrape, name, "ep-"), f"{what}: {name} has no sample"

    p = "ep-"
    assert total(scrape, "zqnode_bus_messages_total", p, node="ep-hub", kind="WorkerRun") == 8
    assert total(scrape, "zqnode_bus_bytes_total", p, node="ep-hub", kind="WorkerRun") > 8 * 100
    assert total(scrape, "zqnode_bus_rpc_seconds_count", p, node="ep-scheduler", kind="WorkerRun",
                 outcome="ok") == 8
    assert total(scrape, "zqnode_worker_tasks_total", p, outcome="ok") == 6
    assert {dict(k)["task"] for k, v in ours(scrape, "zqnode_worker_tasks_total", p).items() if v} == {
        "PC1", "PC2", "C1"}
    assert total(scrape, "zqnode_worker_task_seconds_count", p) == 6
    assert total(scrape, "zqnode_worker_running_tasks", p, task="FIN") == 2
    assert total(scrape, "zqnode_manager_works", p, task="FIN", state="running") == 2
    assert total(scrape, "zqnode_scheduler_requests", p, task="FIN", state="running") == 2
    assert total(scrape, "zqnode_manager_work_seconds_count", p, outcome="done") == 6
    assert total(scrape, "zqnode_sealing_sectors", p, state="FinalizeSector") == 2
    assert total(scrape, "zqnode_chain_miner_sectors", p, state="unproven") + total(
        scrape, "zqnode_chain_miner_sectors", p, state="active") == 2
    assert total(scrape, "zqnode_scheduler_worker_cpus", p, use="total") == 16
    assert total(scrape, "zqnode_worker_memory_bytes", p, use="total") > 0
    assert 2 <= total(scrape, "zqnode_post_deadlines_total", p) <= outcomes
    assert total(scrape, "zqnode_chain_epoch", p) > 10
    assert total(scrape, "zqnode_hub_nodes", p, state="up") == 6
