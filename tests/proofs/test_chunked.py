"""proofs.chunked: tree-d and PreCommit2 in chunks and on several processes give the files
the whole sector computed at once gives, and a failure leaves none of them."""
import hashlib

import numpy as np
import pytest

from zqnode.proofs import chunked, ptree, seal
from zqnode.proofs.backend import Backend, get_backend
from zqnode.proofs.sdr.labels import layer_path, open_layers
from zqnode.proofs.sector import (P_AUX, TREE_C, TREE_D, TREE_R_LAST, TreeShape, cache_dir, cache_file,
                                  sealed_path, unsealed_path)

FILES = (TREE_C, TREE_R_LAST, P_AUX)


def files(sector_dir) -> list[bytes]:
    return [cache_file(sector_dir, name).read_bytes() for name in FILES] + [sealed_path(sector_dir).read_bytes()]


def whole(sector_dir, proof: int, impl: Backend) -> list[bytes]:
    """tree-c, tree-r-last (its kept levels) and the replica, each computed over the whole
    sector at once: what PC2 did before it worked in chunks."""
    shape = TreeShape.of(proof)
    layers = open_layers(cache_dir(sector_dir), len(list(cache_dir(sector_dir).glob("sc-02-data-layer-*"))),
                         shape.nodes)
    tree_c = impl.tree_c(layers, shape.arities)
    data = np.fromfile(unsealed_path(sector_dir), np.uint8).reshape(-1, 32)
    replica = impl.encode(data, layers[-1])
    tree_r = impl.tree_r_last(replica, shape.arities)
    return [b"".join(tree_c), b"".join(tree_r[shape.kept_from:]), replica]


def test_chunks_on_two_processes_write_what_the_whole_sector_gives(tmp_path, seal_2k):
    data = tmp_path / "piece"
    data.write_bytes(bytes(range(256)) * 7 + bytes(124))        # 1916 bytes: a 2 KiB piece
    sector = tmp_path / "s"
    _, one = seal_2k(sector, data)                               # one chunk: the whole sector
    before = files(sector)
    assert [before[0], before[1], before[3]] == whole(sector, 5, get_backend("cpu"))
    steps, said = [], []

    class Said:
        def __call__(self, message):              # a step done
            steps.append(message)

        def within(self, message):                # a chunk of the step
            said.append(message)
    again = seal.precommit2(sector, backend="cpu", procs=2, chunk_bytes=8 * 32, progress=Said())
    assert files(sector) == before and (again.comm_r, again.comm_c) == (one.comm_r, one.comm_c)
    assert len(said) == 8 and said[-1].startswith("PC2 chunk 8/8 (100%")      # 8 chunks of 8 nodes
    assert [m.split(":")[0] for m in steps] == ["PC2 tree-c", "PC2 tree-r-last"]


class Cheap(Backend):
    """A stand-in with the CPU backend's shapes and a fast hash, so chunking is checked on
    an 8 MiB sector in a second (the hash does not matter to where each level goes)."""
    name = "cheap"

    @staticmethod
    def _groups(data: bytes, arity: int) -> bytes:
        return b"".join(hashlib.blake2b(data[i:i + 32 * arity], digest_size=32).digest()
                        for i in range(0, len(data), 32 * arity))

    def tree_r_last(self, replica, arities):
        levels = [bytes(memoryview(replica).cast("B"))]
        for arity in ptree.arities_for(len(levels[0]) // 32, arities):
            levels.append(self._groups(levels[-1], arity))
        return levels

    def tree_c(self, layers, arities):
        cols = np.stack([np.frombuffer(memoryview(x).cast("B"), np.uint8).reshape(-1, 32) for x in layers], 1)
        return self.tree_r_last(self._groups(cols.tobytes(), len(layers)), arities)

    def tree_d(self, leaves):
        return self.tree_r_last(leaves, 2)

    def encode(self, data, key):
        return (np.frombuffer(memoryview(data).cast("B"), np.uint8)
                ^ np.frombuffer(memoryview(key).cast("B"), np.uint8)).tobytes()


def test_an_8mib_sector_in_small_chunks_matches_the_whole_one(tmp_path):
    shape, impl = TreeShape.of(6), Cheap()
    sector = tmp_path / "s"
    rng = np.random.default_rng(7)
    cache_dir(sector).mkdir(parents=True)
    for n in (1, 2):
        rng.integers(0, 256, shape.nodes * 32, np.uint8).tofile(layer_path(cache_dir(sector), n))
    rng.integers(0, 256, shape.nodes * 32, np.uint8).tofile(unsealed_path(sector))
    p = chunked.plan(shape, 1 << 20)
    assert (p.height, p.span, p.chunks, shape.kept_from) == (5, 8 ** 5, 8, 3)   # writes tree-r levels 3..5
    comm_c, comm_r_last = chunked.trees_and_replica(sector, 6, 2, backend=impl, chunk_bytes=1 << 20)
    tree_c, tree_r, replica = whole(sector, 6, impl)
    assert cache_file(sector, TREE_C).read_bytes() == tree_c and tree_c.endswith(comm_c)
    assert cache_file(sector, TREE_R_LAST).read_bytes() == tree_r and tree_r.endswith(comm_r_last)
    assert sealed_path(sector).read_bytes() == replica
    d = chunked.plan(chunked.binary_shape(shape.nodes), 1 << 20)
    assert (d.height, d.chunks) == (15, 8)
    with chunked.tree_d(sector, shape.nodes, backend=impl, chunk_bytes=1 << 20) as comm_d:
        assert not cache_file(sector, TREE_D).exists()           # in place once comm_d is accepted
    whole_d = impl.tree_d(unsealed_path(sector).read_bytes())
    assert cache_file(sector, TREE_D).read_bytes() == b"".join(whole_d) and comm_d == whole_d[-1]


def test_tree_d_in_chunks_on_two_processes_and_a_refused_comm_d(tmp_path, seal_2k):
    sector = tmp_path / "s"
    seal_2k(sector)
    whole = cache_file(sector, TREE_D).read_bytes()
    cache_file(sector, TREE_D).unlink()
    with chunked.tree_d(sector, 64, backend="cpu", procs=2, chunk_bytes=4 * 32) as comm_d:
        assert comm_d == whole[-32:]
    assert cache_file(sector, TREE_D).read_bytes() == whole
    cache_file(sector, TREE_D).unlink()
    with pytest.raises(RuntimeError, match="not the pieces"):
        with chunked.tree_d(sector, 64, backend="cpu", chunk_bytes=4 * 32):
            raise RuntimeError("not the pieces")                 # the caller refuses comm_d
    assert not cache_file(sector, TREE_D).exists() and not list(sector.rglob("*.tmp"))


def test_a_failing_chunk_leaves_no_file_behind(tmp_path, seal_2k):
    sector = tmp_path / "s"
    seal_2k(sector)
    for name in (TREE_C, TREE_R_LAST):
        cache_file(sector, name).unlink()
    sealed_path(sector).unlink()
    with pytest.raises(FileNotFoundError):        # a third layer that is not there
        chunked.trees_and_replica(sector, 5, 3, backend="cpu", chunk_bytes=8 * 32)
    assert not cache_file(sector, TREE_C).exists() and not sealed_path(sector).exists()
    assert not [p for p in sector.rglob("*") if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="procs must be a positive int"):
        chunked.trees_and_replica(sector, 5, 2, procs=0)
    assert not cache_file(sector, TREE_C).exists()


def test_plans_keep_chunks_within_their_bytes():
    for proof, chunk, height in ((5, 256, 1), (5, 1 << 20, 2), (6, 1 << 20, 5), (8, 4 << 20, 5)):
        p = chunked.plan(TreeShape.of(proof), chunk)
        assert p.file_bytes() == sum(p.sizes()[p.kept_from:]) * 32
        assert p.height == height and (p.span * 32 <= chunk or p.height == 1)


def test_c1_reads_trees_through_a_memory_map_with_the_same_bytes(tmp_path, seal_2k):
    from zqnode.proofs.sector import SectorError, mapped_levels, read_levels
    sector = tmp_path / "s"
    seal_2k(sector)
    sizes = TreeShape.of(5).level_sizes()
    mapped = mapped_levels(cache_file(sector, TREE_C), sizes, "tree-c")
    assert [bytes(m) for m in mapped] == read_levels(cache_file(sector, TREE_C), sizes, "tree-c")
    with pytest.raises(SectorError, match="tree-c .* has 2336 bytes, expected 2368"):
        mapped_levels(cache_file(sector, TREE_C), sizes + [1], "tree-c")
    with pytest.raises(SectorError, match="tree-d is missing"):
        mapped_levels(tmp_path / "nope", sizes, "tree-d")


def test_a_killed_runs_temporaries_are_removed_and_never_shared(tmp_path, seal_2k, monkeypatch):
    sector = tmp_path / "s"
    seal_2k(sector)
    stale = cache_file(sector, TREE_C).with_name(f".{TREE_C}.99999999.chunked.tmp")
    stale.write_bytes(b"a chunk process of a run killed with -9 may still write here")
    seen = []
    real = chunked._put

    def put(path, offset, data):                   # where this run's chunks go
        seen.append(path)
        real(path, offset, data)
    monkeypatch.setattr(chunked, "_put", put)
    seal.precommit2(sector, backend="cpu")
    assert not stale.exists() and str(stale) not in seen
    assert not [p for p in sector.rglob("*") if p.name.endswith(".tmp")]
