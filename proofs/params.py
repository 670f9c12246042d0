"""Filecoin proof parameters and identifiers (PROOFS.md sections 3 and 4).

Facts follow go-state-types `abi` (ids and names), rust-filecoin-proofs-api `registry.rs`
(API version per proof, porep_id) and filecoin-proofs `constants.rs` (sizes, layers,
partitions, challenge counts).
"""
from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

NODE_SIZE = 32
WINDOW_POST_CHALLENGES_PER_SECTOR = 10
WINNING_POST_CHALLENGES = 66
WINNING_POST_SECTORS = 1
MAX_CHALLENGES_PER_PARTITION = 18


class ProofParamsError(ValueError):
    """A proof id, name, size or identifier input that is not valid."""


class ApiVersion(enum.Enum):
    """rust-fil-proofs ApiVersion; 1.0 uses the legacy parent order."""

    V1_0_0 = "1.0.0"
    V1_1_0 = "1.1.0"
    V1_2_0 = "1.2.0"

    @property
    def legacy(self) -> bool:
        return self is ApiVersion.V1_0_0


@dataclass(frozen=True)
class SectorParams:
    """Everything that depends only on the sector size."""

    name: str                      # '2KiB'
    size: int                      # bytes
    layers: int
    tree_arity: tuple[int, int, int]   # tree-r-last (base, sub, top); 0 = no such level
    window_post_partition_sectors: int
    porep_min_challenges: int      # interactive (and synthetic) PoRep
    porep_partitions: int
    ni_porep_min_challenges: int   # non-interactive PoRep
    ni_porep_partitions: int

    @property
    def nodes(self) -> int:
        return self.size // NODE_SIZE

    @property
    def porep_challenges_per_partition(self) -> int:
        return _div_ceil(self.porep_min_challenges, self.porep_partitions)

    @property
    def ni_porep_challenges_per_partition(self) -> int:
        return _div_ceil(self.ni_porep_min_challenges, self.ni_porep_partitions)


def _div_ceil(x: int, y: int) -> int:
    return -(-x // y)


KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

SECTOR_SIZES: dict[int, SectorParams] = {
    p.size: p
    for p in (
        SectorParams("2KiB", 2 * KiB, 2, (8, 0, 0), 2, 2, 1, 26, 13),
        SectorParams("8MiB", 8 * MiB, 2, (8, 0, 0), 2, 2, 1, 26, 13),
        SectorParams("512MiB", 512 * MiB, 2, (8, 0, 0), 2, 2, 1, 26, 13),
        SectorParams("32GiB", 32 * GiB, 11, (8, 8, 0), 2349, 176, 10, 2253, 126),
        SectorParams("64GiB", 64 * GiB, 11, (8, 8, 2), 2300, 176, 10, 2253, 126),
    )
}

# go-state-types abi/sector.go:164-171: RegisteredUpdateProof_StackedDrg{size}V1, one per sector
# size (every seal proof type of a size updates with it; proofs.update has the rest)
UPDATE_PROOF_IDS = {"2KiB": 0, "8MiB": 1, "512MiB": 2, "32GiB": 3, "64GiB": 4}


def update_proof_id(sector_size: int) -> int:
    """The RegisteredUpdateProof of a sector size, in bytes."""
    return UPDATE_PROOF_IDS[SECTOR_SIZES[sector_size].name]


_UNITS = {"": 1, "b": 1, "kib": KiB, "mib": MiB, "gib": GiB}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def parse_sector_size(value: int | str) -> int:
    """'2KiB', '8 MiB', '32GiB', '2048' or 2048 -> size in bytes (a supported size)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProofParamsError(f"sector size must be an int or a string, not {value!r}")
    if isinstance(value, int):
        size = value
    else:
        m = _SIZE_RE.match(value.lower())
        if not m or m.group(2) not in _UNITS:
            raise ProofParamsError(f"cannot parse sector size {value!r} (use e.g. '2KiB', '32GiB')")
        size = int(m.group(1)) * _UNITS[m.group(2)]
    if size not in SECTOR_SIZES:
        names = ", ".join(p.name for p in SECTOR_SIZES.values())
        raise ProofParamsError(f"unsupported sector size {value!r}; supported: {names}")
    return size


def sector_params(value: int | str) -> SectorParams:
    return SECTOR_SIZES[parse_sector_size(value)]


class SealFeature(enum.Enum):
    NONE = "none"
    SYNTHETIC = "synthetic"
    NON_INTERACTIVE = "non-interactive"


@dataclass(frozen=True)
class PoStProof:
    id: int
    name: str
    sector_size: int
    kind: str                      # 'winning' or 'window'
    api_version: ApiVersion


@dataclass(frozen=True)
class SealProof:
    id: int
    name: str
    sector_size: int
    api_version: ApiVersion
    feature: SealFeature

    @property
    def sector(self) -> SectorParams:
        return SECTOR_SIZES[self.sector_size]

    @property
    def nodes(self) -> int:
        return self.sector.nodes

    @property
    def layers(self) -> int:
        return self.sector.layers

    @property
    def porep_id(self) -> bytes:
        return porep_id(self)

    @property
    def porep_partitions(self) -> int:
        if self.feature is SealFeature.NON_INTERACTIVE:
            return self.sector.ni_porep_partitions
        return self.sector.porep_partitions

    @property
    def porep_challenges_per_partition(self) -> int:
        if self.feature is SealFeature.NON_INTERACTIVE:
            return self.sector.ni_porep_challenges_per_partition
        return self.sector.porep_challenges_per_partition

    @property
    def porep_challenges(self) -> int:
        """Challenges actually used: per partition x partitions (180 for 32 GiB)."""
        return self.porep_challenges_per_partition * self.porep_partitions

    @property
    def winning_post_proof(self) -> PoStProof:
        return POST_PROOFS[_SIZE_INDEX[self.sector_size]]

    @property
    def window_post_proof(self) -> PoStProof:
        """The WindowPoSt type used since network version 19 (StackedDrgWindow*V1_1)."""
        return POST_PROOFS[10 + _SIZE_INDEX[self.sector_size]]

    @property
    def window_post_proof_v1(self) -> PoStProof:
        """The WindowPoSt type used up to network version 18 (StackedDrgWindow*V1)."""
        return POST_PROOFS[5 + _SIZE_INDEX[self.sector_size]]


_SIZE_INDEX = {size: i for i, size in enumerate(SECTOR_SIZES)}


def _build_seal_proofs() -> tuple[SealProof, ...]:
    groups = (
        ("V1", ApiVersion.V1_0_0, SealFeature.NONE),
        ("V1_1", ApiVersion.V1_1_0, SealFeature.NONE),
        # The published synthetic names say V1_1 but the proofs run at API 1.2.
        ("V1_1_Feat_SyntheticPoRep", ApiVersion.V1_2_0, SealFeature.SYNTHETIC),
        ("V1_2_Feat_NiPoRep", ApiVersion.V1_2_0, SealFeature.NON_INTERACTIVE),
    )
    out = []
    for suffix, api, feature in groups:
        for p in SECTOR_SIZES.values():
            out.append(SealProof(len(out), f"StackedDrg{p.name}{suffix}", p.size, api, feature))
    return tuple(out)


def _build_post_proofs() -> tuple[PoStProof, ...]:
    groups = (("Winning", "V1", ApiVersion.V1_0_0), ("Window", "V1", ApiVersion.V1_0_0),
              ("Window", "V1_1", ApiVersion.V1_2_0))
    out = []
    for kind, suffix, api in groups:
        for p in SECTOR_SIZES.values():
            out.append(PoStProof(len(out), f"StackedDrg{kind}{p.name}{suffix}", p.size,
                                 kind.lower(), api))
    return tuple(out)


SEAL_PROOFS = _build_seal_proofs()
POST_PROOFS = _build_post_proofs()

_SEAL_BY_NAME = {p.name: p for p in SEAL_PROOFS}
# rust-filecoin-proofs-api and filecoin-ffi spell the NI proofs out in full.
_SEAL_BY_NAME.update({p.name.replace("_NiPoRep", "_NonInteractivePoRep"): p
                      for p in SEAL_PROOFS if p.feature is SealFeature.NON_INTERACTIVE})
_POST_BY_NAME = {p.name: p for p in POST_PROOFS}


def _lookup(x, table, by_name, what: str):
    if isinstance(x, bool):
        raise ProofParamsError(f"{what} must be an id or a name, not {x!r}")
    if isinstance(x, str):
        s = x.strip()
        if s.isdigit():
            x = int(s)
        elif s in by_name:
            return by_name[s]
        else:
            raise ProofParamsError(f"unknown {what} name {x!r}")
    if isinstance(x, int):
        if 0 <= x < len(table):
            return table[x]
        raise ProofParamsError(f"unknown {what} id {x} (known: 0..{len(table) - 1})")
    raise ProofParamsError(f"{what} must be an id or a name, not {type(x).__name__}")


def seal_proof(x: int | str | SealProof) -> SealProof:
    """A registered seal proof by id (5 or '5') or name ('StackedDrg2KiBV1_1')."""
    if isinstance(x, SealProof):
        return x
    return _lookup(x, SEAL_PROOFS, _SEAL_BY_NAME, "registered seal proof")


def post_proof(x: int | str | PoStProof) -> PoStProof:
    """A registered PoSt proof by id or name ('StackedDrgWindow32GiBV1_1')."""
    if isinstance(x, PoStProof):
        return x
    return _lookup(x, POST_PROOFS, _POST_BY_NAME, "registered PoSt proof")


# --- identifiers (PROOFS.md section 3) ---

def porep_id(proof: int | str | SealProof) -> bytes:
    """u64le(proof id) || u64le(nonce = 0) || 16 zero bytes."""
    pid = seal_proof(proof).id
    return pid.to_bytes(8, "little") + bytes(24)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_ID_ADDRESS_RE = re.compile(r"^[ft]0(\d+)$")


def prover_id(miner: int | str) -> bytes:
    """The 32-byte prover id of a miner actor: uvarint(actor id), zero padded.

    Accepts the actor id (1000) or its ID address ('t01000' / 'f01000')."""
    if isinstance(miner, str):
        m = _ID_ADDRESS_RE.match(miner.strip())
        if not m:
            raise ProofParamsError(f"not a miner ID address: {miner!r} (expected e.g. 't01000')")
        miner = int(m.group(1))
    if isinstance(miner, bool) or not isinstance(miner, int):
        raise ProofParamsError(f"miner actor id must be an int, not {type(miner).__name__}")
    if not 0 <= miner < 1 << 63:
        raise ProofParamsError(f"miner actor id out of range: {miner}")
    return _uvarint(miner).ljust(32, b"\0")


def _bytes32(value, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ProofParamsError(f"{what} must be 32 bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != 32:
        raise ProofParamsError(f"{what} must be 32 bytes, got {len(value)}")
    return value


def replica_id(prover: bytes, sector_number: int, ticket: bytes, comm_d: bytes,
               porep: bytes | int | str | SealProof) -> bytes:
    """SHA-256(prover_id || u64be(sector) || ticket || comm_d || porep_id), top 2 bits cleared.

    `porep` is the 32-byte porep_id or anything `seal_proof` accepts."""
    prover = _bytes32(prover, "prover_id")
    ticket = _bytes32(ticket, "ticket")
    comm_d = _bytes32(comm_d, "comm_d")
    if isinstance(porep, (bytes, bytearray, memoryview)):
        porep = _bytes32(porep, "porep_id")
    else:
        porep = porep_id(porep)
    if isinstance(sector_number, bool) or not isinstance(sector_number, int):
        raise ProofParamsError(f"sector number must be an int, not {type(sector_number).__name__}")
    if not 0 <= sector_number < 1 << 64:
        raise ProofParamsError(f"sector number out of range: {sector_number}")
    digest = bytearray(hashlib.sha256(
        prover + sector_number.to_bytes(8, "big") + ticket + comm_d + porep).digest())
    digest[31] &= 0x3F
    return bytes(digest)
