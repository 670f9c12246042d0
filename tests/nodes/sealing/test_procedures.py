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


def test_terminate_waits_for_a_mutable_deadline_then_sends_one_declaration():
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.SendTerminate(sector=number, step=3, cause="c")
    # deadline 5 is the next one at first (immutable): wait for deadline 4 to close
    answers = iter([_view(5), _dl(4), 0, None, _dl(4).close, _view(5), _dl(7), "m1"])
    asks, event = drive(procedures.procedure(core, cmd), lambda ask: next(answers))
    where = [procedures.SectorOf(core.miner, number), procedures.CurrentDeadline(core.miner)]
    assert asks == [*where, procedures.Head(), procedures.NextHead(_dl(4).close), procedures.Head(),
                    *where, procedures.Send(number, "terminate:5:0", M.TerminateSectorsParams(terminations=[
                        M.SectorDeclaration(deadline=5, partition=0, sectors=[number])]))]
    assert isinstance(event, E.TerminateSent) and event.msg_id == "m1"


def test_terminate_a_sector_the_chain_lacks():
    core = new_core()
    number, _ = core.pledge(0.0)
    cmd = C.SendTerminate(sector=number, step=3, cause="c")
    _, event = drive(procedures.procedure(core, cmd), lambda ask: None)
    assert isinstance(event, E.Remove)                     # terminated already: its files go
    answers = iter([None, object()])                       # pre-committed, never proven
    _, event = drive(procedures.procedure(core, cmd), lambda ask: next(answers))
    assert event.error == "the sector is pre-committed, not proven: remove it instead"


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
