"""A repo belongs to one live process: `hold(path)` takes an exclusive lock on REPO/lock
(the file names the holder's pid) for as long as the `with` lasts. The kernel drops the
lock when its process dies, kill -9 included, so a stale file never blocks a restart."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib

LOCK_FILE = "lock"


class RepoInUse(OSError):
    pass


@contextlib.contextmanager
def hold(path: str | os.PathLike):
    repo = pathlib.Path(path).expanduser()
    repo.mkdir(parents=True, exist_ok=True)
    fd = os.open(repo / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)   # not inherited by children
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RepoInUse(f"{repo} is in use by another zqnode process (pid {holder}): stop it, "
                            f"or give this one another --repo") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield repo
    finally:
        os.close(fd)                                    # closing releases the lock
