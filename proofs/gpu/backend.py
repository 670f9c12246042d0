"""CudaBackend: the GPU twins of the CPU proof functions, behind one object.

Method names and signatures follow the CPU functions they replace (module in brackets),
with byte-identical results, so a backend switch (`proofs.backend.get_backend`) can hand
out either. The executor defaults to PycudaExecutor on device 0; tests pass the host
harness instead.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from zqnode.proofs import encoding, ptree
from zqnode.proofs.backend import Backend as _ProofsBackend
from zqnode.proofs.gpu import poseidon, post, sha254


class CudaBackend:
    name = "cuda"

    def __init__(self, executor=None, device_index: int = 0):
        if executor is None:
            from zqnode.proofs.gpu.device import PycudaExecutor
            executor = PycudaExecutor(device_index)
        self.executor = executor

    def close(self) -> None:
        close = getattr(self.executor, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sha254 trees [proofs.merkle, proofs.commp] --
    def hash_level(self, level) -> bytes:
        return sha254.hash_level(self.executor, level)

    def merkle_root(self, leaves) -> bytes:
        return sha254.merkle_root(self.executor, leaves)

    def tree_levels(self, leaves) -> list[bytes]:
        return sha254.tree_levels(self.executor, leaves)

    def commp(self, source, chunk_size: int = sha254.GPU_CHUNK):
        return sha254.commp(self.executor, source, chunk_size)

    # -- Poseidon [proofs.poseidon, proofs.ptree] --
    def hash_many(self, rows: Iterable[Sequence[int]], arity: int | None = None) -> list[int]:
        return poseidon.hash_many(self.executor, rows, arity)

    def hash_words(self, data, arity: int) -> bytes:
        return poseidon.hash_words(self.executor, data, arity)

    def hash_columns(self, layers: Sequence[bytes]) -> bytes:
        return poseidon.hash_columns(self.executor, layers)

    def build_levels(self, leaves, arities=8) -> list[bytes]:
        return poseidon.build_levels(self.executor, leaves, arities)

    # -- PC2 and PoSt --
    def tree_c(self, layers: Sequence[bytes], arities=8) -> list[bytes]:
        """ptree.build_levels(poseidon.hash_columns(layers), arities)."""
        return poseidon.tree_c(self.executor, layers, arities)

    def tree_r_last(self, data, key, arities=8, keep_from: int | None = None) -> tuple[bytes, list[bytes]]:
        """(replica, ptree.build_levels(replica, arities)[keep_from:]), replica = data + key mod p."""
        return poseidon.tree_r_last(self.executor, data, key, arities, keep_from)

    def paths_from_upper(self, items, arities) -> list:
        """[ptree.path_from_upper(upper, segment, index, arities) for (upper, segment, index) in items]."""
        return post.paths_from_upper(self.executor, items, arities)

    def partition_paths(self, sectors, arities) -> list:
        """Per sector (upper rows, [(leaf index, segment), ...]): its challenges' paths."""
        return post.partition_paths(self.executor, sectors, arities)


class GpuProofsBackend(_ProofsBackend):
    """CudaBackend behind proofs.backend's interface, so seal and PoSt can run on it:
    `get_backend('cuda')` builds one (importing proofs.gpu registers it)."""

    name = "cuda"

    def __init__(self, executor=None, device_index: int = 0):
        self.gpu = CudaBackend(executor, device_index)

    def sha254_root(self, leaves) -> bytes:
        return self.gpu.merkle_root(leaves)

    def tree_d(self, leaves) -> list[bytes]:
        return self.gpu.tree_levels(leaves)

    def tree_c(self, layers, arities) -> list[bytes]:
        return self.gpu.tree_c([memoryview(layer).cast("B") for layer in layers], list(arities))

    def tree_r_last(self, replica, arities) -> list[bytes]:
        # The kernel encodes and builds in one pass; with a zero key the encoding is the
        # identity, so it builds the tree over the replica as given.
        data = memoryview(replica).cast("B")
        _, levels = self.gpu.tree_r_last(data, bytes(len(data)), list(arities), keep_from=0)
        return levels

    def encode(self, data, key) -> bytes:
        return encoding.encode(data, key)      # numpy, memory-bound: not worth a copy to the GPU

    def decode(self, replica, key) -> bytes:
        return encoding.decode(replica, key)

    def update_encode(self, base, data, factors, shift, first=0) -> bytes:
        # SnapDeals' products stay on the CPU for now (no kernel yet); the new replica's
        # tree-r-last, the bulk of an update, runs on the GPU
        from zqnode.proofs.update import mul_add
        return mul_add(base, data, factors, shift, first)

    def tree_r_paths(self, upper, read_segment, indices, arities, check=True):
        if not check:                          # forging paths (tests) stays on the CPU
            return ptree.paths_from_upper(upper, read_segment, indices, arities, check)
        arities = tuple(arities)
        k = len(arities) - (len(upper) - 1)
        items = [(upper, read_segment(ptree.segment_range(i, arities, k)), i) for i in indices]
        return self.gpu.paths_from_upper(items, arities)
