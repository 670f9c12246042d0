"""The heavy proof operations behind one small interface, with a CPU implementation.

Sealing (proofs.seal) and proving (proofs.porep, proofs.post) call these methods and
nothing else for the bulk hashing, so a GPU implementation can take over by providing
the same methods with byte-identical results. Buffers are bytes-like (bytes, memoryview,
numpy arrays or memmaps) of 32-byte little-endian words; trees are lists of levels,
leaves first, root last, each level one bytes object (see proofs.ptree, proofs.merkle).

    get_backend("cpu")    the exact reference (hashlib, numpy, pure-Python Poseidon)
    get_backend("cuda")   the CUDA backend, or BackendUnavailable('cuda backend not available: ...')
    get_backend("auto")   cuda when it is available, else cpu

A GPU package registers itself with `register_backend("cuda", factory)` when imported;
`get_backend` imports `proofs.gpu` on first demand. The factory should raise
BackendUnavailable (with the reason) when PyCUDA or a device is missing.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence

from zqnode.proofs import encoding, merkle, ptree
from zqnode.proofs.poseidon import hash_columns

__all__ = ["Backend", "CpuBackend", "BackendUnavailable", "register_backend", "get_backend",
           "BACKEND_NAMES"]

BACKEND_NAMES = ("auto", "cpu", "cuda")


class BackendUnavailable(ValueError):
    """A backend that was asked for by name but cannot run here."""


class Backend:
    """What a backend must do. Every method is deterministic and exact."""

    name = "abstract"

    def sha254_root(self, leaves) -> bytes:
        """Root of the binary sha254 tree over a power-of-two run of leaves (CommP chunks)."""
        raise NotImplementedError

    def tree_d(self, leaves) -> list[bytes]:
        """All levels of the binary sha254 tree over `leaves` (tree-d; root = CommD)."""
        raise NotImplementedError

    def tree_c(self, layers: Sequence, arities: Sequence[int]) -> list[bytes]:
        """tree-c: leaf v = Poseidon(arity = len(layers)) of (layers[0][v], ..., layers[-1][v]);
        then the Poseidon tree with the given per-level arities. All levels."""
        raise NotImplementedError

    def tree_r_last(self, replica, arities: Sequence[int]) -> list[bytes]:
        """All levels of the Poseidon tree over the replica words (root = comm_r_last)."""
        raise NotImplementedError

    def encode(self, data, key) -> bytes:
        """(data + key) mod p word by word: the replica."""
        raise NotImplementedError

    def decode(self, replica, key) -> bytes:
        """(replica - key) mod p word by word: the data back."""
        raise NotImplementedError

    def update_encode(self, base, data, factors: Sequence[int], shift: int, first: int = 0) -> bytes:
        """SnapDeals (proofs.update): base[i] + data[i] * factors[(first + i) >> shift] mod p,
        word by word; the buffers hold nodes first, first + 1, ..."""
        raise NotImplementedError

    def tree_r_paths(self, upper: Sequence[bytes], read_segment: Callable[[range], object],
                     indices: Sequence[int], arities: Sequence[int],
                     check: bool = True) -> list[list[ptree.PathStep]]:
        """Inclusion paths in tree-r-last for a batch of leaves (PoSt and C1 openings).

        `upper` are the stored levels (levels[k:], root last); `read_segment(range)` gives
        replica leaves. Each segment is rehashed up to level k; with `check` a result that
        differs from the stored level-k node raises ptree.TreeError."""
        raise NotImplementedError


class CpuBackend(Backend):
    """The reference: proofs.merkle, proofs.poseidon/ptree and proofs.encoding."""

    name = "cpu"

    def sha254_root(self, leaves) -> bytes:
        return merkle.merkle_root(leaves)

    def tree_d(self, leaves) -> list[bytes]:
        return merkle.tree_levels(leaves)

    def tree_c(self, layers: Sequence, arities: Sequence[int]) -> list[bytes]:
        return ptree.build_levels(hash_columns([memoryview(layer).cast("B") for layer in layers]),
                                  arities)

    def tree_r_last(self, replica, arities: Sequence[int]) -> list[bytes]:
        return ptree.build_levels(replica, arities)

    def encode(self, data, key) -> bytes:
        return encoding.encode(data, key)

    def decode(self, replica, key) -> bytes:
        return encoding.decode(replica, key)

    def update_encode(self, base, data, factors, shift, first=0) -> bytes:
        from zqnode.proofs.update import mul_add
        return mul_add(base, data, factors, shift, first)

    def tree_r_paths(self, upper, read_segment, indices, arities, check=True):
        return ptree.paths_from_upper(upper, read_segment, indices, arities, check)


_CPU = CpuBackend()
_factories: dict[str, Callable[[], Backend]] = {}
_instances: dict[str, Backend] = {}
_failures: dict[str, str] = {}
_lock = threading.Lock()


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make `get_backend(name)` build its backend with `factory()` (called once)."""
    if name in ("auto", "cpu"):
        raise ValueError(f"backend name {name!r} is reserved")
    with _lock:
        _factories[name] = factory
        _instances.pop(name, None)
        _failures.pop(name, None)


def _load(name: str) -> Backend:
    with _lock:
        if name in _instances:
            return _instances[name]
        if name in _failures:
            raise BackendUnavailable(_failures[name])
    reason = None
    if name not in _factories:
        try:
            importlib.import_module("zqnode.proofs.gpu")
        except Exception as e:  # ImportError, or a broken GPU package: report, not crash
            reason = f"{name} backend not available: {e or type(e).__name__}"
    if reason is None and name not in _factories:
        reason = f"{name} backend not available: nothing registered one (zqnode.proofs.gpu)"
    backend = None
    if reason is None:
        try:
            backend = _factories[name]()
        except Exception as e:  # a driver or device problem: report it, do not crash
            detail = str(e) or type(e).__name__
            reason = detail if detail.startswith(f"{name} backend not available") \
                else f"{name} backend not available: {detail}"
    with _lock:
        if backend is None:
            _failures[name] = reason
            raise BackendUnavailable(reason)
        _instances[name] = backend
        return backend


def get_backend(name: str | Backend = "auto") -> Backend:
    """A backend by name ('auto', 'cpu', 'cuda') or the Backend instance given."""
    if isinstance(name, Backend):
        return name
    if name == "cpu":
        return _CPU
    if name == "auto":
        try:
            return _load("cuda")
        except BackendUnavailable:
            return _CPU
    if name == "cuda":
        return _load("cuda")
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
