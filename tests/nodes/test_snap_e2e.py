"""SnapDeals end to end on the devnet, in real processes: four 2 KiB CC sectors are sealed
to Proving; two, once a WindowPoSt proved them, are snapped up (`zqnode sectors snap-up`) and take a piece each (`zqnode
sectors add-piece`); the devnet is killed with SIGKILL (its workers with it) while the
first one's update runs, and started again on the same repo. Both upgrades finish: the
chain has each sector's new comm_r (its CC sealed CID kept as the sector key), one
ProveReplicaUpdates3 each; the poster proves them against the new comm_r in their next
window (the chain's verifier checks it); `zqnode sectors unseal` gives each piece back."""
import random
import signal

from zqnode.nodes.chain import messages as M
from zqnode.proofs import cid
from tests.post_windows import MINER, P, first_after, head_epoch, wait_epoch, zqnode_json
from tests.procs import Proc, devnet_chain, sealing_events, until, zqnode

SECTORS = 4
EPOCH_S = "0.15"


def test_two_cc_sectors_snapped_up_through_a_kill_proven_and_unsealed(tmp_path, free_bus_address, monkeypatch):
    monkeypatch.setenv("ZQNODE_BUS_SECURITY", "none")
    bus, repo = free_bus_address(), tmp_path / "devnet"
    args = ("devnet", "--bus", bus, "--repo", str(repo), "--sectors", str(SECTORS), "--workers", "2",
            "--epoch-seconds", EPOCH_S, "--refresh", "1")
    net = Proc(*args)
    procs = [net]
    try:
        net.wait_for(lambda line: line.startswith(f"devnet: all {SECTORS} sectors are Proving"), timeout=300)
        def chain_sector(n):
            return zqnode_json("chain", "sector", str(n), "--bus", bus)["sector"]
        until(lambda: all(chain_sector(n)["state"] == "active" for n in (1, 2)), timeout=200,
              what="sectors 1 and 2 proven by a WindowPoSt (the actor updates active sectors only)")
        old = {n: chain_sector(n) for n in (1, 2)}
        pieces = {}
        for n in (1, 2):
            assert zqnode_json("sectors", "snap-up", str(n), "--bus", bus)["state"] == "SnapDealsWaitDeals"
        for n in (1, 2):                     # 1500 bytes: a 2 KiB piece, one per sector
            path = tmp_path / f"piece-{n}"
            path.write_bytes(random.Random(n).randbytes(1500))
            assert zqnode_json("sectors", "add-piece", str(path), "--bus", bus)["sector"] == n
            pieces[n] = path.read_bytes()

        until(lambda: "Packed" in sealing_events(repo, 1), timeout=60, what="sector 1's update under way")
        net.kill9()                          # the workers die with it, their tasks too
        killed_in = sealing_events(repo, 1)[-1]
        net = Proc(*args)
        procs.append(net)

        def released():
            return all(sealing_events(repo, n)[-1] == "SectorKeyReleased" for n in (1, 2))
        until(released, timeout=240, what="both upgrades done: the sector key released")
        now = head_epoch(bus)
        windows = []
        for n in (1, 2):
            s = chain_sector(n)
            status = zqnode_json("sectors", "status", str(n), "--bus", bus)["info"]
            assert s["sealed_cid"] == cid.sealed_cid(bytes.fromhex(status["comm_r"])) != old[n]["sealed_cid"]
            assert s["sector_key_cid"] == old[n]["sealed_cid"] and s["state"] == "active"
            offset = zqnode_json("chain", "miner", "--miner", str(MINER), "--bus", bus)["period_offset"]
            windows.append(first_after(offset, s["deadline"], now))
        wait_epoch(bus, max(w.close for w in windows) + P.chain_finality)
        m = zqnode_json("chain", "miner", "--miner", str(MINER), "--bus", bus)
        assert (m["active"], m["faulty"], m["penalties"]) == (SECTORS, 0, 0), m
        for n in (1, 2):
            out = tmp_path / f"unsealed-{n}"
            r = zqnode("sectors", "unseal", str(n), "--out", str(out), "--piece", "0", "--bus", bus)
            assert r.returncode == 0, r.stderr
            until(lambda: out.exists() and sealing_events(repo, n)[-1] == "UnsealDone", timeout=60,
                  what=f"sector {n} unsealed")
            assert out.read_bytes() == pieces[n]
    finally:
        for proc in reversed(procs):
            proc.stop(signal.SIGINT)
    assert net.p.returncode == 0, net.stderr()

    chain = devnet_chain(repo)
    updates, posts = {}, []
    for ts in chain.tipsets:
        for msg, receipt in zip(ts.messages, ts.receipts):
            if msg.method == "ProveReplicaUpdates3" and receipt.exit_code == 0:
                for u in M.decode_params(msg.method, msg.params).sector_updates:
                    assert u.sector not in updates, f"sector {u.sector} updated twice"
                    updates[u.sector] = ts.epoch
            if msg.method == "SubmitWindowedPoSt":
                assert receipt.exit_code == 0, receipt
                posts.append((ts.epoch, M.decode_params(msg.method, msg.params).deadline))
    assert sorted(updates) == [1, 2], updates
    for n in (1, 2):                         # proven after the update (against comm_r_new, by the chain)
        deadline = chain.miner(MINER).sectors[n].deadline
        assert any(epoch > updates[n] and d == deadline for epoch, d in posts), (n, updates, posts)
    print(f"kill -9 while sector 1 was at {killed_in}; updates landed at {updates}")
