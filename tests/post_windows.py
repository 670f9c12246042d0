"""What the WindowPoSt end-to-end tests share (tests/nodes/test_post_e2e.py, through the
chain role's bus API; tests/nodes/test_lotus_processes.py, through the Lotus API): the
devnet's proving windows, the poster's store read while it runs, waiting for epochs, and a
reorg past a Challenge the poster has proven."""
import json
import pathlib
import sqlite3
import uuid

import msgspec
import trio

from zqnode.bus.config import BusConfig
from zqnode.bus.peer import Peer
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.policy import DEVNET
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from tests.procs import zqnode

MINER = 1000
EPOCH_S = 0.25
P = DEVNET
WINDOW, LOOKBACK, PERIOD = P.challenge_window, P.challenge_lookback, P.proving_period
LEAD = 8            # epochs the test needs ahead of a Challenge to act on it (2 s)
# The poster starts a deadline at its Challenge tipset (no confirmations): a reorg then
# replaces a runner that has proven already, and a restarted poster has the most time. It
# pushes one tipset after Open, so the reorg may wait for its proofs until Open (on a
# loaded machine they take more than the two tipsets from Challenge to Open - 1).
SUBMIT_AFTER_OPEN = 1
POSTER_SETTINGS = f"challenge_confirmations = 0\nsubmit_after_open = {SUBMIT_AFTER_OPEN}\n"


def zqnode_json(*args: str):
    out = zqnode(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def on_chain(bus: str, fn):
    """Run `fn(api)` with a bus client of the chain (the admin client key)."""
    async def go():
        peer = Peer(name=f"e2e-{uuid.uuid4().hex[:8]}", role="cli", register=False,
                    cfg=BusConfig(address=bus))
        async with trio.open_nursery() as nursery:
            await nursery.start(peer.run)
            result = await fn(BusChainAPI(peer, timeout=10))
            nursery.cancel_scope.cancel()
        return result
    return trio.run(go)


async def wait_head(api: BusChainAPI, epoch: int) -> int:
    async with api.notify() as updates:
        async for u in updates:
            if u.head.epoch >= epoch:
                return u.head.epoch
    raise AssertionError("unreachable")


class Occurrence(msgspec.Struct, frozen=True, order=True):
    """One proving window of one deadline."""
    open: int
    index: int

    @property
    def challenge(self) -> int:
        return self.open - LOOKBACK

    @property
    def close(self) -> int:
        return self.open + WINDOW

    @property
    def fault_cutoff(self) -> int:
        return self.open - P.fault_cutoff

    def later(self, periods: int = 1) -> "Occurrence":
        return Occurrence(self.open + periods * PERIOD, self.index)


def first_after(offset: int, index: int, epoch: int) -> Occurrence:
    """The first window of deadline `index` opening after `epoch`."""
    base = offset % PERIOD + index * WINDOW
    k = (epoch - base) // PERIOD + 1
    return Occurrence(base + k * PERIOD, index)



# -- the poster's store, read while it runs ------------------------------------------------------

def poster_db(repo: pathlib.Path, sql: str, args=()) -> list[tuple]:
    path = repo / "poster" / "poster.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def stored_proofs(repo: pathlib.Path, open_: int) -> list[bytes]:
    """The randomness of each batch of proofs stored for the window opening at `open_`."""
    return [r[0] for r in poster_db(repo, "SELECT randomness FROM proofs WHERE miner = ? AND open = ?",
                                    (MINER, open_))]


def post_messages(repo: pathlib.Path, open_: int) -> list[tuple[str, str]]:
    return poster_db(repo, "SELECT msg_id, status FROM messages WHERE miner = ? AND open = ? AND "
                           "kind = 'post'", (MINER, open_))



def reorg_after_proofs(bus: str, repo: pathlib.Path, window: Occurrence) -> dict:
    """Once the poster stored proofs for `window` (or the head is a tipset before the poster
    would push them), revert the tipsets from its Challenge on, in one client that stays
    connected."""
    async def go(api: BusChainAPI):
        entropy = address_entropy(MINER)
        await wait_head(api, window.challenge)
        before = await api.randomness(DomainTag.WindowedPoStChallengeSeed, window.challenge, entropy)
        while True:
            head = (await api.head()).epoch
            proven_before = before in stored_proofs(repo, window.open)
            if proven_before or head >= window.open + SUBMIT_AFTER_OPEN - 1:
                break
            await trio.sleep(0.02)
        proven_at = head - window.challenge          # epochs the poster took (a measure)
        assert head - window.challenge + 1 <= P.chain_finality, f"too late for the reorg: head {head}"
        depth = min(head - window.challenge + 2, P.chain_finality)   # one more: the head may move
        r = await api.reorg(depth)
        after = await api.randomness(DomainTag.WindowedPoStChallengeSeed, window.challenge, entropy)
        return {"reverted": [t.epoch for t in r.reverted], "before": before, "after": after,
                "proven_before": proven_before, "proven_at": proven_at,
                "pushed_before": post_messages(repo, window.open)}
    return on_chain(bus, go)



def head_epoch(bus: str) -> int:
    return zqnode_json("chain", "head", "--bus", bus)["head"]["epoch"]


def wait_epoch(bus: str, epoch: int) -> None:
    on_chain(bus, lambda api: wait_head(api, epoch))


async def read_layout(api: BusChainAPI):
    layout, activation = {}, {}
    for i in range(P.period_deadlines):
        view = await api.partitions(MINER, i)
        if view.partitions:
            layout[i] = [list(p.sectors) for p in view.partitions]
            for p in view.partitions:
                for n in p.sectors:
                    activation[n] = (await api.sector(MINER, n)).activation
    m = await api.miner(MINER)
    return layout, activation, m.period_offset, (await api.head()).epoch
