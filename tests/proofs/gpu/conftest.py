"""The host harness (harness.cu built with nvcc) and an executor that runs on it.

`HarnessExecutor` implements proofs.gpu.launch's executor interface over the harness
process, so proofs.gpu's host operations run unchanged, their kernels executed on the CPU
from the same __host__ __device__ bodies the device runs. Streams are accepted and
ignored (everything is in order); buffers are exactly sized and the harness is built with
AddressSanitizer when the toolchain allows, so an out-of-range access in a kernel body
fails the test.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zqnode.proofs.gpu.device import find_nvcc
from zqnode.proofs.gpu.launch import Limits, Ptr, Scalar
from zqnode.proofs.gpu.sources import CUDA_DIR, MODULES, module_source

HERE = Path(__file__).resolve().parent
NVCC = find_nvcc()
# What a harness "device" reports: an H100's per-block limits, a small memory so that
# chunked paths are taken.
HARNESS_LIMITS = Limits(max_threads_per_block=1024, shared_memory_per_block=48 * 1024,
                        multiprocessors=132, total_memory=64 << 20)


def _build(out: Path) -> Path:
    base = [NVCC, "-O1", "-std=c++17", "-I", str(CUDA_DIR), str(HERE / "harness.cu"), "-o", str(out)]
    asan = ["-Xcompiler=-fsanitize=address,-fno-omit-frame-pointer", "-lasan"]
    done = subprocess.run(base + asan, check=False, capture_output=True, text=True)
    if done.returncode != 0:  # no AddressSanitizer runtime: build plain
        done = subprocess.run(base, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"harness.cu does not compile:\n{done.stderr}")
    return out


@pytest.fixture(scope="session")
def harness_binary(tmp_path_factory) -> Path:
    if NVCC is None:
        pytest.skip("nvcc is not installed: the host harness cannot be built")
    return _build(tmp_path_factory.mktemp("harness") / "harness")


def _kernels_of(module: str) -> set[str]:
    return set(re.findall(r'extern "C" __global__ void(?: __launch_bounds__\([^)]*\))?\s+(\w+)\(',
                          module_source(module)))


KERNELS = {}


def kernel_exists(module: str, kernel: str) -> bool:
    if not KERNELS:
        KERNELS.update({m: _kernels_of(m) for m in MODULES})
        # poseidon.cu makes its hash kernels with a macro: poseidon_##A
        KERNELS["poseidon"] |= {f"poseidon_{a}" for a in re.findall(r"^ZQ_POSEIDON_KERNEL\((\d+)\)",
                                                                   module_source("poseidon"), re.MULTILINE)}
    return kernel in KERNELS.get(module, ())


class HarnessError(AssertionError):
    """The harness rejected a command or crashed (its stderr says why)."""


class HarnessExecutor:
    def __init__(self, binary: Path, limits: Limits = HARNESS_LIMITS):
        self.limits = limits
        self.cache: dict = {}
        self._next = 0
        self._sizes: dict[str, int] = {}
        self._proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, bufsize=1 << 20,
                                      env={"ASAN_OPTIONS": "detect_leaks=0"})
        self.launches: list = []  # every launch, for tests that look at the plan

    # -- protocol --
    def send(self, line: str) -> None:
        try:
            self._proc.stdin.write(line + "\n")
        except BrokenPipeError:
            self._died()

    def ask(self, line: str) -> str:
        self.send(line)
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline()
        if not answer:
            self._died()
        return answer.strip()

    def _died(self):
        self._proc.wait(timeout=10)
        raise HarnessError(f"harness exited {self._proc.returncode}: {self._proc.stderr.read()[-4000:]}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=10)

    # -- executor interface --
    def alloc(self, nbytes: int) -> str:
        name = f"b{self._next}"
        self._next += 1
        self._sizes[name] = nbytes
        self.send(f"alloc {name} {nbytes}")
        return name

    def free(self, buffer: str) -> None:
        self.send(f"free {buffer}")
        del self._sizes[buffer]

    def write(self, ptr: Ptr, data, stream=None) -> None:
        raw = memoryview(data).cast("B").tobytes()
        if raw:
            self.send(f"write {ptr.buffer} {ptr.offset} {raw.hex()}")

    def read(self, ptr: Ptr, nbytes: int, out=None, stream=None) -> np.ndarray:
        data = np.frombuffer(bytes.fromhex(self.ask(f"read {ptr.buffer} {ptr.offset} {nbytes}")), dtype=np.uint8)
        if out is None:
            return data.copy()
        out[:nbytes] = data
        return out

    def memset(self, ptr: Ptr, nbytes: int, stream=None) -> None:
        self.send(f"memset {ptr.buffer} {ptr.offset} {nbytes} 0")

    def launch(self, launch, stream=None) -> None:
        self.launches.append(launch)
        assert kernel_exists(launch.module, launch.kernel), f"no kernel {launch.kernel} in cuda/{launch.module}.cu"
        args = []
        for a in launch.args:
            if isinstance(a, Ptr):
                args.append(f"p:{a.buffer}:{a.offset}")
            else:
                assert isinstance(a, Scalar), a
                args.append(f"{a.kind}:{a.value}")
        self.send(f"launch {launch.kernel} {launch.grid} {launch.block} {launch.shared} {' '.join(args)}")

    def new_stream(self):
        return object()

    def synchronize(self, stream=None) -> None:
        if self.ask("sync") != "ok":
            raise HarnessError("sync failed")

    def host_buffer(self, nbytes: int) -> np.ndarray:
        return np.zeros(nbytes, dtype=np.uint8)

    # -- for tests --
    def live_buffers(self) -> dict[str, int]:
        return dict(self._sizes)


@pytest.fixture
def hx(harness_binary):
    ex = HarnessExecutor(harness_binary)
    yield ex
    ex.close()
