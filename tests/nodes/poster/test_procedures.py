"""The poster's procedures (nodes.poster.procedures), driven by hand: exact Asks out, the
answers (or an error thrown in) back, and the event for the core at the end.

Devnet policy, period offset 0: deadline 4 opens at 32; its runner starts at head 36."""
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.miner import DeadlineView, PartitionView
from zqnode.nodes.chain.policy import DEVNET
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.poster import procedures
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.core import PosterCore
from zqnode.nodes.poster.events import (
    BatchProven, CheckDone, CheckFailed, Declaration, DeclareFaults, DeclareRecoveries,
    DeadlineLoaded, HeadChanged, LoadDeadline, LoadFailed, MessageDropped, MessageLanded,
    MessagePushed, MinerInfo, MinerTracked, PartitionProof, PartitionState, PartitionWork,
    PoStPart, ProveBatch, ProveFailed, PushFailed, PushSubmission, SkippedSector, StartCheck,
    StoredBatch, Tip, WaitMessage)
from zqnode.nodes.poster.store import StoredBatchRow

D4 = "f01000/d4@32#1"
R1 = bytes(range(32))


@pytest.fixture
def core() -> PosterCore:
    c = PosterCore(DEVNET, PosterConfig())
    c.handle(MinerTracked(miner=MinerInfo(actor_id=1000, sender="t0100", seal_proof=5,
                                          period_offset=0, partition_sectors=2)))
    return c


def drive(proc, *answers):
    """Send the answers in turn (an exception is thrown in); -> (the asks, the event).
    The procedure must end on the last answer."""
    asks = [next(proc)]
    for i, answer in enumerate(answers):
        try:
            ask = proc.throw(answer) if isinstance(answer, Exception) else proc.send(answer)
        except StopIteration as done:
            assert i == len(answers) - 1, f"ended after {i + 1} of {len(answers)} answers"
            return asks, done.value
        asks.append(ask)
    raise AssertionError(f"still asking: {asks[-1]!r}")


def view(index, *parts, posted=()):
    return DeadlineView(index=index, posted=list(posted), partitions=[
        PartitionView(index=i, sectors=list(s), active=list(s), unproven=[], faults=list(f),
                      recoveries=list(r)) for i, (s, f, r) in enumerate(parts)])


def landed(msg_id, epoch, head, exit_code=0, error=""):
    return M.MessageLookup(msg_id=msg_id, status="landed", epoch=epoch, head=head,
                           receipt=M.Receipt(exit_code=exit_code, error=error))


def proof(index, proven):
    return PartitionProof(index=index, proof=b"p" + bytes([index]), proven=list(proven))


# ---- LoadDeadline -----------------------------------------------------------------------------
LOAD = LoadDeadline(cause=D4, miner=1000, index=4, open=32, challenge=29, ahead_index=6, delay_s=2.5)


def test_load_reads_randomness_both_deadlines_and_the_stored_batches_with_their_messages(core):
    rows = [StoredBatchRow(batch=0, partitions=[proof(0, [1, 2])], skipped=[], msg_id="m-pending"),
            StoredBatchRow(batch=1, partitions=[proof(1, [3])], skipped=[SkippedSector(4, "gone")],
                           msg_id="m-failed"),
            StoredBatchRow(batch=2, partitions=[proof(2, [5])], skipped=[], msg_id="")]
    asks, event = drive(
        procedures.procedure(core, LOAD), None, R1,
        view(4, ([1, 2], [], []), ([3, 4], [4], [4]), posted=[1]), view(6, ([7], [7], [])), rows,
        M.MessageLookup(msg_id="m-pending", status="pending"), landed("m-failed", 30, 31, exit_code=16))
    assert asks == [
        procedures.Pause(2.5),
        procedures.Randomness(DomainTag.WindowedPoStChallengeSeed, 29, address_entropy(1000)),
        procedures.PartitionsOf(1000, 4), procedures.PartitionsOf(1000, 6), procedures.StoredProofsOf(1000, 32, R1),
        procedures.Lookup("m-pending"), procedures.Lookup("m-failed")]
    assert event == DeadlineLoaded(
        cause=D4, runner=D4, randomness=R1,
        partitions=[PartitionState(index=0, sectors=[1, 2]),
                    PartitionState(index=1, sectors=[3, 4], faults=[4], recoveries=[4])],
        posted=[1], ahead=[PartitionState(index=0, sectors=[7], faults=[7])],
        stored=[StoredBatch(batch=0, partitions=[0], proofs=[proof(0, [1, 2])], msg_id="m-pending",
                            msg_status="pending"),
                StoredBatch(batch=1, partitions=[1], proofs=[proof(1, [3])],
                            skipped=[SkippedSector(4, "gone")], msg_id="m-failed", msg_status="failed"),
                StoredBatch(batch=2, partitions=[2], proofs=[proof(2, [5])])])


def test_a_load_the_chain_does_not_answer_fails_with_the_reason(core):
    asks, event = drive(procedures.procedure(core, LOAD), None, R1, TimeoutError("no answer"))
    assert asks[-1] == procedures.PartitionsOf(1000, 4)
    assert event == LoadFailed(cause=D4, runner=D4, reason="TimeoutError: no answer")


# ---- StartCheck and ProveBatch ----------------------------------------------------------------
def test_check_asks_with_the_miners_seal_proof_and_names_the_failed_sectors(core):
    cmd = StartCheck(cause=D4, miner=1000, sectors=[1, 2, 3])
    asks, event = drive(procedures.procedure(core, cmd), {2: "missing file"})
    assert asks == [procedures.Check(1000, 5, [1, 2, 3])]
    assert event == CheckDone(cause=D4, runner=D4, failed=[SkippedSector(2, "missing file")])
    asks, event = drive(procedures.procedure(core, cmd), OSError("disk gone"))
    assert event == CheckFailed(cause=D4, runner=D4, reason="OSError: disk gone")


def test_prove_pauses_then_asks_the_prover_and_a_prover_error_is_a_failure(core):
    parts = [PartitionWork(index=0, sectors=[1, 2])]
    cmd = ProveBatch(cause=D4, miner=1000, deadline=4, batch=3, randomness=R1, partitions=parts,
                     attempt=2, delay_s=4.0)
    asks, event = drive(procedures.procedure(core, cmd), None, [proof(0, [1, 2])])
    assert asks == [procedures.Pause(4.0), procedures.Prove(1000, 5, R1, parts)]
    assert event == BatchProven(cause=D4, runner=D4, batch=3, partitions=[proof(0, [1, 2])])
    _, event = drive(procedures.procedure(core, cmd), None, RuntimeError("no worker"))
    assert event == ProveFailed(cause=D4, runner=D4, batch=3, reason="RuntimeError: no worker")


# ---- pushes -----------------------------------------------------------------------------------
def test_a_submission_draws_the_chain_commit_and_pushes_the_post_for_its_batch(core):
    cmd = PushSubmission(cause=D4, miner=1000, ref="batch-0", deadline=4, open=32, randomness=R1,
                         batch=0, partitions=[PoStPart(index=0, skipped=[2])], proofs=[b"pf"],
                         chain_commit_epoch=30)
    commit = bytes(32)
    asks, event = drive(procedures.procedure(core, cmd), commit, "m1")
    params = M.SubmitWindowedPoStParams(deadline=4, proofs=[b"pf"], chain_commit_epoch=30,
                                        chain_commit_rand=commit,
                                        partitions=[M.PoStPartition(index=0, skipped=[2])])
    assert asks == [procedures.Randomness(DomainTag.PoStChainCommit, 30),
                    procedures.Push("t0100", 1000, params, kind="post", deadline=4, open=32, randomness=R1,
                           batch=0)]
    assert event == MessagePushed(cause=D4, runner=D4, ref="batch-0", msg_id="m1")
    _, event = drive(procedures.procedure(core, cmd), commit, ValueError("nonce taken"))
    assert event == PushFailed(cause=D4, runner=D4, ref="batch-0", reason="ValueError: nonce taken")


def test_declarations_are_pushed_for_the_runners_deadline_window(core):
    decls = [Declaration(deadline=6, partition=0, sectors=[7])]
    faults = DeclareFaults(cause=D4, miner=1000, ref="faults", declarations=decls)
    asks, event = drive(procedures.procedure(core, faults), "m2")
    chain_decls = [M.SectorDeclaration(deadline=6, partition=0, sectors=[7])]
    assert asks == [procedures.Push("t0100", 1000, M.DeclareFaultsParams(faults=chain_decls), kind="faults",
                           deadline=6, open=-1, randomness=b"", batch=-1)]   # no runner D4 yet
    assert event == MessagePushed(cause=D4, runner=D4, ref="faults", msg_id="m2")
    core.handle(HeadChanged(applied=[Tip(36, "k36")]))                        # runner D4 opens at 32
    recoveries = DeclareRecoveries(cause=D4, miner=1000, ref="recoveries", declarations=decls)
    asks, event = drive(procedures.procedure(core, recoveries), RuntimeError("pool full"))
    assert asks == [procedures.Push("t0100", 1000, M.DeclareFaultsRecoveredParams(recoveries=chain_decls),
                           kind="recoveries", deadline=6, open=32, randomness=b"", batch=-1)]
    assert event == PushFailed(cause=D4, runner=D4, ref="recoveries", reason="RuntimeError: pool full")


# ---- WaitMessage ------------------------------------------------------------------------------
def wait(ref="batch-0", confidence=2):
    return WaitMessage(cause=D4, miner=1000, deadline=4, ref=ref, msg_id="m1", confidence=confidence)


def test_a_wait_looks_again_after_each_head_until_the_message_is_deep_enough(core):
    asks, event = drive(procedures.procedure(core, wait()),
                        M.MessageLookup(msg_id="m1", status="pending"), None,
                        TimeoutError("the chain is slow"), None,
                        landed("m1", 40, 41), None,
                        landed("m1", 40, 42), None)
    assert asks == [procedures.Lookup("m1"), procedures.NextHead(), procedures.Lookup("m1"), procedures.NextHead(), procedures.Lookup("m1"),
                    procedures.NextHead(), procedures.Lookup("m1"), procedures.MarkMessage("m1", "landed")]
    assert event == MessageLanded(cause=D4, runner=D4, ref="batch-0", msg_id="m1", epoch=40, exit_code=0)


def test_a_message_the_chain_does_not_know_is_dropped(core):
    asks, event = drive(procedures.procedure(core, wait()), M.MessageLookup(msg_id="m1", status="unknown"), None)
    assert asks == [procedures.Lookup("m1"), procedures.MarkMessage("m1", "dropped", "the chain knows no such message")]
    assert event == MessageDropped(cause=D4, runner=D4, ref="batch-0", msg_id="m1",
                                   reason="the chain knows no such message (dropped)")


def test_a_failed_post_reads_what_the_deadline_has_posted_meanwhile(core):
    asks, event = drive(procedures.procedure(core, wait()), landed("m1", 40, 40, 16, "bad proof"), None,
                        view(4, ([1], [], []), ([2], [], []), posted=[1]))
    assert asks == [procedures.Lookup("m1"), procedures.MarkMessage("m1", "failed", "exit code 16: bad proof"),
                    procedures.PartitionsOf(1000, 4)]
    assert event == MessageLanded(cause=D4, runner=D4, ref="batch-0", msg_id="m1", epoch=40,
                                  exit_code=16, error="bad proof", posted=[1])
    _, event = drive(procedures.procedure(core, wait()), landed("m1", 40, 40, 16, "bad proof"), None,
                     TimeoutError("no answer"))
    assert event.posted == []                  # unknown: the core proves again what it must


def test_a_failed_declaration_reads_nothing_more(core):
    asks, event = drive(procedures.procedure(core, wait(ref="faults")), landed("m1", 40, 40, 18, "late"), None)
    assert asks == [procedures.Lookup("m1"), procedures.MarkMessage("m1", "failed", "exit code 18: late")]
    assert event == MessageLanded(cause=D4, runner=D4, ref="faults", msg_id="m1", epoch=40,
                                  exit_code=18, error="late")
