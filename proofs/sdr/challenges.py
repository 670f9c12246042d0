"""PoRep challenges (PROOFS.md section 6), as rust-fil-proofs stacked/vanilla/challenges.rs.

Interactive (seal proofs 0..9): challenge j of partition k, j = k * per_partition + i, is
(BigUint_le(SHA-256(replica_id || seed || u32le(j))) mod (nodes - 1)) + 1, never node 0.
Non-interactive (15..19) hashes "filecoin.io|PoRep|1|NonInteractive|1" || replica_id ||
comm_r || u32le(j) instead.  Synthetic PoRep (10..14) is not implemented here.
"""
from __future__ import annotations

import hashlib

from zqnode.proofs.params import SealFeature, SealProof, seal_proof

NI_TAG = b"filecoin.io|PoRep|1|NonInteractive|1"


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


def porep_challenges(proof: int | str | SealProof, replica_id: bytes, seed: bytes | None = None,
                     comm_r: bytes | None = None) -> list[list[int]]:
    """All partitions' challenges for a seal proof: interactive ones need `seed`,
    non-interactive ones `comm_r`."""
    p = seal_proof(proof)
    per, parts = p.porep_challenges_per_partition, p.porep_partitions
    if p.feature is SealFeature.SYNTHETIC:
        raise ChallengeError(f"{p.name}: synthetic PoRep challenges are not implemented")
    if p.feature is SealFeature.NON_INTERACTIVE:
        if comm_r is None:
            raise ChallengeError(f"{p.name} is non-interactive: comm_r is required")
        return [ni_challenges(replica_id, comm_r, p.nodes, per, k) for k in range(parts)]
    if seed is None:
        raise ChallengeError(f"{p.name} is interactive: the seed is required")
    return [interactive_challenges(replica_id, seed, p.nodes, per, k) for k in range(parts)]
