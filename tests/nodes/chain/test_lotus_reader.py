"""A miner read through the Lotus API (nodes.chain.lotus.reader) shows what the chain
holds: here the devnet's chain, with sealed sectors and a declared fault, served by its
Lotus API; and `zqnode proving ... --lotus` refuses clearly what it cannot do."""
import msgspec
import pytest
import trio
from click.testing import CliRunner

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import NotFound
from zqnode.nodes.chain.lotus.auth import Tokens
from zqnode.nodes.chain.lotus.client import LotusClient
from zqnode.nodes.chain.lotus.devnet_api import DevnetLotusAPI
from zqnode.nodes.chain.lotus.reader import LotusReader
from zqnode.nodes.chain.lotus.server import LotusServer
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.cli import main as cli
from zqnode.nodes.poster import views

MINER = 1000


@pytest.fixture
async def reader(nursery):
    """(the devnet chain, a reader of it through its Lotus API): sectors 1-3 sealed, sector
    2 declared faulty."""
    driver = ChainDriver()
    where = {n: driver.seal(MINER, n) for n in (1, 2, 3)}
    fault = M.DeclareFaultsParams(faults=[M.SectorDeclaration(
        deadline=where[2].deadline, partition=where[2].partition, sectors=[2])])
    driver.receipt_after(driver.send(MINER, fault))
    server = LotusServer(DevnetLotusAPI(driver.chain, 1.0), Tokens(b"k" * 32))
    urls = await nursery.start(server.serve, "127.0.0.1", 0)
    url = urls[0].replace("http://", "ws://") + "/rpc/v1"
    lotus = await nursery.start(_connected, url)
    return driver.chain, LotusReader(lotus.call, "devnet")


async def _connected(url, task_status=trio.TASK_STATUS_IGNORED):
    async with LotusClient.connect(url) as lotus:
        task_status.started(lotus)
        await trio.sleep_forever()


async def test_the_miner_its_deadlines_and_faults_read_as_the_chain_holds_them(reader):
    chain, lotus = reader
    ours, theirs = chain.miner_view(MINER), await lotus.miner(MINER)
    for field in ("worker", "sector_size", "partition_sectors", "period_offset", "power", "sectors",
                  "active", "faulty", "balance", "available", "precommit_deposits", "initial_pledge",
                  "vesting", "fee_debt"):
        assert getattr(theirs, field) == getattr(ours, field), field
    assert ours.counted and not theirs.counted          # penalties and the like: not from Lotus

    policy = lotus.policy
    rows = (await views.deadlines(lotus, policy, MINER)).deadlines
    assert len(rows) == policy.period_deadlines
    for row in rows:
        view = chain.deadline_view(MINER, row.index)
        assert (row.partitions, row.sectors, row.faults) == (
            len(view.partitions), sum(len(p.sectors) for p in view.partitions),
            sum(len(p.faults) for p in view.partitions)), row.index
        assert (row.runner, row.last) == ("", "")
    assert sum(r.sectors for r in rows) == 3
    faults = await views.faults(lotus, policy, MINER)
    s2 = chain.sector(MINER, 2)
    assert [(f.deadline, f.partition, f.sector, f.state) for f in faults] == [
        (s2.deadline, s2.partition, 2, "faulty")]
    assert (await lotus.sector(MINER, 2)).state == "faulty"
    with pytest.raises(NotFound, match="out of range"):
        await lotus.partitions(MINER, policy.period_deadlines)


def test_proving_with_lotus_needs_a_miner_and_a_node():
    run = CliRunner().invoke
    out = run(cli, ["proving", "deadlines", "--lotus", "ws://127.0.0.1:1/rpc/v1"])
    assert out.exit_code == 2 and "--miner" in out.output
    out = run(cli, ["proving", "faults", "--lotus", "ws://127.0.0.1:1/rpc/v1", "--miner", "f01000"])
    assert out.exit_code == 1 and "ws://127.0.0.1:1/rpc/v1:" in out.output and "Traceback" not in out.output
    out = run(cli, ["chain", "miner", "--lotus", "not a url", "--miner", "1000"])
    assert out.exit_code == 1 and "not a url" in out.output, out.output


async def test_a_hostile_nodes_answers_are_refused_not_followed():
    """Bitfields that name too many sectors together, sizes no network has, runs past 2^64:
    NodeAnswerError (the CLI's one-line error, the watcher's refusal), nothing built."""
    from zqnode.nodes.chain.lotus import types as T
    from zqnode.nodes.chain.lotus.reader import MAX_LISTED, NodeAnswerError
    huge = [0, MAX_LISTED // 2 + 1]
    answers = {
        "StateMinerDeadlines": [T.Deadline(PostSubmissions=[], DisputableProofCount=0)],
        "StateMinerPartitions": [T.Partition(AllSectors=[0, 1], FaultySectors=huge, RecoveringSectors=huge,
                                             LiveSectors=[0, 1], ActiveSectors=[0, 1])],
        "StateMinerRecoveries": [0, 1 << 70],
    }

    async def call(name, *params):
        return answers[name]
    lotus = LotusReader(call, "mainnet")
    with pytest.raises(NodeAnswerError, match="over the 1000000 this reads"):
        await lotus.partitions(MINER, 0)
    answers["StateMinerPartitions"] = [T.Partition(AllSectors=[0, 3], FaultySectors=[1 << 70, 1],
                                                   RecoveringSectors=[], LiveSectors=[0, 3], ActiveSectors=[0, 2])]
    view = await lotus.partitions(MINER, 0)                 # a far gap is only a big number
    assert view.partitions[0].faults == [1 << 70]

    real = ChainDriver()
    served = DevnetLotusAPI(real.chain, 1.0)

    async def odd(name, *params):                           # the devnet's answers, but `changed`
        answer = await getattr(served, name)(*params)
        return changed.get(name, lambda a: a)(answer)
    for changed, why in [({"StateMinerRecoveries": lambda _: [0, 1 << 70]}, "sectors are recovering"),
                         ({"StateMinerInfo": lambda info: msgspec.structs.replace(info, SectorSize=3000)},
                          "no size Filecoin has")]:
        with pytest.raises(NodeAnswerError, match=why):
            await LotusReader(odd, "devnet").miner(MINER)
