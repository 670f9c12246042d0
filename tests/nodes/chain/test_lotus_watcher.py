"""The chain role following a Lotus node: here the devnet chain's own Lotus API, on a bus
of its own, and the watcher on another, answering the bus's chain API from it."""
import itertools

import pytest
import trio

from zqnode.bus.codec import RemoteError
from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer
from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.api import BusChainAPI
from zqnode.nodes.chain.lotus.follow import tipset_key
from zqnode.nodes.chain.lotus.devnet_api import block_cid
from zqnode.nodes.chain.lotus.watcher import LotusWatcher
from zqnode.nodes.chain.node import ChainConfig, ChainNode
from zqnode.nodes.identity import NodeIdentity

_names = itertools.count()


async def _bus(nursery, what):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://{what}-{next(_names)}")).run)


async def _peer(nursery, bus, role):
    peer = Peer(name=f"{role}-{next(_names)}", role=role, cfg=BusConfig(address=bus))
    await nursery.start(peer.run)
    return peer


def _key(ts_key_hex: str) -> str:
    return tipset_key([block_cid(ts_key_hex)])


@pytest.fixture
async def pair(nursery, tmp_path):
    """(devnet ChainNode, its bus's admin API, watcher, the watcher bus's manager API)."""
    devnet_bus, watcher_bus = await _bus(nursery, "devnet"), await _bus(nursery, "watched")
    devnet = ChainNode(NodeIdentity(name="devnet-chain", repo=str(tmp_path / "devnet"),
                                    bus=BusConfig(address=devnet_bus)),
                       ChainConfig(verifier="fake", epoch_seconds=0.05, lotus_listen="127.0.0.1:0"))
    await nursery.start(devnet.run)
    watcher = LotusWatcher(NodeIdentity(name="chain-watcher", repo=str(tmp_path / "watcher"),
                                        bus=BusConfig(address=watcher_bus)),
                           ChainConfig(lotus=devnet.lotus_url, miners=[1000],
                                       lotus_token_file=str(tmp_path / "devnet" / "lotus-token")))
    await nursery.start(watcher.run)
    admin = BusChainAPI(await _peer(nursery, devnet_bus, "admin"))
    api = BusChainAPI(await _peer(nursery, watcher_bus, "manager"), timeout=10)
    with trio.fail_after(10):
        while watcher.follower.head is None or watcher.follower.head.epoch < 5:
            await trio.sleep(0.02)
    return devnet, admin, watcher, api


async def test_it_follows_the_head_through_a_reorg_and_a_dropped_connection(pair, nursery):
    devnet, admin, watcher, api = pair
    seen: list = []                    # the chain as the watcher's events build it
    done = set()
    async with api.notify() as updates:
        async for u in updates:
            if u.current:
                seen = [u.head]
            else:
                for t in u.reverted:
                    assert seen[-1].key == t.key, "a revert that is not the head"
                    seen.pop()
                for t in u.applied:
                    assert seen[-1].key == t.parent, "an apply that skips or repeats"
                    seen.append(t)
            epoch = seen[-1].epoch
            if epoch >= 10 + seen[0].epoch and "reorg" not in done:
                done.add("reorg")
                await admin.reorg(3)
            if epoch >= 20 + seen[0].epoch and "cut" not in done:
                done.add("cut")
                nursery.start_soon(watcher.lotus._ws.aclose)      # the test cuts the connection
            if epoch >= 30 + seen[0].epoch:
                break
    chain = devnet.chain
    for t in seen:
        if t.epoch <= chain.head.epoch:
            assert t.key == _key(chain.tipset(t.epoch).key), f"epoch {t.epoch} is not the devnet's"
    assert chain.fork >= 1


async def test_head_randomness_and_miner_answer_from_the_node(pair):
    devnet, _, watcher, api = pair
    info = await api.info()
    assert info.genesis == _key(devnet.chain.tipsets[0].key) and info.miners == [1000]
    assert info.network == "devnet" and info.reorg_allowed          # a zqnode devnet's
    for tag in (2, 5):                 # a ticket draw and a beacon draw
        rand = await api.randomness(tag, 3, b"\x01")
        assert rand == devnet.chain.randomness(tag, 3, b"\x01")
    view = await api.miner(1000)
    ours = devnet.chain.miner_view(1000)
    assert (view.worker, view.sector_size, view.partition_sectors, view.seal_proof) == \
        ("t0100", ours.sector_size, ours.partition_sectors, ours.seal_proof)
    assert view.period_offset == ours.period_offset
    dl = await api.deadline(1000)
    assert dl.index == devnet.chain.deadline(1000, dl.current_epoch).index
    parts = await api.partitions(1000, 0)
    assert parts.index == 0 and parts.partitions == []
    with pytest.raises(RemoteError, match="permission"):          # an admin's, and not here
        await api.reorg(1)


async def test_reorg_and_fund_go_to_a_devnet_and_nowhere_else(pair, nursery):
    devnet, _, watcher, _ = pair
    admin = BusChainAPI(await _peer(nursery, watcher.me.bus.address, "admin"), timeout=10)
    head = devnet.chain.head.epoch
    r = await admin.reorg(2)
    assert [t.epoch for t in r.reverted] == [head, head - 1] and devnet.chain.fork == 1
    assert [t.key for t in r.applied] == [_key(devnet.chain.tipset(t.epoch).key) for t in r.applied]
    before = devnet.chain.state.balances.get("t0100", 0)
    funded = await admin.fund("f0100", 5)                 # Lotus's spelling of the devnet's t0100
    assert funded.balance == before + 5 == devnet.chain.state.balances["t0100"]
    with pytest.raises(RemoteError, match="depth must be in"):       # the devnet's own words
        await admin.reorg(99)
    watcher.devnet = False                                # a Lotus node: nothing is asked of it
    for ask in (admin.reorg(1), admin.fund("f0100", 5)):
        with pytest.raises(RemoteError, match="follows a Lotus node"):
            await ask
    assert devnet.chain.fork == 1 and devnet.chain.state.balances["t0100"] == before + 5


async def test_a_message_sent_through_the_watcher_lands(pair):
    devnet, _, watcher, api = pair
    params = M.DeclareFaultsParams(faults=[M.SectorDeclaration(deadline=0, partition=0, sectors=[7])])
    msg = M.Message.call("t0100", 1000, params)
    receipt = await api.simulate(msg)
    assert receipt.exit_code != 0 and "7" in receipt.error             # the actor's refusal, its words
    pooled = await api.push(msg, uuid="ab" * 16)
    again = await api.push(msg, uuid="ab" * 16)                       # the same send: the same message
    assert again.id == pooled.id and pooled.nonce == 0
    landed = await api.wait(pooled.id, confidence=1)
    assert landed.status == "landed" and landed.receipt.exit_code == receipt.exit_code
    assert landed.tipset == _key(devnet.chain.tipset(landed.epoch).key)
    unknown = await api.lookup("00" * 32)
    assert unknown.status == "unknown"


async def test_vanilla_proofs_are_not_sent_to_a_real_network(pair):
    _, _, watcher, api = pair
    watcher.devnet = False
    post = M.SubmitWindowedPoStParams(deadline=0, partitions=[], proofs=[], chain_commit_epoch=1,
                                      chain_commit_rand=b"\0" * 32)
    with pytest.raises(RemoteError, match="needs SNARK proofs"):
        await api.push(M.Message.call("t0100", 1000, post))
    snap = M.ProveReplicaUpdates3Params(sector_updates=[], sector_proofs=[], update_proofs_type=0)
    with pytest.raises(RemoteError, match="ProveReplicaUpdates3 needs SNARK proofs"):
        await api.push(M.Message.call("t0100", 1000, snap))


async def test_the_watcher_sends_only_for_its_miners_from_their_addresses(pair):
    _, _, _, api = pair
    decl = M.DeclareFaultsParams(faults=[M.SectorDeclaration(deadline=0, partition=0, sectors=[7])])
    for msg, why in [(M.Message.call("t0100", 1001, decl), "not one of \\[chain\\] miners"),
                     (M.Message.call("t0999", 1000, decl), "neither the worker nor a control address"),
                     (M.Message.call("t0100", 1000, decl, nonce=3), "picks the nonce")]:
        with pytest.raises(RemoteError, match=why):
            await api.push(msg)


async def test_a_node_that_does_not_answer_is_a_dropped_connection(nursery, monkeypatch):
    from trio_websocket import serve_websocket
    from zqnode.nodes.chain.lotus import client as C

    async def silent(request):
        ws = await request.accept()
        while True:
            await ws.get_message()              # reads, never answers
    server = await nursery.start(serve_websocket, silent, "127.0.0.1", 0, None)
    monkeypatch.setattr(C, "CALL_TIMEOUT_S", 0.3)
    with pytest.raises(BaseException) as raised:
        async with C.LotusClient.connect(f"ws://127.0.0.1:{server.port}/rpc/v1") as lotus:
            await lotus.call("ChainHead")
    leaf = raised.value
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, C.LotusDisconnected) and "no answer" in str(leaf)


async def test_a_connection_closed_during_the_handshake_is_a_dropped_connection(nursery, monkeypatch):
    """(a proxy with nothing behind it: trio-websocket alone would wait 60 s)"""
    from zqnode.nodes.chain.lotus import client as C

    async def hang_up(stream):
        await stream.aclose()
    listeners = await nursery.start(trio.serve_tcp, hang_up, 0)
    monkeypatch.setattr(C, "CONNECT_TIMEOUT_S", 0.3)
    with pytest.raises(C.LotusDisconnected, match="no websocket to the node"):
        async with C.LotusClient.connect(f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/rpc/v1"):
            pass
