"""The manager's store keeps the storage index across restarts, and forgets a sector
whose files were dropped."""
from zqnode.nodes.manager import tracker as T
from zqnode.nodes.manager.store import ManagerStore


def test_the_storage_index_survives_a_restart_and_forgets_dropped_sectors(tmp_path):
    store = ManagerStore(tmp_path / "manager.sqlite")
    store.apply([T.Located(1000, 1, "w1"), T.Located(1000, 2, "w2")])
    store.apply([T.Located(1000, 1, "")])
    store.close()
    _, locations = ManagerStore(tmp_path / "manager.sqlite").load()
    assert locations == {(1000, 2): "w2"}
