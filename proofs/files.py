"""Files written whole or not at all: a reader (or a process restarted after a crash) sees
the old content or the new one, never a torn write."""
import os
import tempfile
from pathlib import Path
from typing import Callable

# mkstemp creates files 0600; atomic writes give them the usual umask-based mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path, content: bytes | Callable, mode: int | None = None) -> None:
    """Write `content` (bytes, or a function given the open binary file) to `path` via a
    temporary file in the same directory and a rename; on failure the temp file goes.
    `mode` (e.g. 0o600 for a secret) replaces the umask-based one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
