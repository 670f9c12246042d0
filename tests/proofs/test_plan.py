"""proofs.plan: the disk it gives each stage is what sealing a sector writes, and the time
is the work over the rates (checked with rates given, not measured)."""
import pytest

from zqnode.proofs import plan, seal
from zqnode.proofs.params import seal_proof
from zqnode.proofs.sdr.cache import Graph, parent_cache
from zqnode.proofs.sector import cache_dir

RATES = plan.Rates("cpu", 2, parent_nodes_per_s=1e6, labels_per_s=1e5, tree_d_nodes_per_s=1e6,
                   pc2_nodes_per_s=1e3, poseidon8_per_s=1e3)


def _bytes(*paths) -> int:
    return sum(p.stat().st_size for p in paths)


def test_disk_per_stage_is_what_sealing_writes(tmp_path, seal_2k):
    sector, pc = tmp_path / "s", tmp_path / "pc"
    rows = {r.name: r for r in plan.stages(seal_proof(5), RATES, cores=2)}
    parent_cache(Graph.for_proof(5), pc)
    assert rows["parent cache"].disk_bytes == _bytes(*pc.glob("*.cache"))
    seal.add_piece(sector, bytes(2032), seal_proof=5, miner=1000, sector=1)
    assert rows["AP"].disk_bytes == _bytes(sector / "unsealed")
    seal_2k(sector)
    cache = cache_dir(sector)
    assert rows["PC1 tree-d"].disk_bytes == _bytes(*cache.glob("*tree-d*"))
    assert rows["PC1 labels"].disk_bytes == _bytes(*cache.glob("*layer*"))
    assert rows["PC2"].disk_bytes == _bytes(*cache.glob("*tree-c*"), *cache.glob("*tree-r*"), sector / "sealed")
    def data_files():                      # sector.json only records the stage
        return _bytes(*[p for p in sector.rglob("*") if p.is_file() and p.name != "sector.json"])
    before = data_files()
    seal.finalize(sector)
    after = data_files()
    assert rows["FIN"].disk_bytes == after - before


def test_times_are_the_work_over_the_rates():
    p = seal_proof(8)                                          # 32 GiB, 11 layers
    rates = plan.Rates("cpu", 11, 1e6, 1e5, 1e6, 1e3, 1e3)
    rows = {r.name: r for r in plan.stages(p, rates, cores=16)}
    assert rows["PC1 labels"].seconds == pytest.approx(11 * 2 ** 30 / 1e5)   # sequential: no cores
    assert rows["PC2"].seconds == pytest.approx(2 ** 30 / 1e3 / 16)
    assert rows["PC1 tree-d"].seconds == pytest.approx(2 ** 30 / 1e6 / 16)
    assert rows["WindowPoSt sector"].seconds == pytest.approx(10 * (64 + 8 + 1) / 1e3)
    summary = plan.summary(p, rates, 16)
    assert summary["stages"][0]["disk_bytes"] == 56 << 30               # the 32 GiB parent cache
    assert summary["peak_disk_bytes"] > (56 + 32 + 64 + 352) << 30
    with pytest.raises(ValueError, match="11 layers"):
        plan.stages(seal_proof(5), rates, 1)
    with pytest.raises(ValueError, match="cores"):
        plan.stages(p, rates, 0)
