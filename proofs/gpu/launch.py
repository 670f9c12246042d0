"""What the host code asks of a device, independent of PyCUDA.

Host operations (proofs/gpu/sha254.py, poseidon.py, post.py) are written against an
executor with the small interface below. `proofs.gpu.device.PycudaExecutor` runs them on a
CUDA device; the tests run the same operations on the host harness
(tests/proofs/gpu/harness.cu), which executes the kernels' __host__ __device__ bodies.
So everything but the PyCUDA calls themselves is checked without a GPU.

Executor interface (duck-typed):
    limits: Limits
    cache: dict                       # per-device objects (uploaded constants, ...)
    alloc(nbytes) -> buffer;  free(buffer)
    write(ptr, data, stream=None)     # host -> device; data: bytes-like / uint8 array
    read(ptr, nbytes, out=None, stream=None) -> uint8 array (out when given)
    memset(ptr, nbytes, stream=None)  # zero
    launch(launch, stream=None)
    new_stream() -> stream;  synchronize(stream=None)
    host_buffer(nbytes) -> uint8 array  # page-locked on a device, for async copies
With a stream, copies and launches are queued on it and `out`/`data` must stay untouched
until the stream is synchronized.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Limits(NamedTuple):
    """What the host code needs to know of the device (read from it, not assumed)."""
    max_threads_per_block: int
    shared_memory_per_block: int
    multiprocessors: int
    total_memory: int


@dataclass(frozen=True)
class Ptr:
    """A device address: a buffer and a byte offset into it."""
    buffer: object
    offset: int = 0

    def at(self, delta: int) -> Ptr:
        return Ptr(self.buffer, self.offset + delta)


@dataclass(frozen=True)
class Scalar:
    kind: str  # 'u64', 'u32' or 'i32'
    value: int


def u64(v: int) -> Scalar:
    return Scalar("u64", int(v))


def u32(v: int) -> Scalar:
    return Scalar("u32", int(v))


def i32(v: int) -> Scalar:
    return Scalar("i32", int(v))


@dataclass(frozen=True)
class Launch:
    module: str        # cuda/<module>.cu
    kernel: str
    grid: int
    block: int
    args: tuple        # Ptr | Scalar, in the kernel's parameter order
    shared: int = 0    # dynamic shared memory in bytes


def blocks_for(items: int, threads: int) -> int:
    return max(1, -(-items // threads))
