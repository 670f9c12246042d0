"""C1 vanilla PoRep proofs: they verify, they bind every input, and any tampering fails."""
import msgspec
import pytest

from zqnode.proofs import porep, seal
from zqnode.proofs.porep import SealError, decode_proof, encode_proof, verify_seal
from zqnode.proofs.sdr.challenges import interactive_challenges
from zqnode.proofs.sdr.labels import layer_path
from zqnode.proofs.sector import SectorError, load_meta, sealed_path

TICKET = bytes([7]) * 32
SEED = bytes(range(32))


@pytest.fixture(scope="module")
def c1(sealed_sectors):
    return seal.commit1(sealed_sectors[1]["dir"], SEED, backend="cpu")


def _inputs(sealed_sectors, number=1, **changes):
    pc2 = sealed_sectors[number]["pc2"]
    args = dict(seal_proof=5, miner=1000, sector=number, ticket=TICKET, seed=SEED,
                comm_d=pc2.comm_d, comm_r=pc2.comm_r)
    args.update(changes)
    return args


def test_commit1_proof_verifies(sealed_sectors, c1):
    meta = load_meta(sealed_sectors[1]["dir"])
    expected = interactive_challenges(bytes.fromhex(meta.replica_id), SEED, 64, 2, 0)
    assert c1.challenges == [expected]
    assert c1.backend == "cpu"
    assert verify_seal(**_inputs(sealed_sectors), proof=c1.proof)
    decoded = decode_proof(c1.proof)
    assert [[ch.node for ch in part] for part in decoded.partitions] == [expected]
    assert encode_proof(decoded) == c1.proof                       # deterministic bytes
    assert seal.commit1(sealed_sectors[1]["dir"], SEED).proof == c1.proof


def test_a_proof_does_not_verify_for_another_sector_or_input(sealed_sectors, c1):
    other = sealed_sectors[2]["pc2"]
    for changes in ({"sector": 2}, {"comm_r": other.comm_r}, {"comm_d": other.comm_d},
                    {"sector": 2, "comm_r": other.comm_r, "comm_d": other.comm_d},
                    {"seed": bytes(32)}, {"ticket": bytes(32)}, {"miner": 1001},
                    {"seal_proof": 0}):
        assert not verify_seal(**_inputs(sealed_sectors, **changes), proof=c1.proof), changes
    # ... and sector 2's own proof does not verify as sector 1's.
    proof2 = seal.commit1(sealed_sectors[2]["dir"], SEED).proof
    assert verify_seal(**_inputs(sealed_sectors, 2), proof=proof2)
    assert not verify_seal(**_inputs(sealed_sectors, 1), proof=proof2)


def _flip(data: bytes, at: int = 0, bit: int = 1) -> bytes:
    out = bytearray(data)
    out[at] ^= bit
    return bytes(out)


def _replace(struct, **changes):
    return msgspec.structs.replace(struct, **changes)


def _with_list_item(items, index, value):
    items = list(items)
    items[index] = value
    return items


def _tampered_proofs(proof):
    """(what, tampered proof) for a sample of every kind of field."""
    part = proof.partitions[0]
    yield "version", _replace(proof, version=2)
    yield "seal proof id", _replace(proof, seal_proof=6)
    yield "comm_c", _replace(proof, comm_c=_flip(proof.comm_c))
    yield "comm_r_last", _replace(proof, comm_r_last=_flip(proof.comm_r_last))
    yield "a challenge dropped", _replace(proof, partitions=[part[:1]])
    yield "challenges swapped", _replace(proof, partitions=[part[::-1]])
    yield "a partition added", _replace(proof, partitions=[part, part])

    def challenge(index, what, ch):
        return f"challenge {index}: {what}", _replace(
            proof, partitions=[_with_list_item(part, index, ch)])

    for index, ch in enumerate(part):
        col, parents = ch.column, ch.parents
        yield challenge(index, "node", _replace(ch, node=ch.node + 1))
        yield challenge(index, "data leaf", _replace(ch, data_leaf=_flip(ch.data_leaf)))
        yield challenge(index, "data leaf top bits", _replace(ch, data_leaf=_flip(ch.data_leaf, 31, 0xC0)))
        yield challenge(index, "data path", _replace(ch, data_path=_with_list_item(
            ch.data_path, 0, _flip(ch.data_path[0]))))
        yield challenge(index, "data path top", _replace(ch, data_path=_with_list_item(
            ch.data_path, -1, _flip(ch.data_path[-1], 5))))
        yield challenge(index, "data path short", _replace(ch, data_path=ch.data_path[:-1]))
        for layer in (0, 1):
            yield challenge(index, f"label {layer + 1}", _replace(ch, column=_replace(
                col, labels=_with_list_item(col.labels, layer, _flip(col.labels[layer], 3)))))
        yield challenge(index, "label not canonical", _replace(ch, column=_replace(
            col, labels=_with_list_item(col.labels, 0, b"\xff" * 32))))
        yield challenge(index, "a layer dropped", _replace(ch, column=_replace(col, labels=col.labels[:1])))
        yield challenge(index, "tree-c path", _replace(ch, column=_replace(col, path=[
            col.path[0], _with_list_item(col.path[1], 6, _flip(col.path[1][6]))])))
        yield challenge(index, "tree-c path level short", _replace(ch, column=_replace(
            col, path=[col.path[0][:-1], col.path[1]])))
        for p, layer in ((0, 0), (5, 1), (6, 0), (13, 1), (13, 0)):
            parent = parents[p]
            yield challenge(index, f"parent {p} label {layer + 1}", _replace(ch, parents=_with_list_item(
                parents, p, _replace(parent, labels=_with_list_item(
                    parent.labels, layer, _flip(parent.labels[layer], 7))))))
        yield challenge(index, "parent 9 path", _replace(ch, parents=_with_list_item(
            parents, 9, _replace(parents[9], path=[_with_list_item(
                parents[9].path[0], 0, _flip(parents[9].path[0][0])), parents[9].path[1]]))))
        yield challenge(index, "a parent dropped", _replace(ch, parents=parents[:-1]))
        yield challenge(index, "replica leaf", _replace(ch, replica_leaf=_flip(ch.replica_leaf)))
        yield challenge(index, "replica path", _replace(ch, replica_path=[
            _with_list_item(ch.replica_path[0], 3, _flip(ch.replica_path[0][3])), ch.replica_path[1]]))
        yield challenge(index, "replica path extra level", _replace(
            ch, replica_path=ch.replica_path + [ch.replica_path[-1]]))


def test_every_tampered_field_fails(sealed_sectors, c1):
    proof = decode_proof(c1.proof)
    args = _inputs(sealed_sectors)
    seen = 0
    for what, tampered in _tampered_proofs(proof):
        data = encode_proof(tampered)
        assert data != c1.proof, what
        assert verify_seal(**args, proof=data) is False, what
        seen += 1
    assert seen == 51


def test_bad_proof_bytes_are_false_not_errors(sealed_sectors, c1):
    args = _inputs(sealed_sectors)
    for junk in (b"", b"\x00", b"\xc1" * 40, c1.proof[:-1], c1.proof + b"\x00",
                 msgspec.msgpack.encode({"proof": 1}), bytes(len(c1.proof))):
        assert verify_seal(**args, proof=junk) is False
    # Lists longer than any real proof's are refused while decoding, before they are built.
    raw = msgspec.msgpack.decode(c1.proof)
    for field, long in ((2, [bytes(32)] * 33), (6, [[bytes(32)] * 7] * 33), (6, [[bytes(32)] * 16]),
                        (1, bytes(33))):
        forged = msgspec.msgpack.decode(c1.proof)
        forged[4][0][0][field] = long
        assert verify_seal(**args, proof=msgspec.msgpack.encode(forged)) is False
    assert verify_seal(**args, proof=msgspec.msgpack.encode(raw))       # the unforged one passes


def test_bad_arguments_raise(sealed_sectors, c1):
    with pytest.raises(SealError, match="ticket must be 32 bytes"):
        verify_seal(**_inputs(sealed_sectors, ticket=bytes(31)), proof=c1.proof)
    with pytest.raises(SealError, match="seed must be 32 bytes"):
        verify_seal(**_inputs(sealed_sectors, seed=None), proof=c1.proof)
    with pytest.raises(SealError, match="unknown registered seal proof"):
        verify_seal(**_inputs(sealed_sectors, seal_proof=42), proof=c1.proof)
    # A V1_1 proof said to be of the synthetic type is not one.
    assert verify_seal(**_inputs(sealed_sectors, seal_proof=10), proof=c1.proof) is False


def test_a_flipped_replica_byte_fails_porep(sealed_sectors, copy_sector, c1):
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    challenged = c1.challenges[0][0]
    with open(sealed_path(sector_dir), "r+b") as f:
        f.seek(32 * challenged)
        byte = f.read(1)
        f.seek(32 * challenged)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(SectorError, match="does not match tree-r-last"):
        seal.commit1(sector_dir, SEED)
    forged = seal.commit1(sector_dir, SEED, check=False).proof
    assert forged != c1.proof
    assert decode_proof(forged).partitions[0][0].replica_leaf != \
        decode_proof(c1.proof).partitions[0][0].replica_leaf
    assert verify_seal(**_inputs(sealed_sectors), proof=forged) is False


def test_commit1_checks_its_own_proof(sealed_sectors, copy_sector, c1):
    # A corrupt label of a challenged node: tree-c no longer covers it.
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    challenged = c1.challenges[0][1]
    path = layer_path(sector_dir / "cache", 1)
    path.write_bytes(_flip(path.read_bytes(), 32 * challenged + 2))
    with pytest.raises(SectorError, match="does not verify"):
        seal.commit1(sector_dir, SEED)
    unchecked = seal.commit1(sector_dir, SEED, check=False).proof
    assert verify_seal(**_inputs(sealed_sectors), proof=unchecked) is False


@pytest.mark.parametrize("proof_id, seed", [(0, SEED), (15, None)])
def test_legacy_and_non_interactive_proofs(tmp_path, seal_2k, proof_id, seed):
    # V1 (API 1.0, legacy parent order) and NI PoRep (13 partitions, challenges from comm_r).
    sector_dir = tmp_path / "s"
    _, pc2 = seal_2k(sector_dir, bytes(range(127)) * 16, sector=5, ticket=TICKET, proof=proof_id)
    out = seal.commit1(sector_dir, seed)
    expected_parts = 1 if proof_id == 0 else 13
    assert len(out.challenges) == expected_parts and all(len(p) == 2 for p in out.challenges)
    args = dict(seal_proof=proof_id, miner=1000, sector=5, ticket=TICKET, seed=seed,
                comm_d=pc2.comm_d, comm_r=pc2.comm_r)
    assert verify_seal(**args, proof=out.proof)
    assert not verify_seal(**{**args, "sector": 6}, proof=out.proof)
    assert porep.decode_proof(out.proof).seal_proof == proof_id
