import pytest

from zqnode.nodes.sealing.sector import LogEntry, SectorInfo
from zqnode.nodes.sealing.store import SealingStore


def sector(number: int) -> SectorInfo:
    return SectorInfo(miner=1000, number=number, seal_proof=5, sector_size=2048, kind="cc", state="Proving")


def test_the_sectors_one_event_changed_are_saved_together_or_not_at_all(tmp_path):
    store = SealingStore(tmp_path / "sealing.sqlite")
    unwritable = [LogEntry(ts=1.0, step=1, event="X", data={"x": object()}, prev="", state="Proving")]
    with pytest.raises(TypeError):
        store.save([(sector(1), [], 3), (sector(2), unwritable, 3)])
    assert store.sectors() == []                    # the first sector went back with the second
    store.save([(sector(1), [], 3), (sector(2), [], 3)])
    assert [s.number for s in store.sectors()] == [1, 2]
