"""Bad-input warnings: one line per offender per interval, a cap on all lines together."""
import logging

from zqnode.bus.ratelog import RateLimitedLog


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def lines(caplog):
    out = [r.getMessage() for r in caplog.records]
    caplog.clear()
    return out


def test_one_line_per_offender_per_interval_with_a_count(caplog):
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.ratelog"):
        assert [rl.warning("a", "bad from %s", "a") for _ in range(1000)].count(True) == 1
        assert rl.warning("b", "bad from %s", "b")
        assert lines(caplog) == ["bad from a", "bad from b"]
        clock.t += 9.9
        assert not rl.warning("a", "bad from %s", "a")
        clock.t += 0.2
        assert rl.warning("a", "bad from %s", "a")
        assert lines(caplog) == ["bad from a (and 1000 more from this sender in the last 10s)"]
        clock.t += 10
        rl.warning("a", "bad from %s", "a")
        assert lines(caplog) == ["bad from a"]


def test_a_flood_of_offenders_is_capped_and_the_table_bounded(caplog):
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), interval_s=10, burst=5, max_offenders=100,
                        clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.ratelog"):
        for i in range(10_000):
            rl.warning(i, "bad from %d", i)
        assert lines(caplog) == [f"bad from {i}" for i in range(5)]
        assert len(rl._offenders) == 100
        clock.t += 10
        rl.warning("x", "bad from x")
        assert lines(caplog) == ["9995 more bad-input warnings were dropped in the last 10s", "bad from x"]
