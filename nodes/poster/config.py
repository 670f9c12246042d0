"""The poster role's settings (the `[poster]` section of a node's config file).

The timing knobs count tipsets, and a bigger number always means "more careful, later":

- `challenge_confirmations`: tipsets on top of a deadline's Challenge tipset before its
  runner starts (reads partitions, checks sectors, proves). A revert that replaces the
  Challenge tipset restarts the runner with the new randomness, so waiting longer means
  fewer wasted proofs and a later start.
- `submit_after_open`: tipsets past the deadline's Open epoch before the first push of a
  proof (0: push as soon as the head reaches Open, so it lands at Open + 1).
- `message_confidence`: tipsets on top of a message's tipset before it counts as landed
  (until then a revert that drops it makes the poster send it again).
"""
from __future__ import annotations

import msgspec

PROVER_KINDS = ("local", "fake", "scheduler")
LOCAL_MODES = ("thread", "process")


class ProverConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How WindowPoSt proofs are computed.

    kind: `local` (zqnode.proofs.post in this process: a worker thread or a process pool),
    `fake` (proofs the chain's FAKE verifier accepts: devnets without real sectors), or
    `scheduler` (WDP tasks on the cluster's workers, one per partition)."""
    kind: str = "local"                # local | fake | scheduler (see above)
    mode: str = "thread"               # local: thread | process (a spawned process pool)
    backend: str = "auto"              # proofs backend: auto | cpu | cuda
    parallel: int = 1                  # batches proven at the same time
    verify: bool = True                # local: verify each partition proof before using it

    def __post_init__(self) -> None:
        if self.kind not in PROVER_KINDS:
            raise ValueError(f"poster prover kind must be one of {', '.join(PROVER_KINDS)}, "
                             f"not {self.kind!r}")
        if self.mode not in LOCAL_MODES:
            raise ValueError(f"poster prover mode must be one of {', '.join(LOCAL_MODES)}, "
                             f"not {self.mode!r}")
        if self.parallel < 1:
            raise ValueError(f"poster prover parallel must be >= 1, got {self.parallel}")


class PosterConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    miners: list[int] = []             # actor ids to prove for; empty: every miner of the chain
    address: str = ""                  # PoSt messages come from this control address; "": the worker
    challenge_confirmations: int = 2   # tipsets past Challenge before a runner starts
    submit_after_open: int = 0         # tipsets past Open before pushing proofs
    message_confidence: int = 2        # tipsets on top of a message before it counts as landed
    max_partitions_per_message: int = 0   # 0: the network's PoStedPartitionsMax
    prove_retry_s: float = 5.0         # first back-off after a prover error, doubling ...
    prove_retry_max_s: float = 60.0    # ... up to this; retries go on until the deadline closes
    declare_faults: bool = True        # declare failing sectors of deadline index+2 faulty
    declare_recoveries: bool = True    # declare healthy faulty sectors of index+2 recovered
    check_timeout_s: float = 30.0      # per sector: a check slower than this fails the sector
    check_parallel: int = 4            # sectors checked at the same time
    storage: list[str] = []            # directories whose sub-directories are sector directories
    chain_timeout_s: float = 10.0      # per chain query
    prover: ProverConfig = msgspec.field(default_factory=ProverConfig)   # how proofs are computed

    def __post_init__(self) -> None:
        for name in ("challenge_confirmations", "submit_after_open", "message_confidence",
                     "max_partitions_per_message"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"poster {name} must be >= 0, got {value}")
        for name in ("prove_retry_s", "prove_retry_max_s", "check_timeout_s", "chain_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"poster {name} must be > 0, got {value}")
        if self.prove_retry_max_s < self.prove_retry_s:
            raise ValueError(f"poster prove_retry_max_s ({self.prove_retry_max_s}) must be >= "
                             f"prove_retry_s ({self.prove_retry_s})")
        if self.check_parallel < 1:
            raise ValueError(f"poster check_parallel must be >= 1, got {self.check_parallel}")
        bad = [m for m in self.miners if isinstance(m, bool) or m < 0]
        if bad:
            raise ValueError(f"poster miners must be actor ids >= 0, got {bad}")
