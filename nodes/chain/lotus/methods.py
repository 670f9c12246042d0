"""The Lotus API methods zqnode uses: each one's parameters (a JSON array, decoded as a
fixed tuple), its result and the permission Lotus requires for it (Lotus's
documentation/en/api-methods-v1-stable.md, "Perms")."""
from __future__ import annotations

from typing import NamedTuple

from zqnode.nodes.chain.lotus.types import (
    Actor, ActorState, AddressText, BigInt, Bytes, Cid, Deadline, DeadlineInfo, HeadChange, Message, MessageSendSpec,
    MinerInfo, MinerPower, MsgLookup, Partition, Runs, SectorCount, SectorLocation, SectorOnChainInfo,
    SectorPreCommitInfo,
    SectorPreCommitOnChainInfo, SignedMessage, Str, TipSet, TipSetKey, U64, Version)

READ, WRITE, SIGN, ADMIN = "read", "write", "sign", "admin"
PERMISSIONS = (READ, WRITE, SIGN, ADMIN)        # each includes the ones before it


class Method(NamedTuple):
    params: type                    # tuple[...] of the JSON array's items
    result: object                  # a type; a channel's item type when `channel`
    perm: str
    channel: bool = False           # answered with a channel of results (go-jsonrpc)
    namespace: str = "Filecoin"     # its JSON-RPC name is "<namespace>.<name>"


_RANDOMNESS = Method(tuple[int, int, Bytes | None, TipSetKey], Bytes, READ)
_MINER_AT = tuple[AddressText, TipSetKey]
_SECTOR_AT = tuple[AddressText, U64, TipSetKey]

METHODS: dict[str, Method] = {
    "Version": Method(tuple[()], Version, READ),
    "AuthVerify": Method(tuple[Str], list[Str], READ),
    "ChainNotify": Method(tuple[()], list[HeadChange], READ, channel=True),
    "ChainHead": Method(tuple[()], TipSet, READ),
    "ChainGetTipSet": Method(tuple[TipSetKey], TipSet, READ),
    "ChainGetTipSetByHeight": Method(tuple[int, TipSetKey], TipSet, READ),
    "ChainGetTipSetAfterHeight": Method(tuple[int, TipSetKey], TipSet, READ),
    "ChainGetMessage": Method(tuple[Cid], Message, READ),
    "StateGetRandomnessFromTickets": _RANDOMNESS,
    "StateGetRandomnessFromBeacon": _RANDOMNESS,
    "StateNetworkVersion": Method(tuple[TipSetKey], int, READ),
    "StateNetworkName": Method(tuple[()], Str, READ),
    "ChainGetGenesis": Method(tuple[()], TipSet, READ),
    "StateMinerSectorCount": Method(_MINER_AT, SectorCount, READ),
    "StateMinerPower": Method(_MINER_AT, MinerPower, READ),
    "StateSectorPartition": Method(_SECTOR_AT, SectorLocation | None, READ),
    "StateLookupID": Method(_MINER_AT, AddressText, READ),
    "StateGetActor": Method(_MINER_AT, Actor, READ),
    "StateReadState": Method(_MINER_AT, ActorState, READ),
    "StateMinerInfo": Method(_MINER_AT, MinerInfo, READ),
    "StateMinerProvingDeadline": Method(_MINER_AT, DeadlineInfo, READ),
    "StateMinerDeadlines": Method(_MINER_AT, list[Deadline], READ),
    "StateMinerPartitions": Method(tuple[AddressText, U64, TipSetKey], list[Partition], READ),
    "StateMinerFaults": Method(_MINER_AT, Runs, READ),
    "StateMinerRecoveries": Method(_MINER_AT, Runs, READ),
    "StateMinerSectors": Method(tuple[AddressText, Runs | None, TipSetKey], list[SectorOnChainInfo], READ),
    "StateSectorGetInfo": Method(_SECTOR_AT, SectorOnChainInfo | None, READ),
    "StateSectorPreCommitInfo": Method(_SECTOR_AT, SectorPreCommitOnChainInfo | None, READ),
    "StateMinerAvailableBalance": Method(_MINER_AT, BigInt, READ),
    "StateMinerPreCommitDepositForPower": Method(tuple[AddressText, SectorPreCommitInfo, TipSetKey], BigInt, READ),
    "StateMinerInitialPledgeCollateral": Method(tuple[AddressText, SectorPreCommitInfo, TipSetKey], BigInt, READ),
    "WalletBalance": Method(tuple[AddressText], BigInt, READ),
    "MpoolGetNonce": Method(tuple[AddressText], U64, READ),
    "GasEstimateMessageGas": Method(tuple[Message, MessageSendSpec | None, TipSetKey], Message, READ),
    "MpoolPushMessage": Method(tuple[Message, MessageSendSpec | None], SignedMessage, SIGN),
    "StateWaitMsg": Method(tuple[Cid, U64, int, bool], MsgLookup, READ),
    "StateSearchMsg": Method(tuple[TipSetKey, Cid, int, bool], MsgLookup | None, READ),
    # zqnode's, served by a zqnode devnet only: what `zqnode chain reorg|fund` ask of a
    # devnet the cluster follows through the Lotus API (Lotus has no such methods)
    "DevnetReorg": Method(tuple[U64], list[HeadChange], ADMIN, namespace="Zqnode"),
    "DevnetFund": Method(tuple[AddressText, BigInt], BigInt, ADMIN, namespace="Zqnode"),
}
