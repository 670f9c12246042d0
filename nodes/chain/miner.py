"""The miner actor, pure: sector pre-commit and prove-commit, deadlines and partitions,
WindowPoSt, fault and recovery declarations, and the end-of-deadline checks. It follows
builtin-actors' miner (lib.rs, deadline_state.rs, partition_state.rs,
deadline_assignment.rs) with these simplifications, all on purpose:

- funds as the actor keeps them (balance, pre-commit deposits, initial pledge, vesting
  rewards, fee debt), with constant amounts from the policy instead of the network's
  reward and power: a deposit per pre-commit (burnt if never proven), a pledge per
  sector (released when it ends), a fault fee per sector faulty when its deadline closes
  (newly detected, failed recovery or continued fault; also counted as a penalty), a
  termination fee per terminated sector; penalties come from vesting funds, then the
  unlocked balance, and the rest is fee debt, repaid before anything new is locked;
- a terminated sector leaves its partition's sectors at once (no early-termination
  queue); it still counts towards the partition's size, as until compaction;
- a sector expires at the end of its deadline once its expiration epoch has passed, and
  leaves its partition as a terminated one does; no compaction or disputes;
- a pre-commit not proven by `prove_by` is dropped a chain finality later;
- one PoRep per ProveCommitSector message, verified at once (vanilla proof, no SNARK);
- WindowPoSt proofs are verified at submission, one vanilla proof per partition.

Every method runs against a copy of the miner; an ActorError leaves the state as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.funds import format_fil
from zqnode.nodes.chain.messages import ExitCode
from zqnode.nodes.chain.policy import DeadlineInfo, Policy, current_deadline, deadline_info, next_not_elapsed
from zqnode.nodes.chain.randomness import DomainTag, address_entropy, blake2b256
from zqnode.proofs import cid as cids
from zqnode.proofs import commp
from zqnode.proofs.merkle import zero_commitment
from zqnode.proofs import params as proof_params
from zqnode.proofs.update import MAX_PROOF_BYTES

MAX_SECTOR_NUMBER = (1 << 63) - 1
_ret_enc = msgspec.msgpack.Encoder()


class ActorError(Exception):
    def __init__(self, exit_code: int, message: str):
        super().__init__(message)
        self.exit_code, self.message = exit_code, message


def _illegal(msg: str) -> ActorError:
    return ActorError(ExitCode.USR_ILLEGAL_ARGUMENT, msg)


# -- state -------------------------------------------------------------------------------

class Partition(msgspec.Struct, kw_only=True):
    sectors: list[int] = []            # ascending
    unproven: set[int] = set()         # not yet proven by a WindowPoSt: no power yet
    faults: set[int] = set()           # declared or detected faulty: no power
    recoveries: set[int] = set()       # faulty sectors declared recovering (⊆ faults)
    terminated: set[int] = set()       # no longer in `sectors`; they still fill the partition

    def active(self) -> set[int]:
        return set(self.sectors) - self.faults - self.unproven


class Deadline(msgspec.Struct, kw_only=True):
    partitions: list[Partition] = []
    posted: set[int] = set()           # partitions proven in the current challenge window

    @property
    def total_sectors(self) -> int:
        return sum(len(p.sectors) for p in self.partitions)


class SectorOnChain(msgspec.Struct, kw_only=True):
    number: int
    seal_proof: int
    sealed_cid: str
    unsealed_cid: str
    comm_r: bytes
    activation: int
    deadline: int
    partition: int
    expiration: int = 0                # 0: never
    initial_pledge: int = 0            # nanoFIL locked until it ends
    sector_key_cid: str = ""           # SnapDeals: the CC replica's sealed CID, once updated


class PreCommitOnChain(msgspec.Struct, kw_only=True):
    sector_number: int
    seal_proof: int
    sealed_cid: str
    unsealed_cid: str
    comm_r: bytes
    comm_d: bytes
    seal_rand_epoch: int
    precommit_epoch: int
    seed_epoch: int                    # precommit_epoch + PreCommitChallengeDelay
    prove_by: int                      # last epoch a ProveCommitSector may land
    expiration: int = 0
    deposit: int = 0                   # nanoFIL locked until it is proven


class MinerState(msgspec.Struct, kw_only=True):
    actor_id: int
    worker: str
    control: list[str] = []            # control addresses (builtin-actors' MinerInfo.control_addresses)
    seal_proof: int
    sector_size: int
    partition_sectors: int             # sectors per WindowPoSt partition
    period_offset: int                 # proving periods start at epochs ≡ this (mod period)
    created: int
    deadlines: list[Deadline]
    precommits: dict[int, PreCommitOnChain] = {}
    sectors: dict[int, SectorOnChain] = {}
    allocated: set[int] = set()        # sector numbers ever pre-committed
    penalties: int = 0                 # sector-deadlines: sectors faulty when their deadline closed
    detected_faults: int = 0           # sectors made faulty by a missed PoSt
    skipped_faults: int = 0            # sectors made faulty by a PoSt that skipped them
    expired_precommits: int = 0        # pre-commits never proven in time
    terminated: int = 0                # sectors terminated
    expired: int = 0                   # sectors that reached their expiration
    # funds, nanoFIL (builtin-actors' State): what is not locked and not owed is available
    balance: int = 0
    precommit_deposits: int = 0
    initial_pledge: int = 0
    locked_funds: int = 0              # rewards vesting
    fee_debt: int = 0                  # penalties the balance could not pay
    burnt: int = 0                     # fees and penalties paid, deposits forfeited


def unlocked_balance(m: MinerState) -> int:
    return m.balance - m.precommit_deposits - m.initial_pledge - m.locked_funds


def available_balance(m: MinerState) -> int:
    return unlocked_balance(m) - m.fee_debt


def _burn(m: MinerState, amount: int) -> None:
    m.balance -= amount
    m.burnt += amount


def penalize(m: MinerState, amount: int) -> None:
    """A fee or penalty: from vesting funds first, then the unlocked balance; what neither
    covers becomes fee debt (penalize_funds_in_priority_order)."""
    from_vesting = min(amount, m.locked_funds)
    from_balance = min(amount - from_vesting, max(unlocked_balance(m), 0))
    m.locked_funds -= from_vesting
    _burn(m, from_vesting + from_balance)
    m.fee_debt += amount - from_vesting - from_balance


def repay_debts(m: MinerState, *, required: bool) -> None:
    """Pay fee debt from the unlocked balance, as much as it holds; `required` (before
    funds are locked): all of it, or fail as the actor does."""
    pay = min(m.fee_debt, max(unlocked_balance(m), 0))
    if required and pay < m.fee_debt:
        raise ActorError(ExitCode.USR_INSUFFICIENT_FUNDS, f"unlocked balance {format_fil(unlocked_balance(m))} "
                         f"can not repay fee debt {format_fil(m.fee_debt)}")
    _burn(m, pay)
    m.fee_debt -= pay


def _lock(m: MinerState, what: str, amount: int, released: int = 0) -> None:
    """Refuse, changing nothing, unless the available balance (with what is `released` in
    exchange) covers `amount`."""
    have = available_balance(m) + released
    if have < amount:
        raise ActorError(ExitCode.USR_INSUFFICIENT_FUNDS, f"insufficient funds "
                         f"{format_fil(have)} for {what} {format_fil(amount)}")


def add_reward(m: MinerState, amount: int) -> None:
    """A block reward: a quarter available at once, the rest vesting (FIP-0004)."""
    m.balance += amount
    m.locked_funds += amount - amount // 4


def proving_period_offset(policy: Policy, actor_id: int, epoch: int) -> int:
    """assign_proving_period_offset: blake2b(cbor(address) || i64be(epoch)) mod period."""
    digest = blake2b256(address_entropy(actor_id) + epoch.to_bytes(8, "big", signed=True))
    return int.from_bytes(digest[:8], "big") % policy.proving_period


def new_miner(policy: Policy, actor_id: int, worker: str, seal_proof: int, epoch: int, *,
              control: list[str] = ()) -> MinerState:
    sp = proof_params.seal_proof(seal_proof)     # raises ProofParamsError (a ValueError)
    if not worker:
        raise ValueError(f"miner f0{actor_id} needs a worker address")
    return MinerState(actor_id=actor_id, worker=worker, control=list(control), seal_proof=sp.id,
                      sector_size=sp.sector_size,
                      partition_sectors=sp.sector.window_post_partition_sectors,
                      period_offset=proving_period_offset(policy, actor_id, epoch), created=epoch,
                      deadlines=[Deadline() for _ in range(policy.period_deadlines)])


def proving_deadline(m: MinerState, policy: Policy, epoch: int) -> DeadlineInfo:
    return current_deadline(policy, m.period_offset, epoch)


def active_sectors(m: MinerState) -> set[int]:
    return {n for d in m.deadlines for p in d.partitions for n in p.active()}


def power(m: MinerState) -> int:
    """Raw byte power: active (proven, not faulty) sectors × sector size."""
    return len(active_sectors(m)) * m.sector_size


# -- the runtime a method sees ----------------------------------------------------------------

@dataclass
class Runtime:
    epoch: int
    policy: Policy
    sender: str
    tickets: Callable[[int, int, bytes], bytes]    # (tag, epoch, entropy) -> 32 bytes
    beacon: Callable[[int, int, bytes], bytes]
    verify_seal: Callable[..., bool]
    verify_window_post: Callable[..., bool]
    verify_replica_update: Callable[..., bool]


def _check_worker(m: MinerState, rt: Runtime) -> None:
    """The worker or a control address may send any of the miner's methods (the actor
    also takes the owner; this chain has none)."""
    if rt.sender != m.worker and rt.sender not in m.control:
        also = f" or a control address ({', '.join(m.control)})" if m.control else ""
        raise ActorError(ExitCode.USR_FORBIDDEN,
                         f"sender {rt.sender} is not the worker ({m.worker}){also} of miner f0{m.actor_id}")


def _verify(name: str, fn: Callable[..., bool], **kw) -> bool:
    try:
        return fn(**kw) is True
    except Exception as e:   # a verifier bug or a missing verifier fails the message, not the chain
        raise ActorError(ExitCode.USR_ILLEGAL_STATE, f"{name} failed: {type(e).__name__}: {e}") from None


# -- PreCommitSector / ProveCommitSector --------------------------------------------------------

def pre_commit_sector(m: MinerState, rt: Runtime, p: M.PreCommitSectorParams) -> None:
    _check_worker(m, rt)
    pol, epoch = rt.policy, rt.epoch
    if p.seal_proof != m.seal_proof:
        raise _illegal(f"seal proof {p.seal_proof} does not match the miner's {m.seal_proof}")
    if not 0 <= p.sector_number <= MAX_SECTOR_NUMBER:
        raise _illegal(f"sector number {p.sector_number} out of range 0..2^63-1")
    if p.sector_number in m.allocated:
        raise _illegal(f"sector number {p.sector_number} already allocated")
    try:
        comm_r = cids.parse_sealed_cid(p.sealed_cid)
    except ValueError as e:
        raise _illegal(f"bad sealed CID {p.sealed_cid!r}: {e}") from None
    try:
        comm_d = cids.parse_piece_cid(p.unsealed_cid)
    except ValueError as e:
        raise _illegal(f"bad unsealed CID {p.unsealed_cid!r}: {e}") from None
    if not isinstance(comm_d, bytes):
        raise _illegal(f"unsealed CID {p.unsealed_cid!r} must be a piece CID v1 (CommD)")
    newest, oldest = epoch - pol.seal_randomness_lookback, epoch - pol.max_ticket_age
    if p.seal_rand_epoch > newest:
        raise _illegal(f"seal ticket epoch {p.seal_rand_epoch} too recent: must be at most "
                       f"{newest} (epoch {epoch} - lookback {pol.seal_randomness_lookback})")
    if p.seal_rand_epoch < max(oldest, 0):
        raise _illegal(f"seal ticket epoch {p.seal_rand_epoch} too old: must be at least "
                       f"{max(oldest, 0)} (epoch {epoch} - max ticket age {pol.max_ticket_age})")
    if p.expiration:
        _validate_expiration(pol, epoch, epoch, p.expiration)
    repay_debts(m, required=True)
    deposit = pol.per_sector(pol.precommit_deposit, m.sector_size)
    _lock(m, "pre-commit deposit", deposit)
    m.precommit_deposits += deposit
    m.allocated.add(p.sector_number)
    m.precommits[p.sector_number] = PreCommitOnChain(expiration=p.expiration, deposit=deposit,
        sector_number=p.sector_number, seal_proof=p.seal_proof, sealed_cid=p.sealed_cid,
        unsealed_cid=p.unsealed_cid, comm_r=comm_r, comm_d=comm_d, seal_rand_epoch=p.seal_rand_epoch,
        precommit_epoch=epoch, seed_epoch=epoch + pol.precommit_challenge_delay,
        prove_by=epoch + pol.max_prove_commit_duration)


PRE_COMMIT_SECTOR_BATCH_MAX_SIZE = 256     # builtin-actors policy


def _validate_expiration(pol: Policy, epoch: int, activation: int, expiration: int) -> None:
    """builtin-actors' validate_expiration: a lifetime of at least MinSectorExpiration, at
    most MaxSectorExpirationExtension from now and the seal proof's maximum lifetime."""
    if expiration - activation < pol.min_sector_expiration:
        raise _illegal(f"invalid expiration {expiration}, total sector lifetime "
                       f"({expiration - activation}) must exceed {pol.min_sector_expiration} "
                       f"after activation {activation}")
    if expiration > epoch + pol.max_sector_expiration_extension:
        raise _illegal(f"invalid expiration {expiration}, cannot be more than "
                       f"{pol.max_sector_expiration_extension} past current epoch {epoch}")
    if expiration - activation > pol.max_sector_lifetime:
        raise _illegal(f"invalid expiration {expiration}, total sector lifetime "
                       f"({expiration - activation}) cannot exceed {pol.max_sector_lifetime} "
                       f"after activation {activation}")


def pre_commit_sector_batch2(m: MinerState, rt: Runtime, p: M.PreCommitSectorBatch2Params) -> None:
    """Every sector as PreCommitSector checks it, all or nothing (the method runs on a
    copy of the miner: one refusal refuses the batch)."""
    if not p.sectors:
        raise _illegal("batch empty")
    if len(p.sectors) > PRE_COMMIT_SECTOR_BATCH_MAX_SIZE:
        raise _illegal(f"batch of {len(p.sectors)} too large, max {PRE_COMMIT_SECTOR_BATCH_MAX_SIZE}")
    numbers = [s.sector_number for s in p.sectors]
    if len(set(numbers)) != len(numbers):
        raise _illegal(f"batch names a sector twice: {sorted(n for n in set(numbers) if numbers.count(n) > 1)}")
    for sector in p.sectors:
        pre_commit_sector(m, rt, sector)


def prove_commit_sector(m: MinerState, rt: Runtime, p: M.ProveCommitSectorParams) -> bytes:
    _check_worker(m, rt)
    pc = m.precommits.get(p.sector_number)
    if pc is None:
        raise ActorError(ExitCode.USR_NOT_FOUND, f"no pre-committed sector {p.sector_number}")
    if rt.epoch <= pc.seed_epoch:
        raise ActorError(ExitCode.USR_FORBIDDEN, f"too early to prove sector {p.sector_number}: "
                         f"epoch {rt.epoch} is not after the seed epoch {pc.seed_epoch}")
    if rt.epoch > pc.prove_by:
        raise _illegal(f"too late to prove sector {p.sector_number}: epoch {rt.epoch} is after "
                       f"{pc.prove_by}")
    entropy = address_entropy(m.actor_id)
    ticket = rt.tickets(DomainTag.SealRandomness, pc.seal_rand_epoch, entropy)
    seed = rt.beacon(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, entropy)
    ok = _verify("PoRep verifier", rt.verify_seal, seal_proof=pc.seal_proof, miner=m.actor_id,
                 sector=pc.sector_number, ticket=ticket, seed=seed, comm_d=pc.comm_d,
                 comm_r=pc.comm_r, proof=p.proof)
    if not ok:
        raise _illegal(f"invalid seal proof for sector {p.sector_number}")
    if pc.expiration:
        _validate_expiration(rt.policy, rt.epoch, rt.epoch, pc.expiration)
    repay_debts(m, required=True)
    pledge = rt.policy.per_sector(rt.policy.initial_pledge, m.sector_size)
    _lock(m, "new initial pledge requirement", pledge, released=pc.deposit)
    m.precommit_deposits -= pc.deposit             # the deposit is released, the pledge locked
    m.initial_pledge += pledge
    del m.precommits[p.sector_number]
    dl_index = assign_deadline(m, rt.policy, rt.epoch)
    part_index = _add_sector(m.deadlines[dl_index], m.partition_sectors, p.sector_number)
    m.sectors[p.sector_number] = SectorOnChain(
        number=pc.sector_number, seal_proof=pc.seal_proof, sealed_cid=pc.sealed_cid,
        unsealed_cid=pc.unsealed_cid, comm_r=pc.comm_r, activation=rt.epoch,
        deadline=dl_index, partition=part_index, expiration=pc.expiration, initial_pledge=pledge)
    return M.encode(M.SectorLocation(deadline=dl_index, partition=part_index))


MIN_AGGREGATED_SECTORS = 4          # builtin-actors policy
MAX_AGGREGATED_SECTORS = 819
_proofs = msgspec.msgpack.Decoder(list[bytes])


def prove_commit_sectors3(m: MinerState, rt: Runtime, p: M.ProveCommitSectors3Params) -> bytes:
    """ProveCommitSector for each sector. An aggregate, or require_activation_success,
    is all or nothing; otherwise a sector that fails is skipped and named in the return."""
    _check_worker(m, rt)
    n = len(p.sector_activations)
    if not n:
        raise _illegal("no sectors to prove")
    if n > MAX_AGGREGATED_SECTORS:
        raise _illegal(f"too many sectors {n}, max {MAX_AGGREGATED_SECTORS}")
    if bool(p.sector_proofs) == bool(p.aggregate_proof):
        raise _illegal("exactly one of sector proofs or aggregate proof must be non-empty")
    numbers = [a.sector_number for a in p.sector_activations]
    if len(set(numbers)) != n:
        raise _illegal(f"sectors named twice: {sorted(x for x in set(numbers) if numbers.count(x) > 1)}")
    if any(a.pieces for a in p.sector_activations):
        raise _illegal("this chain has no market: sectors activate no pieces")
    proofs, whole = p.sector_proofs, p.require_activation_success
    if p.aggregate_proof:
        if n < MIN_AGGREGATED_SECTORS:
            raise _illegal(f"too few sectors {n} to aggregate, min {MIN_AGGREGATED_SECTORS}")
        try:
            proofs = _proofs.decode(p.aggregate_proof)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _illegal(f"aggregate proof does not decode: {e}") from None
        whole = True
    if len(proofs) != n:
        raise _illegal(f"{len(proofs)} proofs for {n} sectors")
    failed = []
    for i, (number, proof) in enumerate(zip(numbers, proofs)):
        try:
            prove_commit_sector(m, rt, M.ProveCommitSectorParams(sector_number=number, proof=proof))
        except ActorError as e:
            if whole:
                raise
            failed.append(M.FailCode(idx=i, code=e.exit_code))
    if len(failed) == n:
        raise _illegal("no sector was activated")
    return _ret_enc.encode(M.BatchReturn(success_count=n - len(failed), fail_codes=failed))


# -- ProveReplicaUpdates3 (SnapDeals) -----------------------------------------------------------------


def prove_replica_updates3(m: MinerState, rt: Runtime, p: M.ProveReplicaUpdates3Params) -> bytes:
    """Each CC sector takes its data (builtin-actors' validate_replica_updates and
    update_replica_states): an active sector, in a mutable deadline, with no data (its
    CommD the zero one; the actor asks for zero deal weight),
    whose update proof verifies against its comm_r, the new comm_r and the CommD of the
    pieces. require_activation_success is all or nothing; otherwise a sector that fails
    is skipped and named in the return."""
    _check_worker(m, rt)
    n = len(p.sector_updates)
    if not n:
        raise _illegal("no sector updates")
    if len(p.sector_proofs) != n:
        raise _illegal(f"mismatched lengths: {n} sector updates, {len(p.sector_proofs)} proofs")
    failed, seen = [], set()
    for i, (update, proof) in enumerate(zip(p.sector_updates, p.sector_proofs)):
        try:
            _update_replica(m, rt, update, proof, p.update_proofs_type, seen)
        except ActorError as e:
            if p.require_activation_success:
                raise
            failed.append(M.FailCode(idx=i, code=e.exit_code))
    if len(failed) == n:
        raise _illegal("no valid updates")
    return _ret_enc.encode(M.BatchReturn(success_count=n - len(failed), fail_codes=failed))


def _update_replica(m: MinerState, rt: Runtime, u: M.SectorUpdateManifest, proof: bytes, proof_type: int,
                    seen: set[int]) -> None:
    pol = rt.policy
    if u.sector in seen:
        raise _illegal(f"duplicate sector {u.sector}")
    s = m.sectors.get(u.sector)
    if s is None:
        raise ActorError(ExitCode.USR_NOT_FOUND, f"no sector {u.sector}")
    if len(proof) > MAX_PROOF_BYTES:         # a vanilla proof (the actor takes 4096 bytes of SNARK)
        raise _illegal(f"update proof is too large ({len(proof)}), sector {u.sector}")
    if not 0 <= u.deadline < pol.period_deadlines:
        raise _illegal(f"deadline {u.deadline} not in range 0..{pol.period_deadlines - 1}, sector {u.sector}")
    try:
        comm_r_new = cids.parse_sealed_cid(u.new_sealed_cid)
    except ValueError as e:
        raise _illegal(f"bad new sealed CID {u.new_sealed_cid!r}: {e}") from None
    start = proving_deadline(m, pol, rt.epoch).period_start
    if not deadline_is_mutable(pol, start, u.deadline, rt.epoch):
        raise _illegal(f"cannot upgrade sectors in immutable deadline {u.deadline}, sector {u.sector}")
    parts = m.deadlines[u.deadline].partitions
    if ((s.deadline, s.partition) != (u.deadline, u.partition) or u.partition >= len(parts)
            or u.sector not in parts[u.partition].active()):
        raise _illegal(f"sector {u.sector} isn't active in deadline {u.deadline} partition {u.partition}")
    if s.sector_key_cid or s.unsealed_cid != cids.piece_cid_v1(zero_commitment(m.sector_size)):
        raise _illegal(f"cannot update sector with non-zero data, sector {u.sector}")
    expected = proof_params.update_proof_id(m.sector_size)
    if proof_type != expected:
        raise _illegal(f"expected proof type {expected}, was {proof_type}")
    try:
        comm_d = commp.commd([(piece.size, _piece_commitment(piece.cid)) for piece in u.pieces], m.sector_size)
    except ValueError as e:
        raise _illegal(f"sector {u.sector}: its pieces do not make a sector: {e}") from None
    ok = _verify("replica update verifier", rt.verify_replica_update, update_proof=expected,
                 comm_r_old=s.comm_r, comm_d_new=comm_d, comm_r_new=comm_r_new, proof=proof)
    if not ok:
        raise _illegal(f"invalid update proof for sector {u.sector}")
    seen.add(u.sector)
    s.sector_key_cid, s.sealed_cid, s.comm_r = s.sealed_cid, u.new_sealed_cid, comm_r_new
    s.unsealed_cid = cids.piece_cid_v1(comm_d)


def _piece_commitment(cid: str) -> bytes:
    commitment = cids.parse_piece_cid(cid)
    if not isinstance(commitment, bytes):
        raise ValueError(f"piece {cid} must be a piece CID v1 (with its size given apart)")
    return commitment


# -- deadline assignment (deadline_assignment.rs) ------------------------------------------------

def deadline_is_mutable(policy: Policy, period_start: int, index: int, epoch: int) -> bool:
    """False for the deadline being proven and the next one: a new sector must not land in a
    deadline whose challenge may already be drawn."""
    d = next_not_elapsed(deadline_info(policy, period_start, index, epoch), policy)
    return epoch < d.open - policy.challenge_window


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _assignment_key(index: int, live: int, total: int, partition_size: int) -> tuple:
    """The actor's ordering, as a sort key (smallest wins): fewest partitions after the
    assignment (compacted, then not), a deadline with an open partition first, the fullest
    open partition, fewest live sectors, lowest index."""
    full_now = total % partition_size == 0
    return (_ceil_div(live + 1, partition_size), _ceil_div(total + 1, partition_size), full_now,
            0 if full_now else -total, live, index)


def assign_deadlines(policy: Policy, partition_size: int, max_partitions: int,
                     counts: list[tuple[int, int] | None], n: int) -> list[int]:
    """The deadline of each of `n` new sectors (assign_deadlines). counts[i] = (live, total)
    sectors of deadline i, or None for an immutable deadline."""
    state = {i: list(c) for i, c in enumerate(counts) if c is not None}
    if not state:
        raise ActorError(ExitCode.USR_ILLEGAL_STATE, "no mutable deadline to assign sectors to")
    out = []
    for _ in range(n):
        best = min(state, key=lambda i: _assignment_key(i, state[i][0], state[i][1], partition_size))
        live, total = state[best]
        if total >= partition_size * max_partitions:
            raise ActorError(ExitCode.USR_ILLEGAL_STATE,
                             f"max partitions limit {max_partitions} reached for all deadlines")
        out.append(best)
        state[best] = [live + 1, total + 1]
    return out


def assign_deadline(m: MinerState, policy: Policy, epoch: int) -> int:
    period_start = proving_deadline(m, policy, epoch).period_start
    counts: list[tuple[int, int] | None] = []
    for i, d in enumerate(m.deadlines):
        mutable = deadline_is_mutable(policy, period_start, i, epoch)
        live = d.total_sectors
        counts.append((live, live + sum(len(p.terminated) for p in d.partitions)) if mutable else None)
    return assign_deadlines(policy, m.partition_sectors, policy.partitions_per_deadline_max, counts, 1)[0]


def _add_sector(d: Deadline, partition_size: int, number: int) -> int:
    """Fill the last partition, else open a new one; new sectors are unproven."""
    if not d.partitions or len(d.partitions[-1].sectors) + len(d.partitions[-1].terminated) >= partition_size:
        d.partitions.append(Partition())
    part = d.partitions[-1]
    part.sectors.append(number)
    part.sectors.sort()
    part.unproven.add(number)
    return len(d.partitions) - 1


# -- WindowPoSt -------------------------------------------------------------------------------

def submit_windowed_post(m: MinerState, rt: Runtime, p: M.SubmitWindowedPoStParams) -> None:
    _check_worker(m, rt)
    pol, epoch = rt.policy, rt.epoch
    if not 0 <= p.deadline < pol.period_deadlines:
        raise _illegal(f"invalid deadline {p.deadline} of {pol.period_deadlines}")
    if not p.partitions:
        raise _illegal("no partitions proven")
    if len(p.partitions) > pol.posted_partitions_max:
        raise _illegal(f"too many partitions {len(p.partitions)}, limit {pol.posted_partitions_max}")
    if len(p.proofs) != len(p.partitions):
        raise _illegal(f"{len(p.proofs)} proofs for {len(p.partitions)} partitions: need one each")
    di = proving_deadline(m, pol, epoch)
    if p.deadline != di.index:
        raise _illegal(f"invalid deadline {p.deadline} at epoch {epoch}, expected {di.index}")
    if p.chain_commit_epoch < di.challenge:
        raise _illegal(f"expected chain commit epoch {p.chain_commit_epoch} to be at least "
                       f"{di.challenge}")
    if p.chain_commit_epoch >= epoch:
        raise _illegal(f"chain commit epoch {p.chain_commit_epoch} must be less than the "
                       f"current epoch {epoch}")
    if rt.tickets(DomainTag.PoStChainCommit, p.chain_commit_epoch, b"") != p.chain_commit_rand:
        raise _illegal("post commit randomness mismatched (the chain forked since)")
    dl = m.deadlines[p.deadline]
    indexes = [pp.index for pp in p.partitions]
    if len(set(indexes)) != len(indexes):
        raise _illegal("duplicate partitions proven")
    for i in indexes:
        if not 0 <= i < len(dl.partitions):
            raise ActorError(ExitCode.USR_NOT_FOUND, f"no such partition {i} in deadline {p.deadline}")
    already = sorted(set(indexes) & dl.posted)
    if already:
        raise _illegal(f"partition already proven: {already}")

    randomness = rt.beacon(DomainTag.WindowedPoStChallengeSeed, di.challenge,
                           address_entropy(m.actor_id))
    proving_any = False
    for pp, proof in zip(p.partitions, p.proofs):
        part = dl.partitions[pp.index]
        skipped = set(pp.skipped)
        outside = sorted(skipped - set(part.sectors))
        if outside:
            raise _illegal(f"skipped faults contain sectors outside partition {pp.index}: {outside}")
        new_faults = skipped - part.faults             # record_skipped_faults
        part.faults |= new_faults
        part.unproven -= new_faults
        part.recoveries -= skipped
        m.skipped_faults += len(new_faults)
        part.faults -= part.recoveries                 # recover_faults: assumed proven now
        part.recoveries = set()
        part.unproven = set()                          # activate_unproven
        proven = [n for n in part.sectors if n not in part.faults]
        dl.posted.add(pp.index)
        if not proven:
            continue
        proving_any = True
        ok = _verify("WindowPoSt verifier", rt.verify_window_post, seal_proof=m.seal_proof,
                     randomness=randomness, sectors=[(n, m.sectors[n].comm_r) for n in proven],
                     proof=proof)
        if not ok:
            raise _illegal(f"invalid PoSt proof for partition {pp.index} of deadline {p.deadline}")
    if not proving_any:
        raise _illegal("cannot prove partitions with no active sectors")


# -- faults and recoveries ------------------------------------------------------------------------

def _declared(m: MinerState, pol: Policy, epoch: int, decls: list[M.SectorDeclaration],
              what: str) -> list[tuple[Partition, set[int]]]:
    """Validate every declaration first (all or nothing); return (partition, sectors) pairs."""
    period_start = proving_deadline(m, pol, epoch).period_start
    out = []
    for dec in decls:
        if not 0 <= dec.deadline < pol.period_deadlines:
            raise _illegal(f"invalid {what} declaration deadline {dec.deadline}, "
                           f"must be < {pol.period_deadlines}")
        target = next_not_elapsed(deadline_info(pol, period_start, dec.deadline, epoch), pol)
        if target.fault_cutoff_passed():
            raise _illegal(f"late {what} declaration at deadline {dec.deadline}: its fault cutoff "
                           f"{target.fault_cutoff} has passed (epoch {epoch})")
        dl = m.deadlines[dec.deadline]
        if not 0 <= dec.partition < len(dl.partitions):
            raise ActorError(ExitCode.USR_NOT_FOUND,
                             f"no partition {dec.partition} in deadline {dec.deadline}")
        part = dl.partitions[dec.partition]
        sectors = set(dec.sectors)
        outside = sorted(sectors - set(part.sectors))
        if outside:
            raise _illegal(f"{what} declaration names sectors outside deadline {dec.deadline} "
                           f"partition {dec.partition}: {outside}")
        out.append((part, sectors))
    return out


def declare_faults(m: MinerState, rt: Runtime, p: M.DeclareFaultsParams) -> None:
    _check_worker(m, rt)
    for part, sectors in _declared(m, rt.policy, rt.epoch, p.faults, "fault"):
        new_faults = sectors - part.faults
        part.faults |= new_faults
        part.unproven -= new_faults
        part.recoveries -= sectors                     # a fault retracts a recovery


def declare_faults_recovered(m: MinerState, rt: Runtime, p: M.DeclareFaultsRecoveredParams) -> None:
    _check_worker(m, rt)
    for part, sectors in _declared(m, rt.policy, rt.epoch, p.recoveries, "recovery"):
        part.recoveries |= sectors & part.faults      # sectors not faulty are ignored


# -- termination ------------------------------------------------------------------------------------

DECLARATIONS_MAX = 3000          # builtin-actors policy: declarations in one message
ADDRESSED_SECTORS_MAX = 25_000   # ... and sectors they name


def _check_addressed(declarations: list) -> None:
    """builtin-actors' limits on the declarations of one message and the sectors they name."""
    if len(declarations) > DECLARATIONS_MAX:
        raise _illegal(f"too many declarations {len(declarations)}, limit {DECLARATIONS_MAX}")
    if sum(len(d.sectors) for d in declarations) > ADDRESSED_SECTORS_MAX:
        raise _illegal(f"too many sectors, limit {ADDRESSED_SECTORS_MAX}")


def _leave(m: MinerState, part: Partition, sectors: set[int]) -> None:
    """Terminated or expired sectors leave their partition and the miner's sectors, and
    their pledge is released."""
    part.sectors = [n for n in part.sectors if n not in sectors]
    part.terminated |= sectors
    part.unproven -= sectors
    part.faults -= sectors
    part.recoveries -= sectors
    for n in sectors:
        gone = m.sectors.pop(n, None)
        if gone is not None:
            m.initial_pledge -= gone.initial_pledge


def terminate_sectors(m: MinerState, rt: Runtime, p: M.TerminateSectorsParams) -> bytes:
    """Terminate live sectors (all or nothing): each leaves its partition and the miner's
    sectors, and its power goes. A deadline being proven, or the next, is immutable: its
    sectors cannot be terminated now (builtin-actors' rule)."""
    _check_worker(m, rt)
    _check_addressed(p.terminations)
    pol, epoch = rt.policy, rt.epoch
    period_start = proving_deadline(m, pol, epoch).period_start
    merged: dict[tuple[int, int], set[int]] = {}       # as the actor's DeadlineSectorMap
    for t in p.terminations:
        merged.setdefault((t.deadline, t.partition), set()).update(t.sectors)
    todo = []
    for (deadline, partition), sectors in merged.items():
        t = M.SectorDeclaration(deadline=deadline, partition=partition, sectors=sorted(sectors))
        if not 0 <= t.deadline < pol.period_deadlines:
            raise _illegal(f"invalid termination deadline {t.deadline}, must be < {pol.period_deadlines}")
        if not deadline_is_mutable(pol, period_start, t.deadline, epoch):
            raise _illegal(f"cannot terminate sectors in immutable deadline {t.deadline}")
        dl = m.deadlines[t.deadline]
        if not 0 <= t.partition < len(dl.partitions):
            raise ActorError(ExitCode.USR_NOT_FOUND, f"no partition {t.partition} in deadline {t.deadline}")
        part, sectors = dl.partitions[t.partition], set(t.sectors)
        if not sectors <= set(part.sectors):
            raise _illegal(f"can only terminate live sectors: {sorted(sectors - set(part.sectors))[:8]} "
                           f"are not live in deadline {t.deadline} partition {t.partition}")
        todo.append((part, sectors))
    for part, sectors in todo:
        _leave(m, part, sectors)
        m.terminated += len(sectors)
        penalize(m, len(sectors) * pol.per_sector(pol.termination_fee, m.sector_size))
    return _ret_enc.encode(M.TerminateSectorsReturn(done=True))


def extend_sector_expiration2(m: MinerState, rt: Runtime, p: M.ExtendSectorExpiration2Params) -> None:
    """New expirations for live sectors (all or nothing), never earlier than their own."""
    _check_worker(m, rt)
    _check_addressed(p.extensions)
    pol, epoch = rt.policy, rt.epoch
    for x in p.extensions:
        if not 0 <= x.deadline < pol.period_deadlines:
            raise _illegal(f"deadline {x.deadline} not in range 0..{pol.period_deadlines}")
        dl = m.deadlines[x.deadline]
        if not 0 <= x.partition < len(dl.partitions):
            raise ActorError(ExitCode.USR_NOT_FOUND, f"no such partition {x.deadline}:{x.partition}")
        outside = sorted(set(x.sectors) - set(dl.partitions[x.partition].sectors))
        if outside:
            raise ActorError(ExitCode.USR_NOT_FOUND, f"sectors {outside[:8]} are not live in "
                             f"deadline {x.deadline} partition {x.partition}")
        for n in x.sectors:
            s = m.sectors[n]
            if not s.expiration or x.new_expiration < s.expiration:     # 0: it never expires
                raise _illegal(f"cannot reduce sector expiration to {x.new_expiration} from "
                               f"{s.expiration or 'never'}")
            _validate_expiration(pol, epoch, s.activation, x.new_expiration)
            s.expiration = x.new_expiration


METHOD_IMPLS: dict[str, Callable] = {
    "PreCommitSector": pre_commit_sector,
    "PreCommitSectorBatch2": pre_commit_sector_batch2,
    "ProveCommitSector": prove_commit_sector,
    "ProveCommitSectors3": prove_commit_sectors3,
    "SubmitWindowedPoSt": submit_windowed_post,
    "DeclareFaults": declare_faults,
    "DeclareFaultsRecovered": declare_faults_recovered,
    "TerminateSectors": terminate_sectors,
    "ExtendSectorExpiration2": extend_sector_expiration2,
    "ProveReplicaUpdates3": prove_replica_updates3,
}
assert METHOD_IMPLS.keys() == M.METHODS.keys()


# -- the end of each epoch (the actor's cron) -------------------------------------------------------

def end_of_epoch(m: MinerState, policy: Policy, epoch: int) -> None:
    """After the epoch's messages: drop pre-commits a finality past their prove-by epoch,
    their deposits burnt (the actor also cleans up late, ExpiredPreCommitCleanUpDelay); vest
    a share of the locked rewards and repay fee debt; and when the epoch is the last of the
    current deadline (Close - 1), run the deadline's end."""
    for n in [n for n, pc in m.precommits.items() if epoch >= pc.prove_by + policy.chain_finality]:
        pc = m.precommits.pop(n)
        m.precommit_deposits -= pc.deposit
        _burn(m, pc.deposit)
        m.expired_precommits += 1
    if m.locked_funds:             # a 1/reward_vesting share each epoch: a decay, not tranches
        m.locked_funds -= max(m.locked_funds // policy.reward_vesting, 1)
    if m.fee_debt:
        repay_debts(m, required=False)
    di = proving_deadline(m, policy, epoch)
    if epoch == di.close - 1:
        process_deadline_end(m, policy, di.index, epoch)


def process_deadline_end(m: MinerState, policy: Policy, index: int, epoch: int) -> None:
    """Partitions not proven this window: every live sector becomes faulty (unproven ones
    never had power; pending recoveries failed). Then one penalty and one fault fee per
    faulty sector, and the sectors whose expiration has passed leave (expired)."""
    dl = m.deadlines[index]
    for i, part in enumerate(dl.partitions):
        if i in dl.posted:
            continue
        live = set(part.sectors)
        if not part.recoveries and part.faults == live:
            continue                                   # all faulty already, nothing recovering
        m.detected_faults += len(live - part.faults)
        part.faults = live
        part.recoveries = set()
        part.unproven = set()
    faulty = sum(len(part.faults) for part in dl.partitions)
    m.penalties += faulty
    if faulty:
        penalize(m, faulty * policy.per_sector(policy.fault_fee, m.sector_size))
    dl.posted = set()
    for part in dl.partitions:
        expired = {n for n in part.sectors if 0 < m.sectors[n].expiration <= epoch}
        if expired:
            _leave(m, part, expired)
            m.expired += len(expired)


# -- views (what queries answer) -------------------------------------------------------------------

class PartitionView(msgspec.Struct, kw_only=True):
    index: int
    sectors: list[int]
    active: list[int]
    unproven: list[int]
    faults: list[int]
    recoveries: list[int]


class DeadlineView(msgspec.Struct, kw_only=True):
    index: int
    partitions: list[PartitionView]
    posted: list[int]                  # partitions proven in the current window


class SectorView(msgspec.Struct, kw_only=True):
    number: int
    state: str                         # "unproven" | "active" | "faulty" | "recovering"
    seal_proof: int
    sealed_cid: str
    unsealed_cid: str
    activation: int
    deadline: int
    partition: int
    expiration: int = 0                # 0: never
    sector_key_cid: str = ""           # SnapDeals: the CC replica's sealed CID, once updated


class MinerView(msgspec.Struct, kw_only=True):
    actor_id: int
    address: str
    worker: str
    control: list[str]
    seal_proof: int
    sector_size: int
    partition_sectors: int
    period_offset: int
    power: int                         # active sectors × sector size, bytes
    sectors: int
    active: int
    unproven: int
    faulty: int
    recovering: int
    precommits: int
    penalties: int
    detected_faults: int
    skipped_faults: int
    expired_precommits: int
    terminated: int = 0
    expired: int = 0
    counted: bool = True               # false from a Lotus node: precommits to expired read 0, unknown
    deadline: DeadlineInfo             # the current proving deadline
    # funds, nanoFIL
    balance: int = 0
    available: int = 0                 # balance less everything locked and owed
    precommit_deposits: int = 0
    initial_pledge: int = 0
    vesting: int = 0                   # rewards not vested yet
    fee_debt: int = 0
    burnt: int = 0
    accounts: dict[str, int] = {}      # the balance of its worker and control addresses


def partition_view(index: int, p: Partition) -> PartitionView:
    return PartitionView(index=index, sectors=list(p.sectors), active=sorted(p.active()),
                         unproven=sorted(p.unproven), faults=sorted(p.faults),
                         recoveries=sorted(p.recoveries))


def deadline_view(m: MinerState, index: int) -> DeadlineView:
    dl = m.deadlines[index]
    return DeadlineView(index=index, partitions=[partition_view(i, p) for i, p in enumerate(dl.partitions)],
                        posted=sorted(dl.posted))


def sector_view(m: MinerState, number: int) -> SectorView | None:
    s = m.sectors.get(number)
    if s is None:
        return None
    part = m.deadlines[s.deadline].partitions[s.partition]
    state = ("recovering" if number in part.recoveries else "faulty" if number in part.faults
             else "unproven" if number in part.unproven else "active")
    return SectorView(number=s.number, state=state, seal_proof=s.seal_proof, sealed_cid=s.sealed_cid,
                      unsealed_cid=s.unsealed_cid, activation=s.activation, deadline=s.deadline,
                      partition=s.partition, expiration=s.expiration, sector_key_cid=s.sector_key_cid)


def miner_view(m: MinerState, policy: Policy, epoch: int) -> MinerView:
    parts = [p for d in m.deadlines for p in d.partitions]
    active = sum(len(p.active()) for p in parts)
    return MinerView(
        actor_id=m.actor_id, address=f"f0{m.actor_id}", worker=m.worker, control=list(m.control),
        seal_proof=m.seal_proof,
        sector_size=m.sector_size, partition_sectors=m.partition_sectors, period_offset=m.period_offset,
        power=active * m.sector_size, sectors=len(m.sectors), active=active,
        unproven=sum(len(p.unproven) for p in parts), faulty=sum(len(p.faults) for p in parts),
        recovering=sum(len(p.recoveries) for p in parts), precommits=len(m.precommits),
        penalties=m.penalties, detected_faults=m.detected_faults, skipped_faults=m.skipped_faults,
        expired_precommits=m.expired_precommits, terminated=m.terminated,
        expired=m.expired, deadline=proving_deadline(m, policy, epoch),
        balance=m.balance, available=available_balance(m), precommit_deposits=m.precommit_deposits,
        initial_pledge=m.initial_pledge, vesting=m.locked_funds, fee_debt=m.fee_debt, burnt=m.burnt)
