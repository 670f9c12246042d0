"""nodes.sealing.procedures: the sealing shell's chain and storage commands as
generators, driven here by a scripted chain (both real shells answer the same asks)."""
from types import SimpleNamespace

import msgspec

from zqnode.bus.codec import RemoteError

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.miner import SectorView
from zqnode.nodes.chain.policy import DEVNET, deadline_info
from zqnode.nodes.chain.randomness import DomainTag, address_entropy
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import procedures
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.core import SealingCore

MINER = 1000
ENTROPY = address_entropy(MINER)
COMM_R = b"r" * 32
COMM_D = b"d" * 32


def new_core():
    core = SealingCore(miner=MINER, seal_proof=5, policy=DEVNET, cfg=SealingConfig())
    core.set_head(100)
    return core


def drive(proc, answer):
    """Run a procedure to its end; (the asks in order, the event it returned). An answer
    that raises goes back into the procedure, as the shell does it."""
    asks, reply, error = [], None, None
    while True:
        try:
            ask = proc.throw(error) if error is not None else proc.send(reply)
        except StopIteration as done:
            return asks, done.value
        asks.append(ask)
        try:
            reply, error = answer(ask), None
        except Exception as e:
            reply, error = None, e


def scripted(*replies):
    it = iter(replies)
    return lambda ask: next(it)


def test_get_ticket_waits_for_a_chain_older_than_the_lookback():
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.GetTicket(sector=number, step=1, cause="c")
    lookback = DEVNET.seal_randomness_lookback
    asks, event = drive(procedures.procedure(core, cmd), scripted(None, 0, None, lookback + 3, b"T" * 32))
    assert asks == [procedures.PreCommitOf(MINER, number), procedures.Head(), procedures.NextHead(lookback), procedures.Head(),
                    procedures.Randomness(DomainTag.SealRandomness, 3, ENTROPY)]
    assert isinstance(event, E.TicketReady) and (event.ticket, event.epoch, event.step) == (b"T" * 32, 3, 1)


def test_get_ticket_of_a_precommitted_sector_uses_its_epoch():
    core = new_core()
    number, _ = core.pledge(0.0)
    pc = SimpleNamespace(seal_rand_epoch=42)
    asks, event = drive(procedures.procedure(core, C.GetTicket(sector=number, step=1, cause="c")), scripted(pc, b"T" * 32))
    assert asks[1] == procedures.Randomness(DomainTag.SealRandomness, 42, ENTROPY) and event.epoch == 42


def lookup(status, epoch=-1, head=-1, exit_code=0):
    receipt = M.Receipt(exit_code=exit_code, error="boom") if status == "landed" else None
    return M.MessageLookup(msg_id="m1", status=status, epoch=epoch, head=head, receipt=receipt)


def test_wait_precommit_waits_for_the_message_then_its_confidence():
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.WaitPreCommit(sector=number, step=2, cause="c", msg_id="m1", comm_r=COMM_R)
    pc = SimpleNamespace(comm_r=COMM_R, precommit_epoch=110, seed_epoch=115)
    asks, event = drive(procedures.procedure(core, cmd), scripted(
        lookup("pending"), None, lookup("landed", 110, 110), None, lookup("landed", 110, 112), pc))
    assert asks == [procedures.Lookup("m1"), procedures.NextHead(), procedures.Lookup("m1"), procedures.NextHead(112), procedures.Lookup("m1"),
                    procedures.PreCommitOf(MINER, number)]
    assert isinstance(event, E.PreCommitLanded) and (event.precommit_epoch, event.seed_epoch) == (110, 115)


def test_a_failed_or_unknown_message_fails_the_wait():
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.WaitProveCommit(sector=number, step=2, cause="c", msg_id="m1")
    _, event = drive(procedures.procedure(core, cmd), scripted(lookup("landed", 110, 115, exit_code=16)))
    assert isinstance(event, E.CommitFailed)
    assert event.error == "ProveCommitSector failed: exit code 16: boom"
    _, event = drive(procedures.procedure(core, cmd), scripted(lookup("unknown")))
    assert event.error == "the chain knows no message m1"


def test_remove_sector_drops_work_files_and_pieces():
    core = new_core()
    number, _ = core.pledge(0.0)
    asks, event = drive(procedures.procedure(core, C.RemoveSector(sector=number, step=3, cause="c")), lambda ask: None)
    assert asks == [procedures.DropWork(number), procedures.DropFiles(number), procedures.DropPieces(number)]
    assert isinstance(event, E.SectorRemoved)


def _view(deadline, partition=0):
    return SectorView(number=1, state="active", seal_proof=5, sealed_cid="", unsealed_cid="",
                      activation=10, deadline=deadline, partition=partition)


def _dl(index):
    return deadline_info(DEVNET, 0, index, index * DEVNET.challenge_window)


def test_a_termination_batch_sends_what_may_go_now_and_defers_the_rest():
    core = new_core()
    numbers = [core.pledge(0.0)[0] for _ in range(5)]
    cmd = C.SendTerminateBatch(sector=1, step=3, cause="c", batch="1:3",
                               members=[C.BatchMember(number=n, step=3) for n in numbers])
    views = {1: _view(9), 2: _view(5), 3: _view(9, partition=1), 4: None, 5: None}
    precommitted = {5: object()}

    def chain(ask):
        if isinstance(ask, procedures.CurrentDeadline):
            return _dl(4)                          # 3, 4 and 5 may not change now
        if isinstance(ask, procedures.SectorOf):
            return views[ask.number]
        if isinstance(ask, procedures.PreCommitOf):
            return precommitted.get(ask.number)
        return "m1"
    asks, events = drive(procedures.procedure(core, cmd), chain)
    assert asks[-1] == procedures.Send(1, "terminate-batch:1:3", M.TerminateSectorsParams(terminations=[
        M.SectorDeclaration(deadline=9, partition=0, sectors=[1]),
        M.SectorDeclaration(deadline=9, partition=1, sectors=[3])]))
    assert sorted((e.sector, type(e).__name__) for e in events) == [
        (1, "TerminateSent"), (2, "TerminateDeferred"), (3, "TerminateSent"), (4, "Remove"),
        (5, "TerminateFailed")]

    def refuse(ask):
        if isinstance(ask, procedures.Send):
            raise RemoteError("invalid", "cannot terminate sectors in immutable deadline 9")
        return chain(ask)
    _, events = drive(procedures.procedure(core, cmd), refuse)
    assert [(e.sector, e.error) for e in events if isinstance(e, E.TerminateFailed) and e.sector in (1, 3)] == [
        (n, "TerminateSectors refused: cannot terminate sectors in immutable deadline 9") for n in (1, 3)]


def test_chain_facts_asks_only_what_it_can_know():
    core = new_core()
    number, _ = core.pledge(0.0)
    asks, facts = drive(procedures.chain_facts(core, number, ticket=b"t" * 32, ticket_epoch=200),
                        scripted(150, None, None))
    assert asks == [procedures.Head(), procedures.PreCommitOf(MINER, number), procedures.SectorOf(MINER, number)]
    assert facts.head == 150 and facts.ticket_matches is None and facts.precommit is None


def test_fault_change():
    core = new_core()
    number, _ = core.pledge(0.0)
    assert procedures.fault_change(core, number, True) is None                 # not proving
    assert procedures.fault_change(core, 999, True) is None                    # no such sector
    core.sectors[number] = msgspec.structs.replace(core.sectors[number], state=S.PROVING)
    assert isinstance(procedures.fault_change(core, number, True), E.FaultReported)
    assert procedures.fault_change(core, number, False) is None


def test_a_batch_is_sent_once_under_its_owner_and_a_refusal_fails_every_member():
    core = SealingCore(miner=MINER, seal_proof=5, policy=DEVNET, cfg=SealingConfig(batch_precommits=True))
    core.set_head(100)
    numbers = [core.pledge(0.0)[0] for _ in range(3)]
    for n in numbers:
        core.sectors[n] = msgspec.structs.replace(core.sectors[n], ticket_epoch=90, comm_d=COMM_D, comm_r=COMM_R)
    cmd = C.SendPreCommitBatch(sector=2, cause="s-1000-2", step=1, batch="1:7",   # 1 went on since
                               members=[C.BatchMember(number=n, step=1) for n in numbers[1:]])
    asks, events = drive(procedures.procedure(core, cmd), lambda ask: "mb")
    (send,) = asks
    assert (send.number, send.key) == (1, "precommit-batch:1:7")      # the owner finds its message
    assert [s.sector_number for s in send.params.sectors] == [2, 3]
    assert [(type(e), e.sector, e.msg_id) for e in events] == [(E.PreCommitBatchSent, 2, "mb"),
                                                               (E.PreCommitBatchSent, 3, "mb")]

    def refuse(ask):
        raise RemoteError("invalid", "sector number 3 already allocated")
    _, events = drive(procedures.procedure(core, cmd), refuse)
    assert [(type(e), e.sector, e.error) for e in events] == [
        (E.ChainPreCommitFailed, n, "PreCommitSectorBatch2 refused: sector number 3 already allocated")
        for n in (2, 3)]


def test_a_terminated_sector_keeps_its_files_ten_epochs_after_the_message_landed():
    core = new_core()
    number, _ = core.pledge(0.0)
    landed = M.MessageLookup(msg_id="t", status="landed", epoch=200, head=205,
                             receipt=M.Receipt(exit_code=0))
    cmd = C.WaitTerminate(sector=number, step=3, cause="c", msg_id="t")
    answers = iter([landed, 205, None, 210, None])
    asks, event = drive(procedures.procedure(core, cmd), lambda ask: next(answers))
    assert asks == [procedures.Lookup("t"), procedures.Head(), procedures.NextHead(210),
                    procedures.Head(), procedures.SectorOf(core.miner, number)]
    assert isinstance(event, E.Terminated) and procedures.TERMINATE_LOOKBACK == 10


def test_a_message_the_sender_could_not_pay_is_sent_again_as_lotus_does():
    core = new_core()
    number, _ = core.pledge(0.0)
    unpaid = lookup("landed", 110, 115, exit_code=M.ExitCode.SYS_INSUFFICIENT_FUNDS)
    wait = C.WaitPreCommit(sector=number, step=2, cause="c", msg_id="m1", comm_r=COMM_R)
    assert isinstance(drive(procedures.procedure(core, wait), scripted(unpaid))[1], E.RetryPreCommit)
    wait = C.WaitProveCommit(sector=number, step=2, cause="c", msg_id="m1")
    assert isinstance(drive(procedures.procedure(core, wait), scripted(unpaid))[1], E.RetrySubmitCommit)
    fined = lookup("landed", 110, 115, exit_code=M.ExitCode.USR_INSUFFICIENT_FUNDS)   # the actor's
    assert isinstance(drive(procedures.procedure(core, wait), scripted(fined))[1], E.CommitFailed)


def sealed_core(n: int, **cfg) -> tuple[SealingCore, list[int]]:
    core = SealingCore(miner=MINER, seal_proof=5, policy=DEVNET, cfg=SealingConfig(**cfg))
    core.set_head(100)
    numbers = [core.pledge(0.0)[0] for _ in range(n)]
    for x in numbers:
        core.sectors[x] = msgspec.structs.replace(core.sectors[x], ticket_epoch=90, comm_d=COMM_D,
                                                  comm_r=COMM_R, proof=b"p%d" % x)
    return core, numbers


def test_deposits_and_pledge_go_with_the_messages_that_need_them():
    core, numbers = sealed_core(4)
    pc = C.SendPreCommit(sector=1, step=1, cause="c", seal_proof=5, comm_d=COMM_D, comm_r=COMM_R,
                         ticket=b"t" * 32, ticket_epoch=90)

    def chain(ask):                    # a young chain with nothing of the sector on it yet
        return {procedures.Head: 100, procedures.Randomness: b"t" * 32, procedures.Send: "m"}.get(type(ask))
    asks, event = drive(procedures.procedure(core, pc), chain)
    assert isinstance(event, E.PreCommitSent) and asks[-1].value == DEVNET.precommit_deposit

    def refuse(ask):
        if isinstance(ask, procedures.Send):
            raise RemoteError("invalid", "not enough funds in t0100: 0 FIL")
        return chain(ask)
    _, event = drive(procedures.procedure(core, pc), refuse)        # Lotus: PreCommitFailed
    assert (type(event), event.error) == (E.ChainPreCommitFailed,
                                          "PreCommitSector refused: not enough funds in t0100: 0 FIL")
    batch = C.SendCommitAggregate(sector=1, step=1, cause="c", batch="1:1", aggregate=True,
                                  members=[C.BatchMember(number=n, step=1) for n in numbers])
    (send,), _ = drive(procedures.procedure(core, batch), lambda ask: "m")
    assert send.value == 4 * (DEVNET.initial_pledge - DEVNET.precommit_deposit)   # deposits come back


def test_a_batch_over_the_block_gas_limit_is_split_in_halves_each_sent_once():
    core, numbers = sealed_core(8)
    core.policy = msgspec.structs.replace(DEVNET, block_gas_limit=80_000_000)   # 4 aggregated fit, 8 not
    cmd = C.SendCommitAggregate(sector=1, step=1, cause="c", batch="1:3", aggregate=True,
                                members=[C.BatchMember(number=n, step=1) for n in numbers])
    asks, events = drive(procedures.procedure(core, cmd), lambda ask: f"m-{ask.key[-1]}")
    assert [(a.key, [x.sector_number for x in a.params.sector_activations], bool(a.params.aggregate_proof))
            for a in asks] == [("commit-batch:1:3:a", [1, 2, 3, 4], True), ("commit-batch:1:3:b", [5, 6, 7, 8], True)]
    assert [(e.sector, e.msg_id) for e in events] == [(n, "m-a" if n <= 4 else "m-b") for n in numbers]
    again, _ = drive(procedures.procedure(core, cmd), lambda ask: "x")
    assert [a.key for a in again] == [a.key for a in asks]       # a restart finds the same keys


def test_a_termination_batch_over_the_block_gas_limit_is_split():
    core = new_core()
    core.policy = msgspec.structs.replace(DEVNET, block_gas_limit=29_000_000)   # 7 sectors fit, not 8
    numbers = [core.pledge(0.0)[0] for _ in range(8)]
    cmd = C.SendTerminateBatch(sector=1, step=3, cause="c", batch="1:3",
                               members=[C.BatchMember(number=n, step=3) for n in numbers])

    def chain(ask):
        if isinstance(ask, procedures.CurrentDeadline):
            return _dl(4)
        if isinstance(ask, procedures.SectorOf):
            return _view(20 + ask.number % 2)
        return f"m-{ask.key[-1]}"
    asks, events = drive(procedures.procedure(core, cmd), chain)
    sends = [a for a in asks if isinstance(a, procedures.Send)]
    assert [(s.key, [x.sectors for x in s.params.terminations]) for s in sends] == [
        ("terminate-batch:1:3:a", [[2, 4], [1, 3]]), ("terminate-batch:1:3:b", [[6, 8], [5, 7]])]
    assert [(e.sector, e.msg_id) for e in events] == [(n, "m-a" if n <= 4 else "m-b") for n in numbers]


def test_verify_proof_takes_the_precommitted_comm_d_where_the_chain_keeps_none():
    """A Lotus node's sector info has no unsealed CID: the proof is checked with the CommD
    the sector was pre-committed with; a sealed CID that does not read fails the check."""
    from zqnode.proofs import cid
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.VerifyProof(sector=number, step=3, cause="c", ticket=b"t" * 32, seed=b"s" * 32,
                        comm_d=COMM_D, comm_r=COMM_R, proof=b"p")
    view = SectorView(number=number, state="active", seal_proof=5, sealed_cid=cid.sealed_cid(COMM_R),
                      unsealed_cid="", activation=1, deadline=0, partition=0)
    asks, event = drive(procedures.procedure(core, cmd), scripted(view, b"T" * 32, b"S" * 32, True))
    assert asks[-1].args["comm_d"] == COMM_D and asks[-1].args["comm_r"] == COMM_R and event.ok
    broken = msgspec.structs.replace(view, sealed_cid="bafy-nothing")
    asks, event = drive(procedures.procedure(core, cmd), scripted(broken))
    assert not event.ok and "does not read" in event.error and len(asks) == 1


# -- SnapDeals ---------------------------------------------------------------------------------------

def _snapping(core):
    """A sector upgrading with one piece (as the core keeps it)."""
    from zqnode.nodes.sealing.sector import Piece
    number, _ = core.pledge(0.0)
    s = core.sectors[number]
    s.kind, s.pieces = "deal", [Piece(comm_p=b"\x05" * 32, payload_size=1000, padded_size=1024, offset=0,
                                      path="/p1")]
    return number


def test_a_replica_update_waits_for_a_mutable_deadline_then_sends_the_pieces():
    from zqnode.proofs import cid
    core = new_core()
    number = _snapping(core)
    cmd = C.SendReplicaUpdate(sector=number, step=7, cause="c", comm_r_new=b"N" * 32, proof=b"p")
    old, deadlines = _view(5), iter([_dl(4), _dl(6)])         # 5 is the next one, then it is past

    def chain(ask):
        if isinstance(ask, procedures.SectorOf):
            return old
        if isinstance(ask, procedures.CurrentDeadline):
            return next(deadlines)
        if isinstance(ask, procedures.NextHead):
            return None
        return "m-update"
    asks, event = drive(procedures.procedure(core, cmd), chain)
    assert procedures.NextHead(_dl(4).close) in asks
    sent = asks[-1]
    assert sent.key == f"replica-update:{(b'N' * 32).hex()[:16]}" and sent.params.update_proofs_type == 0
    (update,) = sent.params.sector_updates
    assert (update.deadline, update.new_sealed_cid) == (5, cid.sealed_cid(b"N" * 32))
    assert update.pieces == [M.PieceManifest(cid=cid.piece_cid_v1(b"\x05" * 32), size=1024)]
    assert isinstance(event, E.ReplicaUpdateSent) and event.msg_id == "m-update"
    landed = msgspec.structs.replace(old, sealed_cid=cid.sealed_cid(b"N" * 32))   # it landed already
    _, event = drive(procedures.procedure(core, cmd), scripted(landed, 140))
    assert isinstance(event, E.ReplicaUpdateLanded)


def test_an_update_is_active_past_finality_in_a_quiet_deadline_and_sent_again_when_reverted():
    from zqnode.proofs import cid
    core = new_core()
    number = _snapping(core)
    cmd = C.WaitUpdateActive(sector=number, step=9, cause="c", comm_r_new=b"N" * 32, landed=100)
    new = msgspec.structs.replace(_view(5), sealed_cid=cid.sealed_cid(b"N" * 32))
    final = 100 + DEVNET.chain_finality
    asks, event = drive(procedures.procedure(core, cmd), scripted(
        new, final - 1, _dl(9), None,                   # not final yet
        new, final, _dl(6), None,                       # final, but next to its deadline
        new, final + 8, _dl(8)))
    assert isinstance(event, E.UpdateActive) and procedures.NextHead(final) in asks
    _, event = drive(procedures.procedure(core, cmd), scripted(_view(5)))       # a reorg took it back
    assert isinstance(event, E.ReplicaUpdateSubmitFailed) and "reorg" in event.error
