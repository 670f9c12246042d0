"""Funds on the devnet chain: gas and the base fee, message value, the miner actor's
deposits, pledge, rewards, fees and debt, and funding by hand."""
import msgspec
import pytest

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import Chain, Genesis, MinerSpec
from zqnode.nodes.chain.funds import FIL, format_fil, gas_fee, gas_used, next_base_fee, parse_fil
from zqnode.nodes.chain.messages import ExitCode, MessageError
from zqnode.nodes.chain.policy import DEVNET, MAINNET
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.chain.verifiers import FAKE
from tests.nodes.chain.test_miner import prove_deadline, run_past_close, sealed_pair, terminate

DEPOSIT, PLEDGE = DEVNET.precommit_deposit, DEVNET.initial_pledge


def funded(miner_balance=0, balance=1000 * FIL, **policy) -> ChainDriver:
    d = ChainDriver("devnet")
    d.chain = Chain(Genesis(network="devnet", seed="test", balance=balance, miner_balance=miner_balance),
                    FAKE)
    d.chain.policy = d.policy = msgspec.structs.replace(DEVNET, **policy)
    return d


def send(d: ChainDriver, params, value=0, sender="t0100") -> M.Receipt:
    msg = d.chain.push(M.Message.call(sender, 1000, params, value=value))
    return d.receipt_after(msg.id)


def test_amounts_parse_and_print_in_fil():
    assert [parse_fil(t) for t in ("1", "0.5 FIL", "300 nFIL", "1.000000001")] == [
        FIL, FIL // 2, 300, FIL + 1]
    for bad in ("", "-1", "1e-10", "ten", "1 btc", "0.0000000001 FIL", "nan"):
        with pytest.raises(ValueError):
            parse_fil(bad)
    assert [format_fil(n) for n in (0, FIL, FIL * 3 // 2, 1, -FIL)] == [
        "0 FIL", "1 FIL", "1.5 FIL", "0.000000001 FIL", "-1 FIL"]


def test_the_base_fee_follows_block_fullness_as_filecoins_rule():
    target, floor = 5_000_000_000, 100
    assert next_base_fee(800, 2 * target, target, floor) == 900         # a full block: +1/8
    assert next_base_fee(800, target, target, floor) == 800             # on target: unchanged
    assert next_base_fee(800, 0, target, floor) == 700                  # empty: -1/8
    assert next_base_fee(101, 0, target, floor) == floor                # never below the minimum
    c = Chain(Genesis(), FAKE)
    assert c.state.base_fee == DEVNET.initial_base_fee
    c.advance(3)
    assert c.state.base_fee == DEVNET.initial_base_fee * 7 // 8 * 7 // 8 * 7 // 8


def test_gas_is_burnt_from_the_sender_and_full_blocks_raise_the_base_fee():
    one = M.DeclareFaultsParams(faults=[])
    gas = gas_used("DeclareFaults", one)
    d = funded(block_gas_limit=2 * gas, block_gas_target=gas)
    base = d.chain.state.base_fee
    ids = [d.chain.push(M.Message.call("t0100", 1000, one)).id for _ in range(3)]
    d.step()                                   # two fit in a block, the third waits
    assert [d.chain.lookup(i).status for i in ids] == ["landed", "landed", "pending"]
    assert d.chain.lookup(ids[0]).receipt.gas_used == gas
    assert d.chain.balance("t0100") == 1000 * FIL - 2 * gas_fee(gas, base)
    assert d.chain.state.base_fee == base + base // 8     # twice the target: +1/8
    d.step()
    assert d.chain.lookup(ids[2]).status == "landed"
    big = M.DeclareFaultsParams(faults=[M.SectorDeclaration(deadline=0, partition=0, sectors=list(range(100)))])
    with pytest.raises(MessageError, match="over the block gas limit"):      # it could never land
        d.chain.push(M.Message.call("t0100", 1000, big))


def test_a_precommit_locks_its_deposit_and_the_proof_swaps_it_for_the_pledge():
    d = funded()
    d.run_to(d.policy.seal_randomness_lookback)
    refused = send(d, d.precommit_params(1000, 1))           # the miner holds nothing
    assert (refused.exit_code, refused.error) == (
        ExitCode.USR_INSUFFICIENT_FUNDS, "insufficient funds 0 FIL for pre-commit deposit 0.01 FIL")
    assert d.chain.miner(1000).balance == 0                  # the value of a failed message stays
    worker, base = d.chain.balance("t0100"), d.chain.state.base_fee
    r = send(d, d.precommit_params(1000, 1), value=DEPOSIT)
    assert r.exit_code == 0
    m = d.chain.miner_view(1000)
    assert (m.balance, m.precommit_deposits, m.available) == (DEPOSIT, DEPOSIT, 0)
    assert d.chain.balance("t0100") == worker - DEPOSIT - gas_fee(r.gas_used, base)
    d.run_to(d.chain.precommit(1000, 1).seed_epoch)
    params = M.ProveCommitSectorParams(sector_number=1, proof=d.porep(1000, 1))
    short = send(d, params, value=PLEDGE - DEPOSIT - 1)
    assert (short.exit_code, short.error) == (
        ExitCode.USR_INSUFFICIENT_FUNDS,
        "insufficient funds 0.099999999 FIL for new initial pledge requirement 0.1 FIL")
    assert send(d, params, value=PLEDGE - DEPOSIT).exit_code == 0
    m = d.chain.miner_view(1000)
    assert (m.balance, m.precommit_deposits, m.initial_pledge, m.available) == (PLEDGE, 0, PLEDGE, 0)
    assert d.chain.sector(1000, 1) is not None


def test_a_sender_that_cannot_pay_is_refused_by_the_pool_and_fails_in_a_tipset():
    d = funded(balance=0)
    with pytest.raises(MessageError, match=r"not enough funds in t0100: 0 FIL, its messages in the "
                                           r"pool and this one need 0\.\d+ FIL"):
        d.chain.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[])))
    d.chain.fund("t0100", FIL)
    msg = d.chain.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[]), value=FIL // 2))
    with pytest.raises(MessageError, match="not enough funds"):     # the pool counts the first one
        d.chain.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[]), value=FIL // 2))
    d.chain.state.balances["t0100"] = FIL // 4                       # spent elsewhere meanwhile
    r = d.receipt_after(msg.id)
    assert r.exit_code == ExitCode.SYS_INSUFFICIENT_FUNDS and "holds 0.25 FIL" in r.error
    assert d.chain.balance("t0100") < FIL // 4                       # its gas was burnt all the same
    assert d.chain.state.nonces["t0100"] == 1


def test_faults_are_fined_from_vesting_then_the_balance_and_debt_blocks_new_sectors():
    d = funded(miner_balance=1000 * FIL, epoch_reward=0)
    dl = sealed_pair(d)
    d.chain.miner(1000).balance = 2 * PLEDGE + DEVNET.fault_fee      # one fee's worth free
    run_past_close(d, dl)                                            # two sectors faulty
    m = d.chain.miner_view(1000)
    assert (m.available, m.fee_debt, m.burnt) == (-DEVNET.fault_fee, DEVNET.fault_fee, DEVNET.fault_fee)
    d.run_to(d.epoch + 1)
    r = send(d, d.precommit_params(1000, 3))
    assert (r.exit_code, r.error) == (ExitCode.USR_INSUFFICIENT_FUNDS,
                                      "unlocked balance 0 FIL can not repay fee debt 0.001 FIL")
    r = send(d, d.precommit_params(1000, 3), value=DEPOSIT)          # the value repays the debt first
    assert (r.exit_code, r.error) == (ExitCode.USR_INSUFFICIENT_FUNDS,
                                      "insufficient funds 0.009 FIL for pre-commit deposit 0.01 FIL")
    d.chain.fund("f01000", FIL)                                      # repaid at the next epoch's end
    d.step()
    assert (d.chain.miner_view(1000).fee_debt, d.chain.miner_view(1000).available) == (0, FIL - DEVNET.fault_fee)
    assert send(d, d.precommit_params(1000, 3), value=DEPOSIT).exit_code == 0


def test_rewards_vest_and_a_termination_releases_the_pledge_for_a_fee():
    d = funded(miner_balance=1000 * FIL)
    dl = sealed_pair(d)
    prove_deadline(d, dl)
    before = d.chain.miner_view(1000)
    d.step()                                        # two sectors of power: all the reward
    after = d.chain.miner_view(1000)
    reward = DEVNET.epoch_reward
    assert after.balance - before.balance == reward
    assert after.vesting == before.vesting + reward - reward // 4 - max((before.vesting + reward - reward // 4)
                                                                         // DEVNET.reward_vesting, 1)
    run_past_close(d, dl)
    locked = d.chain.miner_view(1000)
    assert send(d, terminate(dl, 0, [2])).exit_code == 0
    m = d.chain.miner_view(1000)
    assert m.initial_pledge == locked.initial_pledge - PLEDGE
    assert m.burnt - locked.burnt == DEVNET.termination_fee


def test_a_precommit_never_proven_forfeits_its_deposit():
    d = funded(miner_balance=FIL)
    d.run_to(d.policy.seal_randomness_lookback)
    assert send(d, d.precommit_params(1000, 1)).exit_code == 0
    d.run_to(d.chain.precommit(1000, 1).prove_by + d.policy.chain_finality)
    m = d.chain.miner_view(1000)
    assert (m.precommits, m.precommit_deposits, m.balance, m.burnt) == (0, 0, FIL - DEPOSIT, DEPOSIT)


def test_funding_by_hand_reaches_accounts_and_miners_and_survives_a_restore():
    c = Chain(Genesis(miners=[MinerSpec(control=["t0101"])]), FAKE)
    assert (c.balance("t0100"), c.balance("t0101"), c.miner(1000).balance) == (1000 * FIL, 1000 * FIL, 100 * FIL)
    assert c.fund("t0200", 5) == 5 and c.fund("f01000", FIL) == 101 * FIL
    for bad in (0, -1, True, 1.5):
        with pytest.raises(MessageError, match="positive number"):
            c.fund("t0200", bad)
    with pytest.raises(MessageError, match="1 to 64 characters"):
        c.fund("x" * 65, 1)
    copy = Chain.restore(c.genesis, FAKE, tipsets=c.tipsets, states={0: c.state_blob(0)}, pool=[], fork=0)
    assert (copy.balance("t0200"), copy.miner(1000).balance) == (5, 101 * FIL)
    view = c.miner_view(1000)
    assert view.accounts == {"t0100": 1000 * FIL, "t0101": 1000 * FIL}


def test_mainnet_amounts_scale_with_the_sector_size():
    assert MAINNET.per_sector(MAINNET.initial_pledge, 64 << 30) == 2 * MAINNET.initial_pledge
    assert DEVNET.per_sector(DEVNET.initial_pledge, 8 << 20) == DEVNET.initial_pledge     # flat


def test_a_penalty_takes_vesting_funds_first_then_the_unlocked_balance_then_becomes_debt():
    from zqnode.nodes.chain import miner as actor
    m = actor.new_miner(DEVNET, 1000, "t0100", 5, 0)
    m.balance, m.initial_pledge, m.locked_funds = 20, 12, 5          # unlocked: 3
    actor.penalize(m, 10)
    assert (m.locked_funds, m.balance, m.fee_debt, m.burnt) == (0, 12, 2, 8)
    assert actor.available_balance(m) == -2
    m.balance += 5                                                   # funds arrive
    actor.repay_debts(m, required=True)
    assert (m.fee_debt, m.balance, actor.available_balance(m)) == (0, 15, 3)


def test_a_chain_from_before_funds_gets_its_genesis_funds_when_loaded():
    c = Chain(Genesis(), FAKE)
    c.advance(2)
    old = msgspec.msgpack.decode(c.state_blob(2), type=dict)
    del old["balances"], old["base_fee"]
    for m in old["miners"].values():
        m["balance"] = 0
    states = {2: msgspec.msgpack.encode(old)}
    loaded = Chain.restore(c.genesis, FAKE, tipsets=c.tipsets, states=states, pool=[], fork=0)
    assert (loaded.balance("t0100"), loaded.miner(1000).balance) == (1000 * FIL, 100 * FIL)
    assert loaded.state.base_fee == DEVNET.initial_base_fee
    again = Chain.restore(c.genesis, FAKE, tipsets=c.tipsets, states={2: loaded.state_blob(2)}, pool=[], fork=0)
    assert again.balance("t0100") == 1000 * FIL                    # once only


def test_a_partial_prove_commit_that_cannot_pledge_leaves_the_deposit_locked():
    d = funded(miner_balance=0)
    d.run_to(d.policy.seal_randomness_lookback)
    for n in (1, 2, 3):
        assert send(d, d.precommit_params(1000, n), value=DEPOSIT).exit_code == 0
    d.run_to(d.chain.precommit(1000, 3).seed_epoch)
    params = M.ProveCommitSectors3Params(
        sector_activations=[M.SectorActivationManifest(sector_number=n) for n in (1, 2, 3)],
        sector_proofs=[d.porep(1000, n) for n in (1, 2, 3)], require_activation_success=False)
    r = send(d, params, value=PLEDGE - DEPOSIT)          # with its released deposit: one pledge
    ret = msgspec.msgpack.decode(r.return_value, type=M.BatchReturn)
    assert (r.exit_code, ret.success_count, [f.code for f in ret.fail_codes]) == (
        0, 1, [ExitCode.USR_INSUFFICIENT_FUNDS] * 2)
    m = d.chain.miner_view(1000)
    assert (m.precommits, m.precommit_deposits, m.initial_pledge) == (2, 2 * DEPOSIT, PLEDGE)
    assert m.balance == 2 * DEPOSIT + PLEDGE and m.available == 0
    d.run_to(d.chain.precommit(1000, 3).prove_by + d.policy.chain_finality)   # the rest expire
    m = d.chain.miner_view(1000)
    assert (m.precommit_deposits, m.balance, m.burnt) == (0, PLEDGE, 2 * DEPOSIT)


def test_no_amount_passes_filecoins_supply_and_one_sender_has_at_most_1000_pending():
    from zqnode.nodes.chain.core import MAX_PENDING
    from zqnode.nodes.chain.funds import MAX_SUPPLY
    from zqnode.nodes.wire import chain as W
    c = Chain(Genesis(), FAKE)
    before = c.state_blob(0)
    with pytest.raises(MessageError, match="would pass Filecoin's whole supply"):
        c.fund("t0200", MAX_SUPPLY)
    assert c.state_blob(0) == before and c.balance("t0200") == 0
    with pytest.raises(ValueError, match="more FIL than will ever exist"):
        parse_fil("20000000000")
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"address": "t0100", "amount": MAX_SUPPLY + 1}, W.ChainFund)
    with pytest.raises(MessageError, match="value is a number of nanoFIL"):
        c.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[]), value=MAX_SUPPLY + 1))
    for _ in range(MAX_PENDING):
        c.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[])))
    with pytest.raises(MessageError, match="1000 messages in the pool already"):
        c.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[])))


def test_a_uuid_pushed_again_with_another_value_is_refused():
    c = Chain(Genesis(), FAKE)
    c.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[]), value=1), uuid="u1")
    with pytest.raises(MessageError, match="pushed with another message"):
        c.push(M.Message.call("t0100", 1000, M.DeclareFaultsParams(faults=[]), value=2), uuid="u1")


def test_an_upgraded_chain_keeps_its_funds_across_a_reorg():
    c = Chain(Genesis(), FAKE)
    c.advance(3)
    states = {}
    for e in (1, 2, 3):
        old = msgspec.msgpack.decode(c.state_blob(e), type=dict)
        del old["balances"], old["base_fee"]
        states[e] = msgspec.msgpack.encode(old)
    loaded = Chain.restore(c.genesis, FAKE, tipsets=c.tipsets, states=states, pool=[], fork=0)
    loaded.reorg(2, 0.0)
    assert loaded.balance("t0100") == 1000 * FIL
