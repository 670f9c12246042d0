"""Moving a sector's files between workers (GET). Every worker serves the files of the
sectors it holds (`serve_files`, `serve_chunk`); a worker that needs a sector fetches it
chunk by chunk from a holder (`fetch_sector`): each chunk comes with its sha256 and the
file's size, a chunk that does not match is refused and asked for again, every file is
written under a temporary name, checked for its size and renamed into place, and
sector.json comes last, so a half-fetched sector never looks whole. Files the holder
does not have are removed afterwards: the copy mirrors the holder's.

Neither side trusts the other. A holder serves only regular files inside the sector's
directory (no symlink is followed, no path leaves it), at most MAX_CHUNK bytes a
request and READERS reads at once. A fetcher takes at most `max_bytes` and MAX_FILES
files from a listing, and `check_fetched` compares what came against commitments from
its own side (nodes.fetched): the chunk hashes only say the holder sent what it meant to.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import uuid
from pathlib import Path, PurePosixPath

import msgspec
import trio

from zqnode.bus.codec import RemoteError
from zqnode.nodes.fetched import Expected, FetchedDataError, verify_meta, verify_sealed, verify_unsealed
from zqnode.bus.peer import CallTimeout, Peer, Refused
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.proofs.sector import META, SEALED, STAGES, UNSEALED, UPDATE_DIR, SectorError, SectorMeta, load_meta
from zqnode.nodes.wire.worker import (FileEntry, WorkerChunk, WorkerFetch, WorkerFileList,
                                      WorkerSectorFiles)

log = logging.getLogger("zqnode.worker.fetch")

NOT_HELD = "not_held"
THREAD_MIN = 256 << 10           # chunks at least this big are read and hashed in a thread
MAX_CHUNK = 16 << 20             # bytes one WorkerFetch may ask for
MAX_META = 64 << 10              # bytes of a sector.json
MAX_FILES = 4096                 # files a listing may name
READERS = trio.CapacityLimiter(4)   # chunks read at once for other workers (memory bound)


class FetchError(Exception):
    pass


def _is_temp(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def list_files(sector_dir: Path) -> list[FileEntry]:
    """The sector's regular files (temporary ones and symlinks left out), sector.json last."""
    if not sector_dir.is_dir() or sector_dir.is_symlink():
        return []
    found = []
    for path in sector_dir.rglob("*"):       # rglob does not descend into symlinked dirs
        rel = PurePosixPath(path.relative_to(sector_dir).as_posix())
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and not _is_temp(rel):
            found.append(FileEntry(str(rel), st.st_size))
    return sorted(found, key=lambda f: (f.name == META, f.name))


def safe_path(sector_dir: Path, name: str) -> Path:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or _is_temp(rel):
        raise Refused("invalid", f"bad file name {name!r}")
    path = sector_dir / Path(*rel.parts)
    for parent in [sector_dir, *reversed(path.parents[:len(rel.parts) - 1])]:
        if parent.is_symlink():              # a link anywhere on the way could lead out
            raise Refused(NOT_HELD, f"{name!r} is not held here")
    return path


def serve_files(sector_dir: Path) -> WorkerFileList:
    files = list_files(sector_dir)
    if not files:
        raise Refused(NOT_HELD, f"{sector_dir.name} is not held here")
    return WorkerFileList(files=files)


def read_chunk(sector_dir: Path, name: str, offset: int, length: int) -> tuple[WorkerChunk, bytes]:
    path = safe_path(sector_dir, name)
    if offset < 0 or not 0 <= length <= MAX_CHUNK:
        raise Refused("invalid", f"offset must be >= 0 and length 0 to {MAX_CHUNK} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)      # the file itself no link either
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise Refused(NOT_HELD, f"{sector_dir.name}/{name} is not held here") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(NOT_HELD, f"{sector_dir.name}/{name} is not held here") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(NOT_HELD, f"{sector_dir.name}/{name} is not held here")
        f.seek(offset)
        data = f.read(length)
    return WorkerChunk(size=st.st_size, sha256=hashlib.sha256(data).hexdigest()), data


async def serve_chunk(sector_dir: Path, req: WorkerFetch) -> tuple[WorkerChunk, list]:
    if req.length < THREAD_MIN:      # a thread hand-off costs more than a small read
        chunk, data = read_chunk(sector_dir, req.file, req.offset, req.length)
    else:
        async with READERS:
            chunk, data = await trio.to_thread.run_sync(read_chunk, sector_dir, req.file,
                                                        req.offset, req.length)
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
        if not isinstance(reply, WorkerChunk):
            raise FetchError(f"{source} answered a fetch with {type(reply).__name__}")
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
                       chunk: int = 4 << 20, attempts: int = 3,
                       max_bytes: int = 1 << 40) -> tuple[list[str], int]:
    """Copy the sector's files from the first source that has them into `dest`, at most
    `max_bytes` in all. Returns (file names, bytes). Raises FetchError when no source
    could give them. A copy here at a later stage than the source's stays as it is
    (nothing is fetched): a stale source must not take a sector back a step."""
    problems = []
    chunk = min(chunk, MAX_CHUNK)
    for source in sources:
        try:
            listing = await peer.call(source, WorkerSectorFiles(sector=sector))
            _check_listing(listing, dest, max_bytes)
            ours = _stage_here(dest)
            theirs = ours and await _stage_at(peer, source, sector, listing, attempts)
            if ours and theirs and STAGES.index(ours) > STAGES.index(theirs):
                log.info("kept s-%d-%d here at stage %s: %s has it at %s", sector.miner,
                         sector.number, ours, source, theirs)
                return [], 0
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


def _stage_here(dest: Path) -> str | None:
    try:
        return load_meta(dest).stage
    except SectorError:                 # none here (or damaged): fetch
        return None


async def _stage_at(peer: Peer, source: str, sector: SectorRef, listing: WorkerFileList,
                    attempts: int) -> str | None:
    """The stage the source's sector.json names (None without one)."""
    entry = next((f for f in listing.files if f.name == META), None)
    if entry is None:
        return None
    if entry.size > MAX_META:
        raise FetchError(f"its {META} has {entry.size} bytes (at most {MAX_META})")
    raw = await _fetch_chunk(peer, source, sector, entry, 0, entry.size, attempts)
    try:
        stage = msgspec.json.decode(raw, type=SectorMeta).stage
    except msgspec.DecodeError as e:
        raise FetchError(f"its {META} does not decode: {e}") from None
    if stage not in STAGES:
        raise FetchError(f"its {META} names an unknown stage {stage!r}")
    return stage


def _check_listing(listing, dest: Path, max_bytes: int) -> None:
    """A source's listing, before anything is written: the right kind, a sector's worth
    of files, each a name that stays inside `dest`. FetchError otherwise."""
    if not isinstance(listing, WorkerFileList):
        raise FetchError(f"it answered a listing with {type(listing).__name__}")
    total = sum(max(f.size, 0) for f in listing.files)
    if len(listing.files) > MAX_FILES or total > max_bytes:
        raise FetchError(f"it lists {len(listing.files)} files of {total} bytes: more "
                         f"than a sector has (at most {MAX_FILES} files, {max_bytes} bytes)")
    for f in listing.files:
        if "\0" in f.name or f.size < 0:
            raise FetchError(f"it lists a bad file {f.name!r} of {f.size} bytes")
        try:
            safe_path(dest, f.name)
        except Refused as e:
            raise FetchError(f"it lists a {e.message}") from None


def _replica_of(dest: Path, names: set[str], comm_r: bytes) -> tuple[Path, set[str]]:
    """Where the files of the chain's comm_r are: the sector's directory, or during a
    SnapDeals upgrade its update (the CC replica beside it is then only the sector key)."""
    inner = f"{UPDATE_DIR}/{META}"
    if not comm_r or inner not in names:
        return dest, names
    try:
        theirs = load_meta(dest / UPDATE_DIR).comm_r
    except SectorError:
        return dest, names
    if theirs != comm_r.hex():
        return dest, names
    prefix = f"{UPDATE_DIR}/"
    return dest / UPDATE_DIR, {n[len(prefix):] for n in names if n.startswith(prefix)}


def check_fetched(dest: Path, files: list[str], expected: "Expected | None", sector_size: int) -> None:
    """What was fetched into `dest` against commitments from our own side (the chain, or
    the work's params): sector.json's commitments, the sealed replica and its cache
    against comm_r, the unsealed file against comm_d. Runs in a worker thread (it hashes). Raises FetchError, after
    removing the files, when they do not match. Without commitments (a sector not yet
    precommitted: PC1's layers have none) only the chunk hashes vouch for them."""
    if expected is None:
        return
    where, names = _replica_of(dest, set(files), expected.comm_r)
    checks = [(where, names, expected.comm_r, expected.comm_d)]
    if where != dest:                  # mid-upgrade: the CC replica beside it is the sector key
        checks.append((dest, set(files), expected.sector_key, b""))
    try:
        for d, n, comm_r, comm_d in checks:
            if META in n:
                verify_meta(d, comm_r, comm_d)
            if comm_r and SEALED in n:
                verify_sealed(d, comm_r, expected.seal_proof)
            if comm_d and UNSEALED in n:
                verify_unsealed(d, comm_d, sector_size)
    except FetchedDataError as e:
        for name in files:
            safe_path(dest, name).unlink(missing_ok=True)
        raise FetchError(f"fetched data for {dest.name} is not the sector's: {e}") from None
