"""Interactive (and non-interactive) PoRep vanilla proofs: format, building blocks, verifier.

What is opened per challenged node c, as rust-fil-proofs stacked/vanilla checks it
(proof.rs, params.rs, column_proof.rs, labeling_proof.rs, encoding_proof.rs):

- tree-d: the data word of c and its binary sha254 path to comm_d;
- tree-c: the column of c (its label in every layer) and its path to comm_c, and the same
  for each of c's 6 base and 8 expander parents (graph order);
- labelling: none sent. The verifier recomputes c's label in every layer from the parent
  columns it has just checked against comm_c (layer l: base parents' labels in layer l,
  expander parents' labels in layer l - 1) and compares with c's column. rust-fil-proofs
  ships those parent labels again as "labeling proofs"; taking them from the verified
  columns checks the same thing without trusting a second copy;
- encoding: replica word = data word + last-layer label (mod p);
- tree-r-last: the replica word of c and its path to comm_r_last;
- once per proof: comm_c and comm_r_last, with Poseidon2(comm_c, comm_r_last) = comm_r.

The byte format is ours: msgspec msgpack of the structs below (deterministic: fixed
field order, arrays). Positions in paths are implied by the node index.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
import numpy as np

from zqnode.proofs import merkle, ptree
from zqnode.proofs.encoding import encode_word
from zqnode.proofs.params import ProofParamsError, SealFeature, SealProof, prover_id, replica_id
from zqnode.proofs.params import seal_proof as lookup_seal_proof
from zqnode.proofs.poseidon import WORD, hash_bytes, word_to_int
from zqnode.proofs.sdr.cache import Graph, graph_parents
from zqnode.proofs.sdr.challenges import ChallengeError, porep_challenges
from zqnode.proofs.sdr.drg import BASE_DEGREE
from zqnode.proofs.sdr.labels import node_label
from zqnode.proofs.sector import TreeShape

FORMAT_VERSION = 1


class SealError(ValueError):
    """Bad input to sealing or to a seal proof's verification (other than the proof bytes)."""


# Bounds on what a decoder builds from a peer's bytes, above any real proof's shapes: a
# word, tree levels (a 64 GiB tree-d has 31), siblings per level (arity 8: 7), layers (11).
Word = Annotated[bytes, msgspec.Meta(max_length=WORD)]
Path = Annotated[list[Annotated[list[Word], msgspec.Meta(max_length=15)]], msgspec.Meta(max_length=32)]


class PoRepColumnOpening(msgspec.Struct, array_like=True, frozen=True):
    labels: Annotated[list[Word], msgspec.Meta(max_length=16)]   # the node's label in layers 1..L
    path: Path                       # tree-c siblings per level, bottom up


class PoRepChallengeProof(msgspec.Struct, array_like=True, frozen=True):
    node: int
    data_leaf: Word
    data_path: Annotated[list[Word], msgspec.Meta(max_length=32)]   # tree-d siblings, bottom up
    column: PoRepColumnOpening
    parents: Annotated[list[PoRepColumnOpening], msgspec.Meta(max_length=14)]   # 6 base, 8 expander
    replica_leaf: Word
    replica_path: Path               # tree-r-last siblings per level, bottom up


class PoRepVanillaProof(msgspec.Struct, array_like=True, frozen=True):
    version: int
    seal_proof: int
    comm_c: Word
    comm_r_last: Word
    partitions: Annotated[list[Annotated[list[PoRepChallengeProof], msgspec.Meta(max_length=256)]],
                          msgspec.Meta(max_length=256)]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PoRepVanillaProof)


def encode_proof(proof: PoRepVanillaProof) -> bytes:
    return _encoder.encode(proof)


def decode_proof(data: bytes) -> PoRepVanillaProof:
    return _decoder.decode(data)


# --- building blocks shared by prover and verifier -----------------------------------------

def siblings_of(path: Sequence[ptree.PathStep]) -> list[list[bytes]]:
    return [list(step.siblings) for step in path]


def steps_for(index: int, siblings: Sequence[Sequence[bytes]],
              arities: Sequence[int]) -> list[ptree.PathStep] | None:
    """PathSteps for a leaf index from bare siblings; None when the shape is wrong."""
    if len(siblings) != len(arities):
        return None
    steps = []
    for level, arity in zip(siblings, arities):
        if len(level) != arity - 1 or any(len(s) != WORD for s in level):
            return None
        steps.append(ptree.PathStep(tuple(level), index % arity))
        index //= arity
    return steps


def column_opening(layers: Sequence, tree_c: Sequence[bytes], node: int) -> PoRepColumnOpening:
    """The column of `node` across `layers` (arrays (nodes, 32)) with its tree-c path."""
    return PoRepColumnOpening([bytes(layer[node]) for layer in layers],
                              siblings_of(ptree.inclusion_path(tree_c, node)))


def challenges_for(p: SealProof, rid: bytes, seed: bytes | None, comm_r: bytes) -> list[list[int]]:
    """Per partition, the challenged nodes (interactive: seed; non-interactive: comm_r)."""
    try:
        return porep_challenges(p, rid, seed=seed, comm_r=comm_r)
    except ChallengeError as e:
        raise SealError(str(e)) from None


def challenge_parents(p: SealProof, nodes: Sequence[int]) -> np.ndarray:
    """(len, 14) parents of the challenged nodes, computed from the graph (no cache)."""
    return graph_parents(Graph.for_proof(p), np.asarray(nodes, dtype=np.uint64))


# --- verification ---------------------------------------------------------------------------

def _bytes32(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != 32:
        raise SealError(f"{what} must be 32 bytes")
    return bytes(value)


def _column_ok(opening: PoRepColumnOpening, node: int, p: SealProof, shape: TreeShape,
               comm_c: bytes) -> bool:
    if len(opening.labels) != p.layers or any(len(x) != WORD for x in opening.labels):
        return False
    steps = steps_for(node, opening.path, shape.arities)
    return steps is not None and ptree.verify_path(comm_c, hash_bytes(opening.labels), node,
                                                   steps, shape.arities)


def _challenge_ok(ch: PoRepChallengeProof, node: int, parents: Sequence[int], p: SealProof,
                  shape: TreeShape, rid: bytes, comm_d: bytes, comm_c: bytes,
                  comm_r_last: bytes) -> bool:
    if ch.node != node or len(ch.data_leaf) != WORD or len(ch.replica_leaf) != WORD:
        return False
    # tree-d
    if len(ch.data_path) != shape.binary_height or any(len(s) != WORD for s in ch.data_path):
        return False
    if not merkle.verify_path(comm_d, ch.data_leaf, node, ch.data_path):
        return False
    # tree-c: the node's column and its 14 parents' columns
    if len(ch.parents) != len(parents) or not _column_ok(ch.column, node, p, shape, comm_c):
        return False
    for opening, parent in zip(ch.parents, parents):
        if not _column_ok(opening, int(parent), p, shape, comm_c):
            return False
    # labelling: every layer's label of the node from the verified parent columns
    base, expander = ch.parents[:BASE_DEGREE], ch.parents[BASE_DEGREE:]
    for layer in range(1, p.layers + 1):
        base_labels = [o.labels[layer - 1] for o in base]
        exp_labels = None if layer == 1 else [o.labels[layer - 2] for o in expander]
        if node_label(rid, layer, node, base_labels, exp_labels) != ch.column.labels[layer - 1]:
            return False
    # encoding, then tree-r-last
    word_to_int(ch.data_leaf)  # canonical, or FieldElementError
    if encode_word(ch.data_leaf, ch.column.labels[-1]) != ch.replica_leaf:
        return False
    steps = steps_for(node, ch.replica_path, shape.arities)
    return steps is not None and ptree.verify_path(comm_r_last, ch.replica_leaf, node, steps,
                                                   shape.arities)


def verify_vanilla(proof: PoRepVanillaProof, p: SealProof, rid: bytes, seed: bytes | None,
                   comm_d: bytes, comm_r: bytes) -> bool:
    """Check a decoded proof; False (never an exception) for any bad content."""
    try:
        if proof.version != FORMAT_VERSION or proof.seal_proof != p.id:
            return False
        if len(proof.comm_c) != WORD or len(proof.comm_r_last) != WORD:
            return False
        if hash_bytes([proof.comm_c, proof.comm_r_last]) != comm_r:
            return False
        expected = challenges_for(p, rid, seed, comm_r)
        if [len(part) for part in proof.partitions] != [len(part) for part in expected]:
            return False
        nodes = [node for part in expected for node in part]
        parents = challenge_parents(p, nodes)
        shape = TreeShape.of(p)
        challenges = [ch for part in proof.partitions for ch in part]
        return all(_challenge_ok(ch, node, parents[i], p, shape, rid, comm_d, proof.comm_c,
                                 proof.comm_r_last)
                   for i, (ch, node) in enumerate(zip(challenges, nodes)))
    except ValueError:   # a non-canonical field element, a malformed path, ...
        return False


def verify_seal(*, seal_proof: int, miner: int, sector: int, ticket: bytes, seed: bytes,
                comm_d: bytes, comm_r: bytes, proof: bytes) -> bool:
    """Whether `proof` (commit1's bytes) proves the sealing of this sector.

    Bad proof bytes give False, never an exception. Bad other arguments (an unknown seal
    proof, a ticket that is not 32 bytes, ...) raise SealError. `seed` is the interactive
    PoRep seed (ignored by non-interactive proofs, which derive challenges from comm_r)."""
    try:
        p = lookup_seal_proof(seal_proof)
        rid = replica_id(prover_id(miner), sector, _bytes32(ticket, "ticket"),
                         _bytes32(comm_d, "comm_d"), p)
    except ProofParamsError as e:
        raise SealError(str(e)) from None
    comm_r = _bytes32(comm_r, "comm_r")
    if p.feature is not SealFeature.NON_INTERACTIVE:
        seed = _bytes32(seed, "seed")
    try:
        decoded = decode_proof(bytes(proof))
    except (msgspec.DecodeError, TypeError, ValueError):
        return False
    return verify_vanilla(decoded, p, rid, seed, bytes(comm_d), comm_r)

