"""Driving a chain by hand, for tests and simulations: seal sectors, prove deadlines and
step epochs with the fake verifiers (nodes.chain.verifiers.FAKE), whose proofs commit to
exactly the inputs the real verifiers would get."""
from __future__ import annotations

import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.core import Chain, Genesis, MinerSpec, Verifiers
from zqnode.nodes.chain.randomness import DomainTag, address_entropy, blake2b256
from zqnode.nodes.chain.verifiers import FAKE, fake_seal_proof, fake_window_post_proof
from zqnode.proofs import cid as cids


def comm_r_of(miner: int, sector: int) -> bytes:
    return blake2b256(b"comm_r %d %d" % (miner, sector))


def comm_d_of(miner: int, sector: int) -> bytes:
    return blake2b256(b"comm_d %d %d" % (miner, sector))


class ChainDriver:
    def __init__(self, network: str = "devnet", miners: list[MinerSpec] | None = None,
                 verifiers: Verifiers = FAKE, seed: str = "test"):
        self.chain = Chain(Genesis(network=network, seed=seed,
                                   miners=miners if miners is not None else [MinerSpec()]),
                           verifiers)
        self.policy = self.chain.policy

    @property
    def epoch(self) -> int:
        return self.chain.head.epoch

    def worker(self, miner: int) -> str:
        return self.chain.miner(miner).worker

    def send(self, miner: int, params, sender: str | None = None, nonce: int = -1) -> str:
        msg = M.Message.call(sender or self.worker(miner), miner, params, nonce)
        return self.chain.push(msg).id

    def step(self, n: int = 1) -> None:
        self.chain.advance(n)

    def run_to(self, epoch: int) -> None:
        """Produce tipsets until the head is at `epoch`."""
        if epoch < self.epoch:
            raise ValueError(f"head {self.epoch} is past {epoch}")
        self.step(epoch - self.epoch)

    def receipt(self, msg_id: str) -> M.Receipt:
        look = self.chain.lookup(msg_id)
        assert look.status == "landed", look
        return look.receipt

    # -- sealing ---------------------------------------------------------------------------
    def precommit_params(self, miner: int, sector: int, ticket_epoch: int | None = None,
                         **override) -> M.PreCommitSectorParams:
        m = self.chain.miner(miner)
        if ticket_epoch is None:     # the freshest ticket allowed when it lands next epoch
            ticket_epoch = max(self.epoch + 1 - self.policy.seal_randomness_lookback, 0)
        fields = dict(sector_number=sector, seal_proof=m.seal_proof,
                      sealed_cid=cids.sealed_cid(comm_r_of(miner, sector)),
                      unsealed_cid=cids.piece_cid_v1(comm_d_of(miner, sector)),
                      seal_rand_epoch=ticket_epoch)
        fields.update(override)
        return M.PreCommitSectorParams(**fields)

    def porep(self, miner: int, sector: int) -> bytes:
        """The fake proof for a pre-committed sector, from the chain's ticket and seed."""
        pc = self.chain.precommit(miner, sector)
        entropy = address_entropy(miner)
        return fake_seal_proof(
            seal_proof=pc.seal_proof, miner=miner, sector=sector,
            ticket=self.chain.randomness(DomainTag.SealRandomness, pc.seal_rand_epoch, entropy),
            seed=self.chain.randomness(DomainTag.InteractiveSealChallengeSeed, pc.seed_epoch, entropy),
            comm_d=pc.comm_d, comm_r=pc.comm_r)

    def seal(self, miner: int, sector: int, **override) -> M.SectorLocation:
        """Pre-commit (`override`: its params), wait for the seed, prove: the sector is then
        on chain (unproven)."""
        self.run_to(max(self.epoch, self.policy.seal_randomness_lookback))   # a ticket exists
        r = self.receipt_after(self.send(miner, self.precommit_params(miner, sector, **override)))
        assert r.exit_code == 0, r.error
        self.run_to(self.chain.precommit(miner, sector).seed_epoch)
        r = self.receipt_after(self.send(miner, M.ProveCommitSectorParams(
            sector_number=sector, proof=self.porep(miner, sector))))
        assert r.exit_code == 0, r.error
        return msgspec.msgpack.decode(r.return_value, type=M.SectorLocation)

    def receipt_after(self, msg_id: str) -> M.Receipt:
        """Produce the next tipset and return the message's receipt."""
        self.step()
        return self.receipt(msg_id)

    # -- WindowPoSt ----------------------------------------------------------------------------
    def run_to_open(self, miner: int, deadline: int) -> None:
        """Step to the next epoch at which `deadline` is open (its Open epoch, or now)."""
        di = self.chain.deadline(miner)
        if di.index == deadline:
            return
        ahead = (deadline - di.index) % self.policy.period_deadlines
        self.run_to(di.open + ahead * self.policy.challenge_window)

    def post_params(self, miner: int, partitions: list[int], skipped: dict[int, list[int]] | None = None,
                    proof_for: dict[int, bytes] | None = None) -> M.SubmitWindowedPoStParams:
        """A PoSt for the current deadline, valid if it lands before the deadline closes and
        nothing changes in between (recoveries declared count as proven)."""
        skipped = skipped or {}
        m = self.chain.miner(miner)
        di = self.chain.deadline(miner, self.epoch + 1)
        rand = self.chain.randomness(DomainTag.WindowedPoStChallengeSeed, di.challenge,
                                     address_entropy(miner))
        proofs = []
        for i in partitions:
            part = m.deadlines[di.index].partitions[i]
            faults = (part.faults - part.recoveries) | set(skipped.get(i, ()))
            sectors = [(n, m.sectors[n].comm_r) for n in part.sectors if n not in faults]
            proofs.append((proof_for or {}).get(i) or fake_window_post_proof(
                seal_proof=m.seal_proof, randomness=rand, sectors=sectors))
        commit = self.epoch
        return M.SubmitWindowedPoStParams(
            deadline=di.index, partitions=[M.PoStPartition(index=i, skipped=skipped.get(i, []))
                                           for i in partitions],
            proofs=proofs, chain_commit_epoch=commit,
            chain_commit_rand=self.chain.randomness(DomainTag.PoStChainCommit, commit))
