"""The chain role's settings (the `[chain]` section of a node's config file)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain.core import Genesis
from zqnode.nodes.observe.http import parse_listen

VERIFIERS = ("proofs", "fake", "accept")


class ChainConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    genesis: Genesis = msgspec.field(default_factory=Genesis)   # the chain's first tipset; fixed once created
    verifier: str = "proofs"           # proofs (zqnode.proofs.porep / zqnode.proofs.post) | fake | accept
    epoch_seconds: float = 0.0         # 0: the network policy's
    allow_reorg: bool | None = None    # None: on the devnet network only
    allow_rollback: bool = False       # start even though the database is below a head
                                       # already published (it lost its last changes)
    lotus_listen: str = ""             # HOST:PORT to serve the Lotus JSON-RPC API on ("": not served)
    lotus_token: str = ""              # where its admin token is written ("": REPO/lotus-token)

    def __post_init__(self) -> None:
        if self.verifier not in VERIFIERS:
            raise ValueError(f"chain verifier must be one of {', '.join(VERIFIERS)}, not {self.verifier!r}")
        if self.lotus_listen:
            parse_listen(self.lotus_listen, "lotus_listen")
        if self.epoch_seconds < 0:
            raise ValueError(f"chain epoch_seconds must be >= 0, got {self.epoch_seconds}")
