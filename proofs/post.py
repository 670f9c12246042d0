"""WindowPoSt vanilla proofs (PROOFS.md §7), as rust-fil-proofs storage-proofs-post fallback.

Challenges: leaf n (0..9) of a sector is u64le(SHA-256(rand || u64le(sector number) ||
u64le(i))[:8]) mod (sector size / 32), with i = n for WindowPoSt V1_1 proofs (API 1.2) and,
for the older V1 proofs, i = sector_index * 10 + n, sector_index being the sector's
position among all sectors proven in the call (partition * sectors_per_partition + slot).

Randomness: these functions take the *canonical* 32-byte randomness, i.e. the chain's
beacon randomness with `rand[31] &= 0x3F` already applied (as Lotus does before calling
the proofs library). `canonical_randomness(raw)` applies the mask; anything else that has
the top two bits of byte 31 set is refused with PoStError, so a caller that forgot the
mask finds out instead of proving against other challenges than the chain's.

Per sector the proof carries comm_c, comm_r_last, and for each challenge the replica word
and its tree-r-last path; the verifier checks Poseidon2(comm_c, comm_r_last) = comm_r and
every path. The paths are rebuilt from a segment of the sealed file plus the stored
upper rows of tree-r-last (Lotus discards the rows below). A partition proves a fixed
number of sectors (PROOFS.md §4 table); a short last partition repeats its last sector.
A sector whose files are missing, unreadable or do not match its comm_r is skipped with
a reason, and the rest are proven without it.

The byte format is ours: msgspec msgpack of PoStPartitionProof (deterministic).
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from zqnode.proofs import ptree, seal
from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.params import (WINDOW_POST_CHALLENGES_PER_SECTOR, ApiVersion, PoStProof,
                                  ProofParamsError, SealProof, post_proof as lookup_post_proof)
from zqnode.proofs.params import seal_proof as lookup_seal_proof
from zqnode.proofs.porep import siblings_of, steps_for
from zqnode.proofs.poseidon import WORD, hash_bytes
from zqnode.proofs.sector import SectorError, TreeShape, holding, load_meta

FORMAT_VERSION = 1
RANDOMNESS_MASK = 0x3F

__all__ = ["PoStError", "SectorRef", "PoStSectorProof", "PoStPartitionProof", "PostPartition",
           "WindowPostResult", "ProvenSector", "canonical_randomness", "check_randomness", "leaf_challenges",
           "sectors_per_partition", "window_post_type", "prove_sector", "generate_window_post",
           "verify_window_post"]


class PoStError(ValueError):
    """Bad input to WindowPoSt proving or verification (other than the proof bytes)."""


class SectorRef(msgspec.Struct, frozen=True):
    """A sector to prove: its number, its directory, and optionally the comm_r the chain
    has for it (checked against the directory's; default: the directory's own)."""
    number: int
    dir: str
    comm_r: bytes | None = None


class PoStSectorProof(msgspec.Struct, array_like=True, frozen=True):
    comm_c: bytes
    comm_r_last: bytes
    leaves: list[bytes]              # the challenged replica words, challenge order
    paths: list[list[list[bytes]]]   # per challenge: tree-r-last siblings per level


class PoStPartitionProof(msgspec.Struct, array_like=True, frozen=True):
    version: int
    post_proof: int
    sectors: list[PoStSectorProof]   # exactly sectors_per_partition, padded with the last


class PostPartition(NamedTuple):
    index: int
    sectors: list[tuple[int, bytes]]     # (sector number, comm_r) proven, in order
    challenges: list[list[int]]          # the leaves challenged in each of those sectors
    proof: bytes
    backend: str


class ProvenSector(NamedTuple):
    proof: PoStSectorProof
    challenges: list[int]
    comm_r: bytes


class WindowPostResult(NamedTuple):
    partitions: list[PostPartition]
    skipped: list[tuple[int, str]]       # (sector number, reason)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PoStPartitionProof)


# --- inputs ---------------------------------------------------------------------------------

def canonical_randomness(raw: bytes) -> bytes:
    """Chain randomness made a field element the way Lotus does: rand[31] &= 0x3F."""
    if not isinstance(raw, (bytes, bytearray, memoryview)) or len(raw) != 32:
        raise PoStError("randomness must be 32 bytes")
    out = bytearray(raw)
    out[31] &= RANDOMNESS_MASK
    return bytes(out)


def check_randomness(randomness) -> bytes:
    """`randomness` if it is 32 canonical bytes, else PoStError saying what is wrong."""
    if not isinstance(randomness, (bytes, bytearray, memoryview)) or len(randomness) != 32:
        got = len(randomness) if isinstance(randomness, (bytes, bytearray, memoryview)) \
            else type(randomness).__name__
        raise PoStError(f"randomness must be 32 bytes, got {got}")
    randomness = bytes(randomness)
    if randomness[31] & ~RANDOMNESS_MASK & 0xFF:
        raise PoStError(f"randomness is not canonical: its last byte 0x{randomness[31]:02x} has "
                        f"a top bit set (Filecoin uses rand[31] &= 0x3F; mask it first)")
    return randomness


def window_post_type(seal_proof: int | str | SealProof,
                     post_proof: int | str | PoStProof | None = None) -> tuple[SealProof, PoStProof]:
    """The seal proof and its WindowPoSt type (default: the V1_1 one, API 1.2)."""
    try:
        p = lookup_seal_proof(seal_proof)
        pp = p.window_post_proof if post_proof is None else lookup_post_proof(post_proof)
    except ProofParamsError as e:
        raise PoStError(str(e)) from None
    if pp.kind != "window" or pp.sector_size != p.sector_size:
        raise PoStError(f"{pp.name} is not a WindowPoSt proof for {p.name}")
    return p, pp


def sectors_per_partition(seal_proof: int | str | SealProof) -> int:
    return lookup_seal_proof(seal_proof).sector.window_post_partition_sectors


def leaf_challenges(post: PoStProof, randomness: bytes, sector: int, sector_index: int = 0,
                    count: int = WINDOW_POST_CHALLENGES_PER_SECTOR) -> list[int]:
    """The challenged leaves of one sector (sector_index matters for API < 1.2 only)."""
    nodes = post.sector_size // WORD
    prefix = hashlib.sha256(bytes(randomness) + sector.to_bytes(8, "little"))
    out = []
    for n in range(count):
        index = n if post.api_version is ApiVersion.V1_2_0 else sector_index * count + n
        h = prefix.copy()
        h.update(index.to_bytes(8, "little"))
        out.append(int.from_bytes(h.digest()[:8], "little") % nodes)
    return out


# --- proving ----------------------------------------------------------------------------------

def _sector_ok(proof: PoStSectorProof, comm_r: bytes, challenges: Sequence[int],
               arities: Sequence[int]) -> bool:
    if len(proof.comm_c) != WORD or len(proof.comm_r_last) != WORD:
        return False
    if hash_bytes([proof.comm_c, proof.comm_r_last]) != comm_r:
        return False
    if len(proof.leaves) != len(challenges) or len(proof.paths) != len(challenges):
        return False
    for leaf, path, challenge in zip(proof.leaves, proof.paths, challenges):
        steps = steps_for(challenge, path, arities)
        if len(leaf) != WORD or steps is None:
            return False
        if not ptree.verify_path(proof.comm_r_last, leaf, challenge, steps, arities):
            return False
    return True


def prove_sector(ref: SectorRef, post: PoStProof, randomness: bytes, sector_index: int = 0, *,
                 backend: str | Backend = "cpu", check: bool = True) -> ProvenSector:
    """One sector's proof, its challenges and comm_r. SectorError (or OSError) when the sector's
    files are missing, unreadable or inconsistent; with `check=False` the paths are built
    even where the replica does not match the stored rows (tests forge bad proofs so)."""
    ref = msgspec.structs.replace(ref, dir=str(holding(ref.dir, ref.comm_r)))   # a SnapDeals upgrade's
    meta = load_meta(ref.dir)
    if meta.sector != ref.number:
        raise SectorError(f"{ref.dir} holds sector {meta.sector}")
    if meta.sector_size != post.sector_size:
        raise SectorError(f"{ref.dir} holds a {meta.sector_size}-byte sector, not {post.sector_size}")
    if not meta.at_least("pc2"):
        raise SectorError(f"not sealed (stage {meta.stage})")
    recorded = meta.hex_field("comm_r")
    comm_r = recorded if ref.comm_r is None else bytes(ref.comm_r)
    if comm_r != recorded:
        raise SectorError(f"comm_r {comm_r.hex()} differs from the sector's {recorded.hex()}")
    comm_c, comm_r_last = seal.checked_p_aux(ref.dir, meta, comm_r)
    upper = seal.tree_r_last_upper(ref.dir, meta)
    if upper[-1] != comm_r_last:
        raise SectorError("tree-r-last's stored root differs from comm_r_last")
    read = seal.replica_reader(ref.dir, meta)
    arities = TreeShape.of(meta.seal_proof).arities
    challenges = leaf_challenges(post, randomness, ref.number, sector_index)
    try:
        paths = get_backend(backend).tree_r_paths(upper, read, challenges, arities, check=check)
    except ptree.TreeError as e:
        raise SectorError(f"the sealed file does not match tree-r-last: {e}") from None
    proof = PoStSectorProof(comm_c, comm_r_last, [read(range(c, c + 1)) for c in challenges],
                            [siblings_of(path) for path in paths])
    if check and not _sector_ok(proof, comm_r, challenges, arities):
        raise SectorError("an inclusion path does not lead to comm_r_last (tree-r-last is corrupt)")
    return ProvenSector(proof, challenges, comm_r)


def generate_window_post(seal_proof: int | str | SealProof, randomness: bytes,
                         sectors: Sequence[SectorRef], *, post_proof=None,
                         backend: str | Backend = "auto",
                         progress: Callable[[str], None] | None = None) -> WindowPostResult:
    """Prove `sectors` in partitions; sectors that cannot be proven are skipped with a
    reason (never an exception for them). Raises PoStError for bad arguments only.

    Sectors are proven in sector-number order, whatever order they come in: rust-fil-proofs
    takes them as a BTreeMap keyed by sector id, and the order fixes the partitions (and,
    before API 1.2, the challenges)."""
    p, post = window_post_type(seal_proof, post_proof)
    randomness = check_randomness(randomness)
    numbers = [ref.number for ref in sectors]
    if len(set(numbers)) != len(numbers):
        raise PoStError("a sector is listed twice")
    sectors = sorted(sectors, key=lambda ref: ref.number)
    impl = get_backend(backend)
    started = time.perf_counter()
    proven: list[tuple[int, ProvenSector]] = []
    skipped: list[tuple[int, str]] = []
    for ref in sectors:
        try:
            # The position among proven sectors is final: a skip never precedes it later.
            done = prove_sector(ref, post, randomness, len(proven), backend=impl)
        except (SectorError, OSError, ValueError) as e:
            skipped.append((ref.number, str(e) or type(e).__name__))
            continue
        proven.append((ref.number, done))
    per = p.sector.window_post_partition_sectors
    partitions = []
    for index, first in enumerate(range(0, len(proven), per)):
        chunk = proven[first:first + per]
        proofs = [done.proof for _, done in chunk]
        proofs += [proofs[-1]] * (per - len(proofs))        # a short partition repeats its last
        data = _encoder.encode(PoStPartitionProof(FORMAT_VERSION, post.id, proofs))
        partitions.append(PostPartition(index, [(number, done.comm_r) for number, done in chunk],
                                        [done.challenges for _, done in chunk], data, impl.name))
    if progress is not None:
        progress(f"WindowPoSt: {len(proven)} sectors in {len(partitions)} partitions, "
                 f"{len(skipped)} skipped ({time.perf_counter() - started:.1f}s, {impl.name})")
    return WindowPostResult(partitions, skipped)


# --- verification -------------------------------------------------------------------------------

def verify_window_post(*, seal_proof: int, randomness: bytes, sectors: list[tuple[int, bytes]],
                       proof: bytes, partition: int = 0, post_proof=None) -> bool:
    """Whether `proof` proves one partition of `sectors` ((number, comm_r), in order).

    Bad proof bytes give False. Bad arguments (unknown proof ids, non-canonical randomness,
    no sectors or more than a partition holds) raise PoStError. `partition` (the
    partition's index in the proving call) only matters for pre-API-1.2 PoSt types."""
    p, post = window_post_type(seal_proof, post_proof)
    randomness = check_randomness(randomness)
    per = p.sector.window_post_partition_sectors
    if not 1 <= len(sectors) <= per:
        raise PoStError(f"a partition proves 1..{per} sectors, got {len(sectors)}")
    for number, comm_r in sectors:
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 1 << 64:
            raise PoStError(f"sector number must be an int in 0..2^64-1, got {number!r}")
        if not isinstance(comm_r, (bytes, bytearray)) or len(comm_r) != WORD:
            raise PoStError(f"sector {number}: comm_r must be {WORD} bytes")
    try:
        decoded = _decoder.decode(bytes(proof))
    except (msgspec.DecodeError, TypeError, ValueError):
        return False
    if decoded.version != FORMAT_VERSION or decoded.post_proof != post.id:
        return False
    if len(decoded.sectors) != per:
        return False
    count = len(sectors)
    if any(extra != decoded.sectors[count - 1] for extra in decoded.sectors[count:]):
        return False
    arities = TreeShape.of(p).arities
    try:
        return all(_sector_ok(sector_proof, bytes(comm_r),
                              leaf_challenges(post, randomness, number, partition * per + i),
                              arities)
                   for i, ((number, comm_r), sector_proof) in enumerate(zip(sectors, decoded.sectors)))
    except ValueError:   # a non-canonical field element in the proof
        return False


def sector_refs(dirs: Sequence[str | os.PathLike]) -> list[SectorRef]:
    """SectorRefs for sector directories, numbers read from their metadata."""
    return [SectorRef(load_meta(d).sector, str(d)) for d in dirs]
