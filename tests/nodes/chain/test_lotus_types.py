"""Every Lotus API method zqnode uses, against Lotus's own documented example: its inputs
decode as our parameters and its response as our result, and both encode back to the same
JSON; the permission is Lotus's."""
import json
import pathlib

import msgspec
import pytest

from zqnode.nodes.chain.filecoin.dagcbor import BitField
from zqnode.nodes.chain.lotus.methods import METHODS
from zqnode.nodes.chain.lotus.types import TipSet, bitfield_of, runs_json

EXAMPLES = json.loads((pathlib.Path(__file__).parent / "data" / "lotus_api_v1_examples.json").read_text())
LOTUS = {name for name, m in METHODS.items() if m.namespace == "Filecoin"}    # the rest are zqnode's


def test_every_method_has_its_documented_example():
    assert LOTUS == set(EXAMPLES)
    assert set(METHODS) - LOTUS == {"DevnetReorg", "DevnetFund"}


@pytest.mark.parametrize("name", sorted(LOTUS))
def test_documented_example_round_trips(name):
    method, example = METHODS[name], EXAMPLES[name]
    assert method.perm == example["perms"]
    params = msgspec.convert(example["inputs"] or [], method.params)
    assert json.loads(msgspec.json.encode(params)) == (example["inputs"] or [])
    # (a channel's documented response is one value the channel carries)
    result = msgspec.json.decode(json.dumps(example["response"]), type=method.result)
    assert json.loads(msgspec.json.encode(result)) == example["response"]


def test_bitfield_json_is_go_bitfields():
    # go-bitfield TestBitfieldJson: {1,5,6,7,10,11,12,15} <-> [1,1,3,3,2,3,2,1]
    bits = BitField.of([1, 5, 6, 7, 10, 11, 12, 15])
    assert runs_json(bits) == [1, 1, 3, 3, 2, 3, 2, 1]
    assert bitfield_of([1, 1, 3, 3, 2, 3, 2, 1]) == bits
    assert runs_json(BitField.of([0, 1])) == [0, 2] and bitfield_of([0, 2]).members(5) == [0, 1]
    assert bitfield_of([]).members(1) == [] and bitfield_of([5, 1]).members(9) == [5]
    with pytest.raises(ValueError):
        bitfield_of([1, 0, 2])


@pytest.mark.parametrize("bad", [
    {"Cids": [{"/": "not a cid"}], "Blocks": [], "Height": 1},
    {"Cids": [{"/": "bafy2bzacea"}] * 65, "Blocks": [], "Height": 1},
    {"Cids": [], "Blocks": [], "Height": "1"},
])
def test_bad_json_is_refused(bad):
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(bad), type=TipSet)
