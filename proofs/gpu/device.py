"""The PyCUDA executor: runs proofs.gpu's host operations on a CUDA device.

PyCUDA is imported only here, inside functions and methods, so that importing proofs.gpu
works on machines without it. Kernels are compiled at first use from cuda/*.cu (see
proofs.gpu.sources) by PyCUDA's SourceModule with nvcc, for the architecture the device
reports (sm_90 on an H100); PyCUDA caches the binaries per source text. Device limits
(multiprocessors, shared memory, threads per block, memory) are read from the device.

UNVERIFIED without a GPU: this module has only been imported and read, never run; the
operations it executes are checked on the host harness (tests/proofs/gpu).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from zqnode.proofs.gpu.launch import Launch, Limits, Ptr, Scalar
from zqnode.proofs.gpu.sources import module_source


class GpuUnavailable(RuntimeError):
    """No usable CUDA device: PyCUDA, the driver, a device or nvcc is missing."""


def find_nvcc() -> str | None:
    """nvcc on PATH, else under CUDA_HOME / CUDA_PATH / /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def probe(device_index: int = 0) -> tuple[bool, str]:
    """(usable, reason or device description), without creating a context."""
    try:
        import pycuda.driver as drv
    except ImportError as e:  # not installed, or libcuda.so missing
        return False, f"pycuda cannot be imported ({e}); install the gpu extra: pip install -e '.[gpu]'"
    try:
        drv.init()
        count = drv.Device.count()
    except (drv.Error, RuntimeError, OSError) as e:  # no driver, or no device
        return False, f"the CUDA driver reports no usable device ({e})"
    if device_index >= count:
        return False, f"no CUDA device {device_index} ({count} present)"
    if find_nvcc() is None:
        return False, "nvcc not found (PATH, CUDA_HOME, /usr/local/cuda): kernels are compiled at run time"
    dev = drv.Device(device_index)
    major, minor = dev.compute_capability()
    sms = dev.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
    return True, f"{dev.name()} (sm_{major}{minor}, {sms} multiprocessors, {dev.total_memory() >> 20} MiB)"


_PREPARE = {"u64": "Q", "u32": "I", "i32": "i"}
_RANGES = {"u64": (0, 1 << 64), "u32": (0, 1 << 32), "i32": (-(1 << 31), 1 << 31)}


def _checked(scalar: Scalar) -> int:
    low, high = _RANGES[scalar.kind]
    if not low <= scalar.value < high:
        raise OverflowError(f"{scalar.value} does not fit a {scalar.kind} kernel argument")
    return scalar.value


class PycudaExecutor:
    """proofs.gpu.launch's executor interface on one CUDA device (its primary context)."""

    def __init__(self, device_index: int = 0):
        usable, reason = probe(device_index)
        if not usable:
            raise GpuUnavailable(reason)
        import pycuda.driver as drv
        self._drv = drv
        self.device = drv.Device(device_index)
        self._context = self.device.retain_primary_context()
        self._context.push()
        attr = drv.device_attribute
        free, _ = drv.mem_get_info()
        self.limits = Limits(
            max_threads_per_block=self.device.get_attribute(attr.MAX_THREADS_PER_BLOCK),
            shared_memory_per_block=self.device.get_attribute(attr.MAX_SHARED_MEMORY_PER_BLOCK),
            multiprocessors=self.device.get_attribute(attr.MULTIPROCESSOR_COUNT),
            total_memory=free)  # what is free when we start is what we may plan with
        major, minor = self.device.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.description = probe(device_index)[1]
        self.cache: dict = {}
        self._modules: dict = {}
        self._functions: dict = {}

    # -- compilation --
    def module(self, name: str):
        if name not in self._modules:
            from pycuda.compiler import SourceModule
            self._modules[name] = SourceModule(module_source(name), nvcc=find_nvcc(), arch=self.arch,
                                               no_extern_c=True, options=["-std=c++17", "-O3"])
        return self._modules[name]

    def _function(self, launch: Launch):
        key = (launch.module, launch.kernel)
        if key not in self._functions:
            signature = "".join("P" if isinstance(a, Ptr) else _PREPARE[a.kind] for a in launch.args)
            fn = self.module(launch.module).get_function(launch.kernel)
            fn.prepare(signature)
            self._functions[key] = fn
        return self._functions[key]

    # -- memory --
    def alloc(self, nbytes: int):
        return self._drv.mem_alloc(max(1, nbytes))

    def free(self, buffer) -> None:
        buffer.free()

    def _address(self, ptr: Ptr) -> int:
        return int(ptr.buffer) + ptr.offset

    def write(self, ptr: Ptr, data, stream=None) -> None:
        array = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        if array.nbytes == 0:
            return
        if stream is None:
            self._drv.memcpy_htod(self._address(ptr), array)
        else:
            self._drv.memcpy_htod_async(self._address(ptr), array, stream)

    def read(self, ptr: Ptr, nbytes: int, out=None, stream=None) -> np.ndarray:
        target = np.empty(nbytes, dtype=np.uint8) if out is None else out[:nbytes]
        if nbytes:
            if stream is None:
                self._drv.memcpy_dtoh(target, self._address(ptr))
            else:
                self._drv.memcpy_dtoh_async(target, self._address(ptr), stream)
        return target if out is None else out

    def memset(self, ptr: Ptr, nbytes: int, stream=None) -> None:
        if stream is None:
            self._drv.memset_d8(self._address(ptr), 0, nbytes)
        else:
            self._drv.memset_d8_async(self._address(ptr), 0, nbytes, stream)

    def host_buffer(self, nbytes: int) -> np.ndarray:
        return self._drv.pagelocked_empty(nbytes, dtype=np.uint8)

    # -- execution --
    def launch(self, launch: Launch, stream=None) -> None:
        # prepared calls pack the arguments with the format given to prepare(): plain ints
        args = [self._address(a) if isinstance(a, Ptr) else _checked(a) for a in launch.args]
        self._function(launch).prepared_async_call((launch.grid, 1), (launch.block, 1, 1), stream, *args,
                                                   shared_size=launch.shared)

    def new_stream(self):
        return self._drv.Stream()

    def synchronize(self, stream=None) -> None:
        if stream is None:
            self._context.synchronize()
        else:
            stream.synchronize()

    def close(self) -> None:
        """Free cached device buffers and release the context."""
        for value in self.cache.values():
            if isinstance(value, Ptr):
                value.buffer.free()
        self.cache.clear()
        self._modules.clear()
        self._functions.clear()
        self._context.pop()
        self._context.detach()
