"""WindowPoSt: challenges, partitions (a short one repeats its last sector), skipped
sectors with reasons, and verification that binds sectors, randomness and every path."""
import hashlib

import msgspec
import pytest

from zqnode.proofs import post, seal
from zqnode.proofs.params import post_proof
from zqnode.proofs.post import (PoStError, PoStPartitionProof, SectorRef, generate_window_post,
                                verify_window_post)
from zqnode.proofs.sector import P_AUX, TREE_R_LAST, cache_file, meta_path, sealed_path

RAND = bytes(range(31)) + b"\x2a"                      # canonical: byte 31 < 0x40
V1_1 = post_proof("StackedDrgWindow2KiBV1_1")          # API 1.2
V1 = post_proof("StackedDrgWindow2KiBV1")              # API 1.0 indexing


def _refs(sealed_sectors, numbers=(1, 2, 3)):
    return [SectorRef(n, str(sealed_sectors[n]["dir"])) for n in numbers]


def _comm_r(sealed_sectors, n):
    return sealed_sectors[n]["pc2"].comm_r


def _verify(part, randomness=RAND, sectors=None, **kw):
    return verify_window_post(seal_proof=5, randomness=randomness,
                              sectors=part.sectors if sectors is None else sectors,
                              proof=part.proof, **kw)


def test_challenges_api_1_2_and_older():
    def reference(sector, index):
        digest = hashlib.sha256(RAND + sector.to_bytes(8, "little") + index.to_bytes(8, "little"))
        return int.from_bytes(digest.digest()[:8], "little") % 64
    assert post.leaf_challenges(V1_1, RAND, 7) == [reference(7, n) for n in range(10)]
    assert post.leaf_challenges(V1_1, RAND, 7, sector_index=3) == post.leaf_challenges(V1_1, RAND, 7)
    assert post.leaf_challenges(V1, RAND, 7, sector_index=3) == [reference(7, 30 + n) for n in range(10)]
    assert post.leaf_challenges(V1, RAND, 7, sector_index=0) == post.leaf_challenges(V1_1, RAND, 7)


def test_randomness_must_be_canonical(sealed_sectors):
    raw = bytes(31) + b"\xff"
    assert post.canonical_randomness(raw) == bytes(31) + b"\x3f"
    with pytest.raises(PoStError, match="not canonical: its last byte 0xff"):
        generate_window_post(5, raw, _refs(sealed_sectors))
    with pytest.raises(PoStError, match="not canonical"):
        verify_window_post(seal_proof=5, randomness=bytes(31) + b"\x40",
                           sectors=[(1, bytes(32))], proof=b"")
    with pytest.raises(PoStError, match="32 bytes, got 31"):
        generate_window_post(5, bytes(31), _refs(sealed_sectors))


def test_partitions_and_a_short_last_one(sealed_sectors):
    result = generate_window_post(5, RAND, _refs(sealed_sectors), backend="cpu")
    assert result.skipped == []
    first, second = result.partitions
    assert [n for n, _ in first.sectors] == [1, 2] and [n for n, _ in second.sectors] == [3]
    assert first.sectors[0] == (1, _comm_r(sealed_sectors, 1))
    assert first.challenges == [post.leaf_challenges(V1_1, RAND, 1), post.leaf_challenges(V1_1, RAND, 2)]
    assert (first.index, second.index, first.backend) == (0, 1, "cpu")
    assert _verify(first) and _verify(second)
    # The short partition carries 2 sector proofs: the second repeats the first.
    padded = msgspec.msgpack.decode(second.proof, type=PoStPartitionProof)
    assert len(padded.sectors) == 2 and padded.sectors[0] == padded.sectors[1]
    assert padded.post_proof == V1_1.id
    # Deterministic bytes, and sector-number order whatever the input order.
    assert generate_window_post(5, RAND, _refs(sealed_sectors)).partitions[0].proof == first.proof
    assert generate_window_post(5, RAND, _refs(sealed_sectors, (3, 1, 2))) == result


def test_a_proof_does_not_verify_for_other_sectors_or_randomness(sealed_sectors):
    first, second = generate_window_post(5, RAND, _refs(sealed_sectors)).partitions
    c1, c2, c3 = (_comm_r(sealed_sectors, n) for n in (1, 2, 3))
    for sectors in ([(1, c1), (3, c3)], [(2, c2), (1, c1)], [(1, c2), (2, c1)], [(1, c1)],
                    [(4, c1), (2, c2)]):
        assert not _verify(first, sectors=sectors), sectors
    assert not _verify(second, sectors=[(1, c1)])
    assert not _verify(second, sectors=[(3, c1)])
    assert not _verify(first, randomness=bytes(32))
    assert not _verify(first, post_proof=V1)
    with pytest.raises(PoStError, match="1..2 sectors, got 3"):
        _verify(first, sectors=[(1, c1), (2, c2), (3, c3)])


def test_older_post_type_indexes_by_position(sealed_sectors):
    result = generate_window_post(5, RAND, _refs(sealed_sectors), post_proof=V1)
    first, second = result.partitions
    assert second.challenges == [post.leaf_challenges(V1, RAND, 3, sector_index=2)]
    assert _verify(first, post_proof=V1) and _verify(second, post_proof=V1, partition=1)
    assert not _verify(second, post_proof=V1, partition=0)
    assert not _verify(second)                        # a V1_1 verifier refuses a V1 proof


def _flip(path, at):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x04
    path.write_bytes(bytes(data))


def test_skipped_sectors_are_reported_and_the_rest_proven(sealed_sectors, copy_sector, tmp_path):
    dirs = {n: copy_sector(sealed_sectors[n]["dir"], f"d{n}") for n in (1, 2, 3)}
    good = copy_sector(sealed_sectors[1]["dir"], "good")
    sealed_path(dirs[1]).unlink()                                     # missing
    with open(sealed_path(dirs[2]), "r+b") as f:                      # truncated
        f.truncate(1000)
    _flip(cache_file(dirs[3], P_AUX), 0)                              # corrupt
    refs = [SectorRef(n, str(d)) for n, d in dirs.items()] + [SectorRef(1, str(good))]
    with pytest.raises(PoStError, match="listed twice"):
        generate_window_post(5, RAND, refs)
    refs[-1] = SectorRef(9, str(good))                                # wrong directory
    refs.append(SectorRef(102, str(tmp_path / "nothing-here")))       # no sector.json
    result = generate_window_post(5, RAND, refs)
    reasons = dict(result.skipped)
    assert sorted(reasons) == [1, 2, 3, 9, 102]
    assert "sealed file is missing" in reasons[1]
    assert "has 1000 bytes, expected 2048" in reasons[2]
    assert "p_aux does not hash to comm_r" in reasons[3]
    assert "holds sector 1" in reasons[9]
    assert "sector.json is missing" in reasons[102]
    assert result.partitions == []


def test_a_skipped_sector_leaves_the_others_provable(sealed_sectors, copy_sector):
    bad = copy_sector(sealed_sectors[2]["dir"])
    cache_file(bad, TREE_R_LAST).write_bytes(bytes(32))               # a wrong stored root
    refs = [SectorRef(1, str(sealed_sectors[1]["dir"])), SectorRef(2, str(bad)),
            SectorRef(3, str(sealed_sectors[3]["dir"]))]
    result = generate_window_post(5, RAND, refs)
    assert [n for n, _ in result.skipped] == [2]
    assert "stored root differs from comm_r_last" in result.skipped[0][1]
    (only,) = result.partitions
    assert [n for n, _ in only.sectors] == [1, 3]
    assert _verify(only)


def test_a_flipped_replica_byte_fails_post(sealed_sectors, copy_sector):
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    leaf = post.leaf_challenges(V1_1, RAND, 1)[0]
    _flip(sealed_path(sector_dir), 32 * leaf + 1)
    ref = SectorRef(1, str(sector_dir))
    result = generate_window_post(5, RAND, [ref])
    assert result.partitions == []
    assert "does not match tree-r-last" in result.skipped[0][1]
    # Proven anyway (no check), the proof carries the flipped leaf and fails verification.
    forged = post.prove_sector(ref, V1_1, RAND, check=False)
    assert forged.proof.leaves[0] != post.prove_sector(
        SectorRef(1, str(sealed_sectors[1]["dir"])), V1_1, RAND).proof.leaves[0]
    data = msgspec.msgpack.encode(PoStPartitionProof(post.FORMAT_VERSION, V1_1.id, [forged.proof] * 2))
    assert verify_window_post(seal_proof=5, randomness=RAND,
                              sectors=[(1, _comm_r(sealed_sectors, 1))], proof=data) is False


def test_a_corrupt_metadata_file_is_skipped(sealed_sectors, copy_sector):
    sector_dir = copy_sector(sealed_sectors[1]["dir"])
    meta_path(sector_dir).write_bytes(b'{"seal_proof": 5, "miner"')
    result = generate_window_post(5, RAND, [SectorRef(1, str(sector_dir))])
    assert result.partitions == []
    assert result.skipped[0][0] == 1 and "sector.json is corrupt" in result.skipped[0][1]


def _tampered(proof: PoStPartitionProof):
    def flip(b, at=0):
        return bytes([b[0] ^ 1]) + b[1:] if at == 0 else b[:at] + bytes([b[at] ^ 1]) + b[at + 1:]
    s = proof.sectors[0]
    rep = msgspec.structs.replace
    yield rep(proof, version=0)
    yield rep(proof, post_proof=V1.id)
    yield rep(proof, sectors=proof.sectors[:1])
    yield rep(proof, sectors=[proof.sectors[1], proof.sectors[0]])
    yield rep(proof, sectors=[proof.sectors[0], rep(proof.sectors[1], comm_c=flip(proof.sectors[1].comm_c))])
    for sector in (
            rep(s, comm_c=flip(s.comm_c)), rep(s, comm_r_last=flip(s.comm_r_last)),
            rep(s, leaves=[flip(s.leaves[0])] + s.leaves[1:]),
            rep(s, leaves=s.leaves[:-1] + [flip(s.leaves[-1], 31)]),
            rep(s, leaves=s.leaves[:9]), rep(s, paths=s.paths[:9]),
            rep(s, paths=[[[flip(s.paths[0][0][0])] + s.paths[0][0][1:], s.paths[0][1]]] + s.paths[1:]),
            rep(s, paths=s.paths[:-1] + [[s.paths[-1][0], s.paths[-1][1][:6]]]),
            rep(s, leaves=[b"\xff" * 32] + s.leaves[1:])):
        yield rep(proof, sectors=[sector, proof.sectors[1]])


def test_tampered_or_junk_proofs_fail(sealed_sectors):
    first = generate_window_post(5, RAND, _refs(sealed_sectors, (1, 2))).partitions[0]
    decoded = msgspec.msgpack.decode(first.proof, type=PoStPartitionProof)
    count = 0
    for tampered in _tampered(decoded):
        data = msgspec.msgpack.encode(tampered)
        assert data != first.proof
        assert _verify(first._replace(proof=data)) is False
        count += 1
    assert count == 14
    for junk in (b"", b"\x93", first.proof[:-2], first.proof + b"\x00", bytes(100)):
        assert _verify(first._replace(proof=junk)) is False


def test_a_changed_padding_entry_fails(sealed_sectors):
    second = generate_window_post(5, RAND, _refs(sealed_sectors)).partitions[1]
    decoded = msgspec.msgpack.decode(second.proof, type=PoStPartitionProof)
    other = generate_window_post(5, RAND, _refs(sealed_sectors, (1,))).partitions[0]
    stranger = msgspec.msgpack.decode(other.proof, type=PoStPartitionProof).sectors[0]
    data = msgspec.msgpack.encode(msgspec.structs.replace(decoded, sectors=[decoded.sectors[0], stranger]))
    assert _verify(second) and not _verify(second._replace(proof=data))


def test_sector_refs_read_numbers_from_metadata(sealed_sectors, tmp_path):
    refs = post.sector_refs([sealed_sectors[3]["dir"], sealed_sectors[1]["dir"]])
    assert [r.number for r in refs] == [3, 1]
    assert meta_path(sealed_sectors[3]["dir"]).exists()
    with pytest.raises(seal.SectorError, match="sector.json is missing"):
        post.sector_refs([tmp_path])
