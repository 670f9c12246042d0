import pytest

from zqnode.bus.address import free_tcp_address


@pytest.fixture
def free_bus_address():
    """Call it for a tcp bus address whose three ports are free now."""
    return free_tcp_address
