"""ProveReplicaUpdates3 on the devnet chain (SnapDeals): an active CC sector in a mutable
deadline takes its pieces, once, with a proof against its comm_r, the new comm_r and the
pieces' CommD; WindowPoSt then proves it against the new comm_r, and a reorg across the
update gives the old one back."""
import msgspec

from zqnode.nodes.chain import messages as M
from zqnode.nodes.chain.testing import ChainDriver
from zqnode.nodes.chain.verifiers import fake_replica_update_proof
from zqnode.proofs import cid, commp
from zqnode.proofs.merkle import zero_commitment
from zqnode.proofs.params import update_proof_id

MINER = 1000
PIECE = M.PieceManifest(cid=cid.piece_cid_v1(b"\x05" * 32), size=1024)


CC = cid.piece_cid_v1(zero_commitment(2048))


def _active(d: ChainDriver, number: int, unsealed_cid: str = CC):
    """Sector `number` sealed (CC by default) and proven by a WindowPoSt: active."""
    loc = d.seal(MINER, number, unsealed_cid=unsealed_cid)
    d.run_to_open(MINER, loc.deadline)
    r = d.receipt_after(d.send(MINER, d.post_params(MINER, [loc.partition])))
    assert r.exit_code == 0, r.error
    assert d.chain.sector(MINER, number).state == "active"
    return loc


def _mutable(d: ChainDriver, deadline: int) -> None:
    """Step to where `deadline` is neither the current deadline nor the next."""
    while True:
        current = d.chain.deadline(MINER).index
        if (deadline - current) % d.policy.period_deadlines not in (0, 1):
            return
        d.step()


def _update(d: ChainDriver, number: int, loc, comm_r_new: bytes, pieces=(PIECE,), proof=None, **over):
    old = d.chain.miner(MINER).sectors[number].comm_r
    try:
        comm_d = commp.commd([(p.size, cid.parse_piece_cid(p.cid)) for p in pieces], 2048)
    except ValueError:                                           # pieces the actor must refuse
        comm_d = bytes(32)
    kind = update_proof_id(2048)
    proof = proof if proof is not None else fake_replica_update_proof(
        update_proof=kind, comm_r_old=old, comm_d_new=comm_d, comm_r_new=comm_r_new)
    fields = dict(sector_updates=[M.SectorUpdateManifest(
        sector=number, deadline=loc.deadline, partition=loc.partition, new_sealed_cid=cid.sealed_cid(comm_r_new),
        pieces=list(pieces))], sector_proofs=[proof], update_proofs_type=kind)
    fields.update(over)
    return d.receipt_after(d.send(MINER, M.ProveReplicaUpdates3Params(**fields))), comm_d


def test_a_cc_sector_takes_its_data_once_and_is_proven_with_the_new_comm_r():
    d = ChainDriver()
    loc = _active(d, 1)
    before = d.chain.sector(MINER, 1)
    _mutable(d, loc.deadline)
    new = b"\x09" * 31 + b"\x01"
    r, comm_d = _update(d, 1, loc, new)
    assert r.exit_code == 0, r.error
    assert msgspec.msgpack.decode(r.return_value, type=M.BatchReturn).success_count == 1
    after = d.chain.sector(MINER, 1)
    assert (after.sealed_cid, after.sector_key_cid, after.unsealed_cid) == (
        cid.sealed_cid(new), before.sealed_cid, cid.piece_cid_v1(comm_d))
    assert (after.state, after.activation, after.expiration) == ("active", before.activation, before.expiration)
    r, _ = _update(d, 1, loc, b"\x0a" * 31 + b"\x01")            # a second time: it has data now
    assert r.exit_code != 0 and "non-zero data" in r.error
    d.run_to_open(MINER, loc.deadline)                           # the PoSt proves comm_r_new
    r = d.receipt_after(d.send(MINER, d.post_params(MINER, [loc.partition])))
    assert r.exit_code == 0, r.error


def test_a_reorg_across_the_update_gives_the_old_replica_back():
    d = ChainDriver()
    loc = _active(d, 1)
    before = d.chain.sector(MINER, 1)
    _mutable(d, loc.deadline)
    r, _ = _update(d, 1, loc, b"\x09" * 31 + b"\x01")
    assert r.exit_code == 0, r.error
    d.chain.reorg(2, 0.0)
    assert d.chain.sector(MINER, 1) == before


def test_updates_the_actor_refuses():
    d = ChainDriver()
    loc = _active(d, 1)
    new = b"\x09" * 31 + b"\x01"
    d.run_to_open(MINER, (loc.deadline - 1) % d.policy.period_deadlines)     # the next one is immutable
    r, _ = _update(d, 1, loc, new)
    assert r.exit_code != 0 and "immutable deadline" in r.error
    d.run_to_open(MINER, loc.deadline)                           # proven again: still active
    assert d.receipt_after(d.send(MINER, d.post_params(MINER, [loc.partition]))).exit_code == 0
    _mutable(d, loc.deadline)
    for over, why in [
            (dict(proof=b"forged"), "invalid update proof"),
            (dict(update_proofs_type=3), "expected proof type 0"),
            (dict(pieces=[M.PieceManifest(cid=PIECE.cid, size=4096)]), "do not make a sector"),
            (dict(pieces=[M.PieceManifest(cid=cid.sealed_cid(new), size=1024)]), "do not make a sector"),
            (dict(sector_proofs=[]), "mismatched lengths")]:
        r, _ = _update(d, 1, loc, new, **over)
        assert r.exit_code != 0 and why in r.error, (over, r.error)
    wrong = msgspec.structs.replace(loc, partition=loc.partition + 1)
    r, _ = _update(d, 1, wrong, new)
    assert r.exit_code != 0 and "isn't active" in r.error
    unproven = d.seal(MINER, 2, unsealed_cid=CC)                 # on chain, not yet proven
    _mutable(d, unproven.deadline)
    r, _ = _update(d, 2, unproven, new)
    assert r.exit_code != 0 and "isn't active" in r.error
    assert d.chain.sector(MINER, 1).sector_key_cid == ""         # nothing changed
    data = _active(d, 3, unsealed_cid=cid.piece_cid_v1(b"\x07" * 32))   # sealed with data
    _mutable(d, data.deadline)
    r, _ = _update(d, 3, data, new)
    assert r.exit_code != 0 and "non-zero data" in r.error


async def test_the_lotus_api_names_an_updated_sectors_sector_key():
    from zqnode.nodes.chain.lotus.devnet_api import DevnetLotusAPI
    from zqnode.nodes.chain.lotus.reader import LotusReader
    d = ChainDriver()
    loc = _active(d, 1)
    before = d.chain.sector(MINER, 1)
    _mutable(d, loc.deadline)
    new = b"\x09" * 31 + b"\x01"
    assert _update(d, 1, loc, new)[0].exit_code == 0
    api = DevnetLotusAPI(d.chain, 1.0)

    async def call(name, *params):
        return await getattr(api, name)(*params)
    view = await LotusReader(call, "devnet").sector(MINER, 1)
    assert (view.sealed_cid, view.sector_key_cid) == (cid.sealed_cid(new), before.sealed_cid)
