"""What the procedures of the sealing machine and of the poster ask of the chain in common
(each role's `procedures.py` adds its own asks); their shells and the simulator answer
them."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain.randomness import DomainTag


class Ask(msgspec.Struct, frozen=True):
    pass


class Randomness(Ask, frozen=True):
    """-> 32 bytes of chain randomness."""
    tag: DomainTag
    epoch: int
    entropy: bytes = b""


class Lookup(Ask, frozen=True):
    """-> M.MessageLookup of a message."""
    msg_id: str
