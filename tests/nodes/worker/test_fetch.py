"""Fetching a sector's files chunk by chunk with checksums: a corrupted chunk is refused
and asked for again, a source that keeps corrupting is given up for the next one, and
the copy mirrors the holder's files."""
import hashlib
import itertools
import os

import pytest

from zqnode.bus.config import BusConfig
from zqnode.bus.memory import MemoryHub
from zqnode.bus.peer import Peer, Refused, Request
from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.fetched import Expected
from zqnode.nodes.worker.fetch import MAX_CHUNK, FetchError, check_fetched, fetch_sector, list_files, read_chunk
from zqnode.nodes.wire.worker import (FileEntry, WorkerChunk, WorkerFetch, WorkerFileList,
                                      WorkerSectorFiles)

_names = itertools.count()
SECTOR = SectorRef(miner=1000, number=7)
META = '{"seal_proof": 5, "miner": 1000, "sector": 7, "sector_size": 2048, "stage": "pc2"}'


@pytest.fixture
async def bus(nursery):
    return await nursery.start(MemoryHub(BusConfig(address=f"mem://fetch-{next(_names)}")).run)


def holder_dir(tmp_path):
    d = tmp_path / "holder" / "s-1000-7"
    (d / "cache").mkdir(parents=True)
    (d / "sealed").write_bytes(os.urandom(5000))
    (d / "cache" / "p_aux").write_bytes(b"a" * 64)
    (d / "sector.json").write_text(META)
    (d / "cache" / ".tmp-leftover").write_bytes(b"half")       # temporary: never served
    return d


class Holder:
    """Serves a sector's files; `corrupt(name, offset, attempt)` decides which answers
    carry damaged bytes (with the checksum of the right ones, as damage in transit)."""

    def __init__(self, bus, name, sector_dir, corrupt=lambda name, offset, attempt: False):
        self.dir, self.corrupt = sector_dir, corrupt
        self.asked: dict[tuple[str, int], int] = {}
        self.peer = Peer(name=name, role="worker", cfg=BusConfig(address=bus))
        self.peer.on(WorkerSectorFiles, self._files)
        self.peer.on(WorkerFetch, self._fetch)

    async def _files(self, req: Request):
        from zqnode.nodes.worker.fetch import serve_files
        return serve_files(self.dir)

    async def _fetch(self, req: Request):
        b = req.body
        chunk, data = read_chunk(self.dir, b.file, b.offset, b.length)
        n = self.asked[(b.file, b.offset)] = self.asked.get((b.file, b.offset), 0) + 1
        if self.corrupt(b.file, b.offset, n):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return chunk, [data]


async def client(nursery, bus):
    peer = Peer(name="fetcher", role="worker", cfg=BusConfig(address=bus))
    await nursery.start(peer.run)
    return peer


async def test_a_corrupted_chunk_is_refused_and_fetched_again(bus, nursery, tmp_path, autojump_clock):
    src = holder_dir(tmp_path)
    holder = Holder(bus, "w1", src,
                    corrupt=lambda name, offset, n: name == "sealed" and offset == 2048 and n == 1)
    await nursery.start(holder.peer.run)
    peer = await client(nursery, bus)
    dest = tmp_path / "mine" / "s-1000-7"
    files, size = await fetch_sector(peer, ["w1"], SECTOR, dest, chunk=1024 * 2, attempts=3)
    assert files == ["cache/p_aux", "sealed", "sector.json"] and size == 5000 + 64 + len(META)
    assert (dest / "sealed").read_bytes() == (src / "sealed").read_bytes()
    assert holder.asked[("sealed", 2048)] == 2 and holder.asked[("sealed", 0)] == 1
    assert [f.name for f in list_files(dest)] == files
    assert not any(p.name.endswith(".fetch") for p in dest.rglob("*"))


async def test_a_source_that_keeps_corrupting_is_given_up_for_the_next(
        bus, nursery, tmp_path, autojump_clock):
    src = holder_dir(tmp_path)
    bad = Holder(bus, "bad", src, corrupt=lambda name, offset, n: name == "sealed")
    good = Holder(bus, "good", src)
    await nursery.start(bad.peer.run)
    await nursery.start(good.peer.run)
    peer = await client(nursery, bus)
    dest = tmp_path / "mine" / "s-1000-7"
    (dest / "cache").mkdir(parents=True)
    (dest / "cache" / "sc-02-data-layer-1.dat").write_bytes(b"stale")      # not at the holder
    await fetch_sector(peer, ["bad", "good"], SECTOR, dest, chunk=4096, attempts=2)
    assert bad.asked[("sealed", 0)] == 2                                   # two tries, then next source
    assert (dest / "sealed").read_bytes() == (src / "sealed").read_bytes()
    assert not (dest / "cache" / "sc-02-data-layer-1.dat").exists()        # mirrors the holder
    with pytest.raises(FetchError, match="bad: .*2 bad chunks"):
        await fetch_sector(peer, ["bad"], SECTOR, tmp_path / "other", chunk=4096, attempts=2)
    assert not (tmp_path / "other" / "sealed").exists()


async def test_nothing_to_fetch_from_is_an_error(bus, nursery, tmp_path, autojump_clock):
    empty = Holder(bus, "w1", tmp_path / "nothing")
    await nursery.start(empty.peer.run)
    peer = await client(nursery, bus)
    with pytest.raises(FetchError, match="w1: .*not_held"):
        await fetch_sector(peer, ["w1"], SECTOR, tmp_path / "dest")
    with pytest.raises(FetchError, match="no source holds it"):
        await fetch_sector(peer, [], SECTOR, tmp_path / "dest")


def test_serving_refuses_paths_outside_the_sector(tmp_path):
    src = holder_dir(tmp_path)
    for name in ("../other/sealed", "/etc/passwd", "cache/.tmp-leftover", ""):
        with pytest.raises(Refused):
            read_chunk(src, name, 0, 10)
    with pytest.raises(Refused, match="not held here"):
        read_chunk(src, "unsealed", 0, 10)
    chunk, data = read_chunk(src, "sealed", 4990, 100)
    assert chunk == WorkerChunk(size=5000, sha256=hashlib.sha256(data).hexdigest()) and len(data) == 10


def test_serving_follows_no_symlink_and_reads_a_bounded_length(tmp_path):
    src = holder_dir(tmp_path)
    (tmp_path / "secret").write_bytes(b"root:x:0:0")
    (src / "passwd").symlink_to(tmp_path / "secret")                # a link to a file outside
    (src / "outside").symlink_to(tmp_path, target_is_directory=True)  # a link to a dir outside
    for name in ("passwd", "outside/secret"):
        with pytest.raises(Refused, match="not held here"):
            read_chunk(src, name, 0, 10)
    assert {f.name for f in list_files(src)} == {"sealed", "cache/p_aux", "sector.json"}
    with pytest.raises(Refused, match="length 0 to"):
        read_chunk(src, "sealed", 0, MAX_CHUNK + 1)                   # a peer picks no size


async def test_a_listing_bigger_than_a_sector_is_refused(bus, nursery, tmp_path, autojump_clock):
    holder = Holder(bus, "w1", holder_dir(tmp_path))
    await nursery.start(holder.peer.run)
    peer = await client(nursery, bus)
    with pytest.raises(FetchError, match="more than a sector has"):
        await fetch_sector(peer, ["w1"], SECTOR, tmp_path / "dest", max_bytes=4096)
    assert not (tmp_path / "dest" / "sealed").exists()


@pytest.mark.parametrize("listing, why", [
    (WorkerFileList(files=[FileEntry("../../escape", 1)]), "bad file name '../../escape'"),
    (WorkerFileList(files=[FileEntry("a\0b", 1)]), "bad file 'a\\x00b'"),
    (WorkerFileList(files=[FileEntry("sealed", -5)]), "bad file 'sealed' of -5 bytes"),
    (WorkerChunk(size=1, sha256="00"), "answered a listing with WorkerChunk"),
])
async def test_a_hostile_listing_is_a_failed_fetch_not_a_crash(bus, nursery, tmp_path, autojump_clock,
                                                             listing, why):
    evil = Peer(name="evil", role="worker", cfg=BusConfig(address=bus))
    evil.on(WorkerSectorFiles, lambda req: _answer(listing))
    await nursery.start(evil.run)
    peer = await client(nursery, bus)
    with pytest.raises(FetchError) as e:
        await fetch_sector(peer, ["evil"], SECTOR, tmp_path / "mine" / "dest")
    assert why in str(e.value)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "mine" / "dest" / "sealed").exists()


async def test_a_fetch_answered_with_another_kind_is_a_failed_fetch(bus, nursery, tmp_path, autojump_clock):
    holder = Holder(bus, "w1", holder_dir(tmp_path))
    holder.peer.on(WorkerFetch, lambda req: _answer(WorkerFileList(files=[])))
    await nursery.start(holder.peer.run)
    peer = await client(nursery, bus)
    with pytest.raises(FetchError, match="w1 answered a fetch with WorkerFileList"):
        await fetch_sector(peer, ["w1"], SECTOR, tmp_path / "dest")


async def _answer(msg):
    return msg


def test_fetched_files_that_are_not_the_sectors_are_refused_and_removed(tmp_path):
    src = holder_dir(tmp_path)
    names = [f.name for f in list_files(src)]
    with pytest.raises(FetchError, match="is not the sector's: p_aux does not hash to comm_r"):
        check_fetched(src, names, Expected(5, comm_r=b"\x01" * 32), 2048)
    assert list_files(src) == []
    check_fetched(src, names, None, 2048)            # not precommitted: nothing to check against


def test_a_fetched_sector_json_naming_other_commitments_is_refused(tmp_path):
    src = holder_dir(tmp_path)
    (src / "sector.json").write_text(META[:-1] + f', "comm_d": "{"ab" * 32}"}}')
    names = [f.name for f in list_files(src)]
    with pytest.raises(FetchError, match="sector.json has comm_d abababab"):
        check_fetched(src, names, Expected(5, comm_d=b"\x01" * 32), 2048)
    assert list_files(src) == []


async def test_a_copy_here_at_a_later_stage_is_not_taken_back_by_a_stale_source(
        bus, nursery, tmp_path, autojump_clock):
    # a work sent again after a manager restart named the PC1 holder as its source, but
    # this worker had run PC2 since: fetching would have put the sector back at pc1
    src = holder_dir(tmp_path)
    (src / "sector.json").write_text(META.replace('"pc2"', '"pc1"'))
    holder = Holder(bus, "w1", src)
    await nursery.start(holder.peer.run)
    peer = await client(nursery, bus)
    dest = tmp_path / "mine" / "s-1000-7"
    dest.mkdir(parents=True)
    (dest / "sector.json").write_text(META)
    (dest / "sealed").write_bytes(b"our replica")
    assert await fetch_sector(peer, ["w1"], SECTOR, dest) == ([], 0)
    assert (dest / "sealed").read_bytes() == b"our replica" and '"pc2"' in (dest / "sector.json").read_text()
    assert ("sealed", 0) not in holder.asked
    # a copy here at the same or an earlier stage is fetched over, as before
    (src / "sector.json").write_text(META)
    files, _ = await fetch_sector(peer, ["w1"], SECTOR, dest)
    assert "sealed" in files and (dest / "sealed").read_bytes() == (src / "sealed").read_bytes()


def test_a_sector_mid_upgrade_is_checked_against_the_replica_the_chain_has(tmp_path):
    """SnapDeals: once the update landed, the chain's comm_r is the update's; the CC replica
    beside it is the sector key. Either comm_r checks out; a third does not."""
    from zqnode.proofs import seal, snap
    from zqnode.proofs.sector import UPDATE_DIR
    from zqnode.proofs.sector import load_meta as meta_of
    src = tmp_path / "s-1000-9"
    seal.precommit1(src, bytes([3]) * 32, seal_proof=5, miner=1000, sector=9,
                    parent_cache_dir=tmp_path / "parents", backend="cpu")
    cc = seal.precommit2(src, backend="cpu")
    done = snap.encode(src, b"snap data" * 50, src / UPDATE_DIR, backend="cpu")
    names = [f.name for f in list_files(src)]
    assert f"{UPDATE_DIR}/sealed" in names
    check_fetched(src, names, Expected(5, comm_r=cc.comm_r), 2048)               # before it lands
    check_fetched(src, names, Expected(5, comm_r=done.comm_r_new, comm_d=done.comm_d_new), 2048)
    assert meta_of(src).comm_r == cc.comm_r.hex()
    with pytest.raises(FetchError, match="not the sector's"):
        check_fetched(src, names, Expected(5, comm_r=b"\x02" * 32), 2048)


def test_a_bad_update_fetched_mid_upgrade_is_refused_and_every_fetched_file_removed(tmp_path):
    from zqnode.proofs import seal, snap
    from zqnode.proofs.sector import UPDATE_DIR
    src = tmp_path / "s-1000-9"
    seal.precommit1(src, bytes([3]) * 32, seal_proof=5, miner=1000, sector=9,
                    parent_cache_dir=tmp_path / "parents", backend="cpu")
    seal.precommit2(src, backend="cpu")
    done = snap.encode(src, b"snap data" * 50, src / UPDATE_DIR, backend="cpu")
    replica = src / UPDATE_DIR / "sealed"
    replica.write_bytes(bytes(replica.stat().st_size))              # not the update's replica
    names = [f.name for f in list_files(src)]
    with pytest.raises(FetchError, match=f"fetched data for {src.name} is not the sector's"):
        check_fetched(src, names, Expected(5, comm_r=done.comm_r_new, comm_d=done.comm_d_new), 2048)
    assert not [n for n in names if (src / n).exists()]


def test_the_sector_key_fetched_mid_upgrade_is_checked_against_the_chains(tmp_path):
    """Once the update landed, the CC replica beside it is checked against the chain's
    sector key, as the update is against the chain's new comm_r."""
    from zqnode.proofs import seal, snap
    from zqnode.proofs.sector import UPDATE_DIR
    src = tmp_path / "s-1000-9"
    seal.precommit1(src, bytes([3]) * 32, seal_proof=5, miner=1000, sector=9,
                    parent_cache_dir=tmp_path / "parents", backend="cpu")
    cc = seal.precommit2(src, backend="cpu")
    done = snap.encode(src, b"snap data" * 50, src / UPDATE_DIR, backend="cpu")
    names = [f.name for f in list_files(src)]
    landed = Expected(5, comm_r=done.comm_r_new, comm_d=done.comm_d_new, sector_key=cc.comm_r)
    check_fetched(src, names, landed, 2048)
    with pytest.raises(FetchError, match="not the sector's"):
        check_fetched(src, names, Expected(5, comm_r=done.comm_r_new, sector_key=b"\x02" * 32), 2048)
    assert not [n for n in names if (src / n).exists()]
