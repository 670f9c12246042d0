"""Proof verifiers the chain can use.

`proofs_verifiers()` is the real thing: proofs.porep.verify_seal,
proofs.post.verify_window_post and proofs.update.verify_update, imported by name when
first needed, so the chain runs (and says clearly why a proof cannot be checked) even
where they are missing.

`FAKE` accepts exactly the proofs `fake_seal_proof`, `fake_window_post_proof` and
`fake_replica_update_proof` make: a hash of every input the real verifier would see. Tests and simulations use it to check
that the chain hands the verifier the right ticket, seed, randomness and sectors."""
from __future__ import annotations

import importlib

import msgspec

from zqnode.nodes.chain.core import Verifiers
from zqnode.nodes.chain.randomness import blake2b256


class VerifierUnavailable(RuntimeError):
    pass


def _lazy(module: str, name: str):
    def call(**kw) -> bool:
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise VerifierUnavailable(f"cannot use {module}.{name}: {e}") from None
        return fn(**kw)
    call.__name__ = f"{module}.{name}"
    return call


def proofs_verifiers() -> Verifiers:
    post = _lazy("zqnode.proofs.post", "verify_window_post")

    def verify_window_post(*, randomness: bytes, **kw) -> bool:
        # The chain draws raw randomness; the proofs library takes it as a field element,
        # as filecoin-ffi does for the actors: rand[31] &= 0x3f.
        return post(randomness=randomness[:31] + bytes([randomness[31] & 0x3F]), **kw)
    return Verifiers(verify_seal=_lazy("zqnode.proofs.porep", "verify_seal"),
                     verify_window_post=verify_window_post,
                     verify_replica_update=_lazy("zqnode.proofs.update", "verify_update"))


def accept_all() -> Verifiers:
    """Every proof is valid: for simulations that do not prove anything. Never for real use."""
    return Verifiers(verify_seal=lambda **kw: True, verify_window_post=lambda **kw: True,
                     verify_replica_update=lambda **kw: True)


_enc = msgspec.msgpack.Encoder()


def fake_seal_proof(*, seal_proof: int, miner: int, sector: int, ticket: bytes, seed: bytes,
                    comm_d: bytes, comm_r: bytes) -> bytes:
    return blake2b256(b"fake porep" + _enc.encode([seal_proof, miner, sector, ticket, seed,
                                                   comm_d, comm_r]))


def fake_window_post_proof(*, seal_proof: int, randomness: bytes,
                           sectors: list[tuple[int, bytes]]) -> bytes:
    return blake2b256(b"fake post" + _enc.encode([seal_proof, randomness,
                                                  [[n, c] for n, c in sectors]]))


def fake_replica_update_proof(*, update_proof: int, comm_r_old: bytes, comm_d_new: bytes,
                              comm_r_new: bytes) -> bytes:
    return blake2b256(b"fake update" + _enc.encode([update_proof, comm_r_old, comm_d_new, comm_r_new]))


def _fake_verify_seal(*, proof: bytes, **kw) -> bool:
    return proof == fake_seal_proof(**kw)


def _fake_verify_window_post(*, proof: bytes, **kw) -> bool:
    return proof == fake_window_post_proof(**kw)


def _fake_verify_replica_update(*, proof: bytes, **kw) -> bool:
    return proof == fake_replica_update_proof(**kw)


FAKE = Verifiers(verify_seal=_fake_verify_seal, verify_window_post=_fake_verify_window_post,
                 verify_replica_update=_fake_verify_replica_update)
