"""PoRep challenges (PROOFS.md section 6), as rust-fil-proofs stacked/vanilla/challenges.rs.

Interactive (seal proofs 0..9): challenge j of partition k, j = k * per_partition + i, is
(BigUint_le(SHA-256(replica_id || seed || u32le(j))) mod (nodes - 1)) + 1, never node 0.
Non-interactive (15..19) hashes "filecoin.io|PoRep|1|NonInteractive|1" || replica_id ||
comm_r || u32le(j) instead.

Synthetic (10..14, FIP-0059; challenges.rs `mod synthetic`): min(nodes, 2^18) synthetic
challenges come from replica_id and comm_r alone, so their proofs can be made right after
PC2; the seed then only selects which of them are the PoRep's. Synthetic challenge i is
(BigUint_le(32 bytes) mod (nodes - 1)) + 1 over bytes 32*i.. of the ChaCha20 keystream
(nonce "synth-porep\0") keyed with Blake2b-256 keyed "filecoin.io|PoRep|1|Synthetic|1|
Generation" over replica_id || comm_r; the PoRep's challenge j of all partitions is the
synthetic challenge u32le(keystream bytes 4*j..) mod the synthetic count, the keystream
keyed the same way with "...|Selection" over replica_id || seed.
"""
from __future__ import annotations

import hashlib

from zqnode.proofs.params import SealFeature, SealProof, seal_proof
from zqnode.proofs.sdr.chacha import chacha20_stream

NI_TAG = b"filecoin.io|PoRep|1|NonInteractive|1"
# challenges.rs `mod synthetic`: DEFAULT_SYNTH_CHALLENGE_COUNT, CHACHA20_NONCE and the two
# Blake2b keys of chacha20_gen / chacha20_select.
SYNTHETIC_COUNT = 1 << 18
SYNTH_NONCE = b"synth-porep\x00"
SYNTH_GENERATION_KEY = b"filecoin.io|PoRep|1|Synthetic|1|Generation"
SYNTH_SELECTION_KEY = b"filecoin.io|PoRep|1|Synthetic|1|Selection"


class ChallengeError(ValueError):
    """Bad input to challenge derivation."""


def _bytes32(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise ChallengeError(f"{what} must be 32 bytes")
    return bytes(value)


def _check_counts(nodes: int, per_partition: int, partition: int) -> None:
    for name, value, low in (("nodes", nodes, 2), ("per_partition", per_partition, 1),
                             ("partition", partition, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ChallengeError(f"{name} must be an int >= {low}, got {value!r}")
    if nodes >= 1 << 32:
        raise ChallengeError(f"nodes must be < 2^32, got {nodes}")
    if (partition + 1) * per_partition > 1 << 32:
        raise ChallengeError("challenge index does not fit in a u32")


def _to_challenge(digest: bytes, nodes: int) -> int:
    return int.from_bytes(digest, "little") % (nodes - 1) + 1


def interactive_challenges(replica_id: bytes, seed: bytes, nodes: int, per_partition: int,
                           partition: int) -> list[int]:
    """The challenged nodes of one partition of an interactive PoRep."""
    replica_id, seed = _bytes32(replica_id, "replica_id"), _bytes32(seed, "seed")
    _check_counts(nodes, per_partition, partition)
    first = partition * per_partition
    return [_to_challenge(hashlib.sha256(replica_id + seed + j.to_bytes(4, "little")).digest(),
                          nodes)
            for j in range(first, first + per_partition)]


def ni_challenges(replica_id: bytes, comm_r: bytes, nodes: int, per_partition: int,
                  partition: int) -> list[int]:
    """The challenged nodes of one partition of a non-interactive PoRep."""
    replica_id, comm_r = _bytes32(replica_id, "replica_id"), _bytes32(comm_r, "comm_r")
    _check_counts(nodes, per_partition, partition)
    first = partition * per_partition
    prefix = hashlib.sha256(NI_TAG + replica_id + comm_r)
    out = []
    for j in range(first, first + per_partition):
        h = prefix.copy()
        h.update(j.to_bytes(4, "little"))
        out.append(_to_challenge(h.digest(), nodes))
    return out


def synthetic_count(nodes: int) -> int:
    return min(nodes, SYNTHETIC_COUNT)


def _synth_key(tag: bytes, replica_id: bytes, other: bytes) -> bytes:
    return hashlib.blake2b(replica_id + other, digest_size=32, key=tag).digest()


def synthetic_challenges(replica_id: bytes, comm_r: bytes, nodes: int, first: int = 0,
                         count: int | None = None) -> list[int]:
    """Synthetic challenges first..first+count-1 (default: all of them, min(nodes, 2^18))."""
    replica_id, comm_r = _bytes32(replica_id, "replica_id"), _bytes32(comm_r, "comm_r")
    _check_counts(nodes, 1, 0)
    total = synthetic_count(nodes)
    count = total - first if count is None else count
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (first, count)) \
            or first < 0 or count < 0 or first + count > total:
        raise ChallengeError(f"synthetic challenges {first}..{first + count - 1} are not among {total}")
    if count == 0:
        return []
    block = first // 2                                     # two challenges per 64-byte block
    stream = chacha20_stream(_synth_key(SYNTH_GENERATION_KEY, replica_id, comm_r), SYNTH_NONCE, block,
                             (first + count + 1) // 2 - block)
    skip = first - 2 * block
    return [_to_challenge(stream[32 * i:32 * i + 32], nodes) for i in range(skip, skip + count)]


def synthetic_indexes(replica_id: bytes, seed: bytes, total: int, per_partition: int,
                      partition: int) -> list[int]:
    """Which synthetic challenges (their indexes) are the PoRep challenges of a partition."""
    replica_id, seed = _bytes32(replica_id, "replica_id"), _bytes32(seed, "seed")
    if isinstance(total, bool) or not isinstance(total, int) or not 1 <= total <= SYNTHETIC_COUNT:
        raise ChallengeError(f"total must be an int in 1..{SYNTHETIC_COUNT}, got {total!r}")
    _check_counts(total + 1, per_partition, partition)
    first = partition * per_partition
    block = first // 16                                    # 16 u32 indexes per block
    stream = chacha20_stream(_synth_key(SYNTH_SELECTION_KEY, replica_id, seed), SYNTH_NONCE, block,
                             (first + per_partition + 15) // 16 - block)
    skip = first - 16 * block
    return [int.from_bytes(stream[4 * j:4 * j + 4], "little") % total
            for j in range(skip, skip + per_partition)]


def synthetic_porep_challenges(replica_id: bytes, comm_r: bytes, seed: bytes, nodes: int,
                               per_partition: int, partition: int) -> list[int]:
    """The challenged nodes of one partition of a synthetic PoRep."""
    total = synthetic_count(nodes)
    return [synthetic_challenges(replica_id, comm_r, nodes, i, 1)[0]
            for i in synthetic_indexes(replica_id, seed, total, per_partition, partition)]


def porep_challenges(proof: int | str | SealProof, replica_id: bytes, seed: bytes | None = None,
                     comm_r: bytes | None = None) -> list[list[int]]:
    """All partitions' challenges for a seal proof: interactive ones need `seed`,
    non-interactive ones `comm_r`, synthetic ones both."""
    p = seal_proof(proof)
    per, parts = p.porep_challenges_per_partition, p.porep_partitions
    if p.feature is SealFeature.SYNTHETIC:
        if comm_r is None or seed is None:
            raise ChallengeError(f"{p.name} is synthetic: the seed and comm_r are required")
        return [synthetic_porep_challenges(replica_id, comm_r, seed, p.nodes, per, k) for k in range(parts)]
    if p.feature is SealFeature.NON_INTERACTIVE:
        if comm_r is None:
            raise ChallengeError(f"{p.name} is non-interactive: comm_r is required")
        return [ni_challenges(replica_id, comm_r, p.nodes, per, k) for k in range(parts)]
    if seed is None:
        raise ChallengeError(f"{p.name} is interactive: the seed is required")
    return [interactive_challenges(replica_id, seed, p.nodes, per, k) for k in range(parts)]
