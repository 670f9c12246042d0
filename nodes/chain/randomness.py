"""Chain randomness as Filecoin draws it (lotus chain/rand DrawRandomnessFromBase):

    blake2b-256( i64be(domain tag) || blake2b-256(base) || i64be(epoch) || entropy )

`base` is the ticket (VRF output) of the tipset at that epoch for ticket randomness, or
the beacon (drand) entry for beacon randomness. The tag separates uses, so a seal ticket
can never serve as a PoSt challenge. Actors pass the CBOR of their own address as the
entropy (`address_entropy`)."""
from __future__ import annotations

import enum
import hashlib

import cbor2

from zqnode.nodes.chain.filecoin.address import Address, AddressError


class RandomnessError(ValueError):
    pass


class DomainTag(enum.IntEnum):
    """go-state-types crypto.DomainSeparationTag."""
    TicketProduction = 1
    ElectionProofProduction = 2
    WinningPoStChallengeSeed = 3
    WindowedPoStChallengeSeed = 4
    SealRandomness = 5
    InteractiveSealChallengeSeed = 6
    WindowedPoStDeadlineAssignment = 7
    MarketDealCronSeed = 8
    PoStChainCommit = 9
    EvmPrevRandao = 10


# The source the miner actor uses for each tag: tickets for what must bind to one fork
# (the seal ticket, the PoSt chain commitment), the beacon for challenges.
TICKET_TAGS = frozenset({DomainTag.TicketProduction, DomainTag.SealRandomness,
                         DomainTag.PoStChainCommit})
SOURCES = ("tickets", "beacon")


def default_source(tag: int) -> str:
    return "tickets" if tag in TICKET_TAGS else "beacon"


def blake2b256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def domain_tag(tag: int) -> DomainTag:
    try:
        return DomainTag(tag)
    except ValueError:
        raise RandomnessError(f"unknown domain separation tag {tag!r} "
                              f"(known: 1..{max(DomainTag)})") from None


def draw(base: bytes, tag: int, epoch: int, entropy: bytes = b"") -> bytes:
    """32 bytes of randomness for `tag` at `epoch` from a ticket or beacon `base`."""
    t = domain_tag(tag)
    if not isinstance(entropy, (bytes, bytearray)):
        raise RandomnessError(f"entropy must be bytes, not {type(entropy).__name__}")
    h = hashlib.blake2b(digest_size=32)
    h.update(int(t).to_bytes(8, "big", signed=True))
    h.update(blake2b256(base))
    h.update(epoch.to_bytes(8, "big", signed=True))
    h.update(bytes(entropy))
    return h.digest()


def address_entropy(actor_id: int) -> bytes:
    """CBOR of the actor's ID address (a byte string), the entropy actors draw with."""
    try:
        return cbor2.dumps(Address.id(actor_id).bytes)
    except AddressError as e:
        raise RandomnessError(str(e)) from None
