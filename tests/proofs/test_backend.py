"""Backend selection, and that sealing and proving run their hashing through the backend."""
import pytest

from zqnode.proofs import backend as be
from zqnode.proofs import post, seal
from zqnode.proofs.backend import BackendUnavailable, CpuBackend, get_backend, register_backend


@pytest.fixture
def clean_registry(monkeypatch):
    """No cuda backend registered and no proofs.gpu to import."""
    monkeypatch.setattr(be, "_factories", {})
    monkeypatch.setattr(be, "_instances", {})
    monkeypatch.setattr(be, "_failures", {})

    def no_gpu_package(name):
        raise ImportError(f"No module named {name!r}")
    monkeypatch.setattr(be.importlib, "import_module", no_gpu_package)


def test_cpu_and_auto_without_a_gpu(clean_registry):
    assert get_backend("cpu").name == "cpu"
    assert get_backend("auto") is get_backend("cpu")
    with pytest.raises(BackendUnavailable, match="^cuda backend not available: No module named 'zqnode.proofs.gpu'"):
        get_backend("cuda")
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        get_backend("tpu")
    instance = CpuBackend()
    assert get_backend(instance) is instance


def test_a_registered_backend_that_cannot_start(clean_registry):
    def factory():
        raise RuntimeError("no CUDA device")
    register_backend("cuda", factory)
    with pytest.raises(BackendUnavailable, match="^cuda backend not available: no CUDA device$"):
        get_backend("cuda")
    assert get_backend("auto").name == "cpu"
    with pytest.raises(ValueError, match="reserved"):
        register_backend("cpu", CpuBackend)


class CountingBackend(CpuBackend):
    """The CPU backend under another name, recording which operations ran."""
    name = "counting"

    def __init__(self):
        self.calls = []

    def __getattribute__(self, attr):
        if attr in ("sha254_root", "tree_d", "tree_c", "tree_r_last", "encode", "decode",
                    "tree_r_paths"):
            object.__getattribute__(self, "calls").append(attr)
        return object.__getattribute__(self, attr)


def test_a_registered_backend_is_chosen_by_auto(clean_registry):
    made = []
    register_backend("cuda", lambda: made.append(CountingBackend()) or made[-1])
    assert get_backend("cuda") is get_backend("auto") is made[0]
    assert len(made) == 1                                   # built once


def test_sealing_and_proving_go_through_the_backend(tmp_path, parent_cache):
    impl = CountingBackend()
    sector_dir = tmp_path / "s"
    seal.add_piece(sector_dir, bytes(range(200)), seal_proof=5, miner=1000, sector=1, backend=impl)
    assert impl.calls == ["sha254_root"]
    impl.calls.clear()
    assert seal.precommit1(sector_dir, bytes(32), parent_cache_dir=parent_cache,
                           backend=impl).backend == "counting"
    assert impl.calls == ["tree_d"]
    assert seal.precommit2(sector_dir, backend=impl).backend == "counting"
    assert impl.calls[1:] == ["tree_c", "encode", "tree_r_last"]
    assert seal.commit1(sector_dir, bytes(32), backend=impl).backend == "counting"
    assert impl.calls[4:] == ["tree_r_paths"]
    result = post.generate_window_post(5, bytes(32), [post.SectorRef(1, str(sector_dir))], backend=impl)
    assert result.partitions[0].backend == "counting" and impl.calls[5:] == ["tree_r_paths"]
    seal.unseal(sector_dir, tmp_path / "out", backend=impl)
    assert impl.calls[6:] == ["decode", "tree_d"]
