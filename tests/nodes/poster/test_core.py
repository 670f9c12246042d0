"""The poster core, driven by hand: head changes (reverts, duplicates, skipped epochs) and
the shell's results in, exact command lists out.

Devnet policy, period offset 0: deadline i opens at 8i, closes at 8i + 8, its Challenge is
8i - 3 and its FaultCutoff 8i - 10. Deadline 5: Challenge 37, Open 40, Close 48; its
runner starts at 39 (challenge_confirmations 2). Deadline 7's FaultCutoff is 46."""
import pytest

from zqnode.nodes.chain.policy import DEVNET
from zqnode.nodes.poster.config import PosterConfig
from zqnode.nodes.poster.core import PosterCore
from zqnode.nodes.poster.events import (
    Abort, BatchProven, CheckDone, CheckFailed, Declaration, DeclareFaults, DeclareRecoveries,
    DeadlineLoaded, DeadlineOutcome, HeadChanged, LoadDeadline, LoadFailed, MessageDropped,
    MessageLanded, MessagePushed, MinerInfo, MinerTracked, PartitionProof, PartitionState,
    PartitionWork, PosterError, PoStPart, ProveBatch, ProveFailed, PushFailed,
    PushSubmission, RecordOutcome, SkippedSector, StartCheck, StoredBatch, StoreProofs, Tip,
    UnexpectedEvent, WaitMessage)

R1 = bytes(range(32))
R2 = bytes(range(1, 33))
D4, D5, D6 = "f01000/d4@32#1", "f01000/d5@40#2", "f01000/d6@48#3"


def make(**cfg) -> PosterCore:
    c = PosterCore(DEVNET, PosterConfig(**cfg))
    assert c.handle(MinerTracked(miner=MinerInfo(actor_id=1000, sender="t0100", seal_proof=5,
                                                 period_offset=0, partition_sectors=2))) == []
    return c


def tip(epoch: int, fork: str = "") -> Tip:
    return Tip(epoch, f"k{epoch}{fork}")


def head(c: PosterCore, epoch: int, fork: str = ""):
    return c.handle(HeadChanged(applied=[tip(epoch, fork)]))


def reorg(c: PosterCore, top: int, depth: int, fork: str):
    """Replace tipsets top-depth+1..top with tipsets of another fork (same height)."""
    reverted = [tip(e) for e in range(top, top - depth, -1)]
    applied = [tip(e, fork) for e in range(top - depth + 1, top + 1)]
    return c.handle(HeadChanged(reverted=reverted, applied=applied))


def part(index, sectors, faults=(), recoveries=()):
    return PartitionState(index=index, sectors=list(sectors), faults=list(faults),
                          recoveries=list(recoveries))


def proof(index, proven, tag=b"p"):
    return PartitionProof(index=index, proof=tag + bytes([index]), proven=list(proven))


def empty_d4(c):
    """The current deadline 4 runner starts at once and has nothing to do."""
    assert head(c, 36) == [LoadDeadline(cause=D4, miner=1000, index=4, open=32, challenge=29,
                                        ahead_index=6)]
    assert c.handle(DeadlineLoaded(runner=D4, randomness=R1, partitions=[])) == []


def loaded_d5(c, partitions, ahead=(), stored=(), posted=(), rand=R1, runner=D5):
    return c.handle(DeadlineLoaded(runner=runner, randomness=rand, partitions=list(partitions),
                                   ahead=list(ahead), stored=list(stored), posted=list(posted)))


def up_to_d5_start(c):
    empty_d4(c)
    assert head(c, 37) == []            # deadline 5 tracked from its Challenge, not started
    assert head(c, 38) == []
    assert head(c, 39) == [LoadDeadline(cause=D5, miner=1000, index=5, open=40, challenge=37,
                                        ahead_index=7)]


def test_a_deadline_from_start_to_close_with_faults_recoveries_and_skips():
    c = make()
    up_to_d5_start(c)
    cmds = loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4], faults=[4], recoveries=[4]),
                         part(2, [5, 6], faults=[5, 6])],
                     ahead=[part(0, [7, 8, 9], faults=[8, 9], recoveries=[9])])
    # partition 2 is all faulty: nothing to prove, nothing to check; deadline 7 is checked whole
    assert cmds == [StartCheck(cause=D5, miner=1000, sectors=[1, 2, 3, 4, 7, 8, 9])]
    cmds = c.handle(CheckDone(runner=D5, failed=[SkippedSector(2, "sealed file missing"),
                                                 SkippedSector(7, "check timed out after 30s")]))
    assert cmds == [
        DeclareFaults(cause=D5, miner=1000, ref="faults",
                      declarations=[Declaration(deadline=7, partition=0, sectors=[7])]),
        DeclareRecoveries(cause=D5, miner=1000, ref="recoveries",
                          declarations=[Declaration(deadline=7, partition=0, sectors=[8])]),
        ProveBatch(cause=D5, miner=1000, deadline=5, batch=0, randomness=R1, attempt=1,
                   partitions=[PartitionWork(index=0, sectors=[1]), PartitionWork(index=1, sectors=[3, 4])]),
    ]
    assert c.handle(MessagePushed(runner=D5, ref="faults", msg_id="mf")) == [
        WaitMessage(cause=D5, miner=1000, deadline=5, ref="faults", msg_id="mf", confidence=2)]
    assert c.handle(MessageLanded(runner=D5, ref="faults", msg_id="mf", epoch=40, exit_code=0)) == []
    # proven before Open: stored now, pushed at Open
    cmds = c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1]), proof(1, [3, 4])]))
    skipped = [SkippedSector(2, "sealed file missing")]
    assert cmds == [StoreProofs(cause=D5, miner=1000, deadline=5, open=40, randomness=R1, batch=0,
                                partitions=[proof(0, [1]), proof(1, [3, 4])], skipped=skipped)]
    # deadline 4 closes at 40 (nothing to prove there); deadline 5's proofs go out
    assert head(c, 40) == [
        Abort(cause=D4, reason="deadline closed"),
        RecordOutcome(cause=D4, outcome=DeadlineOutcome(miner=1000, index=4, open=32, close=40,
                                                        status="empty")),
        PushSubmission(cause=D5, miner=1000, ref="batch-0", deadline=5, open=40, randomness=R1, batch=0,
                       partitions=[PoStPart(index=0, skipped=[2]), PoStPart(index=1, skipped=[])],
                       proofs=[b"p\x00", b"p\x01"], chain_commit_epoch=37)]
    assert c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m1")) == [
        WaitMessage(cause=D5, miner=1000, deadline=5, ref="batch-0", msg_id="m1", confidence=2)]
    assert c.handle(MessageLanded(runner=D5, ref="batch-0", msg_id="m1", epoch=41, exit_code=0)) == []
    assert head(c, 46) == []
    assert head(c, 47) == [LoadDeadline(cause=D6, miner=1000, index=6, open=48, challenge=45,
                                        ahead_index=8)]
    assert head(c, 48) == [Abort(cause=D5, reason="deadline closed"), RecordOutcome(
        cause=D5, outcome=DeadlineOutcome(
            miner=1000, index=5, open=40, close=48, status="proven", needed=[0, 1], landed=[0, 1],
            skipped=skipped, messages=["m1"], notes=c.outcomes[-1].notes,
            declared=[SkippedSector(7, "check timed out after 30s")]))]
    assert c.outcomes[-1].notes == [
        "epoch 39: sector 2 (partition 0) skipped: sealed file missing",
        "epoch 39: declaring faults in deadline 7: partition 0: 7",
        "epoch 39: declaring recoveries in deadline 7: partition 0: 8",
        "epoch 39: faults: message mf landed at 40",
        "epoch 40: batch-0: message m1 landed at 41"]
    assert c.stale_events == 0


def test_batches_follow_the_network_and_configured_limits():
    parts = [part(i, [2 * i + 1, 2 * i + 2]) for i in range(5)]
    for cfg, expected in (({}, [[0, 1, 2], [3, 4]]),
                          ({"max_partitions_per_message": 2}, [[0, 1], [2, 3], [4]]),
                          ({"max_partitions_per_message": 9}, [[0, 1, 2], [3, 4]])):
        c = make(**cfg)
        up_to_d5_start(c)
        assert loaded_d5(c, parts) == [StartCheck(cause=D5, miner=1000, sectors=list(range(1, 11)))]
        cmds = c.handle(CheckDone(runner=D5))
        assert [[p.index for p in cmd.partitions] for cmd in cmds] == expected
        assert [cmd.batch for cmd in cmds] == list(range(len(expected)))


def test_skipped_epochs_and_duplicate_heads():
    c = make()
    assert head(c, 36) == [LoadDeadline(cause=D4, miner=1000, index=4, open=32, challenge=29,
                                        ahead_index=6)]
    assert head(c, 36) == [] and head(c, 35) == []        # duplicate and older heads: nothing
    # a jump from 36 to 43: deadline 4 closed unloaded; deadline 5 starts at once
    assert head(c, 43) == [
        Abort(cause=D4, reason="deadline closed"),
        RecordOutcome(cause=D4, outcome=DeadlineOutcome(miner=1000, index=4, open=32, close=40,
                                                        status="unknown")),
        LoadDeadline(cause=D5, miner=1000, index=5, open=40, challenge=37, ahead_index=7)]
    # loaded after Open: proofs are pushed the moment they exist
    assert loaded_d5(c, [part(0, [1, 2])]) == [StartCheck(cause=D5, miner=1000, sectors=[1, 2])]
    assert c.handle(CheckDone(runner=D5)) == [ProveBatch(
        cause=D5, miner=1000, deadline=5, batch=0, randomness=R1, attempt=1,
        partitions=[PartitionWork(index=0, sectors=[1, 2])])]
    assert c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2])])) == [
        StoreProofs(cause=D5, miner=1000, deadline=5, open=40, randomness=R1, batch=0,
                    partitions=[proof(0, [1, 2])], skipped=[]),
        PushSubmission(cause=D5, miner=1000, ref="batch-0", deadline=5, open=40, randomness=R1, batch=0,
                       partitions=[PoStPart(index=0)], proofs=[b"p\x00"], chain_commit_epoch=37)]


def test_late_start_does_not_check_or_declare_past_the_fault_cutoff():
    c = make()
    empty_d4(c)
    assert head(c, 45)[-1] == LoadDeadline(cause=D5, miner=1000, index=5, open=40, challenge=37,
                                           ahead_index=7)
    # deadline 6 is tracked from 45 (its Challenge) and starts at 47
    cmds = loaded_d5(c, [part(0, [1, 2])], ahead=[part(0, [7, 8], faults=[8])])
    assert cmds == [StartCheck(cause=D5, miner=1000, sectors=[1, 2])]     # 45 + 1 >= cutoff 46


def test_a_declaration_that_does_not_land_is_sent_again_until_the_fault_cutoff():
    c = make()
    up_to_d5_start(c)
    assert loaded_d5(c, [], ahead=[part(0, [7, 8])]) == [StartCheck(cause=D5, miner=1000, sectors=[7, 8])]
    decl = [Declaration(deadline=7, partition=0, sectors=[8])]
    assert c.handle(CheckDone(runner=D5, failed=[SkippedSector(8, "no sealed file")])) == [
        DeclareFaults(cause=D5, miner=1000, ref="faults", declarations=decl)]
    assert c.handle(PushFailed(runner=D5, ref="faults", reason="chain busy")) == []
    assert head(c, 40)[-1] == DeclareFaults(cause=D5, miner=1000, ref="faults", declarations=decl)
    assert c.handle(MessagePushed(runner=D5, ref="faults", msg_id="f1"))[0].msg_id == "f1"
    assert c.handle(MessageDropped(runner=D5, ref="faults", msg_id="f1", reason="gone")) == [
        DeclareFaults(cause=D5, miner=1000, ref="faults", declarations=decl)]
    c.handle(MessagePushed(runner=D5, ref="faults", msg_id="f2"))
    assert head(c, 45) == []                                         # 46 is deadline 7's cutoff
    assert c.handle(MessageLanded(runner=D5, ref="faults", msg_id="f2", epoch=45, exit_code=16,
                                  error="late fault declaration")) == []
    r = c.runner_for(1000, 5)
    assert r.decls["faults"].state == "expired"
    assert r.notes[-1] == "epoch 45: faults: too late to declare (fault cutoff 46 of deadline 7)"


def test_a_revert_that_replaces_the_challenge_tipset_restarts_with_new_randomness():
    c = make()
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2])])
    c.handle(CheckDone(runner=D5))
    c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2])]))
    # a revert of 39 and 38 only: the Challenge tipset (37) stays, nothing restarts
    assert reorg(c, 39, 2, "b") == []
    # a revert down to 37 replaces it: the runner starts over (the new one starts at once)
    d5b = "f01000/d5@40#3"
    assert reorg(c, 39, 3, "c") == [
        Abort(cause=D5, reason="revert down to epoch 37 replaced the Challenge tipset"),
        LoadDeadline(cause=d5b, miner=1000, index=5, open=40, challenge=37, ahead_index=7)]
    # what the old runner's work produces now is ignored
    assert c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="old")) == []
    assert c.stale_events == 1
    assert loaded_d5(c, [part(0, [1, 2])], rand=R2, runner=d5b) == [
        StartCheck(cause=d5b, miner=1000, sectors=[1, 2])]
    assert c.handle(CheckDone(runner=d5b)) == [ProveBatch(
        cause=d5b, miner=1000, deadline=5, batch=0, randomness=R2, attempt=1,
        partitions=[PartitionWork(index=0, sectors=[1, 2])])]


def test_reverts_across_open_keep_the_runner_and_a_lower_head_drops_the_next_deadline():
    c = make()
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2])])
    c.handle(CheckDone(runner=D5))
    c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2])]))
    assert head(c, 40)[-1].ref == "batch-0"                          # pushed at Open
    c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m1"))
    assert reorg(c, 40, 2, "b") == []                                # 39 and 40: above Challenge
    # the head drops to 36 (a revert without as many tipsets applied): deadline 5 is no longer
    # tracked; it is dropped without an outcome, and deadline 4 is the current one again
    cmds = c.handle(HeadChanged(reverted=[tip(40, "b"), tip(39, "b"), tip(38), tip(37)],
                                applied=[tip(36, "x")]))
    assert cmds == [Abort(cause=D5, reason="head 36 is before the Challenge epoch 37"),
                    LoadDeadline(cause="f01000/d4@32#3", miner=1000, index=4, open=32, challenge=29,
                                 ahead_index=6)]
    assert c.runner_for(1000, 5) is None
    assert [o.index for o in c.outcomes] == [4]           # deadline 4 closed at 40, once


def test_prover_errors_are_retried_with_back_off_until_close_and_each_reason_noted():
    c = make(prove_retry_s=2, prove_retry_max_s=5)
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2])])
    c.handle(CheckDone(runner=D5))
    delays = []
    for reason in ("GPU out of memory", "worker vanished", "disk read error", "GPU out of memory"):
        (cmd,) = c.handle(ProveFailed(runner=D5, batch=0, reason=reason))
        assert cmd == ProveBatch(cause=D5, miner=1000, deadline=5, batch=0, randomness=R1,
                                 attempt=cmd.attempt, delay_s=cmd.delay_s,
                                 partitions=[PartitionWork(index=0, sectors=[1, 2])])
        delays.append((cmd.attempt, cmd.delay_s))
    assert delays == [(2, 2), (3, 4), (4, 5), (5, 5)]
    # a result that does not prove what was asked is a prover error too
    (cmd,) = c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1])]))
    assert (cmd.attempt, cmd.delay_s) == (6, 5)
    (cmd,) = c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(1, [1, 2])]))
    assert (cmd.attempt, cmd.delay_s) == (7, 5)
    head(c, 40)
    cmds = head(c, 48)
    assert cmds[0] == Abort(cause=D5, reason="deadline closed")
    out = cmds[1].outcome
    assert (out.status, out.needed, out.landed) == ("missed", [0], [])
    assert out.notes == [
        "epoch 39: batch-0 attempt 1 failed: GPU out of memory; retrying in 2s",
        "epoch 39: batch-0 attempt 2 failed: worker vanished; retrying in 4s",
        "epoch 39: batch-0 attempt 3 failed: disk read error; retrying in 5s",
        "epoch 39: batch-0 attempt 4 failed: GPU out of memory; retrying in 5s",
        "epoch 39: batch-0 attempt 5 failed: partition 0: the prover proved sectors 1, expected 1,2; "
        "retrying in 5s",
        "epoch 39: batch-0 attempt 6 failed: the prover answered for partitions [1], asked for [0]; "
        "retrying in 5s"]


def test_sectors_the_prover_skips_are_reported_and_the_batch_proven_again_without_them():
    c = make()
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4]), part(2, [5, 6])])
    (prove,) = c.handle(CheckDone(runner=D5))
    assert [p.sectors for p in prove.partitions] == [[1, 2], [3, 4], [5, 6]]
    bad = PartitionProof(index=1, proof=b"", proven=[4], skipped=[SkippedSector(3, "bad tree-r-last path")])
    cmds = c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2]), bad, proof(2, [5, 6])]))
    assert cmds == [ProveBatch(cause=D5, miner=1000, deadline=5, batch=0, randomness=R1, attempt=2,
                               partitions=[PartitionWork(index=0, sectors=[1, 2]),
                                           PartitionWork(index=1, sectors=[4]),
                                           PartitionWork(index=2, sectors=[5, 6])])]
    # a second pass loses both sectors of partition 2: it leaves the batch
    cmds = c.handle(BatchProven(runner=D5, batch=0, partitions=[
        proof(0, [1, 2]), proof(1, [4]),
        PartitionProof(index=2, proof=b"", proven=[],
                       skipped=[SkippedSector(5, "gone"), SkippedSector(6, "gone")])]))
    assert [p.index for p in cmds[0].partitions] == [0, 1] and cmds[0].attempt == 3
    cmds = c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2]), proof(1, [4])]))
    assert cmds == [StoreProofs(cause=D5, miner=1000, deadline=5, open=40, randomness=R1, batch=0,
                                partitions=[proof(0, [1, 2]), proof(1, [4])],
                                skipped=[SkippedSector(3, "bad tree-r-last path")])]
    assert head(c, 40)[-1] == PushSubmission(
        cause=D5, miner=1000, ref="batch-0", deadline=5, open=40, randomness=R1, batch=0,
        partitions=[PoStPart(index=0), PoStPart(index=1, skipped=[3])],
        proofs=[b"p\x00", b"p\x01"], chain_commit_epoch=37)
    assert c.runner_for(1000, 5).notes[-2:] == [
        "epoch 39: batch-0 attempt 1: skipped 1 sectors (3: bad tree-r-last path); "
        "proving again without them",
        "epoch 39: batch-0 attempt 2: skipped 2 sectors (5: gone, 6: gone); proving again without them"]


def test_a_batch_whose_sectors_all_fail_is_not_proven():
    c = make()
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4])])
    cmds = c.handle(CheckDone(runner=D5, failed=[SkippedSector(1, "x"), SkippedSector(2, "y")]))
    assert cmds == [ProveBatch(cause=D5, miner=1000, deadline=5, batch=0, randomness=R1, attempt=1,
                               partitions=[PartitionWork(index=1, sectors=[3, 4])])]
    assert c.handle(BatchProven(runner=D5, batch=0, partitions=[PartitionProof(
        index=1, proof=b"", proven=[], skipped=[SkippedSector(3, "x"), SkippedSector(4, "x")])])) == []
    assert c.runner_for(1000, 5).batches[0].state == "void"
    assert head(c, 40)[-1] == RecordOutcome(cause=D4, outcome=c.outcomes[-1])     # nothing pushed
    out = head(c, 48)[1].outcome
    assert (out.status, out.needed, out.landed) == ("missed", [0, 1], [])
    assert out.notes == [
        "epoch 39: sector 1 (partition 0) skipped: x", "epoch 39: sector 2 (partition 0) skipped: y",
        "epoch 39: partition 0: every sector failed the check; nothing to prove",
        "epoch 39: batch-0 attempt 1: skipped 2 sectors (3: x, 4: x); proving again without them",
        "epoch 39: batch-0: every sector was skipped; nothing to prove"]


def test_messages_that_do_not_land_are_sent_again_while_the_deadline_is_open():
    c = make()
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4])])
    c.handle(CheckDone(runner=D5))
    c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2]), proof(1, [3, 4])]))
    push = head(c, 40)[-1]
    assert isinstance(push, PushSubmission)
    # the pool refused it: pushed again at the next tipset
    assert c.handle(PushFailed(runner=D5, ref="batch-0", reason="wrong nonce")) == []
    assert head(c, 41) == [push]
    c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m1"))
    # a revert dropped it: sent again at once
    assert c.handle(MessageDropped(runner=D5, ref="batch-0", msg_id="m1",
                                   reason="the chain knows no such message")) == [push]
    c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m2"))
    # it landed and failed (another fork's commit randomness): sent again
    assert c.handle(MessageLanded(runner=D5, ref="batch-0", msg_id="m2", epoch=42, exit_code=16,
                                  error="post commit randomness mismatched")) == [push]
    c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m3"))
    # failed because its partitions were proven meanwhile (an earlier message landed after all)
    assert c.handle(MessageLanded(runner=D5, ref="batch-0", msg_id="m3", epoch=43, exit_code=16,
                                  error="partition already proven: [0, 1]", posted=[0, 1])) == []
    with pytest.raises(UnexpectedEvent, match="MessageLanded for batch 0 in state landed"):
        c.handle(MessageLanded(runner=D5, ref="batch-0", msg_id="m3", epoch=43, exit_code=0))
    out = head(c, 48)[1].outcome
    assert (out.status, out.landed, out.messages) == ("proven", [0, 1], ["m1", "m2", "m3"])


def test_a_deadline_closing_while_its_message_is_unconfirmed_is_not_called_missed():
    c = make(message_confidence=5)
    up_to_d5_start(c)
    loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4])], posted=[1])
    c.handle(CheckDone(runner=D5))
    c.handle(BatchProven(runner=D5, batch=0, partitions=[proof(0, [1, 2])]))
    head(c, 46)
    c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m1"))
    out = head(c, 48)[1].outcome
    assert (out.status, out.needed, out.landed, out.messages) == ("unconfirmed", [0, 1], [1], ["m1"])


def test_a_restarted_runner_takes_up_stored_proofs_and_messages():
    c = make(max_partitions_per_message=1)
    up_to_d5_start(c)
    parts = [part(i, [2 * i + 1, 2 * i + 2]) for i in range(6)]
    stored = [
        # proofs built, never pushed
        StoredBatch(batch=0, partitions=[0], proofs=[proof(0, [1, 2])]),
        # pushed, still in the pool
        StoredBatch(batch=1, partitions=[1], proofs=[proof(1, [3, 4])], msg_id="m1", msg_status="pending"),
        # pushed, the chain no longer knows it: pushed again
        StoredBatch(batch=2, partitions=[2], proofs=[proof(2, [5, 6])], msg_id="m2", msg_status="unknown"),
        # proofs built with sector 8 skipped
        StoredBatch(batch=3, partitions=[3], proofs=[proof(3, [7])], skipped=[SkippedSector(8, "gone")]),
        # proven for sectors the chain no longer expects (9 was declared faulty since): proven again
        StoredBatch(batch=4, partitions=[4], proofs=[proof(4, [9, 10])]),
    ]
    parts[4] = part(4, [9, 10], faults=[9])
    cmds = loaded_d5(c, parts, stored=stored)
    assert cmds == [WaitMessage(cause=D5, miner=1000, deadline=5, ref="batch-1", msg_id="m1", confidence=2),
                    StartCheck(cause=D5, miner=1000, sectors=[10, 11, 12])]
    cmds = c.handle(CheckDone(runner=D5))
    assert cmds == [ProveBatch(cause=D5, miner=1000, deadline=5, batch=4, randomness=R1, attempt=1,
                               partitions=[PartitionWork(index=4, sectors=[10])]),
                    ProveBatch(cause=D5, miner=1000, deadline=5, batch=5, randomness=R1, attempt=1,
                               partitions=[PartitionWork(index=5, sectors=[11, 12])])]
    pushes = head(c, 40)[-3:]
    assert [(p.ref, p.partitions) for p in pushes] == [
        ("batch-0", [PoStPart(index=0)]), ("batch-2", [PoStPart(index=2)]),
        ("batch-3", [PoStPart(index=3, skipped=[8])])]
    r = c.runner_for(1000, 5)
    assert r.notes == [
        "epoch 39: batch-0: resumed with stored proofs",
        "epoch 39: batch-1: resumed, waiting for message m1",
        "epoch 39: batch-2: resumed with stored proofs (message m2 unknown)",
        "epoch 39: batch-3: resumed with stored proofs",
        "epoch 39: stored batch 4 does not match the chain's partitions now"]


def test_stored_batches_already_posted_or_with_a_landed_message():
    c = make()
    up_to_d5_start(c)
    stored = [StoredBatch(batch=0, partitions=[0], proofs=[proof(0, [1, 2])], msg_id="m0",
                          msg_status="failed"),
              StoredBatch(batch=1, partitions=[1], proofs=[proof(1, [3, 4])], msg_id="m1",
                          msg_status="landed")]
    cmds = loaded_d5(c, [part(0, [1, 2]), part(1, [3, 4])], stored=stored, posted=[0])
    assert cmds == [WaitMessage(cause=D5, miner=1000, deadline=5, ref="batch-1", msg_id="m1", confidence=2)]
    assert c.handle(MessageLanded(runner=D5, ref="batch-1", msg_id="m1", epoch=38, exit_code=0)) == []
    head(c, 40)
    out = head(c, 48)[1].outcome
    assert (out.status, out.needed, out.landed) == ("proven", [0, 1], [0, 1])


def test_a_head_snapshot_restarts_started_runners():
    c = make()
    up_to_d5_start(c)
    assert c.handle(HeadChanged(applied=[tip(39)], snapshot=True)) == []     # the same head
    cmds = c.handle(HeadChanged(applied=[tip(41, "z")], snapshot=True))
    # deadline 4 closed meanwhile; deadline 5 starts over, as after a deep revert
    assert cmds == [
        Abort(cause=D4, reason="deadline closed"),
        RecordOutcome(cause=D4, outcome=DeadlineOutcome(miner=1000, index=4, open=32, close=40,
                                                        status="empty")),
        Abort(cause=D5, reason="head snapshot: what happened since the last head is unknown"),
        LoadDeadline(cause="f01000/d5@40#3", miner=1000, index=5, open=40, challenge=37, ahead_index=7)]


def test_load_and_check_failures_are_retried():
    c = make(prove_retry_s=1)
    up_to_d5_start(c)
    assert c.handle(LoadFailed(runner=D5, reason="chain did not answer")) == [
        LoadDeadline(cause=D5, miner=1000, index=5, open=40, challenge=37, ahead_index=7, delay_s=1)]
    loaded_d5(c, [part(0, [1, 2])])
    assert c.handle(CheckFailed(runner=D5, reason="storage offline")) == [
        LoadDeadline(cause=D5, miner=1000, index=5, open=40, challenge=37, ahead_index=7, delay_s=2)]


def test_bad_events_raise_and_change_nothing():
    c = make()
    up_to_d5_start(c)
    with pytest.raises(UnexpectedEvent, match=r"f01000/d5@40#2 in state loading cannot take CheckDone"):
        c.handle(CheckDone(runner=D5))
    with pytest.raises(PosterError, match="randomness must be 32 bytes, got 3"):
        c.handle(DeadlineLoaded(runner=D5, randomness=b"abc", partitions=[]))
    with pytest.raises(PosterError, match="needs applied or reverted"):
        c.handle(HeadChanged())
    with pytest.raises(PosterError, match="tracked already"):
        c.handle(MinerTracked(miner=c.miners[1000]))
    with pytest.raises(PosterError, match="period offset 384 outside 0..383"):
        c.handle(MinerTracked(miner=MinerInfo(actor_id=7, sender="w", seal_proof=5, period_offset=384,
                                              partition_sectors=2)))
    loaded_d5(c, [part(0, [1, 2])])
    c.handle(CheckDone(runner=D5))
    with pytest.raises(UnexpectedEvent, match="MessagePushed for batch 0 in state proving"):
        c.handle(MessagePushed(runner=D5, ref="batch-0", msg_id="m"))
    with pytest.raises(UnexpectedEvent, match="ProveFailed for batch 3 in state none"):
        c.handle(ProveFailed(runner=D5, batch=3, reason="?"))
