"""Moving a sector's files between workers (GET). Every worker serves the files of the
sectors it holds (`serve_files`, `serve_chunk`); a worker that needs a sector fetches it
chunk by chunk from a holder (`fetch_sector`): each chunk comes with its sha256 and the
file's size, a chunk that does not match is refused and asked for again, every file is
written under a temporary name, checked for its size and renamed into place, and
sector.json comes last, so a half-fetched sector never looks whole. Files the holder
does not have are removed afterwards: the copy mirrors the holder's.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path, PurePosixPath

import trio

from bus.codec import RemoteError
from bus.peer import CallTimeout, Peer, Refused
from nodes.scheduler.messages import SectorRef
from nodes.worker.wire import FileEntry, WorkerChunk, WorkerFetch, WorkerFileList, WorkerSectorFiles

log = logging.getLogger("zqnode.worker.fetch")

META = "sector.json"
NOT_HELD = "not_held"
THREAD_MIN = 256 << 10           # chunks at least this big are read and hashed in a thread


class FetchError(Exception):
    pass


def _is_temp(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def list_files(sector_dir: Path) -> list[FileEntry]:
    """The sector's files (temporary ones left out), sector.json last."""
    if not sector_dir.is_dir():
        return []
    found = []
    for path in sector_dir.rglob("*"):
        rel = PurePosixPath(path.relative_to(sector_dir).as_posix())
        if path.is_file() and not _is_temp(rel):
            found.append(FileEntry(str(rel), path.stat().st_size))
    return sorted(found, key=lambda f: (f.name == META, f.name))


def safe_path(sector_dir: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or _is_temp(rel):
        raise Refused("invalid", f"bad file name {name!r}")
    return sector_dir / Path(*rel.parts)


def serve_files(sector_dir: Path) -> WorkerFileList:
    files = list_files(sector_dir)
    if not files:
        raise Refused(NOT_HELD, f"{sector_dir.name} is not held here")
    return WorkerFileList(files=files)


def read_chunk(sector_dir: Path, name: str, offset: int, length: int) -> tuple[WorkerChunk, bytes]:
    path = safe_path(sector_dir, name)
    if offset < 0 or length < 0:
        raise Refused("invalid", "offset and length must be >= 0")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(length)
    except FileNotFoundError:
        raise Refused(NOT_HELD, f"{sector_dir.name}/{name} is not held here") from None
    return WorkerChunk(size=size, sha256=hashlib.sha256(data).hexdigest()), data


async def serve_chunk(sector_dir: Path, req: WorkerFetch) -> tuple[WorkerChunk, list]:
    if req.length < THREAD_MIN:      # a thread hand-off costs more than a small read
        chunk, data = read_chunk(sector_dir, req.file, req.offset, req.length)
    else:
        chunk, data = await trio.to_thread.run_sync(read_chunk, sector_dir, req.file, req.offset,
                                                    req.length)
    return chunk, [data]


async def _fetch_file(peer: Peer, source: str, sector: SectorRef, entry: FileEntry, dest: Path,
                      chunk: int, attempts: int) -> None:
    target = safe_path(dest, entry.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.fetch"
    try:
        with open(tmp, "wb") as f:
            offset = 0
            while offset < entry.size:
                length = min(chunk, entry.size - offset)
                f.write(await _fetch_chunk(peer, source, sector, entry, offset, length, attempts))
                offset += length
            f.flush()
            if entry.size >= THREAD_MIN:
                await trio.to_thread.run_sync(os.fsync, f.fileno())
            else:
                os.fsync(f.fileno())
        if tmp.stat().st_size != entry.size:
            raise FetchError(f"{entry.name}: got {tmp.stat().st_size} bytes, expected {entry.size}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


async def _fetch_chunk(peer: Peer, source: str, sector: SectorRef, entry: FileEntry, offset: int,
                       length: int, attempts: int) -> bytes:
    why = ""
    for _ in range(attempts):
        reply, buffers = await peer.call_with_buffers(
            source, WorkerFetch(sector=sector, file=entry.name, offset=offset, length=length),
            cause=f"s-{sector.miner}-{sector.number}")
        data = bytes(memoryview(buffers[0])) if buffers else b""
        if reply.size != entry.size:
            raise FetchError(f"{entry.name} changed at {source}: {reply.size} bytes, "
                             f"listed as {entry.size}")
        if len(data) == length and hashlib.sha256(data).hexdigest() == reply.sha256:
            return data
        why = f"{len(data)} bytes with sha256 {hashlib.sha256(data).hexdigest()[:12]}, " \
              f"expected {length} with {reply.sha256[:12]}"
        log.warning("refused a chunk of %s at %d from %s: %s; asking again", entry.name, offset,
                    source, why)
    raise FetchError(f"{entry.name} at {offset} from {source}: {attempts} bad chunks ({why})")


async def fetch_sector(peer: Peer, sources: list[str], sector: SectorRef, dest: Path, *,
                       chunk: int = 4 << 20, attempts: int = 3) -> tuple[list[str], int]:
    """Copy the sector's files from the first source that has them into `dest`.
    Returns (file names, bytes). Raises FetchError when no source could give them."""
    problems = []
    for source in sources:
        try:
            listing = await peer.call(source, WorkerSectorFiles(sector=sector))
            dest.mkdir(parents=True, exist_ok=True)
            for entry in listing.files:
                await _fetch_file(peer, source, sector, entry, dest, chunk, attempts)
        except (RemoteError, CallTimeout, FetchError, OSError) as e:
            problems.append(f"{source}: {e}")
            continue
        wanted = {f.name for f in listing.files}
        for extra in list_files(dest):
            if extra.name not in wanted:
                safe_path(dest, extra.name).unlink(missing_ok=True)
        return [f.name for f in listing.files], sum(f.size for f in listing.files)
    raise FetchError(f"cannot fetch s-{sector.miner}-{sector.number}: "
                     + ("; ".join(problems) if problems else "no source holds it"))
