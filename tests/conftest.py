import signal

import pytest

from zqnode.bus.address import free_tcp_address


@pytest.fixture
def free_bus_address():
    """Call it for a tcp bus address whose three ports are free now."""
    return free_tcp_address


# A suite started as a background job (`pytest &` in a script) inherits SIGINT ignored, and
# so would every process it starts: the tests that press Ctrl-C on `zqnode tail` would
# wait in vain.  A terminal's Ctrl-C is what they mean, so the children get it back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
