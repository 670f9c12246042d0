import pytest

from zqnode.bus.peer import Refused, refusing


class Missing(ValueError):
    pass


class Failed(Exception):
    def __init__(self, error):
        super().__init__(f"work failed: {error}")
        self.error = error


RULES = ((Missing, "not_found"), ((ValueError, KeyError), "invalid"), (Failed, "failed"))


def test_the_first_matching_rule_names_the_code():
    with pytest.raises(Refused) as e:
        with refusing(*RULES):
            raise Missing("no sector 7")
    assert (e.value.code, e.value.message) == ("not_found", "no sector 7")
    with pytest.raises(Refused) as e:
        with refusing(*RULES):
            raise KeyError("k")
    assert e.value.code == "invalid"


def test_an_error_attribute_is_the_message():
    with pytest.raises(Refused) as e:
        with refusing(*RULES):
            raise Failed("disk full")
    assert (e.value.code, e.value.message) == ("failed", "disk full")


def test_other_errors_pass_through_and_a_clean_block_returns():
    with pytest.raises(RuntimeError):
        with refusing(*RULES):
            raise RuntimeError("bug")
    with refusing(*RULES):
        value = 3
    assert value == 3
