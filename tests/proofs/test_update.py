"""SnapDeals' EmptySectorUpdate (proofs.update, proofs.snap).

Check values: the only ones rust-fil-proofs publishes are the challenge vectors of
storage-proofs-update/src/challenges.rs (test_challenges_against_hardcoded), drawn with
XorShiftRng(TEST_SEED) and blstrs' Fr::random; they pin the gen-randomness Poseidon
(domain tag 2^40), the bit order and the challenge layout. No encoding or comm_r_new
values are published: the encoding is checked against decode and remove-data (all three
agree), against a second computation (node by node, from the formula, with Python ints)
and, for the sector files, whole-sector against chunked."""
import random
import shutil

import pytest

from zqnode.proofs import merkle, ptree, snap, update
from zqnode.proofs.poseidon import P
from zqnode.proofs.sector import SectorError, load_meta

# storage-proofs-core/src/lib.rs:37-39
TEST_SEED = bytes([0x59, 0x62, 0xbe, 0x5d, 0x76, 0x3d, 0x31, 0x8d, 0x17, 0xdb, 0x37, 0x32, 0x54, 0x06, 0xbc, 0xe5])
# storage-proofs-update/src/challenges.rs:152-250: (sector nodes, partition) -> first five challenges;
# the sizes zqnode supports (2 KiB, 8 MiB, 512 MiB, 32 GiB, 64 GiB)
HARDCODED = {
    (1 << 6, 0): [53, 51, 56, 3, 0],
    (1 << 18, 0): [36085, 32783, 44060, 10950, 3731],
    (1 << 18, 1): [78878, 130797, 112892, 93994, 78379],
    (1 << 24, 0): [1019125, 116736, 706220, 59698, 799498],
    (1 << 24, 1): [2092548, 1213276, 1185483, 1164598, 1095197],
    (1 << 24, 14): [15212432, 15665918, 15015423, 15012912, 15495223],
    (1 << 24, 15): [16388544, 15794686, 16637142, 16319148, 16328348],
    (1 << 30, 0): [1019125, 27985696, 15282860, 11586600, 44651330],
    (1 << 30, 1): [109168525, 127316247, 80331041, 97065716, 72310052],
    (1 << 30, 14): [990420169, 955146989, 968005601, 976863263, 944650706],
    (1 << 30, 15): [1038629497, 1053983614, 1030421316, 1027373887, 1068685433],
    (1 << 31, 0): [1019125, 13992848, 3820715, 18225541, 57316660],
    (1 << 31, 1): [243386253, 197875851, 204632136, 171516766, 247789010],
    (1 << 31, 14): [1997053129, 1920414070, 2003609080, 1900492803, 1963254685],
    (1 << 31, 15): [2045262457, 2036941247, 2136653521, 2091356007, 2147167623],
}


class XorShift128:
    """rand_xorshift 0.3's XorShiftRng (the seed is four u32 LE)."""

    def __init__(self, seed: bytes):
        self.x, self.y, self.z, self.w = (int.from_bytes(seed[i:i + 4], "little") for i in range(0, 16, 4))

    def next_u32(self) -> int:
        t = (self.x ^ (self.x << 11)) & 0xFFFFFFFF
        self.x, self.y, self.z = self.y, self.z, self.w
        self.w = (self.w ^ (self.w >> 19) ^ (t ^ (t >> 8))) & 0xFFFFFFFF
        return self.w

    def fr_random(self) -> int:
        """blstrs 0.7.1 Scalar::random: four u64 (low u32 first), top bit cleared, below p."""
        while True:
            limbs = [self.next_u32() | self.next_u32() << 32 for _ in range(4)]
            limbs[3] &= (1 << 63) - 1
            value = sum(limb << (64 * i) for i, limb in enumerate(limbs))
            if value < P:
                return value


def test_the_challenges_are_rust_fil_proofs_hardcoded_ones():
    comm_r_new = XorShift128(TEST_SEED).fr_random().to_bytes(32, "little")
    assert comm_r_new.hex() == "101cbe4b9c42604f04c703c396f788c6cb2d6d7d58f45430b12eb2edd640076c"
    for (nodes, k), first in HARDCODED.items():
        p = next(p for p in update.UPDATE_PROOFS.values() if p.nodes == nodes)
        assert update.challenges(p, comm_r_new, k)[:5] == first, (nodes, k)


def test_the_update_proof_types_are_go_state_types():
    # id, name, partitions, challenges per partition, apex leaves, h (storage-proofs-update constants.rs)
    assert [(p.id, p.name, p.partitions, p.challenges, p.apex_leaves, p.h) for p in update.UPDATE_PROOFS.values()] == [
        (0, "StackedDrg2KiBV1", 1, 10, 8, 1), (1, "StackedDrg8MiBV1", 4, 10, 128, 10),
        (2, "StackedDrg512MiBV1", 16, 86, 128, 10), (3, "StackedDrg32GiBV1", 16, 86, 128, 10),
        (4, "StackedDrg64GiBV1", 16, 86, 128, 10)]
    assert update.update_proof("32GiB") is update.update_proof(3) is update.update_proof("StackedDrg32GiBV1")
    assert update.for_sector_size(2048) is update.update_proof(0)
    for bad in (5, 2048, True, "3"):
        with pytest.raises(update.UpdateError, match="unknown update proof"):
            update.update_proof(bad)


def _words(rng: random.Random, n: int, fr32: bool = False) -> bytes:
    return b"".join((rng.getrandbits(254) if fr32 else rng.randrange(P)).to_bytes(32, "little") for _ in range(n))


def _tree(words: bytes, arities) -> list[bytes]:
    """ptree.build_levels, its eight subtrees under the root on two processes (an 8 MiB
    tree-r-last takes 15 s on one): the same levels."""
    if arities[-1] != 8 or len(words) < 8 * 32 * 8:
        return ptree.build_levels(words, arities)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    part = len(words) // 8
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        subtrees = list(pool.map(ptree.build_levels, [words[i:i + part] for i in range(0, len(words), part)],
                                 [arities[:-1]] * 8))
    levels = [b"".join(t[k] for t in subtrees) for k in range(len(arities))]
    return levels + [ptree.build_levels(levels[-1], arities[-1:])[-1]]


def _made(p: update.UpdateProof, seed: int):
    """A random CC replica (the key) and fr32 data, encoded; everything a proof needs."""
    rng = random.Random(seed)
    key, data, comm_c = _words(rng, p.nodes), _words(rng, p.nodes, fr32=True), _words(rng, 1)
    old = _tree(key, p.arities)
    tree_d = merkle.tree_levels(data)
    comm_r_old = update.comm_r(comm_c, old[-1])
    rho = update.rhos(p, tree_d[-1], comm_r_old)
    replica = update.encode(p, key, data, rho)
    new = _tree(replica, p.arities)
    return dict(key=key, data=data, comm_c=comm_c, old=old, new=new, tree_d=tree_d, rho=rho, replica=replica,
                comm_r_old=comm_r_old, comm_d_new=tree_d[-1], comm_r_new=update.comm_r(comm_c, new[-1]))


def _proof(p, m) -> update.UpdateVanillaProof:
    return update.UpdateVanillaProof(update.FORMAT_VERSION, p.id, [update.prove_partition(
        p, k, comm_c=m["comm_c"], comm_r_last_old=m["old"][-1], comm_r_last_new=m["new"][-1], tree_d=m["tree_d"],
        old=update.opener(m["old"]), new=update.opener(m["new"])) for k in range(p.partitions)])


@pytest.mark.parametrize("size", ["2KiB", "8MiB"])
def test_encode_decode_and_remove_data_agree_and_the_proof_binds_every_byte(size):
    p = update.update_proof(size)
    m = _made(p, seed=len(size))
    assert update.decode(p, m["replica"], m["key"], m["rho"]) == m["data"]
    assert update.remove_data(p, m["replica"], m["data"], m["rho"]) == m["key"]
    # the formula node by node, against the bulk encoding: i's rho is rho[i >> (log2 nodes - h)]
    for i in random.Random(3).sample(range(p.nodes), 64):
        word = lambda b: int.from_bytes(b[32 * i:32 * i + 32], "little")          # noqa: E731
        rho = update.hg(update.phi(m["comm_d_new"], m["comm_r_old"]), i >> (p.node_bits - p.h))
        assert word(m["replica"]) == (word(m["key"]) + word(m["data"]) * rho) % P
    proof = _proof(p, m)
    raw = update.encode_proof(proof)
    commitments = dict(comm_r_old=m["comm_r_old"], comm_d_new=m["comm_d_new"], comm_r_new=m["comm_r_new"])
    assert update.verify(update.decode_proof(raw), update_proof=p.id, **commitments)
    for name in commitments:                      # another sector's commitments
        assert not update.verify(proof, update_proof=p.id, **{**commitments, name: bytes(31) + b"\x01"})
    for other in set(update.UPDATE_PROOFS) - {p.id}:     # the sector's own type, never the proof's say
        assert not update.verify(proof, update_proof=other, **commitments)
        relabelled = update.UpdateVanillaProof(proof.version, other, proof.partitions)
        assert not update.verify(relabelled, update_proof=other, **commitments)
    rng = random.Random(4)
    for at in rng.sample(range(len(raw)), 300 if size == "2KiB" else 30):    # any byte of the proof matters
        bad = bytearray(raw)
        bad[at] ^= 1 << rng.randrange(8)
        try:
            tampered = update.decode_proof(bytes(bad))
        except update.UpdateError:
            continue
        assert not update.verify(tampered, update_proof=p.id, **commitments), at


def test_words_that_are_not_field_elements_are_refused():
    p = update.update_proof("2KiB")
    key, data = bytes(2048), b"\xff" * 32 + bytes(2016)
    with pytest.raises(update.UpdateError, match="word 0 is not a field element"):
        update.encode(p, key, data, [1, 1])
    with pytest.raises(update.UpdateError, match="not equal whole numbers"):
        update.encode(p, key, data[:100], [1, 1])


# -- sector directories ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapped(sealed_sectors, tmp_path_factory):
    """Sector 1 (sealed 2 KiB, with data: the math does not need CC) updated with a new piece."""
    out = tmp_path_factory.mktemp("snap") / "s1-updated"
    piece = random.Random(7).randbytes(1016)
    done = snap.encode(sealed_sectors[1]["dir"], piece, out, backend="cpu")
    return {"dir": out, "piece": piece, "encoded": done, "sealed": sealed_sectors[1]["dir"]}


def test_a_sector_snapped_up_gives_its_piece_back_and_proves_its_update(snapped, tmp_path):
    s, done = snapped, snapped["encoded"]
    meta = load_meta(s["dir"])
    assert (meta.update.update_proof, meta.comm_r, meta.comm_d) == (0, done.comm_r_new.hex(), done.comm_d_new.hex())
    assert done.record()["comm_r_new"].startswith("bagboea4b5abc") and done.record()["update_proof"] == "StackedDrg2KiBV1"
    assert done.comm_r_old == load_meta(s["sealed"]).hex_field("comm_r") != done.comm_r_new
    assert snap.decode(s["dir"], s["sealed"], tmp_path / "piece", piece=0) == len(s["piece"])
    assert (tmp_path / "piece").read_bytes() == s["piece"]
    proof = snap.prove(s["dir"], s["sealed"], backend="cpu")
    assert update.verify(proof, update_proof=0, comm_r_old=done.comm_r_old, comm_d_new=done.comm_d_new,
                         comm_r_new=done.comm_r_new)
    raw = update.encode_proof(proof)
    assert update.verify_update(update_proof=0, comm_r_old=done.comm_r_old, comm_d_new=done.comm_d_new,
                                comm_r_new=done.comm_r_new, proof=raw)
    assert not update.verify_update(update_proof=1, comm_r_old=done.comm_r_old, comm_d_new=done.comm_d_new,
                                    comm_r_new=done.comm_r_new, proof=raw)
    comm_r_last = snap.remove_data(s["dir"], tmp_path / "key")
    assert (tmp_path / "key").read_bytes() == (s["sealed"] / "sealed").read_bytes()
    assert update.comm_r(done.comm_c, comm_r_last) == done.comm_r_old


def test_the_chunked_encoding_is_the_whole_sectors(snapped, tmp_path):
    """Node by node in 256-byte chunks (8 nodes) and all at once: the same files."""
    again = snap.encode(snapped["sealed"], snapped["piece"], tmp_path / "chunked", backend="cpu", chunk_bytes=256)
    assert again == snapped["encoded"]
    assert (tmp_path / "chunked" / "sealed").read_bytes() == (snapped["dir"] / "sealed").read_bytes()


def test_the_wrong_sector_key_or_a_damaged_replica_is_refused(snapped, sealed_sectors, copy_sector, tmp_path):
    with pytest.raises(SectorError, match="was updated from"):
        snap.decode(snapped["dir"], sealed_sectors[2]["dir"], tmp_path / "x")
    with pytest.raises(SectorError, match="is an updated sector"):
        snap.encode(snapped["dir"], b"x" * 200, tmp_path / "twice")
    damaged = copy_sector(snapped["dir"], "damaged")
    with open(damaged / "sealed", "r+b") as f:
        f.seek(64)
        f.write(bytes(32))
    with pytest.raises(SectorError, match="does not hash to comm_d_new"):
        snap.decode(damaged, snapped["sealed"], tmp_path / "x")
    with pytest.raises(SectorError, match="does not match tree-r-last|does not verify"):
        snap.prove(damaged, snapped["sealed"], backend="cpu")


def test_verify_by_hand_takes_cids_and_fails_with_status_1(snapped, tmp_path):
    from click.testing import CliRunner
    from zqnode.nodes.cli import main
    done, run = snapped["encoded"], CliRunner().invoke
    path = tmp_path / "proof"
    path.write_bytes(update.encode_proof(snap.prove(snapped["dir"], snapped["sealed"], backend="cpu")))
    cids = done.record()
    args = ["proofs", "snap", "verify", "--proof", str(path), "--sector-size", "2KiB", "--comm-r-old",
            cids["comm_r_old"], "--comm-d-new", cids["comm_d_new"], "--json"]
    out = run(main, [*args, "--comm-r-new", cids["comm_r_new"]])
    assert out.exit_code == 0 and '"valid": true' in out.output, out.output
    out = run(main, [*args, "--comm-r-new", cids["comm_r_old"]])
    assert out.exit_code == 1 and '"valid": false' in out.output
    path.write_bytes(b"\x93garbage")
    out = run(main, [*args, "--comm-r-new", cids["comm_r_new"]])
    assert out.exit_code == 1 and "not an update proof" in out.output and "Traceback" not in out.output
    out = run(main, ["proofs", "snap", "verify", "--proof", str(path), "--comm-r-old", cids["comm_r_old"]])
    assert out.exit_code == 2 and "--updated DIR" in out.output


def test_a_cc_sector_upgraded_in_place_proves_releases_its_key_and_unseals(seal_2k, parent_cache, tmp_path):
    """The layout a worker keeps: the CC sector's directory, the update in DIR/update. The
    chain's comm_r picks the replica WindowPoSt proves; once the key is released the update
    is the sector's directory, and unsealing computes the CC key (its labels) again."""
    from zqnode.proofs import post, seal
    from zqnode.proofs.sector import UPDATE_DIR
    cc = tmp_path / "s-1000-4"
    seal_2k(cc, sector=4, ticket=bytes([9]) * 32)                 # committed capacity: no data
    old = load_meta(cc).hex_field("comm_r")
    piece = random.Random(11).randbytes(2032)
    done = snap.encode(cc, piece, cc / UPDATE_DIR, backend="cpu")
    rand = post.canonical_randomness(bytes(range(32)))
    for comm_r in (old, done.comm_r_new):                          # before and after it lands
        out = post.generate_window_post(5, rand, [post.SectorRef(4, str(cc), comm_r)], backend="cpu")
        assert not out.skipped and post.verify_window_post(
            seal_proof=5, randomness=rand, proof=out.partitions[0].proof, sectors=[(4, comm_r)])
    assert snap.release_key(cc) and not (cc / UPDATE_DIR).exists()
    assert not snap.release_key(cc)                               # done: nothing more
    assert load_meta(cc).hex_field("comm_r") == done.comm_r_new
    assert seal.unseal(cc, tmp_path / "data", piece=0, parent_cache_dir=parent_cache, backend="cpu") == 2032
    assert (tmp_path / "data").read_bytes() == piece


def test_a_release_cut_short_is_finished_by_the_next(seal_2k, tmp_path):
    import os
    from zqnode.proofs.sector import UPDATE_DIR, holding
    cc = tmp_path / "s-1000-5"
    seal_2k(cc, sector=5, ticket=bytes([9]) * 32)
    done = snap.encode(cc, b"\x01" * 500, cc / UPDATE_DIR, backend="cpu")
    with pytest.raises(SectorError, match="the sector key stays"):              # not the chain's replica
        snap.release_key(cc, b"\x02" * 32)
    os.replace(cc / UPDATE_DIR, tmp_path / ".s-1000-5.updated")  # killed after its first rename ...
    assert holding(cc, done.comm_r_new) == tmp_path / ".s-1000-5.updated"       # WindowPoSt still finds it
    os.replace(cc, tmp_path / ".s-1000-5.key")                   # ... and its second
    assert snap.release_key(cc, done.comm_r_new)
    assert load_meta(cc).hex_field("comm_r") == done.comm_r_new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s-1000-5"]


def test_a_sector_key_taken_out_of_a_damaged_update_is_refused_and_not_left_behind(snapped, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(snapped["dir"], damaged)
    replica = bytearray((damaged / "sealed").read_bytes())
    replica[100] ^= 1
    (damaged / "sealed").write_bytes(bytes(replica))
    with pytest.raises(SectorError, match="does not hash to the CC sector's comm_r"):
        snap.remove_data(damaged, tmp_path / "key")
    assert not (tmp_path / "key").exists()
