import hashlib

import pytest

from zqnode.nodes.chain.randomness import (DomainTag, RandomnessError, address_entropy, default_source,
                                           draw)


def b2(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def test_draw_is_lotus_draw_randomness_from_base():
    base, entropy = b"\x07" * 32, address_entropy(1000)
    want = b2((5).to_bytes(8, "big") + b2(base) + (1234).to_bytes(8, "big") + entropy)
    assert draw(base, DomainTag.SealRandomness, 1234, entropy) == want
    # negative epochs are two's complement, as Go's binary.Write of an int64
    want = b2((4).to_bytes(8, "big") + b2(base) + bytes.fromhex("fffffffffffffffd"))
    assert draw(base, 4, -3) == want


def test_tags_match_filecoin_domain_separation_tags():
    assert [(t.name, int(t)) for t in DomainTag][:9] == [
        ("TicketProduction", 1), ("ElectionProofProduction", 2), ("WinningPoStChallengeSeed", 3),
        ("WindowedPoStChallengeSeed", 4), ("SealRandomness", 5), ("InteractiveSealChallengeSeed", 6),
        ("WindowedPoStDeadlineAssignment", 7), ("MarketDealCronSeed", 8), ("PoStChainCommit", 9)]
    assert default_source(DomainTag.SealRandomness) == "tickets"
    assert default_source(DomainTag.PoStChainCommit) == "tickets"
    assert default_source(DomainTag.InteractiveSealChallengeSeed) == "beacon"
    assert default_source(DomainTag.WindowedPoStChallengeSeed) == "beacon"


def test_domain_epoch_and_entropy_separate_draws():
    base = b"base"
    outs = {draw(base, t, 10, b"x") for t in DomainTag}
    outs |= {draw(base, 5, 11, b"x"), draw(base, 5, 10, b"y"), draw(b"other", 5, 10, b"x")}
    assert len(outs) == len(DomainTag) + 3


def test_miner_address_entropy_is_the_cbor_of_its_id_address():
    assert address_entropy(1000) == bytes.fromhex("4300e807")
    assert address_entropy(5) == bytes.fromhex("420005")


def test_bad_input_is_refused():
    with pytest.raises(RandomnessError, match="unknown domain separation tag 0"):
        draw(b"", 0, 1)
    with pytest.raises(RandomnessError, match="entropy must be bytes"):
        draw(b"", 5, 1, "x")
    with pytest.raises(RandomnessError, match="actor id"):
        address_entropy(-1)
