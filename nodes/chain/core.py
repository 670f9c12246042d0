"""The devnet chain, pure: tipsets, the message pool, execution, randomness and reorgs.
No clock, no disk, no bus: the shell calls `produce(timestamp)` once per epoch, `push`
for each message, `reorg(depth)` on request, and persists what they return.

- One tipset per epoch, never a null round. Epoch 0 is genesis (miners are created there,
  with their genesis balance, as do their worker and control addresses).
- Every message pays its gas (nodes.chain.funds) at the tipset's base fee, which is burnt,
  and moves its value to the miner actor if the method succeeds. A tipset holds messages
  up to the block gas limit; the base fee then follows how full it was. Each epoch the
  policy's reward is shared by the miners with power.
- The messages of tipset E run at epoch E, then every miner's end-of-epoch (cron) runs.
  Receipts are kept with the tipset that included the message (Lotus keeps them one
  tipset later; nothing here depends on that).
- A tipset's ticket chains from its parent's and, like its beacon entry, depends on the
  fork that produced it: a reorg starts a new fork, so every epoch it replaces draws new
  randomness. (A real drand beacon would not change on a fork; this devnet's does, so a
  reorg past a deadline's Challenge epoch changes the WindowPoSt challenge.)
- State after each of the last `chain_finality` epochs is kept encoded, so `reorg(depth)`
  (depth ≤ finality) restores it, returns the reverted tipsets' messages to the pool and
  applies `depth` new empty tipsets: the pool's messages land in the next one produced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain import miner as actor
from zqnode.nodes.chain.filecoin.address import Address, AddressError
from zqnode.nodes.chain.funds import FIL, MAX_SUPPLY, format_fil, gas_fee, gas_used, next_base_fee
from zqnode.nodes.chain.messages import ExitCode, Message, MessageError, MessageLookup, Receipt, Tipset
from zqnode.nodes.chain.policy import Policy, policy as policy_named
from zqnode.nodes.chain.randomness import SOURCES, RandomnessError, blake2b256, default_source, domain_tag, draw

MAX_UUID = 64                     # characters of a sender's message uuid
MAX_ADDRESS = 64                  # characters of an account's address
MAX_PENDING = 1000                # messages of one sender in the pool (Lotus's maxActorPendingMessages)


class ReorgError(ValueError):
    pass


class NotFound(ValueError):
    pass


def _no_update_verifier(**kw) -> bool:
    raise NotImplementedError("this chain has no replica update verifier")


@dataclass
class Verifiers:
    """proofs.porep.verify_seal, proofs.post.verify_window_post and
    proofs.update.verify_update, or stand-ins."""
    verify_seal: Callable[..., bool]
    verify_window_post: Callable[..., bool]
    verify_replica_update: Callable[..., bool] = _no_update_verifier


class MinerSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    actor_id: int = 1000               # the miner's id: f0<actor_id>
    worker: str = "t0100"              # the address its messages come from
    control: list[str] = []            # control addresses: they may send its messages too
    seal_proof: int = 5                # StackedDrg2KiBV1_1


class Genesis(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    network: str = "devnet"            # a policy name: devnet | mainnet
    seed: str = "zqnode-devnet"        # different seeds, different chains
    timestamp: float = 0.0             # the genesis tipset's timestamp (unix seconds)
    balance: int = 1000 * FIL          # nanoFIL each miner's worker and control addresses start with
    miner_balance: int = 100 * FIL     # nanoFIL each miner actor starts with
    miners: list[MinerSpec] = msgspec.field(default_factory=lambda: [MinerSpec()])   # the miners at genesis


def failed_receipt(e: Exception) -> Receipt:
    """The receipt of an actor method that raised (ActorError or RandomnessError)."""
    if isinstance(e, actor.ActorError):
        return Receipt(exit_code=e.exit_code, error=e.message)
    return Receipt(exit_code=ExitCode.USR_ILLEGAL_ARGUMENT, error=str(e))


class ChainState(msgspec.Struct, kw_only=True):
    miners: dict[int, actor.MinerState] = {}
    nonces: dict[str, int] = {}        # next nonce each sender's next message must carry
    balances: dict[str, int] = {}      # nanoFIL of each account
    base_fee: int = 0                  # attoFIL per gas unit, for the next tipset's messages


class HeadChange(msgspec.Struct, kw_only=True):
    reverted: list[Tipset] = []        # newest first (as Lotus's HCRevert order)
    applied: list[Tipset] = []         # oldest first


_enc = msgspec.msgpack.Encoder()
_state_dec = msgspec.msgpack.Decoder(ChainState)


def _gas_of(msg: Message) -> int:
    """The gas of a pooled message (its params decoded when it was pushed)."""
    return gas_used(msg.method, M.decode_params(msg.method, msg.params))


def _i64(n: int) -> bytes:
    return n.to_bytes(8, "big", signed=True)


class Chain:
    def __init__(self, genesis: Genesis, verifiers: Verifiers, *, _restoring: bool = False):
        self.genesis = genesis
        self.policy: Policy = policy_named(genesis.network)
        self.verifiers = verifiers
        self.fork = 0
        self.tipsets: list[Tipset] = []
        self.state = ChainState()
        self.pool: dict[str, Message] = {}               # id -> message, in execution order
        self.sent: dict[str, str] = {}                    # a sender's uuid -> the message id
        self._states: dict[int, bytes] = {}               # epoch -> encoded state after it
        self._landed: dict[str, tuple[int, int]] = {}     # id -> (epoch, index)
        if _restoring:
            return
        ids = [m.actor_id for m in genesis.miners]
        if len(set(ids)) != len(ids):
            raise ValueError(f"genesis names a miner twice: {ids}")
        for spec in genesis.miners:
            self.state.miners[spec.actor_id] = actor.new_miner(
                self.policy, spec.actor_id, spec.worker, spec.seal_proof, 0, control=spec.control)
        self._genesis_funds(self.state)
        seed = genesis.seed.encode()
        ticket = blake2b256(b"zqnode genesis ticket" + seed)
        self._append(Tipset(epoch=0, key=self._key("", 0, ticket, []), parent="",
                            timestamp=genesis.timestamp, fork=0, ticket=ticket,
                            beacon=self._beacon(0, 0), messages=[], receipts=[]))

    def _genesis_funds(self, state: ChainState) -> None:
        for spec in self.genesis.miners:
            if spec.actor_id in state.miners:
                state.miners[spec.actor_id].balance += self.genesis.miner_balance
            for address in (spec.worker, *spec.control):
                state.balances[address] = state.balances.get(address, 0) + self.genesis.balance
        state.base_fee = state.base_fee or self.policy.initial_base_fee

    # -- persistence -------------------------------------------------------------------
    def state_blob(self, epoch: int) -> bytes:
        """The encoded state after `epoch` (kept for the last finality epochs)."""
        return self._states[epoch]

    @classmethod
    def restore(cls, genesis: Genesis, verifiers: Verifiers, *, tipsets: list[Tipset],
                states: dict[int, bytes], pool: list[Message], fork: int,
                sent: dict[str, str] | None = None) -> "Chain":
        """The chain as persisted: every tipset, the states of the last epochs (at least the
        head's), the pool in order, and the fork counter."""
        if not tipsets or [t.epoch for t in tipsets] != list(range(len(tipsets))):
            raise ValueError("persisted tipsets are not a contiguous chain from genesis")
        head = tipsets[-1].epoch
        if head not in states:
            raise ValueError(f"no persisted state for the head epoch {head}")
        c = cls(genesis, verifiers, _restoring=True)
        c.fork = fork
        for ts in tipsets:
            c._index(ts)
        c._states = {e: b for e, b in states.items() if e >= head - c.policy.chain_finality}
        for e, blob in c._states.items():  # a chain from before funds: its genesis funds now
            state = _state_dec.decode(blob)     # (in every kept state: a reorg keeps them)
            if not state.base_fee:
                c._genesis_funds(state)
                c._states[e] = _enc.encode(state)
        c.state = _state_dec.decode(c._states[head])
        c.pool = {m.id: m for m in pool}
        c.sent = dict(sent or {})
        return c

    # -- reading ------------------------------------------------------------------------
    @property
    def head(self) -> Tipset:
        return self.tipsets[-1]

    def tipset(self, epoch: int) -> Tipset:
        if not 0 <= epoch <= self.head.epoch:
            raise NotFound(f"no tipset at epoch {epoch} (head is {self.head.epoch})")
        return self.tipsets[epoch]

    def randomness(self, tag: int, epoch: int, entropy: bytes = b"", source: str = "") -> bytes:
        """Ticket or beacon randomness (by default the source the miner actor uses for the
        tag). Epochs before genesis draw from genesis' entry with their own epoch."""
        tag = domain_tag(tag)
        source = source or default_source(tag)
        if source not in SOURCES:
            raise RandomnessError(f"unknown randomness source {source!r} (use tickets or beacon)")
        if epoch > self.head.epoch:
            raise RandomnessError(f"epoch {epoch} is after the head ({self.head.epoch})")
        ts = self.tipsets[max(epoch, 0)]
        return draw(ts.ticket if source == "tickets" else ts.beacon, tag, epoch, entropy)

    def balance(self, address: str) -> int:
        return self.state.balances.get(address, 0)

    def fund(self, address: str, amount: int) -> int:
        """Devnet: add `amount` nanoFIL to an account, or to a miner actor's balance when
        `address` is f0<id> (or t0<id>) of a miner. Returns the new balance. It joins the
        head's state: a reorg past the head takes it back, as it would a message."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise MessageError(f"an amount to fund must be a positive number of nanoFIL, got {amount!r}")
        if not address or len(address) > MAX_ADDRESS:
            raise MessageError(f"an address has 1 to {MAX_ADDRESS} characters")
        supply = sum(self.state.balances.values()) + sum(m.balance for m in self.state.miners.values())
        if supply + amount > MAX_SUPPLY:
            raise MessageError(f"the chain holds {format_fil(supply)}: adding {format_fil(amount)} "
                               f"would pass Filecoin's whole supply, {format_fil(MAX_SUPPLY)}")
        miner = self._miner_of(address)
        if miner is not None:
            miner.balance += amount
            balance = miner.balance
        else:
            balance = self.state.balances[address] = self.balance(address) + amount
        self._states[self.head.epoch] = _enc.encode(self.state)
        return balance

    def _miner_of(self, address: str) -> actor.MinerState | None:
        try:
            return self.state.miners.get(Address.parse(address).actor_id)
        except AddressError:
            return None

    def next_nonce(self, sender: str) -> int:
        pending = sum(1 for m in self.pool.values() if m.sender == sender)
        return self.state.nonces.get(sender, 0) + pending

    def lookup(self, msg_id: str) -> MessageLookup:
        head = self.head.epoch
        where = self._landed.get(msg_id)
        if where is not None:
            ts = self.tipsets[where[0]]
            return MessageLookup(msg_id=msg_id, status="landed", epoch=ts.epoch, tipset=ts.key,
                                 receipt=ts.receipts[where[1]], head=head)
        if msg_id in self.pool:
            return MessageLookup(msg_id=msg_id, status="pending", head=head)
        return MessageLookup(msg_id=msg_id, status="unknown", head=head)

    def message(self, msg_id: str) -> Message:
        where = self._landed.get(msg_id)
        if where is not None:
            return self.tipsets[where[0]].messages[where[1]]
        if msg_id in self.pool:
            return self.pool[msg_id]
        raise NotFound(f"no message {msg_id}")

    def miner(self, actor_id: int) -> actor.MinerState:
        """The miner's state (read it, do not change it)."""
        m = self.state.miners.get(actor_id)
        if m is None:
            raise NotFound(f"no miner f0{actor_id} (miners: "
                           f"{', '.join(f'f0{i}' for i in sorted(self.state.miners))})")
        return m

    def miner_view(self, actor_id: int) -> actor.MinerView:
        m = self.miner(actor_id)
        view = actor.miner_view(m, self.policy, self.head.epoch)
        view.accounts = {a: self.balance(a) for a in (m.worker, *m.control)}
        return view

    def deadline(self, actor_id: int, epoch: int | None = None):
        """The miner's proving deadline at `epoch` (default: the head's)."""
        return actor.proving_deadline(self.miner(actor_id), self.policy,
                                      self.head.epoch if epoch is None else epoch)

    def deadline_view(self, actor_id: int, index: int) -> actor.DeadlineView:
        if not 0 <= index < self.policy.period_deadlines:
            raise NotFound(f"no deadline {index} (0..{self.policy.period_deadlines - 1})")
        return actor.deadline_view(self.miner(actor_id), index)

    def sector(self, actor_id: int, number: int) -> actor.SectorView | None:
        return actor.sector_view(self.miner(actor_id), number)

    def precommit(self, actor_id: int, number: int) -> actor.PreCommitOnChain | None:
        return self.miner(actor_id).precommits.get(number)

    # -- the pool --------------------------------------------------------------------------
    def push(self, msg: Message, uuid: str = "") -> Message:
        """Check and add a message to the pool; returns it with its nonce. A message the
        pool refuses raises MessageError and changes nothing. A `uuid` already pushed with
        returns that message, as Lotus's MpoolPushMessage does with a MsgUuid: a sender that
        did not hear the answer asks again without sending twice."""
        if uuid in self.sent:
            try:
                known = self.message(self.sent[uuid])
            except NotFound:                   # the chain no longer has it: a new one
                known = None
            if known is not None:
                if (known.sender, known.to, known.method, known.params, known.value) != (
                        msg.sender, msg.to, msg.method, msg.params, msg.value):
                    raise MessageError(f"uuid {uuid!r} was pushed with another message ({known.id})")
                return known
        if len(uuid) > MAX_UUID:
            raise MessageError(f"a message uuid has at most {MAX_UUID} characters")
        if not msg.sender:
            raise MessageError("message has no sender")
        params = M.decode_params(msg.method, msg.params)    # unknown method, bad parameters
        if msg.to not in self.state.miners:
            raise MessageError(f"no actor f0{msg.to} to send {msg.method} to")
        if isinstance(msg.value, bool) or not isinstance(msg.value, int) or not 0 <= msg.value <= MAX_SUPPLY:
            raise MessageError(f"a message's value is a number of nanoFIL in 0..{MAX_SUPPLY}, got {msg.value!r}")
        pending = [m for m in self.pool.values() if m.sender == msg.sender]
        if len(pending) >= MAX_PENDING:
            raise MessageError(f"{msg.sender} has {len(pending)} messages in the pool already, the most "
                               f"one sender may (Lotus's maxActorPendingMessages)")
        gas = gas_used(msg.method, params)
        if gas > self.policy.block_gas_limit:
            raise MessageError(f"the message would use {gas} gas, over the block gas limit "
                               f"{self.policy.block_gas_limit}: split it")
        need = sum(self._cost(m) for m in pending)
        need += msg.value + gas_fee(gas, self.state.base_fee)
        if self.balance(msg.sender) < need:
            raise MessageError(f"not enough funds in {msg.sender}: {format_fil(self.balance(msg.sender))}, "
                               f"its messages in the pool and this one need {format_fil(need)} "
                               f"(value and gas at the base fee)")
        expected = self.next_nonce(msg.sender)
        if msg.nonce == -1:
            msg = msgspec.structs.replace(msg, nonce=expected)
        elif msg.nonce != expected:
            raise MessageError(f"wrong nonce {msg.nonce} for {msg.sender}: expected {expected}")
        self.pool[msg.id] = msg
        if uuid:
            self.sent[uuid] = msg.id
        return msg

    def _cost(self, msg: Message) -> int:
        """What a pooled message takes from its sender at the current base fee."""
        return msg.value + gas_fee(_gas_of(msg), self.state.base_fee)

    # -- producing tipsets -------------------------------------------------------------------
    def produce(self, timestamp: float) -> HeadChange:
        """The next tipset, with every pool message whose nonce is next in line."""
        return HeadChange(applied=[self._mine(timestamp, take_pool=True)])

    def advance(self, n: int, timestamp: float = 0.0) -> list[HeadChange]:
        """`n` tipsets in a row (tests and simulations)."""
        return [self.produce(timestamp) for _ in range(n)]

    def reorg(self, depth: int, timestamp: float) -> HeadChange:
        """Revert the last `depth` tipsets and apply `depth` new, empty ones on a new fork."""
        limit = min(self.policy.chain_finality, self.head.epoch)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= limit:
            raise ReorgError(f"reorg depth must be in 1..{limit} (finality "
                             f"{self.policy.chain_finality}, head {self.head.epoch}), got {depth!r}")
        base = self.head.epoch - depth
        reverted = self.tipsets[base + 1:]
        del self.tipsets[base + 1:]
        returned: dict[str, Message] = {}
        for ts in reverted:
            for m in ts.messages:
                del self._landed[m.id]
                returned[m.id] = m
        self.pool = {**returned, **self.pool}
        for e in [e for e in self._states if e > base]:
            del self._states[e]
        self.state = _state_dec.decode(self._states[base])
        self.fork += 1
        applied = [self._mine(timestamp, take_pool=False) for _ in range(depth)]
        return HeadChange(reverted=list(reversed(reverted)), applied=applied)

    def _mine(self, timestamp: float, take_pool: bool) -> Tipset:
        parent = self.head
        epoch = parent.epoch + 1
        included, receipts, gas = [], [], 0
        if take_pool:
            for msg in list(self.pool.values()):
                if msg.nonce != self.state.nonces.get(msg.sender, 0):
                    continue                             # not next in line: stays in the pool
                if gas + _gas_of(msg) > self.policy.block_gas_limit:
                    continue                             # the block is full: the next one
                self.state.nonces[msg.sender] = msg.nonce + 1
                receipts.append(self._execute(msg, epoch))
                gas += receipts[-1].gas_used
                included.append(msg)
                del self.pool[msg.id]
        self._reward()
        for m in sorted(self.state.miners):
            actor.end_of_epoch(self.state.miners[m], self.policy, epoch)
        self.state.base_fee = next_base_fee(self.state.base_fee, gas, self.policy.block_gas_target,
                                            self.policy.min_base_fee)
        ticket = blake2b256(b"zqnode ticket" + parent.ticket + _i64(epoch) + _i64(self.fork))
        ts = Tipset(epoch=epoch, key=self._key(parent.key, epoch, ticket, [m.id for m in included]),
                    parent=parent.key, timestamp=timestamp, fork=self.fork, ticket=ticket,
                    beacon=self._beacon(epoch, self.fork), messages=included, receipts=receipts)
        self._append(ts)
        return ts

    def _reward(self) -> None:
        """The epoch's reward, shared by the miners in proportion to their power."""
        if not self.policy.epoch_reward:
            return
        powers = {i: actor.power(m) for i, m in self.state.miners.items()}
        total = sum(powers.values())
        if total:
            for i, p in powers.items():
                actor.add_reward(self.state.miners[i], self.policy.epoch_reward * p // total)

    def _index(self, ts: Tipset) -> None:
        self.tipsets.append(ts)
        for i, m in enumerate(ts.messages):
            self._landed[m.id] = (ts.epoch, i)

    def _append(self, ts: Tipset) -> None:
        self._index(ts)
        self._states[ts.epoch] = _enc.encode(self.state)
        old = ts.epoch - self.policy.chain_finality
        for e in [e for e in self._states if e < old]:
            del self._states[e]

    def _beacon(self, epoch: int, fork: int) -> bytes:
        return blake2b256(b"zqnode beacon" + self.genesis.seed.encode() + _i64(epoch) + _i64(fork))

    @staticmethod
    def _key(parent: str, epoch: int, ticket: bytes, ids: list[str]) -> str:
        return blake2b256(bytes.fromhex(parent) + _i64(epoch) + ticket
                          + b"".join(bytes.fromhex(i) for i in ids)).hex()

    def simulate(self, msg: Message) -> Receipt:
        """The receipt `msg` would get in the next tipset, changing nothing (Lotus StateCall;
        the nonce is not checked)."""
        return self._execute(msg, self.head.epoch + 1, commit=False)

    def _execute(self, msg: Message, epoch: int, commit: bool = True) -> Receipt:
        """Gas first (burnt, whatever happens next), then the method with the value."""
        miner = self.state.miners.get(msg.to)
        if miner is None:
            return Receipt(exit_code=ExitCode.SYS_INVALID_RECEIVER, error=f"no actor f0{msg.to}")
        try:
            params = M.decode_params(msg.method, msg.params)
        except MessageError as e:
            return Receipt(exit_code=ExitCode.USR_ILLEGAL_ARGUMENT, error=str(e))
        gas = gas_used(msg.method, params)
        fee, held = gas_fee(gas, self.state.base_fee), self.balance(msg.sender)
        if commit:
            self.state.balances[msg.sender] = held - min(fee, held)
        if held < fee + msg.value:
            return Receipt(exit_code=ExitCode.SYS_INSUFFICIENT_FUNDS, gas_used=gas, error=(
                f"{msg.sender} holds {format_fil(held)}: the message needs {format_fil(msg.value)} "
                f"of value and {format_fil(fee)} of gas"))
        rt = actor.Runtime(epoch=epoch, policy=self.policy, sender=msg.sender,
                           tickets=lambda t, e, x: self.randomness(t, e, x, "tickets"),
                           beacon=lambda t, e, x: self.randomness(t, e, x, "beacon"),
                           verify_seal=self.verifiers.verify_seal,
                           verify_window_post=self.verifiers.verify_window_post,
                           verify_replica_update=self.verifiers.verify_replica_update)
        receipt = self._apply_method(msg.to, miner, rt, msg.method, params, commit, msg.value)
        if commit and receipt.exit_code == ExitCode.OK:
            self.state.balances[msg.sender] -= msg.value
        return msgspec.structs.replace(receipt, gas_used=gas)

    def _apply_method(self, to: int, miner, rt, method: str, params, commit: bool, value: int) -> Receipt:
        """The actor method, with the message's value, as a transaction: run on a copy of
        the miner's state, which replaces it only when the method succeeds (and `commit`)."""
        work = msgspec.msgpack.decode(_enc.encode(miner), type=actor.MinerState)
        work.balance += value
        try:
            ret = actor.METHOD_IMPLS[method](work, rt, params)
        except (actor.ActorError, RandomnessError) as e:
            return failed_receipt(e)
        if commit:
            self.state.miners[to] = work
        return Receipt(exit_code=ExitCode.OK, return_value=ret or b"")
