"""The sealing core over its transition table: the happy paths of CC and deal sectors,
every failure handler's decisions, Lotus's counts, back-off and pause, ticket expiry,
resume/remove, restart, and the rebuild and unseal plans."""
import msgspec
import pytest

from zqnode.nodes.chain.policy import DEVNET
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing import events as E
from zqnode.nodes.sealing import states as S
from zqnode.nodes.sealing.config import SealingConfig
from zqnode.nodes.sealing.core import (BadResume, InvalidTransition, PieceTooLarge, SealingCore,
                                       SealingError, UnknownSector)
from zqnode.nodes.sealing.sector import ChainFacts, MessageFact, Piece, PreCommitFact
from zqnode.nodes.sealing.table import TABLE
from zqnode.proofs import commp as commp_mod

MINER = 1000
CFG = SealingConfig(retry_base_s=10, retry_max_s=80, max_retries=5, wait_deals_s=30, ticket_margin=20)
TICKET, SEED, PROOF = b"t" * 32, b"s" * 32, b"proof"
COMM_R = b"r" * 32
CC_COMM_D = commp_mod.commd([], 2048)


def new_core(cfg=CFG):
    core = SealingCore(miner=MINER, seal_proof=5, policy=DEVNET, cfg=cfg)
    core.set_head(100)
    return core


def kinds(cmds):
    return [type(c).__name__ for c in cmds]


def last(cmds, kind):
    found = [c for c in cmds if isinstance(c, kind)]
    assert found, f"no {kind.__name__} in {kinds(cmds)}"
    return found[-1]


def state(core, n):
    return core.sectors[n].state


def ev(core, kind, n, **fields):
    """An answer to the sector's current step."""
    return core.event(kind, n, step=core.sectors[n].step, **fields)


def to_precommit1(core, now=0.0):
    n, cmds = core.pledge(now)
    assert kinds(cmds) == ["Save", "GetTicket"]
    cmds = core.handle(ev(core, E.TicketReady, n, ticket=TICKET, epoch=98), now)
    return n, cmds


def to_state(core, target, now=0.0):
    """A CC sector driven along the happy path until it is in `target`."""
    n, _ = to_precommit1(core, now)
    answers = [
        (E.PreCommit1Done, dict(work_id="w-pc1", comm_d=CC_COMM_D, replica_id=b"i" * 32)),
        (E.PreCommit2Done, dict(work_id="w-pc2", comm_d=CC_COMM_D, comm_r=COMM_R)),
        (E.PreCommitSent, dict(msg_id="m-pc")),
        (E.PreCommitLanded, dict(precommit_epoch=105, seed_epoch=110)),
        (E.SeedReady, dict(seed=SEED, epoch=110, precommit_epoch=105)),
        (E.Commit1Done, dict(work_id="w-c1", proof=PROOF)),
        (E.CommitSent, dict(msg_id="m-c")),
        (E.CommitLanded, dict(epoch=115)),
        (E.Finalized, dict(work_id="w-fin")),
    ]
    for kind, fields in answers:
        if state(core, n) == target:
            return n
        core.handle(ev(core, kind, n, **fields), now)
    assert state(core, n) == target
    return n


# -- happy paths ------------------------------------------------------------------------------

def test_a_cc_sector_goes_from_pledge_to_proving_with_exact_commands():
    core = new_core()
    n, cmds = core.pledge(5.0)
    assert n == 1 and core.next_number == 2
    save = cmds[0]
    assert isinstance(save, C.Save) and save.next_number == 2 and save.cause == "s-1000-1"
    assert [(e.event, e.prev, e.state) for e in save.log] == [
        ("StartCC", "", "Packing"), ("Packed", "Packing", "GetTicket")]
    assert save.log[1].data["fillers"][0]["padded_size"] == 2048       # one zero piece: all of it
    assert cmds[1] == C.GetTicket(sector=1, cause="s-1000-1", step=2)

    cmds = core.handle(ev(core, E.TicketReady, n, ticket=TICKET, epoch=98), 6.0)
    assert cmds[1:] == [C.RunPreCommit1(sector=1, cause="s-1000-1", step=3, task="PC1",
                                        seal_proof=5, ticket=TICKET)]
    cmds = core.handle(ev(core, E.PreCommit1Done, n, work_id="w1", comm_d=CC_COMM_D,
                          replica_id=b"i" * 32), 7.0)
    assert cmds[1:] == [C.Consume(sector=1, cause="s-1000-1", step=3, work_id="w1"),
                        C.RunPreCommit2(sector=1, cause="s-1000-1", step=4, task="PC2",
                                          ticket=TICKET)]
    cmds = core.handle(ev(core, E.PreCommit2Done, n, work_id="w2", comm_d=CC_COMM_D, comm_r=COMM_R), 8.0)
    assert cmds[2] == C.SendPreCommit(sector=1, cause="s-1000-1", step=5, seal_proof=5, ticket=TICKET,
                                      ticket_epoch=98, comm_d=CC_COMM_D, comm_r=COMM_R)
    cmds = core.handle(ev(core, E.PreCommitSent, n, msg_id="m1"), 9.0)
    assert cmds[1:] == [C.WaitPreCommit(sector=1, cause="s-1000-1", step=6, msg_id="m1", comm_r=COMM_R)]
    cmds = core.handle(ev(core, E.PreCommitLanded, n, precommit_epoch=105, seed_epoch=110), 10.0)
    assert cmds[1:] == [C.WaitSeed(sector=1, cause="s-1000-1", step=7, comm_r=COMM_R)]
    cmds = core.handle(ev(core, E.SeedReady, n, seed=SEED, epoch=110, precommit_epoch=105), 11.0)
    assert cmds[1:] == [C.RunCommit1(sector=1, cause="s-1000-1", step=8, task="C1", seed=SEED,
                                       ticket=TICKET)]
    cmds = core.handle(ev(core, E.Commit1Done, n, work_id="w3", proof=PROOF), 12.0)
    assert cmds[2] == C.SendProveCommit(sector=1, cause="s-1000-1", step=9, ticket=TICKET,
                                        ticket_epoch=98, seed=SEED, seed_epoch=110, comm_d=CC_COMM_D,
                                        comm_r=COMM_R, proof=PROOF)
    cmds = core.handle(ev(core, E.CommitSent, n, msg_id="m2"), 13.0)
    assert cmds[1:] == [C.WaitProveCommit(sector=1, cause="s-1000-1", step=10, msg_id="m2")]
    cmds = core.handle(ev(core, E.CommitLanded, n, epoch=115), 14.0)
    assert cmds[1:] == [C.RunFinalize(sector=1, cause="s-1000-1", step=11, task="FIN",
                                      keep_unsealed=False)]
    cmds = core.handle(ev(core, E.Finalized, n, work_id="w4"), 15.0)
    assert kinds(cmds) == ["Save", "Consume"]
    s = core.sectors[n]
    assert (s.state, s.retries, s.proof, s.commit_epoch, s.updated) == (S.PROVING, 0, b"", 115, 15.0)


def test_deal_pieces_are_packed_at_aligned_offsets_with_zero_fillers():
    core = new_core()
    small = Piece(comm_p=b"a" * 32, payload_size=100, padded_size=128, path="/p/a")
    big = Piece(comm_p=b"b" * 32, payload_size=500, padded_size=512, path="/p/b")
    n, cmds = core.assign_piece(small, 0.0)
    assert n == 1 and core.sectors[n].kind == "deal" and state(core, n) == S.ADD_PIECE
    assert cmds[-1] == C.RunAddPiece(sector=1, cause="s-1000-1", step=3, task="AP", priority=1024,
                                     seal_proof=5, index=0, path="/p/a", payload_size=100)
    assert core.assign_piece(big, 1.0)[0] == 1          # queued while AP runs: same sector
    assert state(core, n) == S.ADD_PIECE and len(core.sectors[n].pending) == 2
    core.handle(ev(core, E.PieceAdded, n, work_id="ap0", comm_p=b"a" * 32, payload_size=100,
                   padded_size=128, offset=0), 2.0)
    # the second AP must place the 512-byte piece at 512 (aligned to its size), not at 128
    s = core.sectors[n]
    assert state(core, n) == S.ADD_PIECE and s.pending == [big]
    bad = core.handle(ev(core, E.PieceAdded, n, work_id="ap1", comm_p=b"b" * 32, payload_size=500,
                         padded_size=512, offset=128), 3.0)
    assert state(core, n) == S.ADD_PIECE_FAILED
    assert "placed the piece at 128, expected 512" in core.sectors[n].last_error
    assert bad[1] == C.Consume(sector=1, cause="s-1000-1", step=5, work_id="ap1")
    core.handle(ev(core, E.Wake, n), 13.0)              # the back-off ended: AP again
    assert state(core, n) == S.ADD_PIECE
    cmds = core.handle(ev(core, E.PieceAdded, n, work_id="ap1", comm_p=b"b" * 32, payload_size=500,
                          padded_size=512, offset=512), 14.0)
    assert state(core, n) == S.WAIT_DEALS
    assert cmds[-1] == C.Schedule(sector=1, cause="s-1000-1", step=9, at=30.0)   # wait_deals_s
    cmds = core.handle(ev(core, E.Wake, n), 30.0)
    assert state(core, n) == S.GET_TICKET
    pieces = [(p.offset, p.padded_size, p.filler) for p in core.sectors[n].pieces]
    assert pieces == [(0, 128, False), (128, 128, True), (256, 256, True), (512, 512, False),
                      (1024, 1024, True)]
    want = commp_mod.commd([(128, b"a" * 32), (512, b"b" * 32)], 2048)
    core.handle(ev(core, E.TicketReady, n, ticket=TICKET, epoch=98), 31.0)
    core.handle(ev(core, E.PreCommit1Done, n, work_id="x", comm_d=CC_COMM_D, replica_id=b"i" * 32), 32.0)
    assert state(core, n) == S.SEAL_PRE_COMMIT1_FAILED            # the wrong comm_d is caught
    assert want.hex() in core.sectors[n].last_error
    core.handle(ev(core, E.Wake, n), 100.0)
    core.handle(ev(core, E.PreCommit1Done, n, work_id="x", comm_d=want, replica_id=b"i" * 32), 101.0)
    assert state(core, n) == S.PRE_COMMIT2


def test_a_piece_that_does_not_fit_opens_a_new_sector_and_an_oversized_one_is_refused():
    core = new_core()
    big = Piece(comm_p=b"b" * 32, payload_size=1500, padded_size=2048, path="/p/b")
    assert core.assign_piece(big, 0.0)[0] == 1
    assert core.assign_piece(Piece(comm_p=b"c" * 32, payload_size=70, padded_size=128,
                                   path="/p/c"), 0.0)[0] == 2
    before = {n: s.copy() for n, s in core.sectors.items()}
    with pytest.raises(PieceTooLarge, match="more than a 2048-byte sector"):
        core.assign_piece(Piece(comm_p=b"d" * 32, payload_size=3000, padded_size=4096, path="/p/d"), 0.0)
    assert core.sectors == before and core.next_number == 3


def test_a_new_deal_sector_waits_for_its_first_piece_then_for_wait_deals_s():
    core = new_core()
    n, _ = core.assign_piece(Piece(comm_p=b"a" * 32, payload_size=100, padded_size=128,
                                   path="/p/a"), 1000.0)
    assert state(core, n) == S.ADD_PIECE and core.sectors[n].deals_since == 1000.0
    cmds = core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=b"a" * 32, payload_size=100,
                          padded_size=128, offset=0), 1001.0)
    assert state(core, n) == S.WAIT_DEALS and cmds[-1].at == 1030.0


def test_a_full_deal_sector_packs_at_once():
    core = new_core()
    n, _ = core.assign_piece(Piece(comm_p=b"b" * 32, payload_size=2000, padded_size=2048,
                                   path="/p/b"), 0.0)
    cmds = core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=b"b" * 32, payload_size=2000,
                          padded_size=2048, offset=0), 1.0)
    assert state(core, n) == S.GET_TICKET and kinds(cmds) == ["Save", "Consume", "GetTicket"]


def test_deal_sectors_keep_unsealed_at_finalize():
    core = new_core()
    n, _ = core.assign_piece(Piece(comm_p=b"b" * 32, payload_size=2000, padded_size=2048, path="/p"), 0.0)
    s = core.sectors[n]
    s.state, s.comm_r, s.commit_msg = S.COMMIT_WAIT, COMM_R, "m"
    cmds = core.handle(ev(core, E.CommitLanded, n, epoch=9), 1.0)
    assert cmds[-1].keep_unsealed is True and cmds[-1].priority == 1024


# -- the table ---------------------------------------------------------------------------------

def test_every_state_is_reachable_from_a_new_sector():
    seen, todo = {S.NEW}, [S.NEW]
    while todo:
        for target in TABLE[todo.pop()].values():
            if target in TABLE and target not in seen:
                seen.add(target)
                todo.append(target)
    resumable = {S.ABORTED}                    # reached only through Resume(state="Aborted")
    assert seen | resumable == set(TABLE) == set(S.ALL) | {S.NEW}


def test_an_unknown_transition_raises_and_changes_nothing():
    core = new_core()
    n, _ = core.pledge(0.0)
    before = core.sectors[n].copy()
    with pytest.raises(InvalidTransition, match="GetTicket does not take PreCommit2Done"):
        core.handle(ev(core, E.PreCommit2Done, n, work_id="w", comm_d=b"", comm_r=b""), 1.0)
    assert core.sectors[n] == before
    with pytest.raises(UnknownSector, match="no sector 9"):
        core.handle(core.event(E.Wake, 9), 1.0)
    with pytest.raises(SealingError, match="must carry cause 's-1000-1'"):
        core.handle(E.Wake(sector=n, cause="s-1000-2"), 1.0)


def test_a_removed_sector_takes_nothing():
    core = new_core()
    n, _ = core.pledge(0.0)
    core.handle(core.event(E.Remove, n), 1.0)
    assert state(core, n) == S.REMOVING
    assert kinds(core.handle(ev(core, E.SectorRemoved, n), 2.0)) == ["Save"]
    for kind in (E.Resume, E.Remove, E.Wake):
        with pytest.raises(InvalidTransition):
            core.handle(core.event(kind, n), 3.0)


def test_an_answer_to_an_older_step_is_dropped():
    core = new_core()
    n, _ = to_precommit1(core)
    old = core.sectors[n].step
    core.handle(core.event(E.Resume, n), 1.0)              # the handler runs anew: step + 1
    assert core.handle(core.event(E.PreCommit1Done, n, step=old, work_id="w", comm_d=CC_COMM_D,
                                  replica_id=b"i" * 32), 2.0) == []
    assert state(core, n) == S.PRE_COMMIT1


# -- failures: counts, back-off, pause ----------------------------------------------------------------

def fail(core, n, task, now, error="boom"):
    return core.handle(ev(core, E.TaskFailed, n, task=task, work_id=f"w-{task}", error=error), now)


def test_precommit1_failing_cools_down_and_retries_then_pauses_and_is_never_removed():
    # Lotus only cools down and retries PreCommit1 (the sector may be pre-committed: its
    # deposit); here the sector pauses after max_retries for an operator
    core = new_core()
    n, _ = to_precommit1(core)
    schedules, issued = [], []
    for i in range(CFG.max_retries):
        now = 1000.0 * (i + 1)
        cmds = fail(core, n, "PC1", now)
        assert state(core, n) == S.SEAL_PRE_COMMIT1_FAILED and core.sectors[n].pc1_fails == i + 1
        assert cmds[1] == C.Consume(sector=n, cause="s-1000-1", step=core.sectors[n].step - 1,
                                    work_id="w-PC1")
        schedules.append(last(cmds, C.Schedule).at - now)
        cmds = core.handle(ev(core, E.Wake, n), now + schedules[-1])
        assert state(core, n) == S.PRE_COMMIT1 and kinds(cmds)[-1] == "RunPreCommit1"
        issued += kinds(cmds)
    assert schedules == [10, 20, 40, 80, 80]
    cmds = fail(core, n, "PC1", 9000.0)
    s = core.sectors[n]
    assert (s.state, s.paused, s.last_error) == (S.SEAL_PRE_COMMIT1_FAILED, True, "boom")
    assert kinds(cmds) == ["Save", "Consume"] and "RemoveSector" not in issued


def test_precommit2_failing_more_than_three_times_goes_back_to_precommit1():
    core = new_core()
    n = to_state(core, S.PRE_COMMIT2)
    for i in range(4):
        fail(core, n, "PC2", 1000.0 * i)
        core.handle(ev(core, E.Wake, n), 1000.0 * i + 500)
        assert state(core, n) == (S.PRE_COMMIT2 if i < 3 else S.PRE_COMMIT1)
    assert core.sectors[n].pc2_fails == 4
    core.handle(ev(core, E.PreCommit1Done, n, work_id="w", comm_d=CC_COMM_D, replica_id=b"i" * 32), 9e3)
    s = core.sectors[n]          # a replayed PreCommit1 is no progress: the errors still count
    assert (s.state, s.pc2_fails, s.retries) == (S.PRE_COMMIT2, 0, 4)
    core.handle(ev(core, E.PreCommit2Done, n, work_id="w2", comm_d=CC_COMM_D, comm_r=COMM_R), 9e3)
    assert core.sectors[n].retries == 0


def test_precommit2_failing_for_ever_does_not_go_round_for_ever_but_pauses():
    core = new_core()
    n = to_state(core, S.PRE_COMMIT2)
    now = 0.0
    for _ in range(CFG.max_retries):
        fail(core, n, "PC2", now, error="task process exited with status -9")
        now += 1000
        core.handle(ev(core, E.Wake, n), now)
        if state(core, n) == S.PRE_COMMIT1:                   # after 4: PreCommit1 replays
            core.handle(ev(core, E.PreCommit1Done, n, work_id="w", comm_d=CC_COMM_D,
                            replica_id=b"i" * 32), now)
    fail(core, n, "PC2", now, error="task process exited with status -9")
    s = core.sectors[n]
    assert (s.state, s.paused, s.last_error) == (S.SEAL_PRE_COMMIT2_FAILED, True,
                                                 "task process exited with status -9")


def test_after_the_cap_a_sector_pauses_with_its_last_error_until_resumed():
    core = new_core(msgspec.structs.replace(CFG, max_retries=2))
    n = to_state(core, S.FINALIZE_SECTOR)
    for i in range(2):
        fail(core, n, "FIN", 100.0 * i, error=f"disk full {i}")
        core.handle(ev(core, E.Wake, n), 100.0 * i + 50)
        assert state(core, n) == S.FINALIZE_SECTOR
    cmds = fail(core, n, "FIN", 300.0, error="disk full 2")
    s = core.sectors[n]
    assert (s.state, s.paused, s.retries, s.last_error) == (S.FINALIZE_FAILED, True, 3, "disk full 2")
    assert kinds(cmds) == ["Save", "Consume"]                    # nothing runs
    assert cmds[0].log[-1].note == "paused after 3 errors in a row: disk full 2"
    assert core.restart(400.0) == []                             # paused survives a restart
    cmds = core.handle(core.event(E.Resume, n), 500.0)           # resume: the handler decides now
    s = core.sectors[n]
    assert (s.state, s.paused, s.retries) == (S.FINALIZE_SECTOR, False, 0)
    assert kinds(cmds)[-1] == "RunFinalize"


def test_a_temporary_error_retries_the_same_handler_after_a_back_off():
    core = new_core()
    n = to_state(core, S.PRE_COMMITTING)
    cmds = core.handle(ev(core, E.TemporaryError, n, error="chain timeout"), 50.0)
    assert state(core, n) == S.PRE_COMMITTING and cmds[-1].at == 60.0
    assert core.handle(ev(core, E.TemporaryError, n, error="chain timeout"), 60.0)[-1].at == 80.0
    cmds = core.handle(ev(core, E.Wake, n), 80.0)
    assert kinds(cmds)[-1] == "SendPreCommit" and core.sectors[n].retries == 2
    core.handle(ev(core, E.ChainPreCommitFailed, n, error="refused"), 81.0)
    core.handle(ev(core, E.Wake, n), 200.0)                  # CheckChain cannot reach the chain
    core.handle(ev(core, E.TemporaryError, n, error="chain timeout"), 201.0)
    s = core.sectors[n]
    assert (s.state, s.retries, s.retry_at) == (S.PRE_COMMIT_FAILED, 4, 281.0)
    core.handle(ev(core, E.Wake, n), 281.0)
    core.handle(ev(core, E.ChainChecked, n, facts=facts(head=120)), 282.0)
    assert state(core, n) == S.PRE_COMMITTING
    core.handle(ev(core, E.PreCommitSent, n, msg_id="m"), 283.0)
    assert core.sectors[n].retries == 0 and core.sectors[n].last_error == ""


def test_the_back_off_is_capped():
    assert [CFG.backoff(i) for i in range(1, 7)] == [10, 20, 40, 80, 80, 80]


def test_compute_proof_failures_and_invalid_proofs_go_back_to_precommit1():
    core = new_core()
    n = to_state(core, S.COMMITTING)
    fail(core, n, "C1", 0.0)
    core.handle(ev(core, E.Wake, n), 100.0)
    assert state(core, n) == S.COMMITTING
    core.sectors[n].invalid_proofs = 2
    fail(core, n, "C1", 200.0)
    core.handle(ev(core, E.Wake, n), 300.0)
    s = core.sectors[n]
    assert (s.state, s.pc1_fails, s.invalid_proofs, s.last_error) == (
        S.SEAL_PRE_COMMIT1_FAILED, 1, 0, "consecutive compute fails")


# -- decisions on the chain's facts ------------------------------------------------------------------

def facts(**kw):
    return ChainFacts(**{"head": 120, **kw})


PC_ON_CHAIN = PreCommitFact(comm_r=COMM_R, seal_rand_epoch=98, precommit_epoch=105, seed_epoch=110,
                            prove_by=505)


@pytest.mark.parametrize("f, target", [
    (facts(precommit=PC_ON_CHAIN), S.WAIT_SEED),
    (facts(precommit_msg=MessageFact(status="pending")), S.PRE_COMMIT_WAIT),
    (facts(precommit_msg=MessageFact(status="landed", exit_code=16, error="bad")), S.PRE_COMMITTING),
    (facts(precommit_msg=MessageFact(status="unknown")), S.PRE_COMMITTING),
    (facts(ticket_matches=False), S.GET_TICKET),
    (facts(head=98 + 200), S.GET_TICKET),                       # too old when it would land
    (facts(head=98 + 198), S.PRE_COMMITTING),
    (facts(precommit=msgspec.structs.replace(PC_ON_CHAIN, comm_r=b"x" * 32)), S.PRE_COMMIT_FAILED),
])
def test_precommit_failed_decides_on_the_chain(f, target):
    core = new_core()
    n = to_state(core, S.PRE_COMMIT_WAIT)
    core.handle(ev(core, E.ChainPreCommitFailed, n, error="exit 16"), 0.0)
    cmds = core.handle(ev(core, E.Wake, n), 10.0)
    assert kinds(cmds)[-1] == "CheckChain" and cmds[-1].precommit_msg == "m-pc"
    core.handle(ev(core, E.ChainChecked, n, facts=f), 11.0)
    assert state(core, n) == target
    if target == S.PRE_COMMIT_FAILED:
        assert core.sectors[n].paused and "not ours" in core.sectors[n].last_error
    if target == S.GET_TICKET:
        assert core.sectors[n].ticket == b"" and core.sectors[n].comm_r == b""


@pytest.mark.parametrize("f, target", [
    (facts(on_chain=True, activation=117), S.FINALIZE_SECTOR),
    (facts(commit_msg=MessageFact(status="pending")), S.COMMIT_WAIT),
    (facts(commit_msg=MessageFact(status="landed")), S.COMMIT_WAIT),
    (facts(precommit_msg=MessageFact(status="pending")), S.PRE_COMMIT_WAIT),
    (facts(head=105 + 401), S.REMOVING),                        # the pre-commit expired
    (facts(), S.PRE_COMMITTING),
    (facts(precommit=PC_ON_CHAIN, ticket_matches=False), S.REMOVING),
    (facts(precommit=PC_ON_CHAIN, head=505), S.REMOVING),
    (facts(precommit=PC_ON_CHAIN, seed_matches=False), S.WAIT_SEED),
    (facts(precommit=msgspec.structs.replace(PC_ON_CHAIN, seed_epoch=111)), S.WAIT_SEED),
    (facts(precommit=PC_ON_CHAIN, proof_valid=False), S.COMMITTING),
    (facts(precommit=PC_ON_CHAIN, proof_valid=True), S.SUBMIT_COMMIT),
])
def test_commit_failed_decides_on_the_chain(f, target):
    core = new_core()
    n = to_state(core, S.COMMIT_WAIT)
    core.handle(ev(core, E.CommitFailed, n, error="exit 16"), 0.0)
    core.handle(ev(core, E.Wake, n), 10.0)
    core.handle(ev(core, E.ChainChecked, n, facts=f), 11.0)
    assert state(core, n) == target


def test_a_second_invalid_proof_goes_back_to_precommit1():
    core = new_core()
    n = to_state(core, S.COMMIT_WAIT)
    bad = facts(precommit=PC_ON_CHAIN, proof_valid=False)
    core.handle(ev(core, E.CommitFailed, n, error="invalid proof"), 0.0)
    core.handle(ev(core, E.Wake, n), 10.0)
    core.handle(ev(core, E.ChainChecked, n, facts=bad), 11.0)
    assert state(core, n) == S.COMMITTING and core.sectors[n].invalid_proofs == 1
    core.handle(ev(core, E.Commit1Done, n, work_id="c1", proof=PROOF), 12.0)
    core.handle(ev(core, E.CommitFailed, n, error="invalid proof"), 13.0)
    core.handle(ev(core, E.Wake, n), 100.0)
    core.handle(ev(core, E.ChainChecked, n, facts=bad), 101.0)
    s = core.sectors[n]
    assert (s.state, s.last_error, s.invalid_proofs) == (S.SEAL_PRE_COMMIT1_FAILED,
                                                         "consecutive invalid proofs", 0)


def test_the_precommit_and_commit_decisions_before_sending():
    core = new_core()
    n = to_state(core, S.PRE_COMMITTING)
    s = core.sectors[n]
    assert core.precommit_decision(s, facts(head=120)) is None
    assert type(core.precommit_decision(s, facts(head=98 + 200))).__name__ == "TicketExpired"
    assert type(core.precommit_decision(s, facts(head=98))).__name__ == "TemporaryError"
    assert type(core.precommit_decision(s, facts(ticket_matches=False))).__name__ == "TicketExpired"
    landed = core.precommit_decision(s, facts(precommit=PC_ON_CHAIN))
    assert landed == core.event(E.PreCommitLanded, n, step=s.step, precommit_epoch=105, seed_epoch=110)
    n2 = to_state(core, S.SUBMIT_COMMIT)
    s2 = core.sectors[n2]
    ok = facts(precommit=PC_ON_CHAIN, seed_matches=True, ticket_matches=True, proof_valid=True)
    assert core.commit_decision(s2, ok) is None
    assert core.commit_decision(s2, msgspec.structs.replace(ok, proof_valid=False)).error == \
        "the proof does not verify"
    assert core.commit_decision(s2, msgspec.structs.replace(ok, seed_matches=False)).error == \
        "the seed changed (a reorg)"
    assert type(core.commit_decision(s2, msgspec.structs.replace(ok, head=109))).__name__ == "TemporaryError"
    assert core.commit_decision(s2, facts(on_chain=True, activation=7)).epoch == 7


# -- tickets ------------------------------------------------------------------------------------------

def test_an_expired_ticket_is_fetched_again_and_precommit1_redone_with_it():
    core = new_core()
    n, cmds = to_precommit1(core)
    assert cmds[-1].ticket == TICKET
    core.set_head(98 + 200 - 20 + 1)       # with the margin, the pre-commit would land too late
    cmds = core.restart(1.0)
    assert state(core, n) == S.GET_TICKET and kinds(cmds) == ["Save", "GetTicket"]
    assert [e.event for e in cmds[0].log] == ["OldTicket"]
    cmds = core.handle(ev(core, E.TicketReady, n, ticket=b"n" * 32, epoch=277), 2.0)
    assert cmds[-1] == C.RunPreCommit1(sector=n, cause="s-1000-1", step=core.sectors[n].step,
                                       task="PC1", seal_proof=5, ticket=b"n" * 32)

    core.set_head(100)
    n2 = to_state(core, S.PRE_COMMITTING)     # the same at PreCommitting (the shell's decision)
    core.handle(ev(core, E.TicketExpired, n2, reason="too old"), 3.0)
    s = core.sectors[n2]
    assert (s.state, s.ticket, s.comm_r) == (S.GET_TICKET, b"", b"")


def test_a_ticket_expired_after_precommit2_runs_precommit1_again_and_precommits_once():
    # the chaos run's sector 4, with exact commands: PreCommit2 done with the ticket of
    # epoch 98, too old when the pre-commit would land; a new ticket, PreCommit1 and
    # PreCommit2 again with it (new work: new params), one PreCommitSector
    core = new_core()
    n = to_state(core, S.PRE_COMMITTING)
    cause, new = "s-1000-1", b"n" * 32
    cmds = core.handle(ev(core, E.TicketExpired, n, reason="ticket of epoch 98 is too old at epoch 299"), 1.0)
    saves = [cmds[0]]
    step = core.sectors[n].step
    assert cmds[1:] == [C.GetTicket(sector=n, cause=cause, step=step)]
    cmds = core.handle(ev(core, E.TicketReady, n, ticket=new, epoch=297), 2.0)
    assert cmds[1:] == [C.RunPreCommit1(sector=n, cause=cause, step=step + 1, task="PC1", seal_proof=5,
                                        ticket=new)]
    cmds = core.handle(ev(core, E.PreCommit1Done, n, work_id="pc1-new", comm_d=CC_COMM_D,
                          replica_id=b"j" * 32), 3.0)
    assert cmds[1:] == [C.Consume(sector=n, cause=cause, step=step + 1, work_id="pc1-new"),
                        C.RunPreCommit2(sector=n, cause=cause, step=step + 2, task="PC2", ticket=new)]
    comm_r = b"R" * 32
    cmds = core.handle(ev(core, E.PreCommit2Done, n, work_id="pc2-new", comm_d=CC_COMM_D, comm_r=comm_r), 4.0)
    assert cmds[1:] == [C.Consume(sector=n, cause=cause, step=step + 2, work_id="pc2-new"),
                        C.SendPreCommit(sector=n, cause=cause, step=step + 3, seal_proof=5, ticket=new,
                                        ticket_epoch=297, comm_d=CC_COMM_D, comm_r=comm_r)]
    saves.append(cmds[0])
    cmds = core.handle(ev(core, E.PreCommitSent, n, msg_id="m-new"), 5.0)
    assert cmds[1:] == [C.WaitPreCommit(sector=n, cause=cause, step=step + 4, msg_id="m-new",
                                        comm_r=comm_r)]
    cmds = core.handle(ev(core, E.PreCommitLanded, n, precommit_epoch=300, seed_epoch=305), 6.0)
    assert cmds[1:] == [C.WaitSeed(sector=n, cause=cause, step=step + 5, comm_r=comm_r)]
    assert [e.event for e in saves[0].log] == ["TicketExpired"]
    assert (core.sectors[n].ticket, core.sectors[n].retries) == (new, 0)


# -- our faults pause a sector; only the chain removes one ------------------------------------------------

OUR_FAULTS = [   # (state, the error event's kind and fields): each as the shell reports it
    (S.PRE_COMMIT1, E.TaskFailed, dict(task="PC1", error="SectorError: sector 1 is past PreCommit1 "
                                                          "(stage pc2)")),      # stage order
    (S.PRE_COMMIT2, E.TaskFailed, dict(task="PC2", error="task process exited with status -9")),
    (S.COMMITTING, E.TaskFailed, dict(task="C1", error="aborted")),             # killed by an operator
    (S.PRE_COMMIT2, E.TaskFailed, dict(task="PC2", error="fetch failed: cannot fetch s-1000-1: "
                                                         "devnet-worker-1: no hub answers")),  # worker gone
    (S.PRE_COMMITTING, E.TemporaryError, dict(error="SendPreCommit: CallTimeout: @chain did not "
                                                    "answer ChainHead within 10s")),  # a timeout
    (S.FINALIZE_SECTOR, E.TaskFailed, dict(task="FIN", error="OSError: [Errno 28] No space left")),
]


@pytest.mark.parametrize("where, kind, fields", OUR_FAULTS)
def test_our_faults_back_off_then_pause_the_sector_and_never_remove_it(where, kind, fields):
    core = new_core()
    n = to_state(core, where)
    issued, now = [], 0.0
    while not core.sectors[n].paused:
        cmds = core.handle(ev(core, kind, n, **fields), now)
        issued += kinds(cmds)
        now += 1000.0
        issued += kinds(core.handle(ev(core, E.Wake, n), now))
        if state(core, n) == S.PRE_COMMIT1 and where == S.PRE_COMMIT2:   # PC2's fall-back
            core.handle(ev(core, E.PreCommit1Done, n, work_id="w", comm_d=CC_COMM_D,
                           replica_id=b"i" * 32), now)
        assert now < 100_000, "never paused"
    s = core.sectors[n]
    assert s.last_error == fields["error"] and s.state not in (S.REMOVING, S.REMOVED)
    assert "RemoveSector" not in issued
    assert cmds[0].log[-1].note == f"paused after {CFG.max_retries + 1} errors in a row: {fields['error']}"
    cmds = core.handle(core.event(E.Resume, n), now)        # the operator's word: it goes on
    assert not core.sectors[n].paused and kinds(cmds)[-1] != "Save"


@pytest.mark.parametrize("kind, target, paused", [("cc", S.REMOVING, False), ("deal", S.COMMIT_FAILED, True)])
def test_a_precommit_expired_on_chain_removes_a_cc_sector_but_only_pauses_a_deal_sector(kind, target, paused):
    core = new_core()
    if kind == "cc":
        n = to_state(core, S.COMMIT_WAIT)
    else:
        n, _ = core.assign_piece(Piece(comm_p=b"b" * 32, payload_size=2000, padded_size=2048,
                                       path="/p/b"), 0.0)
        core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=b"b" * 32, payload_size=2000,
                       padded_size=2048, offset=0), 1.0)
        core.handle(ev(core, E.TicketReady, n, ticket=TICKET, epoch=98), 2.0)
        deal_d = commp_mod.commd([(2048, b"b" * 32)], 2048)
        core.handle(ev(core, E.PreCommit1Done, n, work_id="p1", comm_d=deal_d, replica_id=b"i" * 32), 3.0)
        core.handle(ev(core, E.PreCommit2Done, n, work_id="p2", comm_d=deal_d, comm_r=COMM_R), 4.0)
        core.handle(ev(core, E.PreCommitSent, n, msg_id="m-pc"), 5.0)
        core.handle(ev(core, E.PreCommitLanded, n, precommit_epoch=105, seed_epoch=110), 6.0)
        core.handle(ev(core, E.SeedReady, n, seed=SEED, epoch=110, precommit_epoch=105), 7.0)
        core.handle(ev(core, E.Commit1Done, n, work_id="c1", proof=PROOF), 8.0)
        core.handle(ev(core, E.CommitSent, n, msg_id="m-c"), 9.0)
    core.handle(ev(core, E.CommitFailed, n, error="exit 16"), 10.0)
    core.handle(ev(core, E.Wake, n), 20.0)
    cmds = core.handle(ev(core, E.ChainChecked, n, facts=facts(head=105 + 401)), 21.0)
    s = core.sectors[n]
    assert (s.state, s.paused) == (target, paused)
    assert s.last_error.startswith("the pre-commit expired before it was proven")
    if paused:
        assert s.last_error.endswith(f"sector {n} holds deal data: remove it with `zqnode sectors remove`")
        assert kinds(cmds) == ["Save"]
    else:
        assert kinds(cmds)[-1] == "RemoveSector"


# -- operators -----------------------------------------------------------------------------------------

def test_resume_jumps_checks_prerequisites_and_aborted_drops_the_sector():
    core = new_core()
    n = to_state(core, S.WAIT_SEED)
    cmds = core.handle(core.event(E.Resume, n, state=S.PRE_COMMIT2), 1.0)
    assert state(core, n) == S.PRE_COMMIT2 and kinds(cmds)[-1] == "RunPreCommit2"
    before = core.sectors[n].copy()
    with pytest.raises(BadResume, match="no seed"):
        core.handle(core.event(E.Resume, n, state=S.COMMITTING), 2.0)
    with pytest.raises(BadResume, match="no state 'Nowhere'"):
        core.handle(core.event(E.Resume, n, state="Nowhere"), 2.0)
    with pytest.raises(BadResume, match="enters it itself"):
        core.handle(core.event(E.Resume, n, state=S.COMMIT_FAILED), 2.0)
    with pytest.raises(BadResume, match="CC sector"):
        core.handle(core.event(E.Resume, n, state=S.WAIT_DEALS), 2.0)
    assert core.sectors[n] == before
    cmds = core.handle(core.event(E.Resume, n, state=S.ABORTED), 3.0)
    assert state(core, n) == S.ABORTED and kinds(cmds)[-1] == "AbortWork"
    assert kinds(core.restart(4.0)) == ["AbortWork"]
    core.handle(core.event(E.Remove, n), 5.0)
    assert state(core, n) == S.REMOVING


def test_remove_works_from_every_state_but_removed():
    for st in set(S.ALL) - {S.REMOVED}:
        core = new_core()
        n, _ = core.pledge(0.0)
        core.sectors[n].state = st
        core.handle(core.event(E.Remove, n), 1.0)
        assert state(core, n) == S.REMOVING, st
    core = new_core()
    n, _ = core.pledge(0.0)
    core.handle(core.event(E.Remove, n), 1.0)
    core.handle(ev(core, E.RemoveFailed, n, error="busy"), 2.0)
    assert state(core, n) == S.REMOVE_FAILED
    cmds = core.handle(ev(core, E.Wake, n), 20.0)
    assert state(core, n) == S.REMOVING and kinds(cmds)[-1] == "RemoveSector"


# -- restart -------------------------------------------------------------------------------------------

def stored(core):
    """What the shell persisted: the sectors as they are, through msgpack."""
    return [msgspec.msgpack.decode(msgspec.msgpack.encode(s), type=type(s)) for s in core.sectors.values()]


@pytest.mark.parametrize("target, command", [
    (S.PRE_COMMIT1, "RunPreCommit1"), (S.PRE_COMMIT2, "RunPreCommit2"),
    (S.PRE_COMMITTING, "SendPreCommit"), (S.PRE_COMMIT_WAIT, "WaitPreCommit"),
    (S.WAIT_SEED, "WaitSeed"), (S.COMMITTING, "RunCommit1"), (S.SUBMIT_COMMIT, "SendProveCommit"),
    (S.COMMIT_WAIT, "WaitProveCommit"), (S.FINALIZE_SECTOR, "RunFinalize"),
])
def test_restart_runs_each_sectors_handler_again_with_the_same_command(target, command):
    core = new_core()
    n = to_state(core, target)
    s = core.sectors[n]
    again = new_core()
    again.restore(stored(core), core.next_number)
    cmds = again.restart(99.0)
    assert kinds(cmds) == [command] and cmds[0].step == s.step
    assert again.restart(100.0) == cmds                  # and again: idempotent
    first = core.rerun(n, 0.0)
    assert first == cmds


def test_restart_keeps_a_pending_back_off_and_a_new_pledge_gets_a_new_number():
    core = new_core()
    n = to_state(core, S.PRE_COMMIT2)
    fail(core, n, "PC2", 50.0)
    again = new_core()
    again.restore(stored(core), core.next_number)
    assert again.restart(55.0) == [C.Schedule(sector=n, cause="s-1000-1",
                                              step=core.sectors[n].step, at=60.0)]
    assert kinds(again.restart(61.0))[-1] == "RunPreCommit2"
    assert again.pledge(70.0)[0] == 2


# -- post-seal and the plans -----------------------------------------------------------------------------

def test_faults_reported_and_recovered():
    core = new_core()
    n = to_state(core, S.PROVING)
    core.handle(core.event(E.FaultDetected, n), 1.0)
    assert state(core, n) == S.FAULTY
    core.handle(core.event(E.FaultReported, n), 2.0)
    assert state(core, n) == S.FAULT_REPORTED
    core.handle(core.event(E.FaultRecovered, n), 3.0)
    assert state(core, n) == S.PROVING


def test_terminate_goes_through_its_states_and_its_failure_handler():
    core = new_core()
    n = to_state(core, S.PROVING)
    wait = core.cfg.terminate_batch_wait_s
    assert core.handle(core.event(E.Terminate, n), 1.0)[-1] == C.Schedule(
        sector=n, cause="s-1000-1", step=core.sectors[n].step, at=1.0 + wait)   # waits for a batch
    assert core.batches(wait) == []
    (send,) = [c for c in core.batches(1.0 + wait) if isinstance(c, C.SendTerminateBatch)]
    assert [m.number for m in send.members] == [n] and send.batch.startswith(f"{n}:")
    core.handle(ev(core, E.TerminateFailed, n, error="no method"), 2.0 + wait)
    assert state(core, n) == S.TERMINATE_FAILED
    core.handle(ev(core, E.Wake, n), 400.0)
    assert state(core, n) == S.TERMINATING and core.sectors[n].batch == ""
    cmds = core.handle(ev(core, E.TerminateSent, n, msg_id="mt"), 401.0)
    assert cmds[-1] == C.WaitTerminate(sector=n, cause="s-1000-1", step=core.sectors[n].step, msg_id="mt")
    core.handle(ev(core, E.Terminated, n), 402.0)
    assert state(core, n) == S.REMOVING


def test_terminations_batch_as_lotuss_terminate_batcher():
    core = new_core(msgspec.structs.replace(CFG, terminate_batch_max=3, terminate_batch_min=2,
                                            terminate_batch_wait_s=100.0))
    numbers = [to_state(core, S.PROVING) for _ in range(4)]
    for i, n in enumerate(numbers[:2]):
        core.handle(core.event(E.Terminate, n), float(i))
    assert core.batches(99.0) == []                              # not full, not waited
    core.handle(core.event(E.Terminate, numbers[2]), 2.0)
    (full,) = [c for c in core.batches(3.0) if isinstance(c, C.SendTerminateBatch)]   # full: at once
    assert [m.number for m in full.members] == numbers[:3]
    core.handle(core.event(E.Terminate, numbers[3]), 4.0)
    assert core.batches(500.0) == []                             # one waits for the least (2)
    core.handle(ev(core, E.TerminateDeferred, numbers[2]), 5.0)  # its deadline was immutable
    assert core.sectors[numbers[2]].batch == "" and state(core, numbers[2]) == S.TERMINATING
    assert core.batches(103.0) == []                             # the oldest waits its 100 s
    (late,) = [c for c in core.batches(104.0) if isinstance(c, C.SendTerminateBatch)]
    assert [m.number for m in late.members] == [numbers[2], numbers[3]]


def test_rebuild_seals_again_with_the_same_ticket_and_checks_comm_r_and_the_proof():
    core = new_core()
    n = to_state(core, S.PROVING)
    core.handle(core.event(E.FaultReported, n), 0.0)
    cmds = core.handle(core.event(E.Rebuild, n), 1.0)
    assert kinds(cmds)[-1] == "CleanSector"
    cmds = core.handle(ev(core, E.Cleaned, n), 2.0)            # CC: no pieces to add again
    assert state(core, n) == S.REBUILD_PRE_COMMIT1 and cmds[-1].ticket == TICKET
    core.handle(ev(core, E.PreCommit1Done, n, work_id="p1", comm_d=CC_COMM_D, replica_id=b"i" * 32), 3.0)
    core.handle(ev(core, E.PreCommit2Done, n, work_id="p2", comm_d=CC_COMM_D, comm_r=b"x" * 32), 4.0)
    assert state(core, n) == S.REBUILD_FAILED and "the chain's is" in core.sectors[n].last_error
    core.handle(ev(core, E.Wake, n), 100.0)
    assert state(core, n) == S.REBUILD_CLEAN
    core.handle(ev(core, E.Cleaned, n), 101.0)
    core.handle(ev(core, E.PreCommit1Done, n, work_id="p1", comm_d=CC_COMM_D, replica_id=b"i" * 32), 102.0)
    cmds = core.handle(ev(core, E.PreCommit2Done, n, work_id="p2", comm_d=CC_COMM_D, comm_r=COMM_R), 103.0)
    assert cmds[-1] == C.RunCommit1(sector=n, cause="s-1000-1", step=core.sectors[n].step, task="C1",
                                    seed=SEED, ticket=TICKET)
    cmds = core.handle(ev(core, E.Commit1Done, n, work_id="c1", proof=PROOF), 104.0)
    assert cmds[-1] == C.VerifyProof(sector=n, cause="s-1000-1", step=core.sectors[n].step,
                                     ticket=TICKET, seed=SEED, comm_d=CC_COMM_D, comm_r=COMM_R, proof=PROOF)
    core.handle(ev(core, E.ProofChecked, n, ok=True), 105.0)
    core.handle(ev(core, E.Finalized, n, work_id="f"), 106.0)
    s = core.sectors[n]
    assert (s.state, s.comm_r, s.proof, s.retries) == (S.PROVING, COMM_R, b"", 0)


def test_rebuild_of_a_deal_sector_adds_its_pieces_again():
    core = new_core()
    n, _ = core.assign_piece(Piece(comm_p=b"b" * 32, payload_size=2000, padded_size=2048,
                                   path="/p/b"), 0.0)
    core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=b"b" * 32, payload_size=2000,
                   padded_size=2048, offset=0), 1.0)
    s = core.sectors[n]
    s.state, s.ticket, s.comm_d, s.comm_r, s.seed = S.PROVING, TICKET, b"d" * 32, COMM_R, SEED
    core.handle(core.event(E.Rebuild, n), 2.0)
    cmds = core.handle(ev(core, E.Cleaned, n), 3.0)
    assert cmds[-1] == C.RunAddPiece(sector=n, cause="s-1000-1", step=core.sectors[n].step, task="AP",
                                     priority=1024, seal_proof=5, index=0, path="/p/b", payload_size=2000)
    cmds = core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=b"b" * 32, payload_size=2000,
                          padded_size=2048, offset=0), 4.0)
    assert state(core, n) == S.REBUILD_PRE_COMMIT1 and core.sectors[n].rebuild_added == 1
    assert len(core.sectors[n].pieces) == 1


def test_unseal_writes_the_data_and_returns_to_proving():
    core = new_core()
    n = to_state(core, S.PROVING)
    cmds = core.handle(core.event(E.Unseal, n, out="/tmp/out", piece=-1), 1.0)
    assert cmds[-1] == C.RunUnseal(sector=n, cause="s-1000-1", step=core.sectors[n].step, task="UNS",
                                   piece=-1, out="/tmp/out")
    fail(core, n, "UNS", 2.0)
    core.handle(ev(core, E.Wake, n), 50.0)
    assert state(core, n) == S.UNSEALING
    core.handle(ev(core, E.UnsealDone, n, work_id="u", size=2032), 51.0)
    assert state(core, n) == S.PROVING and core.sectors[n].unseal_out == ""


def test_every_state_is_entered_by_some_event_sequence():
    """Not just the table: drive sectors into every state the machine can enter."""
    seen = set()
    core = new_core()
    original = core.handle

    def spy(event, now):
        out = original(event, now)
        seen.update(e.state for c in out if isinstance(c, C.Save) for e in c.log)
        return out
    core.handle = spy
    n = to_state(core, S.PROVING)
    for kind in (E.FaultDetected, E.FaultReported, E.Rebuild):
        core.handle(core.event(kind, n), 0.0)
    for kind, f in ((E.Cleaned, {}), (E.PreCommit1Done, dict(work_id="a", comm_d=CC_COMM_D, replica_id=b"")),
                    (E.PreCommit2Done, dict(work_id="b", comm_d=CC_COMM_D, comm_r=COMM_R)),
                    (E.Commit1Done, dict(work_id="c", proof=PROOF)), (E.ProofChecked, dict(ok=False))):
        core.handle(ev(core, kind, n, **f), 0.0)
    core.handle(core.event(E.Resume, n, state=S.REBUILD_FINALIZE), 0.0)
    core.handle(ev(core, E.Finalized, n, work_id="d"), 0.0)
    core.handle(core.event(E.Unseal, n, out="o"), 0.0)
    fail(core, n, "UNS", 0.0)
    core.handle(core.event(E.Resume, n, state=S.PROVING), 0.0)
    core.handle(core.event(E.Terminate, n), 0.0)
    core.handle(ev(core, E.TerminateSent, n, msg_id="t"), 0.0)
    core.handle(ev(core, E.TerminateFailed, n, error="x"), 0.0)
    core.handle(core.event(E.Remove, n), 0.0)
    core.handle(ev(core, E.RemoveFailed, n, error="x"), 0.0)
    core.handle(core.event(E.Remove, n), 0.0)
    core.handle(ev(core, E.SectorRemoved, n), 0.0)
    d, _ = core.assign_piece(Piece(comm_p=b"a" * 32, payload_size=100, padded_size=128, path="/a"), 0.0)
    fail(core, d, "AP", 0.0)
    core.handle(core.event(E.Resume, d, state=S.ABORTED), 0.0)
    m = to_state(core, S.FINALIZE_SECTOR)
    for task, st in (("PC1", S.PRE_COMMIT1), ("PC2", S.PRE_COMMIT2), ("C1", S.COMMITTING),
                     ("FIN", S.FINALIZE_SECTOR)):
        core.handle(core.event(E.Resume, m, state=st), 0.0) if state(core, m) != st else None
        fail(core, m, task, 0.0)
    core.handle(core.event(E.Resume, m, state=S.PRE_COMMIT_WAIT), 0.0)
    core.handle(ev(core, E.ChainPreCommitFailed, m, error="x"), 0.0)
    core.handle(core.event(E.Resume, m, state=S.COMMIT_WAIT), 0.0)
    core.handle(ev(core, E.CommitFailed, m, error="x"), 0.0)
    b = to_state(core, S.PRE_COMMITTING)
    core.handle(ev(core, E.PreCommitBatch, b), 0.0)
    core.handle(ev(core, E.PreCommitBatchSent, b, msg_id="pb"), 0.0)
    c = to_state(core, S.SUBMIT_COMMIT)
    core.handle(ev(core, E.CommitAggregate, c), 0.0)
    core.handle(ev(core, E.CommitAggregateSent, c, msg_id="cb"), 0.0)
    u = snapped_up(core)                                     # SnapDeals, its failures and the abort
    core.assign_piece(Piece(comm_p=b"\x06" * 32, payload_size=400, padded_size=512, path="/pieces/p2"), 0.0)
    fail(core, u, "AP", 0.0)
    core.handle(core.event(E.AbortUpgrade, u), 0.0)
    core.handle(ev(core, E.UpgradeAborted, u, work_id="drop"), 0.0)
    u = snapped_up(core)
    through_the_update(core, u, until=S.REPLICA_UPDATE_WAIT)
    core.handle(ev(core, E.ReplicaUpdateSubmitFailed, u, error="x"), 0.0)
    core.handle(ev(core, E.Wake, u), 1e9)
    through_the_update(core, u, until=S.PROVING)
    v = snapped_up(core)
    through_the_update(core, v, until=S.FINALIZE_REPLICA_UPDATE)
    fail(core, v, "FRU", 0.0)
    core.handle(ev(core, E.Wake, v), 1e9)
    through_the_update(core, v, until=S.RELEASE_SECTOR_KEY)
    fail(core, v, "FRU", 0.0)
    assert seen == set(S.ALL)


# -- SnapDeals ---------------------------------------------------------------------------------------

SNAP_PIECE = Piece(comm_p=b"\x05" * 32, payload_size=1000, padded_size=1024, path="/pieces/p1")


def snapped_up(core, now=0.0) -> int:
    """A proving CC sector, snapped up, with one piece added: in SnapDealsWaitDeals."""
    n = to_state(core, S.PROVING, now)
    core.handle(core.event(E.SnapUp, n), now)
    number, cmds = core.assign_piece(SNAP_PIECE, now)
    assert number == n and state(core, n) == S.SNAP_DEALS_ADD_PIECE
    assert last(cmds, C.RunAddPiece).update
    core.handle(ev(core, E.PieceAdded, n, work_id="ap", comm_p=SNAP_PIECE.comm_p, payload_size=1000,
                   padded_size=1024, offset=0), now)
    assert state(core, n) == S.SNAP_DEALS_WAIT_DEALS
    return n


def through_the_update(core, n, until, now=0.0):
    """Answer each command of the upgrade with success until the sector is in `until`."""
    comm_d = commp_mod.commd([(1024, SNAP_PIECE.comm_p)], 2048)
    answers = {
        S.SNAP_DEALS_WAIT_DEALS: lambda: core.event(E.StartPacking, n),
        S.UPDATE_REPLICA: lambda: ev(core, E.ReplicaUpdated, n, work_id="ru", comm_r_new=b"N" * 32, comm_d_new=comm_d),
        S.PROVE_REPLICA_UPDATE: lambda: ev(core, E.ReplicaUpdateProven, n, work_id="pr", proof=b"update proof"),
        S.SUBMIT_REPLICA_UPDATE: lambda: ev(core, E.ReplicaUpdateSent, n, msg_id="ru-msg"),
        S.REPLICA_UPDATE_WAIT: lambda: ev(core, E.ReplicaUpdateLanded, n, epoch=100),
        S.FINALIZE_REPLICA_UPDATE: lambda: ev(core, E.Finalized, n, work_id="fru"),
        S.UPDATE_ACTIVATING: lambda: ev(core, E.UpdateActive, n),
        S.RELEASE_SECTOR_KEY: lambda: ev(core, E.SectorKeyReleased, n, work_id="rsk"),
    }
    while state(core, n) != until:
        core.handle(answers[state(core, n)](), now)


def test_a_snapped_up_cc_sector_takes_a_piece_and_its_new_replica():
    core = new_core()
    n = snapped_up(core)
    s = core.sectors[n]
    assert (s.kind, [p.path for p in s.pieces], s.key_pieces != []) == ("deal", ["/pieces/p1"], True)
    with pytest.raises(SealingError, match="being snapped up already"):
        core.handle(core.event(E.SnapUp, n), 0.5)
    assert s.comm_r == COMM_R                                  # the chain's, until the update is final
    cmds = core.handle(core.event(E.StartPacking, n), 1.0)
    assert state(core, n) == S.UPDATE_REPLICA
    assert last(cmds, C.RunReplicaUpdate).comm_r_old == COMM_R
    comm_d = commp_mod.commd([(1024, SNAP_PIECE.comm_p)], 2048)
    cmds = core.handle(ev(core, E.ReplicaUpdated, n, work_id="ru", comm_r_new=b"N" * 32, comm_d_new=comm_d), 2.0)
    assert last(cmds, C.RunProveReplicaUpdate).comm_r_new == b"N" * 32
    cmds = core.handle(ev(core, E.ReplicaUpdateProven, n, work_id="pr", proof=b"update proof"), 3.0)
    assert last(cmds, C.SendReplicaUpdate).proof == b"update proof"
    through_the_update(core, n, until=S.UPDATE_ACTIVATING)
    assert core.sectors[n].comm_r == COMM_R
    cmds = core.handle(ev(core, E.UpdateActive, n), 4.0)
    s = core.sectors[n]
    assert (s.comm_r, s.comm_d, s.key_pieces) == (b"N" * 32, comm_d, [])
    assert last(cmds, C.RunFinalizeReplicaUpdate).release_key
    through_the_update(core, n, until=S.PROVING)
    with pytest.raises(SealingError, match="holds deal data"):    # once: it has data now
        core.handle(core.event(E.SnapUp, n), 5.0)


def test_a_replica_update_with_the_wrong_comm_d_fails_and_an_upgrade_aborts_back_to_cc():
    core = new_core()
    n = snapped_up(core)
    core.handle(core.event(E.StartPacking, n), 1.0)
    core.handle(ev(core, E.ReplicaUpdated, n, work_id="ru", comm_r_new=b"N" * 32, comm_d_new=b"\0" * 32), 2.0)
    s = core.sectors[n]
    assert state(core, n) == S.REPLICA_UPDATE_FAILED and "the pieces make" in s.last_error
    cmds = core.handle(ev(core, E.Wake, n), 1e6)               # back-off over: the RU again
    assert state(core, n) == S.UPDATE_REPLICA and last(cmds, C.RunReplicaUpdate)
    cmds = core.handle(core.event(E.AbortUpgrade, n), 1e6)
    assert state(core, n) == S.ABORT_UPGRADE and last(cmds, C.RunFinalizeReplicaUpdate).drop_update
    cmds = core.handle(ev(core, E.UpgradeAborted, n, work_id="drop"), 1e6)
    s = core.sectors[n]
    assert (state(core, n), s.kind, s.deal_pieces(), s.update_comm_r, s.comm_r) == (S.PROVING, "cc", [], b"", COMM_R)
    assert [p.padded_size for p in s.pieces] == [2048] and s.key_pieces == []     # its CC layout again
    (home,) = [m for m, x in core.sectors.items() if [p.path for p in (*x.pieces, *x.pending)] == ["/pieces/p1"]]
    assert home != n and core.sectors[home].kind == "deal"        # its piece went to a new deal sector
    with pytest.raises(SealingError, match="from Proving"):
        core.handle(core.event(E.SnapUp, to_state(core, S.COMMITTING)), 1e6)


def test_an_upgrade_sent_to_the_chain_cannot_be_aborted():
    core = new_core()
    n = snapped_up(core)
    through_the_update(core, n, until=S.REPLICA_UPDATE_WAIT)
    core.handle(ev(core, E.ReplicaUpdateSubmitFailed, n, error="reverted"), 1.0)
    assert state(core, n) == S.REPLICA_UPDATE_FAILED and core.sectors[n].update_msg == ""
    with pytest.raises(InvalidTransition, match="can no longer be aborted"):
        core.handle(core.event(E.AbortUpgrade, n), 2.0)
    with pytest.raises(BadResume, match="cannot be aborted"):
        core.handle(core.event(E.Resume, n, state=S.ABORT_UPGRADE), 2.0)
    assert state(core, n) == S.REPLICA_UPDATE_FAILED


def test_an_upgrade_whose_send_may_have_gone_out_cannot_be_aborted():
    core = new_core()
    n = snapped_up(core)
    through_the_update(core, n, until=S.SUBMIT_REPLICA_UPDATE)   # the send may be on its way
    with pytest.raises(BadResume, match="cannot be aborted"):
        core.handle(core.event(E.Resume, n, state=S.ABORT_UPGRADE), 1.0)
    core.handle(ev(core, E.ReplicaUpdateLanded, n, epoch=90), 2.0)   # found on chain (a restart)
    assert state(core, n) == S.FINALIZE_REPLICA_UPDATE and core.sectors[n].update_sent
    with pytest.raises(BadResume, match="cannot be aborted"):
        core.handle(core.event(E.Resume, n, state=S.ABORT_UPGRADE), 3.0)


def test_a_snapped_up_sector_is_not_rebuilt_from_its_cc_ticket_nor_sent_back_into_its_upgrade():
    core = new_core()
    n = snapped_up(core)
    through_the_update(core, n, until=S.PROVING)
    with pytest.raises(InvalidTransition, match="was snapped up"):
        core.handle(core.event(E.Rebuild, n), 1.0)
    for update_state in (S.PROVE_REPLICA_UPDATE, S.SUBMIT_REPLICA_UPDATE, S.REPLICA_UPDATE_WAIT):
        with pytest.raises(BadResume, match="it has no key_pieces"):     # its upgrade is over
            core.handle(core.event(E.Resume, n, state=update_state), 1.0)
    assert state(core, n) == S.PROVING


def test_the_sealing_window_holds_sectors_in_packing_until_one_leaves_it():
    # a ticket must not wait for a busy worker: at most max_sealing sectors from their
    # ticket to their PreCommit; the others wait in Packing, lowest number first
    core = new_core(msgspec.structs.replace(CFG, max_sealing=2))
    numbers = [core.pledge(0.0) for _ in range(3)]
    assert [kinds(cmds) for _, cmds in numbers] == [["Save", "GetTicket"]] * 2 + [["Save"]]
    assert [state(core, n) for n, _ in numbers] == [S.GET_TICKET, S.GET_TICKET, S.PACKING]
    assert core.admit(1.0) == []                                 # no room yet
    core.handle(ev(core, E.TicketReady, 1, ticket=TICKET, epoch=98), 2.0)
    core.handle(ev(core, E.PreCommit1Done, 1, work_id="p1", comm_d=CC_COMM_D, replica_id=b"i" * 32), 3.0)
    core.handle(ev(core, E.PreCommit2Done, 1, work_id="p2", comm_d=CC_COMM_D, comm_r=COMM_R), 4.0)
    assert core.admit(5.0) == [] and state(core, 3) == S.PACKING  # PreCommitting: still inside
    core.handle(ev(core, E.PreCommitSent, 1, msg_id="m"), 6.0)
    cmds = core.admit(7.0)
    assert kinds(cmds) == ["Save", "GetTicket"] and cmds[-1].sector == 3
    assert state(core, 3) == S.GET_TICKET and core.admit(8.0) == []
    core.handle(core.event(E.Resume, 2, state=S.ABORTED), 9.0)    # an operator drops one
    assert core.admit(10.0) == []                                 # nobody waits


# -- PreCommit batching (Lotus's PreCommitBatcher) ----------------------------------------------

BATCHED = msgspec.structs.replace(CFG, batch_precommits=True, max_precommit_batch=3,
                                  precommit_batch_wait_s=100.0, precommit_batch_slack=50)


def to_batch(core, now):
    """A sector checked and waiting for its batch since `now`."""
    n = to_state(core, S.PRE_COMMITTING, now)
    cmds = core.handle(ev(core, E.PreCommitBatch, n), now)
    assert state(core, n) == S.SUBMIT_PRE_COMMIT_BATCH
    assert last(cmds, C.Schedule).at == now + 100.0            # woken when its wait ends
    return n


def sent(cmds):
    return [(c.batch, [m.number for m in c.members]) for c in cmds if isinstance(c, C.SendPreCommitBatch)]


def test_a_full_batch_goes_at_once_and_the_rest_waits():
    core = new_core(BATCHED)
    a, b = to_batch(core, 0.0), to_batch(core, 10.0)
    assert core.batches(20.0) == []                            # not full, not waited, no hurry
    c, d = to_batch(core, 30.0), to_batch(core, 40.0)
    cmds = core.batches(40.0)
    batch = core.sectors[a].batch
    assert sent(cmds) == [(batch, [a, b, c])] and batch.startswith(f"{a}:")
    assert [core.sectors[n].batch for n in (a, b, c, d)] == [batch] * 3 + [""]
    assert kinds(cmds) == ["Save", "Save", "Save", "SendPreCommitBatch"]
    assert core.batches(41.0) == []                            # formed once; d waits on


def test_the_oldest_sectors_wait_or_the_earliest_ticket_sends_everything_waiting():
    core = new_core(BATCHED)
    a = to_batch(core, 0.0)
    b = to_batch(core, 60.0)
    assert core.batches(99.0) == []
    assert sent(core.batches(100.0)) == [(core.sectors[a].batch, [a, b])]   # a waited 100 s
    core = new_core(BATCHED)
    a = to_batch(core, 0.0)
    core.set_head(247)                                         # ticket 98 expires at 298; slack 50
    assert core.batches(1.0) == []
    core.set_head(248)
    assert sent(core.batches(1.0)) == [(core.sectors[a].batch, [a])]


def test_a_formed_batch_is_sent_again_after_a_restart_by_its_lowest_member_only():
    core = new_core(BATCHED)
    ns = [to_batch(core, 0.0) for _ in range(4)]
    formed = sent(core.batches(0.0))
    again = new_core(BATCHED)
    again.restore([core.sectors[n] for n in ns], core.next_number)
    cmds = again.restart(5.0)
    assert sent(cmds) == formed                                # the same batch, the same id
    assert [c.at for c in cmds if isinstance(c, C.Schedule)] == [100.0]   # the fourth waits on


def test_a_sent_batch_waits_like_a_precommit_and_a_refused_one_fails_each_member():
    core = new_core(BATCHED)
    ns = [to_batch(core, 0.0) for _ in range(3)]
    cmd = last(core.batches(0.0), C.SendPreCommitBatch)
    for m in cmd.members:
        cmds = core.handle(core.event(E.PreCommitBatchSent, m.number, step=m.step, msg_id="mb"), 1.0)
        assert last(cmds, C.WaitPreCommit).msg_id == "mb"
    assert {state(core, n) for n in ns} == {S.PRE_COMMIT_BATCH_WAIT}
    core = new_core(BATCHED)
    ns = [to_batch(core, 0.0) for _ in range(3)]
    for m in last(core.batches(0.0), C.SendPreCommitBatch).members:
        core.handle(core.event(E.ChainPreCommitFailed, m.number, step=m.step, error="refused"), 1.0)
    assert [(state(core, n), core.sectors[n].retries) for n in ns] == [(S.PRE_COMMIT_FAILED, 1)] * 3


AGGREGATED = msgspec.structs.replace(CFG, aggregate_commits=True, min_commit_batch=4, max_commit_batch=6,
                                     commit_batch_wait_s=100.0, commit_batch_slack=50)


def to_commit_batch(core, now):
    n = to_state(core, S.SUBMIT_COMMIT, now)
    core.handle(ev(core, E.CommitAggregate, n), now)
    assert state(core, n) == S.SUBMIT_COMMIT_AGGREGATE
    return n


def test_commits_batch_like_precommits_and_aggregate_from_min_commit_batch():
    core = new_core(AGGREGATED)
    ns = [to_commit_batch(core, 0.0) for _ in range(3)]
    assert core.batches(99.0) == []
    (small,) = [c for c in core.batches(100.0) if isinstance(c, C.SendCommitAggregate)]
    assert ([m.number for m in small.members], small.aggregate) == (ns, False)   # 3 < 4: one proof each
    ns = [to_commit_batch(core, 200.0) for _ in range(6)]
    (full,) = [c for c in core.batches(200.0) if isinstance(c, C.SendCommitAggregate)]
    assert ([m.number for m in full.members], full.aggregate) == (ns, True)
    for m in full.members:
        cmds = core.handle(core.event(E.CommitAggregateSent, m.number, step=m.step, msg_id="ca"), 201.0)
        assert last(cmds, C.WaitProveCommit).msg_id == "ca"
    core = new_core(AGGREGATED)
    n = to_commit_batch(core, 0.0)
    core.set_head(105 + DEVNET.max_prove_commit_duration - 50)   # the prove-by epoch is near
    assert [m.number for m in last(core.batches(1.0), C.SendCommitAggregate).members] == [n]


def test_a_pledge_target_keeps_sectors_sealing_within_max_sealing_sectors():
    cfg = msgspec.structs.replace(CFG, pledge_target=3, max_sealing_sectors=4)
    core = new_core(cfg)
    cmds = core.top_up(0.0)
    assert sorted(core.sectors) == [1, 2, 3] and kinds(cmds).count("Save") == 3
    assert core.top_up(1.0) == []                              # three are sealing
    assert core.may_pledge(1) == "" and core.may_pledge(2) == (
        "3 sectors are sealing and max_sealing_sectors is 4: 1 more may be pledged now")
    n = to_state(core, S.PROVING)                              # a fourth, sealed
    core.handle(core.event(E.Remove, 1), 2.0)                  # one of the three goes
    assert core.sealing_count() == 2
    core.top_up(3.0)
    assert core.sealing_count() == 3 and n in core.sectors and max(core.sectors) == n + 1
    paused = msgspec.structs.replace(cfg, pledge_target=10)    # the limit holds the target back
    core = new_core(paused)
    core.top_up(0.0)
    assert core.sealing_count() == 4


def test_a_waiting_timer_that_fires_after_its_batch_formed_is_stale():
    # found by the simulator: two sectors whose waits end at the same time; the first
    # one's wake formed the batch, the second one's wake then moved it on a step and the
    # batch's answer for it was dropped as stale, leaving it waiting for ever
    core = new_core(BATCHED)
    a, b = to_batch(core, 0.0), to_batch(core, 0.0)
    wake_b = core.event(E.Wake, b, step=core.sectors[b].step)      # its timer, set while it waited
    cmd = last(core.batches(100.0), C.SendPreCommitBatch)
    assert core.handle(wake_b, 100.0) == []                         # stale: the batch has it
    for m in cmd.members:
        core.handle(core.event(E.PreCommitBatchSent, m.number, step=m.step, msg_id="m"), 101.0)
    assert state(core, a) == state(core, b) == S.PRE_COMMIT_BATCH_WAIT
