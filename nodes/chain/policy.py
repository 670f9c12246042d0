"""Network policy and WindowPoSt deadline arithmetic (go-state-types' miner policy and
dline.Info). Mainnet values, and a devnet policy scaled down so a whole proving period
passes in minutes while keeping 48 deadlines and every ordering between the windows."""
from __future__ import annotations

import msgspec


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    epoch_seconds: float
    period_deadlines: int = 48           # WPoStPeriodDeadlines
    challenge_window: int                # WPoStChallengeWindow: epochs a deadline is open
    challenge_lookback: int              # WPoStChallengeLookback: Challenge = Open - this
    fault_cutoff: int                    # FaultDeclarationCutoff: FaultCutoff = Open - this
    precommit_challenge_delay: int       # PreCommitChallengeDelay: seed epoch after PreCommit
    seal_randomness_lookback: int        # ChainFinality: ticket at least this old
    max_ticket_age: int                  # MaxPreCommitRandomnessLookback
    max_prove_commit_duration: int       # after PreCommit, ProveCommit must land within
    chain_finality: int
    min_sector_expiration: int = 180 * 2880            # MinSectorExpiration: shortest lifetime
    max_sector_expiration_extension: int = 1278 * 2880  # MaxSectorExpirationExtension from now
    max_sector_lifetime: int = 5 * 365 * 2880          # SealProofSectorMaximumLifetime (v1.1)
    posted_partitions_max: int = 3       # PoStedPartitionsMax: partitions per PoSt message
    partitions_per_deadline_max: int = 3000
    # gas and the base fee (Filecoin's BlockGasLimit, BlockGasTarget, MinimumBaseFee, InitialBaseFee)
    block_gas_limit: int = 10_000_000_000
    block_gas_target: int = 5_000_000_000
    min_base_fee: int = 100                 # attoFIL per gas unit
    initial_base_fee: int = 100_000_000
    # funds, in nanoFIL per sector of `collateral_unit` bytes (a sector of another size pays
    # in proportion; 0: every sector the same). The actor derives them from the network's
    # reward and power; this chain takes them as constants. Mainnet's are rough magnitudes
    # for planning, not the network's.
    collateral_unit: int = 32 << 30
    precommit_deposit: int = 10 ** 7         # locked at PreCommit, released at ProveCommit
    initial_pledge: int = 2 * 10 ** 8        # locked at ProveCommit, released when the sector ends
    fault_fee: int = 5 * 10 ** 5             # per faulty sector, each time its deadline closes
    termination_fee: int = 2 * 10 ** 7       # per terminated sector
    epoch_reward: int = 0                    # minted each epoch, shared by power (0: none)
    reward_vesting: int = 180 * 2880         # a reward's locked 75% vests over about this many epochs

    @property
    def devnet(self) -> bool:
        """A test network's policy: funds may be added, reorgs asked for."""
        return self.name.startswith("devnet")

    @property
    def proving_period(self) -> int:     # WPoStProvingPeriod
        return self.period_deadlines * self.challenge_window

    def per_sector(self, amount: int, sector_size: int) -> int:
        """One of the amounts above for a sector of `sector_size` bytes."""
        return amount * sector_size // self.collateral_unit if self.collateral_unit else amount


MAINNET = Policy(
    name="mainnet", epoch_seconds=30, challenge_window=60, challenge_lookback=20,
    fault_cutoff=70, precommit_challenge_delay=150, seal_randomness_lookback=900,
    max_ticket_age=30 * 2880 + 900, max_prove_commit_duration=30 * 2880 + 150,
    chain_finality=900)

# 1-second epochs, 8-epoch windows: a proving period of 384 epochs is 6.4 minutes.
DEVNET = Policy(
    name="devnet", epoch_seconds=1.0, challenge_window=8, challenge_lookback=3,
    fault_cutoff=10, precommit_challenge_delay=5, seal_randomness_lookback=2,
    max_ticket_age=200, max_prove_commit_duration=400, chain_finality=5,
    min_sector_expiration=300, max_sector_expiration_extension=1_000_000,
    max_sector_lifetime=5_000_000,
    collateral_unit=0, precommit_deposit=10 ** 7, initial_pledge=10 ** 8,
    fault_fee=10 ** 6, termination_fee=5 * 10 ** 7, epoch_reward=2 * 10 ** 7,
    reward_vesting=1000)

# The devnet for 512 MiB sectors: sealing one takes most of an hour on a small CPU machine
# (PC2's Poseidon), so a ticket lives 4 hours and a ProveCommit may come as late.
DEVNET_LARGE = msgspec.structs.replace(DEVNET, name="devnet-large", max_ticket_age=4 * 3600,
                                       max_prove_commit_duration=4 * 3600 + 200)

POLICIES = {p.name: p for p in (MAINNET, DEVNET, DEVNET_LARGE)}


def policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown network policy {name!r} (known: {', '.join(POLICIES)})") from None


class DeadlineInfo(msgspec.Struct, frozen=True):
    """One deadline of one proving period, seen at `current_epoch` (dline.Info)."""
    current_epoch: int
    period_start: int
    index: int
    open: int
    close: int
    challenge: int
    fault_cutoff: int

    def is_open(self) -> bool:
        return self.open <= self.current_epoch < self.close

    def has_elapsed(self) -> bool:
        return self.current_epoch >= self.close

    def fault_cutoff_passed(self) -> bool:
        return self.current_epoch >= self.fault_cutoff


def deadline_info(p: Policy, period_start: int, index: int, current_epoch: int) -> DeadlineInfo:
    if not 0 <= index < p.period_deadlines:
        raise ValueError(f"deadline index {index} out of range 0..{p.period_deadlines - 1}")
    open_ = period_start + index * p.challenge_window
    return DeadlineInfo(current_epoch=current_epoch, period_start=period_start, index=index,
                        open=open_, close=open_ + p.challenge_window,
                        challenge=open_ - p.challenge_lookback,
                        fault_cutoff=open_ - p.fault_cutoff)


def current_deadline(p: Policy, period_offset: int, epoch: int) -> DeadlineInfo:
    """The deadline open at `epoch` for a miner whose periods start at epochs
    ≡ period_offset (mod proving period) (NewDeadlineInfoFromOffsetAndEpoch)."""
    pp = p.proving_period
    period_start = epoch - ((epoch - period_offset) % pp)
    return deadline_info(p, period_start, (epoch - period_start) // p.challenge_window, epoch)


def next_deadline(d: DeadlineInfo, p: Policy) -> DeadlineInfo:
    """The deadline after `d` (wrapping into the next period), seen at d.current_epoch."""
    if d.index + 1 < p.period_deadlines:
        return deadline_info(p, d.period_start, d.index + 1, d.current_epoch)
    return deadline_info(p, d.period_start + p.proving_period, 0, d.current_epoch)


def next_not_elapsed(d: DeadlineInfo, p: Policy) -> DeadlineInfo:
    """The next occurrence of deadline `d` that has not closed yet (dline.NextNotElapsed)."""
    if not d.has_elapsed():
        return d
    periods = (d.current_epoch - d.close) // p.proving_period + 1
    return deadline_info(p, d.period_start + periods * p.proving_period, d.index, d.current_epoch)
