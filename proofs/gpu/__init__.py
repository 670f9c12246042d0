"""CUDA twins of the CPU proof code: sha254 trees and CommP, Poseidon, tree-c,
tree-r-last and WindowPoSt paths (kernels in the repository's cuda/ folder).

Importing this package never imports PyCUDA; `available()` says whether a device can be
used, and `CudaBackend()` opens one (raising GpuUnavailable with the reason otherwise).
"""
from __future__ import annotations

__all__ = ["CudaBackend", "GpuUnavailable", "available"]


def available(device_index: int = 0) -> tuple[bool, str]:
    """(True, device description) when PyCUDA, the driver, a device and nvcc are all there;
    else (False, what is missing)."""
    from proofs.gpu.device import probe
    return probe(device_index)


def __getattr__(name: str):
    # Lazy: these modules import numpy and the CPU code, never pycuda at import time.
    if name == "CudaBackend":
        from proofs.gpu.backend import CudaBackend
        return CudaBackend
    if name == "GpuUnavailable":
        from proofs.gpu.device import GpuUnavailable
        return GpuUnavailable
    raise AttributeError(f"module 'proofs.gpu' has no attribute {name!r}")
