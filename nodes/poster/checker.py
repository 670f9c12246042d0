"""Is a sector provable right now? Checked before proving (failing sectors are skipped)
and for deadline index+2 (failing sectors are declared faulty, healthy faulty ones
recovered).

`check_sector_files(seal_proof, sector)` is the proofs-level check: the directory and
its sealed file are there with the right size, p_aux hashes to the chain's comm_r, and
tree-r-last paths for fresh random challenges are rebuilt from the sealed file and lead
to comm_r_last (proofs.post.prove_sector with its checks on). It returns "" for a
healthy sector and the reason otherwise.

`SectorChecker` runs such a check for many sectors in worker threads, a few at a time,
each with a timeout: a sector whose storage hangs fails with "timed out" instead of
stalling the deadline (its thread is abandoned and finishes on its own). `in_thread=False`
runs quick stand-in checks inline (a mock clock would jump while a thread works).
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import time
from typing import Callable, Protocol

import trio

from zqnode.nodes.poster.prover import SectorInput
from zqnode.nodes.sector_dirs import sector_dir_name

CheckFn = Callable[[int, SectorInput], str]


def check_sector_files(seal_proof: int, sector: SectorInput) -> str:
    if not sector.path:
        return "no storage path is known for this sector"
    if not os.path.isdir(sector.path):
        return f"sector directory {sector.path} is missing"
    try:
        from zqnode.proofs import post
        from zqnode.proofs import sector as layout
    except ImportError as e:
        return f"cannot check: {e}"
    try:
        p, post_proof = post.window_post_type(seal_proof)
        sealed = layout.sealed_path(sector.path)
        size = os.path.getsize(sealed)
        if size != p.sector_size:
            return f"sealed file {sealed} has {size} bytes, expected {p.sector_size}"
        randomness = post.canonical_randomness(secrets.token_bytes(32))
        post.prove_sector(post.SectorRef(sector.number, sector.path, sector.comm_r), post_proof,
                          randomness, backend="cpu", check=True)
    except FileNotFoundError as e:
        return f"missing file {e.filename}"
    except (OSError, ValueError) as e:
        return str(e) or type(e).__name__
    return ""


class SectorChecker:
    def __init__(self, check: CheckFn = check_sector_files, *, timeout_s: float = 30.0,
                 parallel: int = 4, in_thread: bool = True):
        if not timeout_s > 0 or parallel < 1:
            raise ValueError(f"sector checks need timeout_s > 0 and parallel >= 1, got "
                             f"{timeout_s} and {parallel}")
        self.check_fn, self.timeout_s, self.in_thread = check, timeout_s, in_thread
        self._limit = trio.CapacityLimiter(parallel)

    async def check(self, seal_proof: int, sectors: list[SectorInput]) -> dict[int, str]:
        """{sector number: why it failed} for the sectors that failed; healthy ones are absent."""
        failed: dict[int, str] = {}

        async def one(s: SectorInput) -> None:
            async with self._limit:
                with trio.move_on_after(self.timeout_s) as scope:
                    if self.in_thread:
                        reason = await trio.to_thread.run_sync(self._run, seal_proof, s,
                                                               abandon_on_cancel=True)
                    else:                      # quick stand-ins (simulations under a mock clock)
                        reason = self._run(seal_proof, s)
            if scope.cancelled_caught:
                reason = f"check timed out after {self.timeout_s:g}s"
            if reason:
                failed[s.number] = reason

        async with trio.open_nursery() as nursery:
            for s in sectors:
                nursery.start_soon(one, s)
        return dict(sorted(failed.items()))

    def _run(self, seal_proof: int, sector: SectorInput) -> str:
        try:
            return self.check_fn(seal_proof, sector)
        except Exception as e:          # a bug in a check fails the sector, with the reason
            return f"check failed: {type(e).__name__}: {e}"


class SectorLocator(Protocol):
    def locate(self, miner: int, number: int) -> str:
        """The sector's directory, or "" when storage does not know it."""


# proofs.sector.STAGES, ranked: of several directories of one sector, the most advanced
# is the replica (sealing workers keep the copies they fetched for PC2 or C1).
_STAGE_RANK = {"new": 0, "pc1": 1, "pc2": 2, "finalized": 3}
FINALIZED = _STAGE_RANK["finalized"]


class StorageLocator:
    """Finds sector directories under storage roots: every sub-directory holding a
    `sector.json` (proofs.sector's metadata, which names the miner, the sector and its
    stage). Where a sector has several directories, the finalized one wins (the others
    are copies a sealing worker fetched). A sector not settled (not found, found only
    unfinalized, or its directory went away: a rebuild puts the replica back, maybe
    elsewhere) is looked for first where workers put it (`s-MINER-NUMBER` under each
    root: a sector finalized a moment ago is found at once), then by scanning the roots
    again, at most every `rescan_s`."""

    def __init__(self, roots: list[str], rescan_s: float = 30.0):
        self.roots = [pathlib.Path(r) for r in roots]
        self.rescan_s = rescan_s
        self._paths: dict[tuple[int, int], tuple[str, int]] = {}     # -> (directory, stage rank)
        self._scanned_at: float | None = None

    def locate(self, miner: int, number: int) -> str:
        key = (miner, number)
        found = self._paths.get(key)
        there = found is not None and os.path.isfile(os.path.join(found[0], "sector.json"))
        if there and found[1] == FINALIZED:
            return found[0]
        if found is not None and not there:
            del self._paths[key]                     # it went away
        self._add(self._paths, (str(root / sector_dir_name(miner, number)) for root in self.roots))
        found = self._paths.get(key)
        if (found is None or found[1] != FINALIZED) and (
                self._scanned_at is None or time.monotonic() - self._scanned_at >= self.rescan_s):
            self.scan()
            found = self._paths.get(key)
        return found[0] if found is not None else ""

    def scan(self) -> int:
        found: dict[tuple[int, int], tuple[str, int]] = {}
        for root in self.roots:
            try:
                names = sorted(e.name for e in os.scandir(root))
            except OSError:
                continue
            self._add(found, (str(root / name) for name in names if not name.startswith(".")))  # not a move's
        self._paths = found
        self._scanned_at = time.monotonic()
        return len(found)

    @staticmethod
    def _add(found: dict, directories) -> None:
        """Each directory holding a readable sector.json, where it beats what `found` has."""
        for path in directories:
            try:
                data = json.loads(pathlib.Path(path, "sector.json").read_text())
                key = (int(data["miner"]), int(data["sector"]))
                rank = _STAGE_RANK.get(data.get("stage", "new"), -1)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if key not in found or rank > found[key][1]:
                found[key] = (path, rank)
