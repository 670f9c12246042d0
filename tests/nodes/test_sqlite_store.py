"""The one transaction helper every store uses: all rows or none, and the error goes on."""
import pytest

from zqnode.nodes.sqlite_store import SqliteStore


class Rows(SqliteStore):
    schema = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY);"

    def keys(self) -> list[int]:
        return [k for (k,) in self.db.execute("SELECT k FROM t ORDER BY k")]


def test_a_transaction_commits_its_rows_together(tmp_path):
    store = Rows(tmp_path / "s.sqlite")
    with store.transaction():
        store.db.execute("INSERT INTO t VALUES (1)")
        store.db.execute("INSERT INTO t VALUES (2)")
    store.close()
    assert Rows(tmp_path / "s.sqlite").keys() == [1, 2]


def test_a_failure_inside_leaves_nothing_and_is_raised(tmp_path):
    store = Rows(tmp_path / "s.sqlite")
    store.db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError, match="disk"):
        with store.transaction():
            store.db.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("disk full")
    assert store.keys() == [1]
    with store.transaction():                 # the connection is usable again
        store.db.execute("INSERT INTO t VALUES (3)")
    assert store.keys() == [1, 3]
