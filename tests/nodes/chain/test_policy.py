import pytest

from zqnode.nodes.chain.policy import DEVNET, MAINNET, current_deadline, deadline_info, next_deadline, policy


def test_mainnet_deadline_windows_match_the_actor():
    d = deadline_info(MAINNET, period_start=1000, index=3, current_epoch=1190)
    assert (d.open, d.close, d.challenge, d.fault_cutoff) == (1180, 1240, 1160, 1110)
    assert d.is_open() and not d.has_elapsed() and d.fault_cutoff_passed()
    assert MAINNET.proving_period == 2880


@pytest.mark.parametrize("p", [MAINNET, DEVNET])
def test_current_deadline_walks_every_deadline_of_a_period(p):
    offset = 17
    seen = []
    for epoch in range(offset, offset + p.proving_period):
        d = current_deadline(p, offset, epoch)
        assert d.is_open() and d.period_start == offset
        seen.append(d.index)
    assert seen == sorted(seen) and set(seen) == set(range(48))
    assert current_deadline(p, offset, offset + p.proving_period).period_start == offset + p.proving_period


@pytest.mark.parametrize("p", [MAINNET, DEVNET])
def test_devnet_keeps_the_order_of_the_windows(p):
    # FaultCutoff before Challenge before Open; a deadline's challenge falls in the previous one
    assert p.fault_cutoff > p.challenge_lookback > 0
    assert p.challenge_lookback < p.challenge_window
    assert p.seal_randomness_lookback < p.max_ticket_age
    assert p.period_deadlines == 48


def test_next_deadline_wraps_into_the_next_period():
    last = deadline_info(DEVNET, 0, 47, 380)
    n = next_deadline(last, DEVNET)
    assert (n.period_start, n.index, n.open) == (DEVNET.proving_period, 0, DEVNET.proving_period)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="deadline index"):
        deadline_info(MAINNET, 0, 48, 0)
    with pytest.raises(ValueError, match="unknown network policy"):
        policy("calibnet")
