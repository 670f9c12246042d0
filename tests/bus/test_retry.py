import itertools

from zqnode.bus.retry import backoff, doubling


def test_waits_double_from_the_first_up_to_the_cap():
    assert list(itertools.islice(backoff(0.25, 2.0), 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_the_wait_after_n_failures():
    assert [doubling(10.0, 60.0, n) for n in (0, 1, 2, 3, 4)] == [10.0, 10.0, 20.0, 40.0, 60.0]


def test_a_long_outage_stays_at_the_cap():
    assert doubling(0.25, 4.0, 10**6) == 4.0
