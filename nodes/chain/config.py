"""The chain role's settings (the `[chain]` section of a node's config file)."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain.core import Genesis
from zqnode.nodes.chain.funds import parse_fil
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
    # -- following a Lotus node instead (Lotus, Venus, Forest): docs/chain.md
    lotus: str = ""                    # its API, ws://HOST:1234/rpc/v1 ("": run the devnet chain)
    lotus_token_file: str = ""         # a file holding its API token (sign, to send messages)
    max_fee: str = "0.07 FIL"          # the most one message may pay in gas (Lotus's MaxFee)
    miners: list[int] = []             # the miners `zqnode chain head` lists
    seal_proof: int = 0                # the miners' seal proof (0: V1_1 of their sector size)

    def __post_init__(self) -> None:
        if self.verifier not in VERIFIERS:
            raise ValueError(f"chain verifier must be one of {', '.join(VERIFIERS)}, not {self.verifier!r}")
        if self.lotus_listen:
            parse_listen(self.lotus_listen, "lotus_listen")
        if self.lotus and not self.lotus.startswith(("ws://", "wss://")):
            raise ValueError(f"chain lotus must be a websocket URL (ws://HOST:1234/rpc/v1), not {self.lotus!r}")
        if self.lotus and self.lotus_listen:
            raise ValueError("chain lotus (follow a Lotus node) and lotus_listen (serve the devnet's) "
                             "are two different chain roles: set one")
        parse_fil(self.max_fee)
        if self.epoch_seconds < 0:
            raise ValueError(f"chain epoch_seconds must be >= 0, got {self.epoch_seconds}")
