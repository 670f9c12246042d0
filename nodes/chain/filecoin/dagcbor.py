"""DAG-CBOR, strictly, as the builtin actors read their parameters (fvm_ipld_encoding):
structs are arrays in field order, integers and lengths minimal, definite lengths, no tag
but 42 (a CID link: 0x00 then the binary CID), no floats, nothing after the value.

`decode` takes only bytes that `encode` would write again byte for byte: a peer's
parameters have one encoding, so a message id cannot be varied and nothing is skipped.
Bounded: containers nest 16 deep at most, lists hold at most 8192 items and byte strings
2 MiB (go-state-types cbor-gen's limits), and a bitfield is decoded to runs, never to a
list of the sectors it names.
"""
from __future__ import annotations

from typing import Annotated, Any, TypeVar

import cbor2
import msgspec

from zqnode.nodes.chain.filecoin.bitfield import BitfieldError, decode_runs, encode_runs, runs_of
from zqnode.proofs.cid import CidError, cid_bytes, cid_text

U64 = Annotated[int, msgspec.Meta(ge=0)]          # CBOR major type 0 tops out at 2^64-1
I64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
MAX_LIST = 8192                      # cbor-gen's MaxLength
MAX_BYTES = 2 << 20                  # cbor-gen's ByteArrayMaxLen
Bytes = Annotated[bytes, msgspec.Meta(max_length=MAX_BYTES)]
_DEPTH = 16
_CID_TAG = 42

T = TypeVar("T")


class CborError(ValueError):
    """Bytes that are not the canonical DAG-CBOR of what was asked for."""


class Cid:
    """A CID as IPLD links carry it (binary, without its multibase prefix)."""
    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        if not isinstance(raw, bytes) or not raw or raw[0] != 1:
            raise CborError("a CID link must hold a CIDv1")
        self.raw = raw

    @classmethod
    def parse(cls, text: str) -> "Cid":
        try:
            return cls(cid_bytes(text))
        except CidError as e:
            raise CborError(str(e)) from None

    def __str__(self) -> str:
        return cid_text(self.raw)

    def __repr__(self) -> str:
        return f"Cid({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Cid) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class BitField:
    """An RLE+ bitfield (a set of sector numbers, partitions...), kept as its runs."""
    __slots__ = ("runs",)

    def __init__(self, runs: list[tuple[int, int]]):
        self.runs = runs

    @classmethod
    def of(cls, members) -> "BitField":
        return cls(runs_of(members))

    @classmethod
    def from_bytes(cls, data: bytes) -> "BitField":
        return cls(decode_runs(data))

    def to_bytes(self) -> bytes:
        return encode_runs(self.runs)

    def __len__(self) -> int:
        return sum(n for _, n in self.runs)

    def members(self, limit: int) -> list[int]:
        """The members, ascending; more than `limit` of them is a CborError."""
        if len(self) > limit:
            raise CborError(f"bitfield names {len(self)} members, over the limit of {limit}")
        return [n for start, count in self.runs for n in range(start, start + count)]

    def __repr__(self) -> str:
        return f"BitField({self.runs!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, BitField) and other.runs == self.runs


def _refuse_tag(*_):
    raise cbor2.CBORDecodeError("DAG-CBOR allows no tag but 42 (a CID link)")


# every tag cbor2 would interpret itself (bignums, shared references, dates...) refused
_NO_SEMANTICS = {t: _refuse_tag for t in range(1 << 16) if t != _CID_TAG}


def _link(*args):
    tag = next(a for a in args if isinstance(a, cbor2.CBORTag))   # cbor2 passes (tag, immutable)
    if tag.tag != _CID_TAG:
        _refuse_tag()
    value = tag.value
    if not isinstance(value, bytes) or len(value) < 2 or value[0] != 0:
        raise cbor2.CBORDecodeError("a CID link is a byte string of 0x00 then the CID")
    try:
        return Cid(value[1:])
    except CborError as e:
        raise cbor2.CBORDecodeError(str(e)) from None


def _as(kind, obj):
    if kind is Cid and isinstance(obj, Cid):
        return obj
    if kind is BitField and isinstance(obj, bytes):
        try:
            return BitField.from_bytes(obj)
        except BitfieldError as e:
            raise ValueError(str(e)) from None
    raise TypeError(f"expected a {kind.__name__}, got {type(obj).__name__}")


def _tree(obj):
    if isinstance(obj, msgspec.Struct):
        return [_tree(v) for v in msgspec.structs.astuple(obj)]
    if isinstance(obj, (list, tuple)):
        return [_tree(v) for v in obj]
    if isinstance(obj, Cid):
        return cbor2.CBORTag(_CID_TAG, b"\0" + obj.raw)
    if isinstance(obj, BitField):
        return obj.to_bytes()
    if obj is None or isinstance(obj, (bool, int, bytes)):
        return obj
    raise CborError(f"{type(obj).__name__} has no DAG-CBOR form here")


def encode(obj) -> bytes:
    """The DAG-CBOR of a struct of these types (array_like msgspec structs)."""
    return cbor2.dumps(_tree(obj))


def decode(data: bytes, kind: type[T]) -> T:
    """`kind` from its canonical DAG-CBOR, or CborError saying what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CborError(f"DAG-CBOR is bytes, not {type(data).__name__}")
    data = bytes(data)
    try:
        tree: Any = cbor2.loads(data, tag_hook=_link, semantic_decoders=_NO_SEMANTICS,
                                max_depth=_DEPTH, allow_indefinite=False, strict_hashable_types=True)
        value = msgspec.convert(tree, kind, dec_hook=_as)
    except (cbor2.CBORDecodeError, msgspec.ValidationError, RecursionError) as e:
        raise CborError(f"not the DAG-CBOR of {kind.__name__}: {e}") from None
    if encode(value) != data:
        raise CborError(f"not the canonical DAG-CBOR of {kind.__name__} (non-minimal, wrong arity "
                        "or trailing bytes)")
    return value
