"""Filecoin addresses (go-address): the string an operator types and the bytes actors see.

    ID          f0<decimal id>              bytes 00 || uvarint(id)
    secp256k1   f1<base32(payload||cksum)>  bytes 01 || 20-byte hash of the key
    actor       f2<base32(payload||cksum)>  bytes 02 || 20-byte hash
    BLS         f3<base32(payload||cksum)>  bytes 03 || 48-byte public key
    delegated   f4<namespace>f<base32(sub||cksum)>  bytes 04 || uvarint(namespace) || sub

cksum is blake2b-32 over the protocol byte and the payload; base32 is RFC 4648 lower case
without padding. The first letter is the network: f (mainnet) or t (the test networks).
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

from zqnode.proofs.cid import CidError, base32_lower, decode_uvarint, encode_uvarint, from_base32_lower

ID, SECP256K1, ACTOR, BLS, DELEGATED = range(5)
_PAYLOAD_SIZE = {SECP256K1: 20, ACTOR: 20, BLS: 48}
MAX_SUBADDRESS = 54                  # go-address MaxSubaddressLen
MAX_ID = (1 << 63) - 1
NETWORKS = ("f", "t")


class AddressError(ValueError):
    """Text or bytes that are not a Filecoin address."""


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=4).digest()


def _unb32(text: str) -> bytes:
    try:
        return from_base32_lower(text, text)
    except CidError as e:
        raise AddressError(str(e)) from None


class Address(NamedTuple):
    protocol: int
    payload: bytes                   # ID: uvarint(id); delegated: uvarint(namespace) || sub

    @classmethod
    def id(cls, actor_id: int) -> "Address":
        if isinstance(actor_id, bool) or not isinstance(actor_id, int) or not 0 <= actor_id <= MAX_ID:
            raise AddressError(f"an actor id is an int in 0..2^63-1, not {actor_id!r}")
        return cls(ID, encode_uvarint(actor_id))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Address":
        """An address from its binary form (as actors and CBOR carry it)."""
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise AddressError("an address is at least one byte")
        protocol, payload = data[0], bytes(data[1:])
        if protocol == ID:
            _uvarint(payload, whole=True)
        elif protocol in _PAYLOAD_SIZE:
            if len(payload) != _PAYLOAD_SIZE[protocol]:
                raise AddressError(f"a protocol {protocol} address carries {_PAYLOAD_SIZE[protocol]} bytes, not {len(payload)}")
        elif protocol == DELEGATED:
            _, at = _uvarint(payload)
            if len(payload) - at > MAX_SUBADDRESS:
                raise AddressError(f"a delegated subaddress is at most {MAX_SUBADDRESS} bytes")
        else:
            raise AddressError(f"unknown address protocol {protocol}")
        return cls(protocol, payload)

    @classmethod
    def parse(cls, text: str) -> "Address":
        """An address from its string form (f or t network)."""
        if not isinstance(text, str) or len(text) < 3 or text[0] not in NETWORKS or text[1] not in "0123456789":
            raise AddressError(f"not a Filecoin address: {text!r}")
        protocol, body = int(text[1]), text[2:]
        if protocol == ID:
            if not (body.isascii() and body.isdigit()) or str(int(body)) != body or int(body) > MAX_ID:
                raise AddressError(f"not an ID address: {text!r}")
            return cls.id(int(body))
        if protocol == DELEGATED:
            namespace, sep, body = body.partition("f")
            if not sep or not (namespace.isascii() and namespace.isdigit()) or str(int(namespace)) != namespace:
                raise AddressError(f"not a delegated address: {text!r}")
            payload = encode_uvarint(int(namespace))
        elif protocol in _PAYLOAD_SIZE:
            payload = b""
        else:
            raise AddressError(f"unknown address protocol {protocol} in {text!r}")
        raw = _unb32(body)
        sub, cksum = raw[:-4], raw[-4:]
        address = cls.from_bytes(bytes([protocol]) + payload + sub)
        if len(raw) < 4 or _checksum(address.bytes) != cksum:
            raise AddressError(f"bad checksum in {text!r}")
        return address

    @property
    def bytes(self) -> bytes:
        return bytes([self.protocol]) + self.payload

    @property
    def actor_id(self) -> int:
        if self.protocol != ID:
            raise AddressError("not an ID address")
        return _uvarint(self.payload, whole=True)[0]

    def text(self, network: str = "f") -> str:
        if network not in NETWORKS:
            raise AddressError(f"network is f or t, not {network!r}")
        if self.protocol == ID:
            return f"{network}0{self.actor_id}"
        cksum = _checksum(self.bytes)
        if self.protocol == DELEGATED:
            namespace, at = _uvarint(self.payload)
            return f"{network}4{namespace}f{base32_lower(self.payload[at:] + cksum)}"
        return f"{network}{self.protocol}{base32_lower(self.payload + cksum)}"

    def __str__(self) -> str:
        return self.text()


def _uvarint(data: bytes, whole: bool = False) -> tuple[int, int]:
    try:
        value, at = decode_uvarint(data)
    except CidError as e:
        raise AddressError(f"bad address: {e}") from None
    if whole and at != len(data):
        raise AddressError("an ID address has bytes after its id")
    return value, at
