"""WindowPoSt end to end on the devnet, in real processes: `zqnode devnet --no-poster` (hub,
chain with the real PoRep and WindowPoSt verifiers, manager + sealing, scheduler, two
workers) seals twelve 2 KiB CC sectors, and the poster runs as its own node (`zqnode
start --role poster`, with the configuration the devnet writes) so the test can kill it
alone. Over two full proving periods of every deadline holding sectors (three when sealing
ended too late in the first for the events below):

- every deadline is proven in every period, each PoSt verified by the chain's real
  verifier, and again here against the chain's randomness; nothing is missed;
- one sector's replica is corrupted between two PoSts: the poster's check finds it,
  declares it faulty for its deadline, which is proven without it (the rest of its
  partition proven); the sector is rebuilt (`zqnode sectors rebuild N`), the poster
  declares it recovered and proves it in the next period: power is back and the only
  penalty of the whole run is that sector's one faulty deadline;
- the poster is killed with SIGKILL after building a deadline's proofs and before they
  land; started again, it pushes the stored proofs and they land before Close;
- a reorg reverts a deadline's Challenge tipset after the poster proved it: the
  randomness changes, the poster proves again, and the new proofs land and verify.

Epochs are 0.25 s (a period of 384 epochs is 96 s): the test takes about 2.5 minutes, or
4 when sealing is so slow (a loaded machine) that the events move to the next period."""
import json
import pathlib
import signal
import time

import msgspec
import pytest
import trio

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.proofs import post
from tests.post_windows import (
    EPOCH_S, LEAD, MINER, P, POSTER_SETTINGS, WINDOW, Occurrence, first_after, head_epoch,
    on_chain, post_messages, read_layout, reorg_after_proofs, stored_proofs, wait_epoch, wait_head,
    zqnode_json)
from tests.procs import Proc, devnet_chain, sealing_events, until, zqnode

SECTORS = 12
SECTOR_SIZE = 2048
REBUILD_EPOCHS = 120    # from a faulty window's Close: the sector rebuilt (30 s; some 10 s here)


@pytest.fixture(autouse=True)
def client_keys(tmp_path, monkeypatch):
    """The devnet makes this client key an admin; the CLI calls here use it (not $HOME)."""
    monkeypatch.setenv("ZQNODE_KEY_DIR", str(tmp_path / "client"))


def replica_dirs(repo: pathlib.Path, number: int) -> list[tuple[pathlib.Path, str]]:
    """Every directory of the sector under the workers' storage, with its stage."""
    out = []
    for meta in sorted(repo.glob("worker-*/sectors/*/sector.json")):
        data = json.loads(meta.read_text())
        if data["miner"] == MINER and data["sector"] == number:
            out.append((meta.parent, data["stage"]))
    return out


def corrupt(sealed: pathlib.Path) -> None:
    """Bit rot: one 32-byte node of the replica turns to zeros (still a field element)."""
    with open(sealed, "r+b") as f:
        f.seek(32 * 32)
        assert f.read(32) != bytes(32)
        f.seek(32 * 32)
        f.write(bytes(32))


# -- the plan: which deadline sees the corruption, the reorg and the kill --------------------------

class Plan(msgspec.Struct, kw_only=True):
    layout: dict[int, list[list[int]]]      # deadline index -> its partitions' sectors
    first: dict[int, Occurrence]            # each deadline's first window with its sectors
    faulty: Occurrence                      # the window whose partition loses a sector
    sector: int                             # the corrupted sector
    reorg: Occurrence
    kill: Occurrence

    @property
    def declaring(self) -> Occurrence:
        """The window whose runner declares the fault (index+2 of its deadline)."""
        return Occurrence(self.faulty.open - 2 * WINDOW, (self.faulty.index - 2) % P.period_deadlines)

    def steps(self) -> list[tuple[int, int, str]]:
        """(first epoch, last epoch, name) of what the test does, in order: the corruption
        once the faulty deadline's window before is closed (long before the declaring
        runner's Challenge), the reorg and the kill around their windows, the fault's check
        and the rebuild after the faulty window."""
        corrupt_at = max(self.faulty.later(-1).close, 0)
        return sorted([(corrupt_at, corrupt_at, "corrupt"),
                       (self.reorg.challenge - LEAD, self.reorg.open, "reorg"),
                       (self.kill.challenge - LEAD, self.kill.close, "kill"),
                       (self.faulty.close, self.faulty.close + REBUILD_EPOCHS, "rebuild")])

    @property
    def end(self) -> int:
        """Every deadline proven twice, the events done and the sector proven again."""
        return max(self.faulty.later().close, self.reorg.close, self.kill.close,
                   *(o.later().close for o in self.first.values()))

    def windows(self) -> list[Occurrence]:
        """Every window proven by `end`."""
        return sorted(o.later(k) for o in self.first.values()
                      for k in range(4) if o.later(k).close <= self.end)


def make_plan(layout: dict[int, list[list[int]]], activation: dict[int, int], offset: int,
              ready: int) -> Plan:
    """The windows of the events, at least LEAD epochs after `ready` (when every sector is
    Proving), with the earliest end: the corrupted sector's window (its fault must be
    declared by the runner of two deadlines before, whose Challenge is then still ahead), a
    reorg window whose previous deadline is empty (a reorg there reverts no other PoSt) and
    a kill window, away from each other and from the runners declaring the fault and the
    recovery, each step done before the next begins."""
    first = {i: first_after(offset, i, min(activation[n] for p in parts for n in p))
             for i, parts in layout.items()}
    soon = [next(o.later(k) for k in range(3) if o.later(k).challenge >= ready + LEAD)
            for o in first.values()]
    ahead = sorted([*soon, *(o.later() for o in soon)])

    def apart(a: Occurrence, b: Occurrence, deadlines: int) -> bool:
        return abs(a.open - b.open) >= deadlines * WINDOW

    plans = []
    for faulty in ahead:
        parts = [p for p in layout[faulty.index] if len(p) >= 2]
        if not parts or faulty.challenge - 2 * WINDOW < ready + LEAD:
            continue
        for reorg in ahead:
            for kill in ahead:
                plan = Plan(layout=layout, first=first, faulty=faulty, sector=parts[0][-1],
                            reorg=reorg, kill=kill)
                declaring = plan.declaring
                steps = plan.steps()
                if ((reorg.index - 1) % P.period_deadlines not in layout
                        and all(apart(reorg, o, 2) for o in (faulty, faulty.later(), declaring,
                                                             declaring.later()))
                        and all(apart(kill, o, 3) for o in (faulty, faulty.later()))
                        and apart(kill, reorg, 2)
                        and all(apart(kill, o, 1) for o in (declaring, declaring.later()))
                        and all(a[1] <= b[0] for a, b in zip(steps, steps[1:]))):
                    plans.append(plan)
    assert plans, f"no windows for the events: deadlines {layout}, first {first}, ready at {ready}"
    return min(plans, key=lambda p: (p.end, p.kill > p.declaring, -p.faulty.open, p.reorg, p.kill))


# -- the timed steps --------------------------------------------------------------------------------

def kill_after_proofs(bus: str, repo: pathlib.Path, poster: Proc, window: Occurrence) -> dict:
    """Kill -9 the poster as soon as it stored proofs for `window`; what the chain and the
    store held then."""
    async def go(api: BusChainAPI):
        await wait_head(api, window.challenge - 1)
        with trio.fail_after(4 * WINDOW * EPOCH_S):
            while not stored_proofs(repo, window.open):
                await trio.sleep(0.01)
        poster.kill9()
        head = (await api.head()).epoch
        view = await api.partitions(MINER, window.index)
        return {"head": head, "posted": view.posted, "messages": post_messages(repo, window.open)}
    return on_chain(bus, go)


# -- the test ---------------------------------------------------------------------------------------

POSTER_METHODS = ("SubmitWindowedPoSt", "DeclareFaults", "DeclareFaultsRecovered")


def test_two_proving_periods_with_a_fault_a_recovery_a_poster_kill_and_a_reorg(tmp_path, free_bus_address):
    repo, bus = tmp_path / "devnet", free_bus_address()
    started = time.monotonic()
    net = Proc("devnet", "--repo", str(repo), "--bus", bus, "--sectors", str(SECTORS),
               "--epoch-seconds", str(EPOCH_S), "--refresh", "1", "--no-poster")
    procs = [net]
    try:
        line = net.wait_for(lambda line: line.startswith("devnet: no poster here; start it with: "))
        command = line.split("start it with: zqnode ", 1)[1].split()
        config = repo / "poster.toml"
        config.write_text(config.read_text() + POSTER_SETTINGS)

        def start_poster() -> Proc:
            proc = Proc(*command)
            procs.append(proc)
            proc.wait_for(lambda line: line.startswith("poster devnet-poster running on"))
            return proc

        poster = start_poster()
        line = net.wait_for(lambda line: line.startswith(f"devnet: all {SECTORS} sectors are Proving"),
                            timeout=240)
        layout, activation, offset, ready = on_chain(bus, read_layout)
        assert sorted(n for parts in layout.values() for p in parts for n in p) == list(range(1, SECTORS + 1))
        assert len(layout) >= 3 and all(len(p) <= 2 for parts in layout.values() for p in parts)
        plan = make_plan(layout, activation, offset, ready)
        print(f"ready at {ready}; deadlines {layout}; corrupt sector {plan.sector} of "
              f"{plan.faulty}; reorg {plan.reorg}; kill {plan.kill}; end {plan.end}"
              f"; steps {[step for _, _, step in plan.steps()]}")

        def corrupt_step() -> None:
            """Bit rot in the sector's replica (the finalized copy, where the storage index has it)."""
            wait_epoch(bus, plan.faulty.later(-1).close)
            replicas = [d for d, stage in replica_dirs(repo, plan.sector) if stage == "finalized"]
            assert len(replicas) == 1, replica_dirs(repo, plan.sector)
            corrupt(replicas[0] / "sealed")

        def reorg_step() -> None:
            """A reorg past the Challenge of a window the poster has proven."""
            reorg = done["reorg"] = reorg_after_proofs(bus, repo, plan.reorg)
            assert plan.reorg.challenge in reorg["reverted"] and reorg["after"] != reorg["before"]
            assert reorg["proven_before"] and not reorg["pushed_before"], reorg

        def kill_step() -> None:
            """Kill -9 the poster between building a window's proofs and their landing."""
            killed = done["kill"] = kill_after_proofs(bus, repo, done["poster"], plan.kill)
            assert killed["posted"] == [] and killed["head"] < plan.kill.close, killed
            assert all(status != "landed" for _, status in killed["messages"]), killed
            done["poster"] = start_poster()

        def rebuild_step() -> None:
            """The fault was declared before the window, which was proven without the sector;
            the replica is rebuilt, in time for the poster to declare it recovered (and prove
            it next period) and before the next step."""
            wait_epoch(bus, plan.faulty.close + 1)
            m = zqnode_json("chain", "miner", "--miner", str(MINER), "--bus", bus)
            assert (m["faulty"], m["recovering"], m["penalties"], m["detected_faults"]) == (1, 0, 1, 0), m
            s = zqnode_json("chain", "sector", str(plan.sector), "--miner", str(MINER), "--bus", bus)["sector"]
            assert (s["state"], s["deadline"]) == ("faulty", plan.faulty.index)
            faults = zqnode_json("proving", "faults", "--bus", bus)
            assert [(f["deadline"], f["sector"], f["state"]) for f in faults["faults"]] == [
                (plan.faulty.index, plan.sector, "faulty")]
            assert "does not match tree-r-last" in faults["faults"][0]["reason"], faults
            out = zqnode("sectors", "rebuild", str(plan.sector), "--bus", bus)
            assert out.returncode == 0, out.stderr
            by = min([plan.declaring.later().challenge - LEAD,
                      *(start for start, _, _ in plan.steps() if start > plan.faulty.close)])
            try:
                until(lambda: "Finalized" in sealing_events(repo, plan.sector)[sealing_events(repo, plan.sector).index("Rebuild"):],
                      timeout=max(5.0, (by - head_epoch(bus)) * EPOCH_S), what="the rebuild")
            except AssertionError as e:      # say where it stood: the sector's log and the devnet's
                mark = f"s-{MINER}-{plan.sector}"
                lines = [line for line in (repo / "devnet.log").read_text().splitlines()
                         if mark in line or "level=warn" in line or "level=error" in line]
                raise AssertionError(f"{e}; sector {plan.sector}: {sealing_events(repo, plan.sector)}; "
                                     "devnet.log:\n" + "\n".join(lines[-60:])) from None

        done = {"poster": poster}
        run = {"corrupt": corrupt_step, "reorg": reorg_step, "kill": kill_step, "rebuild": rebuild_step}
        for _, _, step in plan.steps():
            run[step]()
        reorg, killed = done["reorg"], done["kill"]
        wait_epoch(bus, plan.end + P.chain_finality)

        m = zqnode_json("chain", "miner", "--miner", str(MINER), "--bus", bus)
        assert (m["sectors"], m["active"], m["faulty"], m["recovering"], m["unproven"]) == (SECTORS, SECTORS, 0, 0, 0), m
        assert m["power"] == SECTORS * SECTOR_SIZE
        assert (m["penalties"], m["detected_faults"], m["skipped_faults"]) == (1, 0, 0), m
        info = zqnode_json("proving", "info", "--bus", bus)["miners"][0]
        assert (info["missed"], info["unconfirmed"]) == (0, 0), info
        kept = zqnode_json("proving", "deadline", str(plan.kill.index), "--bus", bus)["outcomes"]
        notes = next(o["notes"] for o in kept if o["open"] == plan.kill.open)
        assert any("resumed with stored proofs" in n for n in notes), notes
        log = sealing_events(repo, plan.sector)
        assert log[-1] == "FaultRecovered" and "FaultReported" in log[log.index("Rebuild"):], log
    finally:
        for proc in reversed(procs):
            proc.stop(signal.SIGINT)
    assert net.p.returncode == 0, net.stderr()

    # -- the chain, from its store: every window proven once, by proofs that verify -------------
    chain = devnet_chain(repo)
    entropy = address_entropy(MINER)
    posts, landed_at, failed = {}, {}, []
    declared = {"DeclareFaults": [], "DeclareFaultsRecovered": []}
    for ts in chain.tipsets:
        for msg, receipt in zip(ts.messages, ts.receipts):
            params = M.decode_params(msg.method, msg.params)
            # PoSt and declarations from the control address, sealing from the worker
            assert msg.sender == ("t0101" if msg.method in POSTER_METHODS else "t0100"), msg
            if msg.method == "SubmitWindowedPoSt":
                window = Occurrence(ts.epoch - (ts.epoch - offset) % WINDOW, params.deadline)
                if receipt.exit_code:
                    failed.append((window, receipt.error))
                else:
                    assert window not in posts, f"{window} proven twice"
                    posts[window], landed_at[window] = params, ts.epoch
            elif msg.method in declared:
                assert receipt.exit_code == 0, receipt
                decls = params.faults if msg.method == "DeclareFaults" else params.recoveries
                declared[msg.method].append((ts.epoch, [(d.deadline, d.partition, d.sectors) for d in decls]))

    windows = plan.windows()
    assert sorted(w for w in posts if w.close <= plan.end) == windows, (sorted(posts), windows)
    assert failed == [], failed
    for window, params in posts.items():
        randomness = post.canonical_randomness(chain.randomness(
            DomainTag.WindowedPoStChallengeSeed, window.challenge, entropy))
        parts = layout[window.index]
        assert sorted(p.index for p in params.partitions) == list(range(len(parts)))
        for pp, proof in zip(params.partitions, params.proofs):
            proven = [n for n in parts[pp.index]     # a sector activated later joined after it
                      if activation[n] < window.open and not (window == plan.faulty and n == plan.sector)]
            assert pp.skipped == []
            assert post.verify_window_post(
                seal_proof=5, randomness=randomness, proof=proof,
                sectors=[(n, chain.miner(MINER).sectors[n].comm_r) for n in proven]), window
    reorged = posts[plan.reorg]
    assert not post.verify_window_post(        # the proofs built before the reorg would not do
        seal_proof=5, randomness=post.canonical_randomness(reorg["before"]), proof=reorged.proofs[0],
        sectors=[(n, chain.miner(MINER).sectors[n].comm_r) for n in layout[plan.reorg.index][0]])

    part = next(i for i, p in enumerate(layout[plan.faulty.index]) if plan.sector in p)
    (fault_epoch, faults), = declared["DeclareFaults"]
    assert faults == [(plan.faulty.index, part, [plan.sector])] and fault_epoch < plan.faulty.fault_cutoff
    (recovery_epoch, recoveries), = declared["DeclareFaultsRecovered"]
    assert recoveries == faults
    assert plan.faulty.close <= recovery_epoch < plan.faulty.later().fault_cutoff
    margin = min(w.close - landed_at[w] for w in windows)
    print(f"{len(windows)} PoSts landed for {len(windows)} windows of {len(layout)} deadlines by epoch {plan.end} "
          f"({len(posts) - len(windows)} later); "
          f"penalties 1 (sector {plan.sector}); epochs to spare at Close: at least {margin}, "
          f"after the kill {plan.kill.close - landed_at[plan.kill]} (killed at {killed['head']}); "
          f"proofs before the reorg at Challenge+{reorg['proven_at']}; runtime {time.monotonic() - started:.0f}s")
