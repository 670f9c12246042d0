"""What each task type takes and gives: one params struct and one result struct per task.

Requesters build a params struct, the manager checks it and derives the WorkID from it,
the worker decodes it again for the task function; results travel back as msgpack of
the result struct. Params are canonical: msgspec encodes struct fields in definition
order, so the same work always gives the same bytes and the same WorkID.

The sector is not part of the params (it travels beside them, in every message) but it
is part of the WorkID: PC2 of sector 1 and PC2 of sector 2 have equal params.
"""
from __future__ import annotations

import hashlib

import msgspec


class ParamsError(ValueError):
    """Params that do not decode, or do not fit their task type."""


class _Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class APParams(_Params):
    """Add a piece given inline (small pieces, tests); `index` is its position among the
    sector's pieces, so a re-run after a crash finds it already added. `update`: into the
    SnapDeals update of a proving CC sector (its DIR/update), not a new sector."""
    seal_proof: int
    piece: bytes
    index: int = 0
    update: bool = False


class PC1Params(_Params):
    seal_proof: int
    ticket: bytes


class PC2Params(_Params):
    """`ticket`: the one PreCommit1 sealed with, checked against the sector's files (and
    part of the WorkID: the replica of a new ticket is new work); b"": not checked."""
    ticket: bytes = b""


class C1Params(_Params):
    seed: bytes
    ticket: bytes = b""                # as PC2Params.ticket


class FINParams(_Params):
    keep_unsealed: bool = False


class UNSParams(_Params):
    piece: int | None = None      # None: the whole sector's data


class RUParams(_Params):
    """SnapDeals' ReplicaUpdate: the CC replica and the pieces added to the update give the
    new replica; `comm_r_old` is the CC sector's (checked against its files)."""
    comm_r_old: bytes


class PR1Params(_Params):
    """ProveReplicaUpdate: the vanilla update proof (there is no PR2: the chain takes it)."""
    comm_r_new: bytes


class FRUParams(_Params):
    """FinalizeReplicaUpdate; with `release_key`, ReleaseSectorKey: the update (of
    `comm_r_new`) becomes the sector's directory and the CC replica goes; with
    `drop_update`, AbortUpgrade: the update's files go."""
    keep_unsealed: bool = False
    release_key: bool = False
    comm_r_new: bytes = b""
    drop_update: bool = False


class WDPParams(_Params):
    """WindowPoSt over sectors of one miner; `sectors` = (number, comm_r) pairs, the
    request's own sector (which picks the worker) among them; `randomness` = the chain's
    raw draw (the task masks it as Lotus does)."""
    seal_proof: int
    randomness: bytes
    sectors: list[tuple[int, bytes]]


class GETParams(_Params):
    """Move the sector's files to the worker that runs this (nothing else)."""


class APResult(msgspec.Struct, frozen=True, kw_only=True):
    comm_p: bytes
    payload_size: int
    padded_size: int
    offset: int


class PC1Result(msgspec.Struct, frozen=True, kw_only=True):
    comm_d: bytes
    replica_id: bytes


class PC2Result(msgspec.Struct, frozen=True, kw_only=True):
    comm_d: bytes
    comm_r: bytes
    comm_c: bytes
    comm_r_last: bytes


class C1Result(msgspec.Struct, frozen=True, kw_only=True):
    proof: bytes
    challenges: list[list[int]]


class RUResult(msgspec.Struct, frozen=True, kw_only=True):
    comm_r_new: bytes
    comm_d_new: bytes


class PR1Result(msgspec.Struct, frozen=True, kw_only=True):
    proof: bytes


class FINResult(msgspec.Struct, frozen=True, kw_only=True):
    removed: list[str]


class UNSResult(msgspec.Struct, frozen=True, kw_only=True):
    data: bytes


class WDPPartition(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    sectors: list[tuple[int, bytes]]
    proof: bytes


class WDPResult(msgspec.Struct, frozen=True, kw_only=True):
    partitions: list[WDPPartition]
    skipped: list[tuple[int, str]]


class GETResult(msgspec.Struct, frozen=True, kw_only=True):
    files: list[str]
    size: int                     # bytes moved


PARAMS: dict[str, type] = {"AP": APParams, "PC1": PC1Params, "PC2": PC2Params, "C1": C1Params,
                           "FIN": FINParams, "UNS": UNSParams, "WDP": WDPParams, "GET": GETParams,
                           "RU": RUParams, "PR1": PR1Params, "FRU": FRUParams}
RESULTS: dict[str, type] = {"AP": APResult, "PC1": PC1Result, "PC2": PC2Result, "C1": C1Result,
                            "FIN": FINResult, "UNS": UNSResult, "WDP": WDPResult, "GET": GETResult,
                            "RU": RUResult, "PR1": PR1Result, "FRU": FINResult}

_enc = msgspec.msgpack.Encoder()
_decoders = {task: msgspec.msgpack.Decoder(t) for task, t in PARAMS.items()}
_result_decoders = {task: msgspec.msgpack.Decoder(t) for task, t in RESULTS.items()}


def encode(value: msgspec.Struct) -> bytes:
    return _enc.encode(value)


def params_type(task: str) -> type:
    try:
        return PARAMS[task]
    except KeyError:
        raise ParamsError(f"unknown task type {task!r} (one of {', '.join(PARAMS)})") from None


def check_params(task: str, params) -> bytes:
    """The canonical bytes of `params` (a struct of the task's params type, or its
    msgpack bytes). Raises ParamsError when they do not fit the task."""
    kind = params_type(task)
    if isinstance(params, (bytes, bytearray, memoryview)):
        try:
            params = _decoders[task].decode(params)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ParamsError(f"params for {task} do not decode as {kind.__name__}: {e}") from None
    if type(params) is not kind:
        raise ParamsError(f"params for {task} must be {kind.__name__}, got {type(params).__name__}")
    return _enc.encode(params)


def decode_params(task: str, data: bytes):
    params_type(task)
    try:
        return _decoders[task].decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ParamsError(f"params for {task} do not decode: {e}") from None


def decode_result(task: str, data: bytes):
    params_type(task)
    return _result_decoders[task].decode(data)


def work_id(task: str, miner: int, number: int, params: bytes) -> str:
    """sha256 hex of msgpack [task, miner, number, params] (params already canonical)."""
    return hashlib.sha256(_enc.encode([task, miner, number, bytes(params)])).hexdigest()
