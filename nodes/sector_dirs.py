"""Where a worker keeps things under its repo."""
from __future__ import annotations

from pathlib import Path


def sectors_root(repo) -> Path:
    return Path(repo) / "sectors"


def sector_dir_name(miner: int, number: int) -> str:
    return f"s-{miner}-{number}"


def sector_dir(repo, miner: int, number: int) -> Path:
    return sectors_root(repo) / sector_dir_name(miner, number)
