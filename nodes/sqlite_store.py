"""The one way a node opens its SQLite file: WAL (readers such as `zqnode status` never
block the node), autocommit (a store method opens its own transaction where it writes
several rows), the schema created if missing."""
import contextlib
import pathlib
import sqlite3

from zqnode.bus.codec import DECODE_ERRORS


class StoreDamaged(ValueError):
    """A row that does not decode: the file was damaged (or written by something else)."""


class SqliteStore:
    schema = ""                  # CREATE ... IF NOT EXISTS statements
    synchronous = "FULL"         # FULL: what was acknowledged survives power loss;
                                 # NORMAL: it survives a crash of the process

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        self.db.executescript(self.schema)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        """Rows written inside go to disk together or not at all. IMMEDIATE takes the
        write lock at once, so a reader never sees half of them and two writers never
        deadlock upgrading."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def decoded(self, decoder, blob, what: str):
        """`blob` decoded, or StoreDamaged naming the file and the row: a damaged
        database stops the node with that, never with a decoder's traceback."""
        try:
            return decoder.decode(blob)
        except DECODE_ERRORS as e:
            raise StoreDamaged(f"{self.path}: {what} does not decode ({e}): the database is "
                               "damaged; restore it from a backup (nothing was changed)") from None
