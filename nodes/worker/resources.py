"""What a worker has, read from the machine (psutil) each time it is asked, so the
scheduler sees current figures rather than those at registration."""
from __future__ import annotations

import shutil
import subprocess

import psutil


def gpus() -> list[dict]:
    """NVIDIA GPUs from nvidia-smi when it is installed; [] otherwise."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.used",
                              "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        name, total, used = (x.strip() for x in line.split(","))
        found.append({"name": name, "memory_total": int(total) << 20, "memory_used": int(used) << 20})
    return found


def snapshot(gpu_list: list[dict] | None = None) -> dict:
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    return {
        "cpus": psutil.cpu_count(logical=True) or 1,
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_total": mem.total,
        "memory_used": mem.total - mem.available,
        "swap_total": swap.total,
        "swap_used": swap.used,
        "gpus": gpus() if gpu_list is None else gpu_list,
    }
