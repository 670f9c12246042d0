"""Sealed 2 KiB sectors shared by the sealing, PoRep and WindowPoSt tests.

Sealing a 2 KiB sector takes a few tens of milliseconds once Poseidon is compiled, so
the session seals a handful once; a test that damages files works on a copy."""
import random
import shutil

import pytest

from zqnode.proofs import seal

ZERO_TICKET = bytes(32)
SEED = bytes(range(32))


@pytest.fixture(scope="session")
def parent_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("parent-cache")


@pytest.fixture(scope="session")
def seal_2k(parent_cache):
    """seal_2k(dir, data=None, sector=1, ticket=0s, miner=1000, proof=5) -> (pc1, pc2)."""
    def run(sector_dir, data=None, *, sector=1, ticket=ZERO_TICKET, miner=1000, proof=5):
        if data is not None:
            seal.add_piece(sector_dir, data, seal_proof=proof, miner=miner, sector=sector)
        pc1 = seal.precommit1(sector_dir, ticket, seal_proof=proof, miner=miner, sector=sector,
                              parent_cache_dir=parent_cache, backend="cpu")
        return pc1, seal.precommit2(sector_dir, backend="cpu")
    return run


@pytest.fixture(scope="session")
def sealed_sectors(tmp_path_factory, seal_2k):
    """Sectors 1..3 of miner 1000: random data, ticket 7s; sealed, not finalized."""
    base = tmp_path_factory.mktemp("sealed")
    rng = random.Random(2024)
    out = {}
    for number in (1, 2, 3):
        data = rng.randbytes(2032)
        _, pc2 = seal_2k(base / f"s{number}", data, sector=number, ticket=bytes([7]) * 32)
        out[number] = {"dir": base / f"s{number}", "data": data, "pc2": pc2}
    return out


@pytest.fixture
def copy_sector(tmp_path):
    """copy_sector(src) -> a private copy of a sector directory."""
    def copy(src, name=None):
        dst = tmp_path / (name or src.name)
        shutil.copytree(src, dst)
        return dst
    return copy
