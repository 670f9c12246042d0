"""CUDA twins of the CPU proof code: sha254 trees and CommP, Poseidon, tree-c,
tree-r-last and WindowPoSt paths (kernels in the repository's cuda/ folder).

Importing this package never imports PyCUDA; `available()` says whether a device can be
used, and `CudaBackend()` opens one (raising GpuUnavailable with the reason otherwise).
"""
from __future__ import annotations

__all__ = ["CudaBackend", "GpuProofsBackend", "GpuUnavailable", "available"]


def _register() -> None:
    from zqnode.proofs.backend import register_backend
    from zqnode.proofs.gpu.backend import GpuProofsBackend
    register_backend("cuda", GpuProofsBackend)   # built on first get_backend('cuda')


_register()


def available(device_index: int = 0) -> tuple[bool, str]:
    """(True, device description) when PyCUDA, the driver, a device and nvcc are all there;
    else (False, what is missing)."""
    from zqnode.proofs.gpu.device import probe
    return probe(device_index)


def __getattr__(name: str):
    # Lazy: these modules import numpy and the CPU code, never pycuda at import time.
    if name in ("CudaBackend", "GpuProofsBackend"):
        from zqnode.proofs.gpu import backend
        return getattr(backend, name)
    if name == "GpuUnavailable":
        from zqnode.proofs.gpu.device import GpuUnavailable
        return GpuUnavailable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
