"""The sealing state machine's settings (the `[sealing]` section of a node's config)."""
from __future__ import annotations

import msgspec

from zqnode.bus.retry import doubling


class SealingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True               # the manager runs the state machine (it waits for a chain)
    miner: int = 1000                  # the miner actor sectors are sealed for
    first_number: int = 1              # the first sector number handed out
    retry_base_s: float = 10.0         # first back-off after an error, doubling ...
    retry_max_s: float = 600.0         # ... up to this
    max_retries: int = 8               # consecutive errors before the sector pauses
    max_sealing: int = 0               # sectors from ticket to PreCommit at once (0: any); more wait in Packing
    sector_lifetime: int = 0           # epochs from a sector's ticket to its expiration; 0: 540 days
    #                                    (Lotus's CommittedCapacitySectorLifetime), at most the network's
    pledge_target: int = 0             # keep this many sectors sealing: CC sectors are pledged (0: off)
    max_sealing_sectors: int = 0       # no pledge beyond this many sealing (Lotus MaxSealingSectors; 0: any)
    wait_deals_s: float = 60.0         # a deal sector takes pieces this long, then packs
    ticket_margin: int = 20            # epochs from PreCommit1 to its PreCommit landing (ticket expiry)
    message_confidence: int = 2        # tipsets on top of a message before it counts as landed
    seed_confidence: int = 2           # tipsets on top of the seed epoch before the seed is used
    deal_priority: int = 1024          # scheduler priority of deal sectors' tasks (Lotus's)
    keep_unsealed: bool = True         # deal sectors keep their unsealed copy at finalize
    batch_precommits: bool = False     # one PreCommitSectorBatch2 for several sectors (Lotus BatchPreCommits)
    max_precommit_batch: int = 256     # sectors in one batch: sent once this many wait (MaxPreCommitBatch)
    precommit_batch_wait_s: float = 86400.0   # the longest a sector waits for its batch (PreCommitBatchWait)
    precommit_batch_slack: int = 360   # epochs before the earliest ticket expires: sent (PreCommitBatchSlack)
    aggregate_commits: bool = False    # one ProveCommitSectors3 for several sectors (Lotus AggregateCommits)
    min_commit_batch: int = 4          # fewer: their proofs go one by one, not aggregated (MinCommitBatch)
    max_commit_batch: int = 819        # sectors in one message: sent once this many wait (MaxCommitBatch)
    commit_batch_wait_s: float = 86400.0   # the longest a sector waits for its batch (CommitBatchWait)
    commit_batch_slack: int = 120      # epochs before the earliest prove-by epoch: sent (CommitBatchSlack)
    terminate_batch_max: int = 100     # sectors in one TerminateSectors: sent at once (TerminateBatchMax)
    terminate_batch_min: int = 1       # fewer wait even past the wait (TerminateBatchMin)
    terminate_batch_wait_s: float = 300.0   # the longest a sector waits for its batch (TerminateBatchWait)
    storage: list[str] = []            # directories holding sector directories (remove/rebuild)
    chain_timeout_s: float = 10.0      # per chain query

    def __post_init__(self) -> None:
        for name in ("retry_base_s", "retry_max_s", "chain_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sealing {name} must be > 0, got {getattr(self, name)}")
        if self.retry_max_s < self.retry_base_s:
            raise ValueError(f"sealing retry_max_s ({self.retry_max_s}) must be >= "
                             f"retry_base_s ({self.retry_base_s})")
        for name in ("max_retries", "max_sealing", "sector_lifetime", "pledge_target", "max_sealing_sectors", "ticket_margin", "message_confidence", "seed_confidence",
                     "first_number", "miner"):
            if getattr(self, name) < 0:
                raise ValueError(f"sealing {name} must be >= 0, got {getattr(self, name)}")
        if self.wait_deals_s < 0:
            raise ValueError(f"sealing wait_deals_s must be >= 0, got {self.wait_deals_s}")
        if not 1 <= self.max_precommit_batch <= 256:     # the actor's PreCommitSectorBatchMaxSize
            raise ValueError(f"sealing max_precommit_batch must be in 1..256, got {self.max_precommit_batch}")
        if self.precommit_batch_wait_s < 0 or self.precommit_batch_slack < 0:
            raise ValueError("sealing precommit_batch_wait_s and precommit_batch_slack must be >= 0")
        if not 1 <= self.max_commit_batch <= 819:       # the actor's MaxAggregatedSectors
            raise ValueError(f"sealing max_commit_batch must be in 1..819, got {self.max_commit_batch}")
        if not 1 <= self.terminate_batch_min <= self.terminate_batch_max <= 25_000:   # AddressedSectorsMax
            raise ValueError(f"sealing needs 1 <= terminate_batch_min ({self.terminate_batch_min}) <= "
                             f"terminate_batch_max ({self.terminate_batch_max}) <= 25000")
        if self.terminate_batch_wait_s < 0:
            raise ValueError("sealing terminate_batch_wait_s must be >= 0")
        if self.min_commit_batch < 0 or self.commit_batch_wait_s < 0 or self.commit_batch_slack < 0:
            raise ValueError("sealing min_commit_batch, commit_batch_wait_s and commit_batch_slack "
                             "must be >= 0")

    def backoff(self, retries: int) -> float:
        """Seconds to wait after the `retries`-th consecutive error (1, 2, ...)."""
        return doubling(self.retry_base_s, self.retry_max_s, retries)
