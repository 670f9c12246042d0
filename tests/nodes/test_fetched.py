"""Fetched sector data is checked against our own commitments, never the sender's."""
import random
import shutil

import pytest

from zqnode.nodes.fetched import FetchedDataError, verify_piece, verify_sealed, verify_unsealed
from zqnode.proofs import seal
from zqnode.proofs.sector import P_AUX, TREE_R_LAST, cache_file, load_meta, sealed_path, unsealed_path

PROOF = 5                              # 2 KiB, v1.1


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A sealed 2 KiB sector (random data) and its piece."""
    base = tmp_path_factory.mktemp("fetched")
    data = random.Random(7).randbytes(2032)
    d = base / "s1"
    piece = seal.add_piece(d, data, seal_proof=PROOF, miner=1000, sector=1)
    seal.precommit1(d, bytes([7]) * 32, parent_cache_dir=base / "parents", backend="cpu")
    pc2 = seal.precommit2(d, backend="cpu")
    return d, data, piece, pc2


def fetched_copy(src, tmp_path):
    dst = tmp_path / "fetched"
    shutil.copytree(src, dst)
    return dst


def flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_good_data_passes(sealed, tmp_path):
    d, data, piece, pc2 = sealed
    assert verify_piece(data, piece.comm_p, 2032).padded_size == 2048
    verify_unsealed(d, pc2.comm_d, 2048)
    verify_sealed(d, pc2.comm_r, PROOF)
    verify_sealed(d, pc2.comm_r, PROOF, samples=None)


def test_a_piece_that_is_not_the_deals_is_refused(sealed):
    d, data, piece, _ = sealed
    with pytest.raises(FetchedDataError, match="piece: CommP is .*expected " + piece.comm_p.hex()):
        verify_piece(data[:-1] + b"\x00", piece.comm_p)
    with pytest.raises(FetchedDataError, match="piece: 2032 payload bytes, expected 2000"):
        verify_piece(data, piece.comm_p, 2000)
    with pytest.raises(FetchedDataError, match="at least 65 payload bytes"):
        verify_piece(b"x", piece.comm_p)


def test_a_changed_unsealed_file_is_refused(sealed, tmp_path):
    d, _, _, pc2 = sealed
    f = fetched_copy(d, tmp_path)
    flip(unsealed_path(f), 1000)
    with pytest.raises(FetchedDataError, match=f"hashes to CommD .*expected {pc2.comm_d.hex()}"):
        verify_unsealed(f, pc2.comm_d, 2048)
    with pytest.raises(FetchedDataError, match="has 2048 bytes, expected 4096"):
        verify_unsealed(d, pc2.comm_d, 4096)


def test_a_sector_json_that_lies_does_not_help(sealed, tmp_path):
    """The fetched sector.json claims another comm_r: we check against ours."""
    d, _, _, pc2 = sealed
    f = fetched_copy(d, tmp_path)
    meta = load_meta(f)
    assert bytes.fromhex(meta.comm_r) == pc2.comm_r
    other = bytes(32)
    with pytest.raises(FetchedDataError, match=f"p_aux does not hash to comm_r {other.hex()}"):
        verify_sealed(f, other, PROOF)


@pytest.mark.parametrize("damage, message", [
    (lambda f: flip(sealed_path(f), 300), "does not match tree-r-last"),
    (lambda f: flip(cache_file(f, P_AUX), 5), "p_aux does not hash to comm_r"),
    (lambda f: flip(cache_file(f, TREE_R_LAST), 0), "stored rows of tree-r-last do not hash"),
    (lambda f: sealed_path(f).write_bytes(b"\x00" * 1024), "has 1024 bytes, expected 2048"),
    (lambda f: cache_file(f, P_AUX).unlink(), "p_aux is missing"),
])
def test_damaged_sealed_files_are_refused(sealed, tmp_path, damage, message):
    d, _, _, pc2 = sealed
    f = fetched_copy(d, tmp_path)
    damage(f)
    with pytest.raises(FetchedDataError, match=message):
        verify_sealed(f, pc2.comm_r, PROOF, samples=None)
