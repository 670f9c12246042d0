"""What goes on the chain: messages to miner actors, their parameters, receipts, tipsets.

A message names its method and carries the method's parameters msgpack-encoded (as
Filecoin carries CBOR), so its id (a blake2b-256 of the encoded message) does not depend
on anything but its content, and a node can refuse an unknown method or bad parameters
before the message reaches the pool."""
from __future__ import annotations

from typing import Annotated

import msgspec

from zqnode.bus.codec import DECODE_ERRORS
from zqnode.nodes.chain.randomness import blake2b256

# builtin-actors' AddressedSectorsMax, checked while decoding (as the other lists' limits):
# a hostile message is refused before it costs a decoder its time or memory
ADDRESSED = msgspec.Meta(max_length=25_000)


class ExitCode:
    """The exit codes of Filecoin receipts this chain produces (go-state-types exitcode)."""
    OK = 0
    SYS_INVALID_RECEIVER = 5
    SYS_INSUFFICIENT_FUNDS = 6     # the sender cannot pay the message's value and gas
    SYS_OUT_OF_GAS = 7             # (never on this chain: a message's gas is its schedule's)
    USR_ILLEGAL_ARGUMENT = 16
    USR_NOT_FOUND = 17
    USR_FORBIDDEN = 18
    USR_INSUFFICIENT_FUNDS = 19    # the miner cannot lock a deposit or pledge
    USR_ILLEGAL_STATE = 20


# -- method parameters (msgspec structs, not bus kinds) -------------------------------

class PreCommitSectorParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sector_number: int
    seal_proof: int                # registered seal proof id (proofs.params), the miner's
    sealed_cid: str                # CommR as a sealed CID (bagboea4b5abc...)
    unsealed_cid: str              # CommD as a piece CID v1 (baga6ea4seaq...)
    seal_rand_epoch: int           # the ticket's epoch
    expiration: int = 0            # the epoch it expires (0: never, as before this field)


class ExpirationExtension2(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deadline: int
    partition: int
    sectors: Annotated[list[int], ADDRESSED]
    new_expiration: int


class ExtendSectorExpiration2Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    extensions: Annotated[list[ExpirationExtension2], msgspec.Meta(max_length=3000)]


class PreCommitSectorBatch2Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sectors: Annotated[list[PreCommitSectorParams], msgspec.Meta(max_length=256)]   # SectorPreCommitInfo each


class ProveCommitSectorParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sector_number: int
    proof: bytes                   # the vanilla PoRep proof proofs.porep.verify_seal checks


class SectorActivationManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sector_number: int
    pieces: Annotated[list[bytes], msgspec.Meta(max_length=0)] = []   # deal pieces: this chain has no market


class ProveCommitSectors3Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """builtin-actors' ProveCommitSectors3: one proof per sector, or one aggregate. This
    chain has no SNARK aggregation: its aggregate is the msgpack list of the sectors' vanilla
    proofs, checked one by one, and it stands or falls as a whole."""
    sector_activations: Annotated[list[SectorActivationManifest], msgspec.Meta(max_length=819)]
    sector_proofs: Annotated[list[bytes], msgspec.Meta(max_length=819)] = []
    aggregate_proof: bytes = b""
    aggregate_proof_type: int | None = None    # RegisteredAggregationProof (SnarkPackV2 = 1)
    require_activation_success: bool = True    # one sector failing fails the message
    require_notification_success: bool = True


class PieceManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """builtin-actors' PieceActivationManifest without deals (this chain has no market)."""
    cid: str                       # the piece's CID v1 (CommP, baga6ea4seaq...)
    size: int                      # its padded size


class SectorUpdateManifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sector: int
    deadline: int
    partition: int
    new_sealed_cid: str            # comm_r_new as a sealed CID
    pieces: Annotated[list[PieceManifest], msgspec.Meta(max_length=64)]   # CommD of the new data: from these


class ProveReplicaUpdates3Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """builtin-actors' ProveReplicaUpdates3 (SnapDeals): CC sectors take data, one proof per
    sector. Its proofs are vanilla update proofs (proofs.update), which this chain verifies;
    there is no aggregate."""
    sector_updates: Annotated[list[SectorUpdateManifest], msgspec.Meta(max_length=256)]
    sector_proofs: Annotated[list[bytes], msgspec.Meta(max_length=256)]
    update_proofs_type: int        # RegisteredUpdateProof (StackedDrg2KiBV1 = 0 ...)
    require_activation_success: bool = True


class FailCode(msgspec.Struct, kw_only=True):
    idx: int
    code: int


class BatchReturn(msgspec.Struct, kw_only=True):
    success_count: int
    fail_codes: list[FailCode] = []


class PoStPartition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    index: int
    skipped: list[int] = []        # sectors the prover could not prove: they become faulty


class SubmitWindowedPoStParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deadline: int
    partitions: list[PoStPartition]
    proofs: list[bytes]            # one vanilla proof per partition, in the same order
    chain_commit_epoch: int        # in [deadline Challenge, current epoch)
    chain_commit_rand: bytes       # ticket randomness PoStChainCommit at that epoch, no entropy


class SectorDeclaration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    deadline: int
    partition: int
    sectors: Annotated[list[int], ADDRESSED]


class DeclareFaultsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    faults: Annotated[list[SectorDeclaration], msgspec.Meta(max_length=3000)]


class DeclareFaultsRecoveredParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    recoveries: Annotated[list[SectorDeclaration], msgspec.Meta(max_length=3000)]


class TerminateSectorsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    terminations: Annotated[list[SectorDeclaration], msgspec.Meta(max_length=3000)]   # TerminationDeclaration


class TerminateSectorsReturn(msgspec.Struct, kw_only=True):
    done: bool                     # every termination processed (always, on this chain)


METHODS: dict[str, type] = {
    "PreCommitSector": PreCommitSectorParams,
    "PreCommitSectorBatch2": PreCommitSectorBatch2Params,
    "ProveCommitSector": ProveCommitSectorParams,
    "ProveCommitSectors3": ProveCommitSectors3Params,
    "SubmitWindowedPoSt": SubmitWindowedPoStParams,
    "DeclareFaults": DeclareFaultsParams,
    "DeclareFaultsRecovered": DeclareFaultsRecoveredParams,
    "TerminateSectors": TerminateSectorsParams,
    "ExtendSectorExpiration2": ExtendSectorExpiration2Params,
    "ProveReplicaUpdates3": ProveReplicaUpdates3Params,
}
_METHOD_OF = {t: name for name, t in METHODS.items()}


class MessageError(ValueError):
    """A message the pool refuses: unknown method, bad parameters, wrong nonce."""


# -- messages, receipts, tipsets --------------------------------------------------------

class Message(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sender: str                    # the account that signs (the miner's worker)
    to: int                        # miner actor id
    method: str
    params: bytes                  # msgpack of METHODS[method]
    nonce: int = -1                # -1: the pool assigns the sender's next nonce
    value: int = 0                 # nanoFIL moved from the sender to the miner actor

    @classmethod
    def call(cls, sender: str, to: int, params, nonce: int = -1, value: int = 0) -> "Message":
        """A message calling the method whose parameter struct is `params`."""
        return cls(sender=sender, to=to, method=method_of(params), params=_enc.encode(params),
                   nonce=nonce, value=value)

    @property
    def id(self) -> str:
        return message_id(self)


_enc = msgspec.msgpack.Encoder()
_decoders = {name: msgspec.msgpack.Decoder(t) for name, t in METHODS.items()}


def method_of(params) -> str:
    """The miner method whose parameter struct `params` is."""
    method = _METHOD_OF.get(type(params))
    if method is None:
        raise MessageError(f"{type(params).__name__} is not a miner method's parameters")
    return method


def message_id(msg: Message) -> str:
    fields = (msg.sender, msg.to, msg.method, msg.params, msg.nonce)
    if msg.value:                  # messages without value keep the ids they had before it
        fields += (msg.value,)
    return blake2b256(_enc.encode(fields)).hex()


def decode_params(method: str, params: bytes):
    """The parameters of `method`, or MessageError naming what is wrong."""
    dec = _decoders.get(method)
    if dec is None:
        raise MessageError(f"unknown method {method!r} (methods: {', '.join(METHODS)})")
    try:
        return dec.decode(params)
    except DECODE_ERRORS as e:
        raise MessageError(f"bad parameters for {method}: {e}") from None


def encode(obj) -> bytes:
    return _enc.encode(obj)


class Receipt(msgspec.Struct, kw_only=True):
    exit_code: int
    return_value: bytes = b""      # msgpack, method-specific (ProveCommitSector: SectorLocation)
    error: str = ""                # why, when exit_code != 0
    gas_used: int = 0              # charged at the tipset's base fee, success or not


class SectorLocation(msgspec.Struct, kw_only=True):
    deadline: int
    partition: int


class Tipset(msgspec.Struct, kw_only=True):
    epoch: int
    key: str                       # hex blake2b-256 over parent, epoch, ticket, messages
    parent: str                    # "" for genesis
    timestamp: float               # the producer's wall clock (informational)
    fork: int                      # which fork produced it: a reorg starts a new one
    ticket: bytes                  # base of ticket randomness (chained, fork-dependent)
    beacon: bytes                  # base of beacon randomness (fork-dependent on this devnet)
    messages: list[Message] = []
    receipts: list[Receipt] = []   # receipts[i] is messages[i]'s, executed at `epoch`


class TipsetSummary(msgspec.Struct, kw_only=True):
    """A tipset without message bodies: what head-change events carry."""
    epoch: int
    key: str
    parent: str
    timestamp: float
    ticket: bytes
    beacon: bytes
    messages: list[str] = []       # message ids, in execution order


def summary(ts: Tipset) -> TipsetSummary:
    return TipsetSummary(epoch=ts.epoch, key=ts.key, parent=ts.parent, timestamp=ts.timestamp,
                         ticket=ts.ticket, beacon=ts.beacon, messages=[m.id for m in ts.messages])


class MessageLookup(msgspec.Struct, kw_only=True):
    """Where a message stands on the current chain."""
    msg_id: str
    status: str                    # "landed" | "pending" (in the pool) | "unknown"
    epoch: int = -1                # landed: the epoch of the tipset that included it
    tipset: str = ""               # landed: that tipset's key
    receipt: Receipt | None = None
    head: int = -1                 # the head epoch when this was answered

    @property
    def confirmations(self) -> int:
        """Tipsets on top of the one that included it (0 = it is in the head)."""
        return self.head - self.epoch if self.status == "landed" else -1
