"""The devnet's Lotus API endpoint, over real HTTP and websocket connections: tokens and
permissions as Lotus, the read methods, ChainNotify with reverts, and hostile frames."""
import base64
import json
import pathlib
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
import trio
from trio_websocket import HandshakeError, open_websocket_url

from zqnode.nodes.chain.filecoin import dagcbor, methods as F
from zqnode.nodes.chain.filecoin.dagcbor import BitField
from zqnode.nodes.chain.lotus import rpc, types as T
from zqnode.nodes.chain.lotus.auth import Tokens
from zqnode.nodes.chain.lotus.devnet_api import DevnetLotusAPI, block_cid, key_of
from zqnode.nodes.chain.lotus.server import LotusServer
from zqnode.nodes.chain.testing import ChainDriver

SECRET = b"s" * 32


@pytest.fixture
async def served(nursery):
    driver = ChainDriver()
    driver.step(10)
    server = LotusServer(DevnetLotusAPI(driver.chain, 1.0), Tokens(SECRET))
    urls = await nursery.start(server.serve, "127.0.0.1", 0)
    yield driver, server, urls[0].replace("http://", "")


def _post(addr: str, body: bytes, token: str | None = None, path: str = "/rpc/v1"):
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def post(addr, name, params=(), token=None, raw=None):
    body = raw if raw is not None else rpc.request(1, name, list(params))
    status, data = await trio.to_thread.run_sync(_post, addr, body, token)
    return status, (json.loads(data) if status == 200 else data)


async def test_head_and_tipsets_over_http(served):
    driver, _, addr = served
    status, answer = await post(addr, "ChainHead")
    assert status == 200
    head = answer["result"]
    assert head["Height"] == driver.epoch and head["Cids"] == [{"/": block_cid(driver.chain.head.key).link}]
    assert key_of(block_cid(driver.chain.head.key)) == driver.chain.head.key
    _, answer = await post(addr, "ChainGetTipSetByHeight", [3, head["Cids"]])
    ts3 = answer["result"]
    assert ts3["Height"] == 3 and ts3["Cids"][0]["/"] == block_cid(driver.chain.tipset(3).key).link
    assert ts3["Blocks"][0]["Parents"] == [{"/": block_cid(driver.chain.tipset(2).key).link}]
    _, answer = await post(addr, "ChainGetTipSet", [ts3["Cids"]])
    assert answer["result"] == ts3
    _, answer = await post(addr, "ChainGetTipSetByHeight", [driver.epoch + 5, []])
    assert "greater than start point" in answer["error"]["message"]


async def test_miner_state(served):
    driver, _, addr = served
    _, dl = await post(addr, "StateMinerProvingDeadline", ["f01000", []])
    info = driver.chain.miner_view(1000).deadline
    assert dl["result"]["Index"] == info.index and dl["result"]["Challenge"] == info.challenge
    assert dl["result"]["WPoStPeriodDeadlines"] == driver.policy.period_deadlines
    _, mi = await post(addr, "StateMinerInfo", ["t01000", []])
    assert mi["result"]["WindowPoStProofType"] == 10 and mi["result"]["SectorSize"] == 2048
    _, dls = await post(addr, "StateMinerDeadlines", ["f01000", []])
    assert len(dls["result"]) == driver.policy.period_deadlines
    _, answer = await post(addr, "StateMinerInfo", ["f09999", []])
    assert "actor not found" in answer["error"]["message"]
    _, answer = await post(addr, "StateNetworkVersion", [[]])
    assert answer["result"] == 25


async def test_randomness_is_the_chains(served):
    driver, _, addr = served
    _, answer = await post(addr, "StateGetRandomnessFromTickets", [2, 5, "AAEC", []])
    assert base64.b64decode(answer["result"]) == driver.chain.randomness(2, 5, b"\x00\x01\x02", "tickets")


async def test_tokens_and_permissions_as_lotus(served):
    _, _, addr = served
    tokens = Tokens(SECRET)
    status, answer = await post(addr, "MpoolPushMessage", [{}, None])          # no token: read only
    assert status == 200
    assert answer["error"]["message"] == "missing permission to invoke 'MpoolPushMessage' (need 'sign')"
    status, _ = await post(addr, "ChainHead", token="Bearer " + Tokens(b"x" * 32).create("admin"))
    assert status == 401                                                       # another secret
    status, _ = await post(addr, "ChainHead", token=tokens.create("admin"))   # no Bearer prefix
    assert status == 401
    status, answer = await post(addr, "ChainHead", token="Bearer " + tokens.create("read"))
    assert status == 200 and "result" in answer
    assert tokens.verify(tokens.create("write")) == {"read", "write"}


@pytest.mark.parametrize("raw, code", [
    (b"not json", rpc.PARSE_ERROR), (b'{"jsonrpc": "1.0", "method": "x"}', rpc.INVALID_REQUEST),
    (b'[1, 2]', rpc.INVALID_REQUEST), (b'{"method": "Filecoin.ChainHead"}', rpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "Filecoin.Nope", "params": []}', rpc.METHOD_NOT_FOUND),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "Filecoin.ChainHead", "params": [1]}', rpc.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "Filecoin.StateMinerInfo", "params": ["f01000", [{"/": "x"}]]}',
     rpc.INVALID_PARAMS),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "Filecoin.ChainGetTipSetByHeight", "params": [-1, []]}',
     rpc.HANDLER_ERROR),
])
async def test_bad_requests_get_json_rpc_errors(served, raw, code):
    driver, _, addr = served
    before = driver.chain.head.key
    status, answer = await post(addr, "", raw=raw)
    assert status == 200 and answer["error"]["code"] == code
    assert driver.chain.head.key == before


async def test_oversized_request_is_refused(served):
    _, _, addr = served
    status, _ = await post(addr, "", raw=b"[" + b" " * rpc.MAX_FRAME + b"]")
    assert status == 413


async def test_chain_notify_over_websocket(served):
    driver, server, addr = served
    async with open_websocket_url(f"ws://{addr}/rpc/v1") as ws:
        await ws.send_message(rpc.request(7, "ChainNotify", []))
        opened = json.loads(await ws.get_message())
        channel = opened["result"]
        assert opened["id"] == 7
        first = json.loads(await ws.get_message())
        assert first["method"] == rpc.CH_VAL and first["params"][0] == channel
        assert [c["Type"] for c in first["params"][1]] == ["current"]
        assert first["params"][1][0]["Val"]["Height"] == driver.epoch
        change = driver.chain.produce(0.0)
        server.head_changed(change.reverted, change.applied)
        applied = json.loads(await ws.get_message())["params"][1]
        assert [(c["Type"], c["Val"]["Height"]) for c in applied] == [("apply", driver.epoch)]
        change = driver.chain.reorg(2, 0.0)
        server.head_changed(change.reverted, change.applied)
        batch = json.loads(await ws.get_message())["params"][1]
        assert [c["Type"] for c in batch] == ["revert", "revert", "apply", "apply"]
        assert [c["Val"]["Height"] for c in batch] == [11, 10, 10, 11]
        await ws.send_message(json.dumps({"jsonrpc": "2.0", "method": rpc.CANCEL, "params": [7]}))
        closed = json.loads(await ws.get_message())
        assert closed == {"jsonrpc": "2.0", "method": rpc.CH_CLOSE, "params": [channel]}
        await ws.send_message(rpc.request(8, "ChainHead", []))
        assert json.loads(await ws.get_message())["result"]["Height"] == driver.epoch


async def test_websocket_refuses_a_bad_token(served):
    _, _, addr = served
    with pytest.raises(HandshakeError):
        async with open_websocket_url(f"ws://{addr}/rpc/v1?token=garbage"):
            pass


async def test_a_chain_node_serves_its_head_changes(nursery, tmp_path):
    from zqnode.bus.config import BusConfig
    from zqnode.bus.memory import MemoryHub
    from zqnode.nodes.chain.node import ChainConfig, ChainNode
    from zqnode.nodes.identity import NodeIdentity
    bus = await nursery.start(MemoryHub(BusConfig(address="mem://lotus-chain")).run)
    me = NodeIdentity(name="chain-1", repo=str(tmp_path), bus=BusConfig(address=bus))
    node = ChainNode(me, ChainConfig(verifier="fake", epoch_seconds=0.05, lotus_listen="127.0.0.1:0"))
    await nursery.start(node.run)
    assert node.lotus_url.startswith("ws://127.0.0.1:") and node.lotus_url.endswith("/rpc/v1")
    token = (tmp_path / "lotus-token").read_text()
    assert (tmp_path / "lotus-jwt-secret").stat().st_mode & 0o777 == 0o600
    async with open_websocket_url(f"{node.lotus_url}?token={token}") as ws:
        await ws.send_message(rpc.request(1, "ChainNotify", []))
        channel = json.loads(await ws.get_message())["result"]
        heights = []
        while len(heights) < 4:
            frame = json.loads(await ws.get_message())
            assert frame["params"][0] == channel
            heights += [(c["Type"], c["Val"]["Height"]) for c in frame["params"][1]]
        assert heights[0][0] == "current" and [t for t, _ in heights[1:]] == ["apply"] * 3
        assert [h for _, h in heights] == list(range(heights[0][1], heights[0][1] + 4))
        await ws.send_message(rpc.request(2, "MpoolGetNonce", ["t0100"]))
        while "id" not in (answer := json.loads(await ws.get_message())):
            pass
        assert answer == {"jsonrpc": "2.0", "id": 2, "result": 0}


JS = pathlib.Path(__file__).parent / "lotus_js"


@pytest.fixture(scope="session")
def lotus_js(tmp_path_factory):
    """filecoin-shipyard's Lotus JS client, installed from npm (skipped where it cannot be)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not installed (Node.js gives them)")
    where = tmp_path_factory.mktemp("lotus-js")
    for name in ("package.json", "read_devnet.mjs"):
        shutil.copy(JS / name, where / name)
    try:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=where, check=True,
                       capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"npm could not install the Lotus JS client: {getattr(e, 'stderr', b'')!r}"[:300])
    return where


async def test_the_lotus_js_client_reads_the_devnet(nursery, tmp_path, lotus_js):
    from zqnode.bus.config import BusConfig
    from zqnode.bus.memory import MemoryHub
    from zqnode.nodes.chain.node import ChainConfig, ChainNode
    from zqnode.nodes.identity import NodeIdentity
    bus = await nursery.start(MemoryHub(BusConfig(address="mem://lotus-js")).run)
    me = NodeIdentity(name="chain-1", repo=str(tmp_path), bus=BusConfig(address=bus))
    node = ChainNode(me, ChainConfig(verifier="fake", epoch_seconds=0.1, lotus_listen="127.0.0.1:0"))
    await nursery.start(node.run)
    token = (tmp_path / "lotus-token").read_text()
    faults = F.DeclareFaultsParams(faults=[F.SectorDeclaration(deadline=0, partition=0, sectors=BitField.of([5]))])
    addr = node.lotus_url.removeprefix("ws://").removesuffix("/rpc/v1")
    _, pushed = await post(addr, "MpoolPushMessage", [_lotus_message(F.DECLARE_FAULTS, faults), None],
                           token="Bearer " + token)
    cid = pushed["result"]["CID"]["/"]
    done = await trio.run_process(["node", "read_devnet.mjs", node.lotus_url, token, "f01000", cid],
                                  cwd=lotus_js, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    chain = node.chain
    assert seen["head"]["Cids"] == [{"/": block_cid(chain.tipset(seen["head"]["Height"]).key).link}]
    at = seen["deadline"]["CurrentEpoch"]
    assert seen["deadline"]["Index"] == chain.deadline(1000, at).index
    assert len(seen["deadlines"]) == chain.policy.period_deadlines
    assert seen["info"]["Worker"] == "t0100" and seen["info"]["SectorSize"] == 2048
    receipt = chain.lookup(key_of(T.Cid(cid))).receipt
    assert seen["landed"]["Message"] == {"/": cid} and seen["landed"]["Receipt"]["ExitCode"] == receipt.exit_code != 0
    assert seen["message"]["Method"] == F.DECLARE_FAULTS and seen["message"]["From"] == "t0100"
    kinds = [t for t, _ in seen["changes"]]
    assert kinds[0] == "current" and set(kinds[1:]) == {"apply"}
    heights = [h for _, h in seen["changes"]]
    assert heights == list(range(heights[0], heights[0] + len(heights)))
    assert seen["refused"] == "missing permission to invoke 'MpoolPushMessage' (need 'sign')"
    assert seen["anonymousHead"]["Height"] >= seen["head"]["Height"]


@pytest.fixture
async def writable(nursery):
    """A devnet chain with sector 1 sealed, its API taking messages, and a sign token."""
    driver = ChainDriver()
    loc = driver.seal(1000, 1)

    class Writes:
        async def push_message(self, msg, uuid):
            return driver.chain.push(msg, uuid)
    server = LotusServer(DevnetLotusAPI(driver.chain, 1.0, Writes()), Tokens(SECRET))
    urls = await nursery.start(server.serve, "127.0.0.1", 0)
    yield driver, server, urls[0].replace("http://", ""), loc, "Bearer " + Tokens(SECRET).create("sign")


def _lotus_message(method, params, sender="f0100"):
    return {"Version": 0, "To": "f01000", "From": sender, "Nonce": 0, "Value": "0", "GasLimit": 0,
            "GasFeeCap": "0", "GasPremium": "0", "Method": method,
            "Params": base64.b64encode(dagcbor.encode(params)).decode()}


async def test_messages_through_the_lotus_api(writable):
    driver, server, addr, loc, token = writable
    terminate = F.TerminateSectorsParams(terminations=[F.SectorDeclaration(
        deadline=loc.deadline, partition=loc.partition, sectors=BitField.of([1]))])
    msg = _lotus_message(F.TERMINATE_SECTORS, terminate)
    _, est = await post(addr, "GasEstimateMessageGas", [msg, None, []])
    assert est["result"]["GasLimit"] > 0 and est["result"]["Method"] == F.TERMINATE_SECTORS
    spec = {"MaxFee": "0", "MsgUuid": "11111111-2222-3333-4444-555555555555", "MaximizeFeeCap": False}
    _, pushed = await post(addr, "MpoolPushMessage", [msg, spec], token=token)
    signed = pushed["result"]
    cid = signed["CID"]
    _, again = await post(addr, "MpoolPushMessage", [msg, spec], token=token)     # same uuid: same message
    assert again["result"]["CID"] == cid and len(driver.chain.pool) == 1
    _, got = await post(addr, "ChainGetMessage", [cid])
    assert got["result"]["Params"] == msg["Params"] and got["result"]["From"] == "t0100"
    _, found = await post(addr, "StateSearchMsg", [[], cid, -1, True])
    assert found["result"] is None                                            # pooled, not landed
    async with trio.open_nursery() as waiting:
        answer = {}

        async def wait():
            answer.update((await post(addr, "StateWaitMsg", [cid, 2, -1, True]))[1])
        waiting.start_soon(wait)
        while not answer:
            await trio.sleep(0.05)
            change = driver.chain.produce(0.0)
            server.head_changed(change.reverted, change.applied)
    lookup = answer["result"]
    assert lookup["Receipt"]["ExitCode"] == 0
    assert base64.b64decode(lookup["Receipt"]["Return"]).hex() == "81f5"        # TerminateSectorsReturn{true}
    assert driver.epoch - lookup["Height"] >= 2
    assert driver.chain.sector(1000, 1) is None                               # terminated
    _, found = await post(addr, "StateSearchMsg", [[], cid, -1, True])
    assert found["result"] == lookup


async def test_refusals_come_back_in_the_actors_words(writable):
    driver, _, addr, loc, token = writable
    faults = F.DeclareFaultsParams(faults=[F.SectorDeclaration(deadline=loc.deadline, partition=loc.partition,
                                                               sectors=BitField.of([77]))])
    _, est = await post(addr, "GasEstimateMessageGas", [_lotus_message(F.DECLARE_FAULTS, faults), None, []])
    assert est["error"]["message"].startswith("estimating gas used: message execution failed: exit 1")
    assert "77" in est["error"]["message"]
    cases = [
        (_lotus_message(6, faults), "no method 6"),
        ({**_lotus_message(F.DECLARE_FAULTS, faults), "Value": "1"}, "multiple of 10^9"),
        ({**_lotus_message(F.DECLARE_FAULTS, faults), "Params": "gYGDAABBAA=="}, "bad parameters"),
        ({**_lotus_message(F.DECLARE_FAULTS, faults), "To": "f1abc"}, "To f1abc"),
    ]
    for msg, why in cases:
        _, answer = await post(addr, "MpoolPushMessage", [msg, None], token=token)
        assert why in answer["error"]["message"], answer
    big_fee = {"MaxFee": "1", "MsgUuid": "00000000-0000-0000-0000-000000000000", "MaximizeFeeCap": False}
    _, answer = await post(addr, "MpoolPushMessage", [_lotus_message(F.DECLARE_FAULTS, faults), big_fee],
                           token=token)
    assert "over its MaxFee 1" in answer["error"]["message"]
    assert not driver.chain.pool


async def test_a_websocket_survives_bad_frames_and_bounds_its_calls(served):
    driver, _, addr = served
    async with open_websocket_url(f"ws://{addr}/rpc/v1") as ws:
        for bad in ('{"jsonrpc": "2.0", "method": "xrpc.cancel", "params": [[1]]}',
                    '{"jsonrpc": "2.0", "method": "xrpc.cancel", "params": [{}]}',
                    '{"jsonrpc": "2.0", "method": "xrpc.cancel", "params": "x"}'):
            await ws.send_message(bad)
        # a second call under the id of one in flight is refused, not run
        await ws.send_message(rpc.request(9, "StateWaitMsg", [{"/": block_cid("ab" * 32).link}, 1, -1, True]))
        await ws.send_message(rpc.request(5, "ChainNotify", []))
        await ws.send_message(rpc.request(5, "ChainHead", []))
        answers = [json.loads(await ws.get_message()) for _ in range(4)]
        by_id = {}
        for a in answers:
            by_id.setdefault(a.get("id"), []).append(a)
        assert "not found" in by_id[9][0]["error"]["message"]          # an unknown message
        assert any(a.get("error", {}).get("message") == "a call with this id is in flight" for a in by_id[5])
        await ws.send_message(rpc.request(10, "ChainHead", []))
        while (a := json.loads(await ws.get_message())).get("id") != 10:
            pass
        assert a["result"]["Height"] == driver.epoch


async def test_state_wait_msg_is_bounded(served):
    _, _, addr = served
    _, answer = await post(addr, "StateWaitMsg", [{"/": block_cid("ab" * 32).link}, 10 ** 9, -1, True])
    assert "confidence 1000000000 is over 2000" in answer["error"]["message"]


async def test_a_push_over_the_actors_limits_is_a_json_rpc_error(writable):
    driver, _, addr, _, token = writable
    many = F.DeclareFaultsParams(faults=[F.SectorDeclaration(deadline=0, partition=0, sectors=BitField.of([1]))] * 3001)
    _, answer = await post(addr, "MpoolPushMessage", [_lotus_message(F.DECLARE_FAULTS, many), None], token=token)
    assert "over the actor's 3000" in answer["error"]["message"]
    spec = {"MaxFee": "0", "MsgUuid": "not-a-uuid", "MaximizeFeeCap": False}
    _, answer = await post(addr, "MpoolPushMessage", [_lotus_message(F.DECLARE_FAULTS, many), spec], token=token)
    assert answer["error"]["code"] == rpc.INVALID_PARAMS
    assert not driver.chain.pool


async def test_rpc_v0_is_answered_the_same_and_other_paths_are_not(served):
    driver, _, addr = served
    body = rpc.request(1, "ChainHead", [])
    status, data = await trio.to_thread.run_sync(_post, addr, body, None, "/rpc/v0")
    assert status == 200 and json.loads(data)["result"]["Height"] >= 0
    status, _ = await trio.to_thread.run_sync(_post, addr, body, None, "/other")
    assert status == 404


async def test_auth_verify_names_a_tokens_permissions(served):
    _, _, addr = served
    tokens = Tokens(SECRET)
    _, answer = await post(addr, "AuthVerify", [tokens.create("sign")])
    assert answer["result"] == ["read", "write", "sign"]
    _, answer = await post(addr, "AuthVerify", [Tokens(b"x" * 32).create("admin")])
    assert answer["error"]["code"] == rpc.HANDLER_ERROR and "JWT verification failed" in answer["error"]["message"]


async def test_devnet_methods_need_admin_and_a_chain_that_takes_changes(served):
    driver, _, addr = served
    _, answer = await post(addr, "DevnetReorg", [1], token="Bearer " + Tokens(SECRET).create("sign"))
    assert answer["error"]["message"] == "missing permission to invoke 'DevnetReorg' (need 'admin')"
    _, answer = await post(addr, "DevnetReorg", [1], token="Bearer " + Tokens(SECRET).create("admin"))
    assert "takes no changes" in answer["error"]["message"] and driver.chain.fork == 0
    status, answer = await post(addr, "x", raw=b'{"jsonrpc":"2.0","id":1,"method":"Filecoin.DevnetReorg","params":[1]}')
    assert answer["error"]["code"] == rpc.METHOD_NOT_FOUND       # zqnode's own: not under Filecoin.
