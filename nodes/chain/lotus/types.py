"""The Lotus API's JSON types, as Lotus's documentation (documentation/en/
api-methods-v1-stable.md) shows them. Field names are Lotus's own (Go's), so a struct reads
like the JSON it decodes. Unknown fields are ignored (nodes add fields over time); every
size a node chooses is bounded.

JSON conventions of Lotus: a CID is {"/": "bafy..."}, a tipset key the list of its block
CIDs, token amounts and other big ints decimal strings, bytes base64, addresses strings,
and a bitfield the list of its run lengths, the first a run of zeros (go-bitfield's JSON).
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from zqnode.nodes.chain.filecoin.dagcbor import BitField

Str = Annotated[str, msgspec.Meta(max_length=256)]
CidText = Annotated[str, msgspec.Meta(pattern=r"^b[a-z2-7]{8,120}$")]
BigInt = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]{1,80}$")]
AddressText = Annotated[str, msgspec.Meta(pattern=r"^([ft][0-4][a-z0-9]{1,130}|<empty>)$")]   # go-address: Undef is "<empty>"
Bytes = Annotated[bytes, msgspec.Meta(max_length=2 << 20)]
U64 = Annotated[int, msgspec.Meta(ge=0)]
Runs = Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=1 << 16)]


def _list(kind, most: int = 1 << 16):
    return Annotated[list[kind], msgspec.Meta(max_length=most)]


class Cid(msgspec.Struct, frozen=True):
    link: CidText = msgspec.field(name="/")


TipSetKey = _list(Cid, 64)


def runs_json(bits: BitField) -> list[int]:
    """go-bitfield's JSON of a bitfield: run lengths, zeros first."""
    out, at = [], 0
    for start, length in bits.runs:
        out += [start - at, length]
        at = start + length
    return out


def bitfield_of(runs: list[int]) -> BitField:
    """The bitfield whose go-bitfield JSON is `runs` (a zero-length run only first)."""
    if any(n <= 0 for n in runs[1:]):
        raise ValueError("bitfield runs must be positive (only the first run of zeros may be 0)")
    out, at = [], 0
    for i, n in enumerate(runs):
        if i % 2:
            out.append((at, n))
        at += n
    return BitField(out)


class Ticket(msgspec.Struct):
    VRFProof: Bytes


class ElectionProof(msgspec.Struct):
    WinCount: int
    VRFProof: Bytes


class BeaconEntry(msgspec.Struct):
    Round: U64
    Data: Bytes


class PoStProof(msgspec.Struct):
    PoStProof: int
    ProofBytes: Bytes


class Signature(msgspec.Struct):
    Type: int
    Data: Bytes


class BlockHeader(msgspec.Struct):
    Miner: AddressText
    Ticket: Ticket | None
    ElectionProof: ElectionProof | None
    BeaconEntries: _list(BeaconEntry, 64)
    WinPoStProof: _list(PoStProof, 64)
    Parents: TipSetKey
    ParentWeight: BigInt
    Height: int
    ParentStateRoot: Cid
    ParentMessageReceipts: Cid
    Messages: Cid
    BLSAggregate: Signature | None
    Timestamp: U64
    BlockSig: Signature | None
    ForkSignaling: U64
    ParentBaseFee: BigInt


class TipSet(msgspec.Struct):
    Cids: TipSetKey
    Blocks: _list(BlockHeader, 64)
    Height: int


class HeadChange(msgspec.Struct):
    Type: Annotated[str, msgspec.Meta(max_length=16)]     # "current", "apply" or "revert"
    Val: TipSet


class BeneficiaryTerm(msgspec.Struct):
    Quota: BigInt
    UsedQuota: BigInt
    Expiration: int


class PendingBeneficiaryChange(msgspec.Struct):
    NewBeneficiary: AddressText
    NewQuota: BigInt
    NewExpiration: int
    ApprovedByBeneficiary: bool
    ApprovedByNominee: bool


class MinerInfo(msgspec.Struct):
    Owner: AddressText
    Worker: AddressText
    NewWorker: AddressText
    ControlAddresses: _list(AddressText, 64)
    WorkerChangeEpoch: int
    PeerId: Str | None
    Multiaddrs: _list(Bytes, 64)
    WindowPoStProofType: int
    SectorSize: U64
    WindowPoStPartitionSectors: U64
    ConsensusFaultElapsed: int
    PendingOwnerAddress: AddressText | None
    Beneficiary: AddressText
    BeneficiaryTerm: BeneficiaryTerm | None
    PendingBeneficiaryTerm: PendingBeneficiaryChange | None


class DeadlineInfo(msgspec.Struct):
    """StateMinerProvingDeadline's answer (go-state-types dline.Info)."""
    CurrentEpoch: int
    PeriodStart: int
    Index: U64
    Open: int
    Close: int
    Challenge: int
    FaultCutoff: int
    WPoStPeriodDeadlines: U64
    WPoStProvingPeriod: int
    WPoStChallengeWindow: int
    WPoStChallengeLookback: int
    FaultDeclarationCutoff: int


class Deadline(msgspec.Struct):
    PostSubmissions: Runs
    DisputableProofCount: U64
    DailyFee: BigInt = "0"


class Partition(msgspec.Struct):
    AllSectors: Runs
    FaultySectors: Runs
    RecoveringSectors: Runs
    LiveSectors: Runs
    ActiveSectors: Runs


class SectorOnChainInfo(msgspec.Struct):
    SectorNumber: U64
    SealProof: int
    SealedCID: Cid
    Activation: int
    Expiration: int
    DealWeight: BigInt
    VerifiedDealWeight: BigInt
    InitialPledge: BigInt
    ExpectedDayReward: BigInt | None
    ExpectedStoragePledge: BigInt | None
    PowerBaseEpoch: int
    ReplacedDayReward: BigInt | None
    SectorKeyCID: Cid | None
    Flags: U64
    DailyFee: BigInt = "0"


class SectorPreCommitInfo(msgspec.Struct):
    SealProof: int
    SectorNumber: U64
    SealedCID: Cid
    SealRandEpoch: int
    DealIDs: _list(U64) | None
    Expiration: int
    UnsealedCid: Cid | None


class SectorPreCommitOnChainInfo(msgspec.Struct):
    Info: SectorPreCommitInfo
    PreCommitDeposit: BigInt
    PreCommitEpoch: int


class Message(msgspec.Struct):
    Version: U64
    To: AddressText
    From: AddressText
    Nonce: U64
    Value: BigInt
    GasLimit: int
    GasFeeCap: BigInt
    GasPremium: BigInt
    Method: U64
    Params: Bytes | None
    CID: Cid | None = None


class MessageSendSpec(msgspec.Struct):
    MaxFee: BigInt = "0"
    MsgUuid: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")] = \
        "00000000-0000-0000-0000-000000000000"
    MaximizeFeeCap: bool = False


class SignedMessage(msgspec.Struct):
    Message: Message
    Signature: Signature
    CID: Cid | None = None


class MessageReceipt(msgspec.Struct):
    ExitCode: int
    Return: Bytes | None
    GasUsed: int
    EventsRoot: Cid | None = None


class MsgLookup(msgspec.Struct):
    Message: Cid
    Receipt: MessageReceipt
    ReturnDec: Any
    TipSet: TipSetKey
    Height: int


class Version(msgspec.Struct):
    Version: Str
    APIVersion: U64
    BlockDelay: U64
    Agent: Str = ""


class Actor(msgspec.Struct):
    Code: Cid
    Head: Cid
    Nonce: U64
    Balance: BigInt
    DelegatedAddress: AddressText | None = None


class MinerFunds(msgspec.Struct, omit_defaults=True):
    """What zqnode reads of a miner actor's state (go-state-types miner.State; the rest ignored)."""
    PreCommitDeposits: BigInt = "0"
    LockedFunds: BigInt = "0"                     # rewards vesting
    InitialPledge: BigInt = "0"
    FeeDebt: BigInt = "0"


class ActorState(msgspec.Struct):                 # StateReadState, of a miner actor
    Balance: BigInt
    Code: Cid
    State: MinerFunds


class SectorCount(msgspec.Struct):                # StateMinerSectorCount
    Live: U64
    Active: U64
    Faulty: U64


class Claim(msgspec.Struct):
    RawBytePower: BigInt
    QualityAdjPower: BigInt


class MinerPower(msgspec.Struct):
    MinerPower: Claim
    TotalPower: Claim
    HasMinPower: bool


class SectorLocation(msgspec.Struct):             # StateSectorPartition
    Deadline: U64
    Partition: U64
