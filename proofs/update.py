"""SnapDeals' EmptySectorUpdate: deal data put into a committed-capacity sector's replica
without sealing again, as rust-fil-proofs' storage-proofs-update (v19.1.0, commit
87348a74) does it, and its vanilla partition proofs.

Sources, cited below as SPU (storage-proofs-update/src), FP (filecoin-proofs/src), NEP
(neptune v11.0.0) and GST (go-state-types abi/sector.go):

- comm_r_old = H2(comm_c, comm_r_last_old), the CC sector's CommR; H2 is the Merkle
  tree's arity-2 Poseidon (tag 3), comm_r's own hash (SPU vanilla.rs:948).
- phi = HG(comm_d_new, comm_r_old) (SPU vanilla.rs:626-638); rho(high) = HG(phi, high)
  (vanilla.rs:640-647). HG is arity-2 Poseidon with neptune's HashType::Custom(Arbitrary(1))
  tag, 1 * 2^40 (SPU constants.rs:16-22, NEP hash_type.rs:93-99).
- high(i) = i >> (log2(nodes) - h), the h top bits of node i, h = hs[3] (SPU
  constants.rs:92-123; FP api/update.rs uses h_default everywhere).
- new replica[i] = sector_key[i] + data[i] * rho(high(i)) (vanilla.rs:972-980), the sector
  key being the CC replica; data back: (replica - key) * rho^-1 (vanilla.rs:1112); the key
  back: replica - data * rho (vanilla.rs:1230).
- comm_r_new = H2(comm_c, comm_r_last_new), tree-r-last of the new replica built as sealing
  builds it; comm_c does not change (vanilla.rs:992-1009).
- challenges: digest j of partition k = HG(comm_r_new, k * digests_per_partition + j), read
  least significant bit first in slices of r = log2(nodes) - log2(partitions) bits, the
  partition index above them (SPU challenges.rs:36-132).

Field elements are 32-byte little-endian words below p; anything else is refused, as
rust-fil-proofs' bytes_into_fr refuses it. The proof bytes are ours (msgspec msgpack of
the structs below), as porep's are.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec

from zqnode.proofs import encoding, merkle, ptree
from zqnode.proofs.params import SECTOR_SIZES, UPDATE_PROOF_IDS, ProofParamsError, parse_sector_size, \
    update_proof_id
from zqnode.proofs.poseidon import P, WORD, FieldElementError, hash_tagged, word_to_int

FORMAT_VERSION = 1
MAX_PROOF_BYTES = 16 << 20           # a 64 GiB sector's proof is about 8 MiB
GEN_RANDOMNESS_TAG = 1 << 40         # SPU constants.rs:16-22 HashType::Custom(CType::Arbitrary(1)); NEP: id * 2^40
FR_CAPACITY = 254                    # bits of a digest the challenges use (blstrs Scalar::CAPACITY)

_NODES_8_KIB, _NODES_32_KIB, _NODES_16_MIB = 1 << 8, 1 << 10, 1 << 19      # SPU constants.rs:24-35


class UpdateError(ValueError):
    """Bad input to an update (sizes, words that are not field elements, wrong commitments)."""


def partition_count(nodes: int) -> int:
    """SPU constants.rs:64-72."""
    return 1 if nodes <= _NODES_8_KIB else 2 if nodes <= _NODES_32_KIB else 4 if nodes <= _NODES_16_MIB else 16


def challenge_count(nodes: int) -> int:
    """Challenges per partition (SPU constants.rs:74-80)."""
    return 10 if nodes <= _NODES_16_MIB else 86


def apex_leaf_count(nodes: int) -> int:
    """SPU constants.rs:82-84."""
    return 8 if nodes <= _NODES_8_KIB else 128


def h_default(nodes: int) -> int:
    """hs(nodes)[3]: [1]*6 up to 32 KiB of nodes, else [7..12] (SPU constants.rs:92-107)."""
    return 1 if nodes <= _NODES_32_KIB else 10


@dataclass(frozen=True)
class UpdateProof:
    id: int
    name: str                        # GST's, e.g. StackedDrg32GiBV1
    sector_size: int
    nodes: int
    partitions: int
    challenges: int                  # per partition
    apex_leaves: int
    h: int
    tree_arity: tuple[int, int, int]   # tree-r-last, as the seal proofs of the size

    @property
    def node_bits(self) -> int:
        return self.nodes.bit_length() - 1

    @property
    def high_shift(self) -> int:
        """Node i takes rho(i >> high_shift)."""
        return self.node_bits - self.h

    @property
    def arities(self) -> tuple[int, ...]:
        return ptree.level_arities(self.nodes, *self.tree_arity)


UPDATE_PROOFS: dict[int, UpdateProof] = {}
for _s in SECTOR_SIZES.values():
    _n = _s.nodes
    UPDATE_PROOFS[UPDATE_PROOF_IDS[_s.name]] = UpdateProof(
        UPDATE_PROOF_IDS[_s.name], f"StackedDrg{_s.name}V1", _s.size, _n, partition_count(_n), challenge_count(_n),
        apex_leaf_count(_n), h_default(_n), _s.tree_arity)
_BY_NAME = {p.name: p for p in UPDATE_PROOFS.values()}


def update_proof(value: int | str) -> UpdateProof:
    """By id (an int, 0..4), name (StackedDrg2KiBV1) or sector size as text ('2KiB')."""
    if isinstance(value, int) and not isinstance(value, bool) and value in UPDATE_PROOFS:
        return UPDATE_PROOFS[value]
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    try:
        size = parse_sector_size(value) if isinstance(value, str) else None
    except ProofParamsError:
        size = None
    if size is None:
        raise UpdateError(f"unknown update proof {value!r} (an id 0..4, a name such as "
                          f"StackedDrg2KiBV1, or a sector size such as 2KiB)")
    return for_sector_size(size)


def for_sector_size(size: int) -> UpdateProof:
    """The update proof of a sector size in bytes (every seal proof of a size has one)."""
    return UPDATE_PROOFS[update_proof_id(size)]


# --- randomness ---------------------------------------------------------------------------------

def _fr(word: bytes, what: str) -> int:
    try:
        return word_to_int(bytes(word))
    except FieldElementError as e:
        raise UpdateError(f"{what}: {e}") from None


def hg(a: int, b: int) -> int:
    return hash_tagged([a, b], GEN_RANDOMNESS_TAG)


def phi(comm_d_new: bytes, comm_r_old: bytes) -> int:
    return hg(_fr(comm_d_new, "comm_d_new"), _fr(comm_r_old, "comm_r_old"))


def rhos(p: UpdateProof, comm_d_new: bytes, comm_r_old: bytes) -> list[int]:
    """rho of every high value 0 .. 2^h - 1."""
    f = phi(comm_d_new, comm_r_old)
    return [hg(f, high) for high in range(1 << p.h)]


def challenges(p: UpdateProof, comm_r_new: bytes, k: int) -> list[int]:
    """The challenged nodes of partition k (SPU challenges.rs)."""
    if not 0 <= k < p.partitions:
        raise UpdateError(f"partition {k} out of range 0..{p.partitions - 1}")
    seed = _fr(comm_r_new, "comm_r_new")
    r = p.node_bits - (p.partitions.bit_length() - 1)
    per_digest = FR_CAPACITY // r
    per_partition = -(-p.challenges // per_digest)
    out, digest = [], 0
    for t in range(p.challenges):
        j, i = divmod(t, per_digest)
        if i == 0:
            digest = hg(seed, k * per_partition + j)
        out.append(((digest >> (i * r)) & ((1 << r) - 1)) | (k << r))
    return out


# --- the words ------------------------------------------------------------------------------------

def mul_add(base, data, factors: Sequence[int], shift: int, first: int = 0) -> bytes:
    """base[i] + data[i] * factors[(first + i) >> shift] (mod p), word by word, the words
    being nodes first, first + 1, ...: encoding (factors rho), removing the data (-rho),
    decoding (base 0, data the difference, factors 1/rho). Every word must be a field element."""
    b, d = memoryview(base).cast("B"), memoryview(data).cast("B")
    if len(b) != len(d) or len(b) % WORD:
        raise UpdateError(f"buffers of {len(b)} and {len(d)} bytes are not equal whole numbers of words")
    out = bytearray(len(b))
    for i in range(len(b) // WORD):
        at = slice(i * WORD, (i + 1) * WORD)
        x, y = int.from_bytes(b[at], "little"), int.from_bytes(d[at], "little")
        if x >= P or y >= P:
            raise UpdateError(f"word {i} is not a field element")
        out[at] = ((x + y * factors[(first + i) >> shift]) % P).to_bytes(WORD, "little")
    return bytes(out)


def encode(p: UpdateProof, sector_key, data, rho: Sequence[int], first: int = 0) -> bytes:
    """The new replica's words (sector_key and data hold nodes first, first + 1, ...)."""
    return mul_add(sector_key, data, rho, p.high_shift, first)


def remove_data(p: UpdateProof, replica, data, rho: Sequence[int], first: int = 0) -> bytes:
    """The sector key back from the new replica and the data."""
    return mul_add(replica, data, [P - r for r in rho], p.high_shift, first)


def decode(p: UpdateProof, replica, sector_key, rho: Sequence[int], first: int = 0) -> bytes:
    """The data back: (replica - key) * rho^-1."""
    try:
        difference = encoding.decode(replica, sector_key)
    except encoding.EncodingError as e:
        raise UpdateError(str(e)) from None
    return mul_add(bytes(len(difference)), difference, [pow(r, -1, P) for r in rho], p.high_shift, first)


# --- proofs -----------------------------------------------------------------------------------------

Word = Annotated[bytes, msgspec.Meta(min_length=WORD, max_length=WORD)]
Path = Annotated[list[Annotated[list[Word], msgspec.Meta(max_length=7)]], msgspec.Meta(max_length=12)]


class UpdateChallengeProof(msgspec.Struct, array_like=True, frozen=True):
    node: int
    old_leaf: Word                   # the sector key's word, and its tree-r-last path (old root)
    old_path: Path
    data_leaf: Word                  # the data word, and its tree-d path (comm_d_new)
    data_path: Annotated[list[Word], msgspec.Meta(max_length=32)]
    new_leaf: Word                   # the new replica's word, and its tree-r-last path (new root)
    new_path: Path


class UpdatePartitionProof(msgspec.Struct, array_like=True, frozen=True):
    comm_c: Word
    comm_r_last_old: Word
    comm_r_last_new: Word
    apex_leaves: Annotated[list[Word], msgspec.Meta(max_length=128)]   # tree-d nodes over the partition
    challenges: Annotated[list[UpdateChallengeProof], msgspec.Meta(max_length=86)]


class UpdateVanillaProof(msgspec.Struct, array_like=True, frozen=True):
    version: int
    update_proof: int
    partitions: Annotated[list[UpdatePartitionProof], msgspec.Meta(max_length=16)]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UpdateVanillaProof)


def encode_proof(proof: UpdateVanillaProof) -> bytes:
    return _encoder.encode(proof)


def decode_proof(data: bytes) -> UpdateVanillaProof:
    """UpdateError for bytes that are not a proof."""
    if len(data) > MAX_PROOF_BYTES:
        raise UpdateError(f"not an update proof: {len(data)} bytes, over the {MAX_PROOF_BYTES} of the largest")
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as e:
        raise UpdateError(f"not an update proof: {e}") from None


# (leaf word, siblings per level) of each node asked, in tree-r-last
Opener = Callable[[list[int]], list[tuple[bytes, list[list[bytes]]]]]


def opener(levels: Sequence[bytes]) -> Opener:
    """An Opener over a whole tree held in memory."""
    def open_(nodes: list[int]):
        return [(bytes(levels[0][n * WORD:(n + 1) * WORD]),
                 [list(step.siblings) for step in ptree.inclusion_path(levels, n)]) for n in nodes]
    return open_


def _apex_height(p: UpdateProof) -> int:
    return p.node_bits - (p.partitions.bit_length() - 1) - (p.apex_leaves.bit_length() - 1)


def prove_partition(p: UpdateProof, k: int, *, comm_c: bytes, comm_r_last_old: bytes, comm_r_last_new: bytes,
                    tree_d: Sequence, old: Opener, new: Opener) -> UpdatePartitionProof:
    """Partition k's proof. `tree_d` are the new data's tree-d levels (leaves first)."""
    comm_r_new = ptree.comm_r(comm_c, comm_r_last_new)
    nodes = challenges(p, comm_r_new, k)
    apex = bytes(tree_d[_apex_height(p)])
    leaves = [apex[(k * p.apex_leaves + i) * WORD:(k * p.apex_leaves + i + 1) * WORD] for i in range(p.apex_leaves)]
    opened_old, opened_new = old(nodes), new(nodes)
    return UpdatePartitionProof(
        comm_c=bytes(comm_c), comm_r_last_old=bytes(comm_r_last_old), comm_r_last_new=bytes(comm_r_last_new),
        apex_leaves=leaves,
        challenges=[UpdateChallengeProof(
            node=n, old_leaf=o[0], old_path=o[1],
            data_leaf=bytes(tree_d[0][n * WORD:(n + 1) * WORD]), data_path=merkle.inclusion_path(tree_d, n),
            new_leaf=w[0], new_path=w[1]) for n, o, w in zip(nodes, opened_old, opened_new)])


def verify(proof: UpdateVanillaProof, *, update_proof: int, comm_r_old: bytes, comm_d_new: bytes,
           comm_r_new: bytes) -> bool:
    """Whether `proof` shows that the replica committed to by comm_r_new is the one of
    comm_r_old with the data of comm_d_new encoded in it (SPU vanilla.rs:485-618, with the
    apex leaves checked at their positions, where rust-fil-proofs checks membership only).
    `update_proof` is the sector's own type (from its sector size), never the proof's say:
    a smaller sector's proof has the shape of a bigger tree's top levels."""
    p = UPDATE_PROOFS.get(update_proof)
    if p is None or proof.update_proof != update_proof:
        return False
    if proof.version != FORMAT_VERSION or len(proof.partitions) != p.partitions:
        return False
    try:
        f = phi(comm_d_new, comm_r_old)
        rho = functools.cache(lambda high: hg(f, high))      # the few the challenges need
        return all(_partition_ok(p, k, part, rho, bytes(comm_r_old), bytes(comm_d_new), bytes(comm_r_new))
                   for k, part in enumerate(proof.partitions))
    except (UpdateError, FieldElementError, ptree.TreeError, merkle.MerkleError):
        return False


def verify_update(*, update_proof: int, comm_r_old: bytes, comm_d_new: bytes, comm_r_new: bytes,
                  proof: bytes) -> bool:
    """A chain's check of a replica update (builtin-actors' verify_replica_update): `proof`
    as bytes, of the sector's update proof type."""
    if not isinstance(proof, (bytes, bytearray)) or len(proof) > MAX_PROOF_BYTES:
        return False
    try:
        decoded = decode_proof(bytes(proof))
    except UpdateError:
        return False
    return verify(decoded, update_proof=update_proof, comm_r_old=comm_r_old, comm_d_new=comm_d_new,
                  comm_r_new=comm_r_new)


def _partition_ok(p: UpdateProof, k: int, part: UpdatePartitionProof, rho: Callable[[int], int], comm_r_old: bytes,
                  comm_d_new: bytes, comm_r_new: bytes) -> bool:
    if len(part.apex_leaves) != p.apex_leaves or len(part.challenges) != p.challenges:
        return False
    if (ptree.comm_r(part.comm_c, part.comm_r_last_old) != comm_r_old
            or ptree.comm_r(part.comm_c, part.comm_r_last_new) != comm_r_new):
        return False
    apex = [list(part.apex_leaves)]              # rows of the apex tree, partition-local
    while len(apex[-1]) > 2:
        row = apex[-1]
        apex.append([merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)])
    base = _apex_height(p)
    arities = p.arities
    for node, ch in zip(challenges(p, comm_r_new, k), part.challenges):
        if ch.node != node or len(ch.data_path) != p.node_bits:
            return False
        if not (_tree_r_ok(part.comm_r_last_old, ch.old_leaf, node, ch.old_path, arities)
                and _tree_r_ok(part.comm_r_last_new, ch.new_leaf, node, ch.new_path, arities)
                and merkle.verify_path(comm_d_new, ch.data_leaf, node, list(ch.data_path))):
            return False
        old, data, new = (word_to_int(w) for w in (ch.old_leaf, ch.data_leaf, ch.new_leaf))
        if new != (old + data * rho(node >> p.high_shift)) % P:
            return False
        for j, row in enumerate(apex):          # the path passes through the apex leaves given
            sibling = ((node >> (base + j)) ^ 1) - k * len(row)
            if not 0 <= sibling < len(row) or ch.data_path[base + j] != row[sibling]:
                return False
    return True


def _tree_r_ok(root: bytes, leaf: bytes, node: int, siblings, arities) -> bool:
    if len(siblings) != len(arities):
        return False
    steps = []
    index = node
    for level, arity in zip(siblings, arities):
        if len(level) != arity - 1:
            return False
        steps.append(ptree.PathStep(tuple(level), index % arity))
        index //= arity
    return len(steps) == len(arities) and ptree.verify_path(root, leaf, node, steps, arities)


def comm_r(comm_c: bytes, comm_r_last: bytes) -> bytes:
    """H2(comm_c, comm_r_last): comm_r_old of the CC sector, comm_r_new of the updated one."""
    return ptree.comm_r(comm_c, comm_r_last)


__all__ = ["UpdateError", "UpdateProof", "UPDATE_PROOFS", "update_proof", "phi", "rhos", "challenges",
           "mul_add", "encode", "decode", "remove_data", "prove_partition", "verify", "verify_update", "opener",
           "UpdateVanillaProof", "UpdatePartitionProof", "UpdateChallengeProof", "encode_proof",
           "decode_proof", "comm_r"]
