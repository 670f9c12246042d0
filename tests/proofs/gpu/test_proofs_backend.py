"""The GPU backend behind proofs.backend's interface, run through the host harness:
a whole seal, C1 and WindowPoSt give the CPU's bytes."""
import pytest

from zqnode.proofs import backend, post, seal
from zqnode.proofs.gpu import GpuProofsBackend


def test_auto_falls_back_to_the_cpu_and_cuda_says_why():
    assert backend.get_backend("auto").name in ("cpu", "cuda")
    ok, reason = __import__("zqnode.proofs.gpu", fromlist=["available"]).available()
    if not ok:
        with pytest.raises(backend.BackendUnavailable, match="cuda backend not available"):
            backend.get_backend("cuda")
        assert backend.get_backend("auto").name == "cpu"


def test_seal_c1_and_post_on_the_gpu_path_equal_the_cpu(hx, tmp_path):
    gpu = GpuProofsBackend(executor=hx)
    launches = []
    launch = hx.launch
    hx.launch = lambda plan, stream=None: (launches.append(plan), launch(plan, stream))[1]
    ticket, seed = bytes(range(32)), bytes(range(32, 64))
    data = bytes((i * 7) % 251 for i in range(2032))
    out = {}
    for name, impl in (("cpu", "cpu"), ("gpu", gpu)):
        d = tmp_path / name
        src = tmp_path / "piece"
        src.write_bytes(data)
        seal.add_piece(d, str(src), seal_proof=5, miner=1000, sector=3, backend=impl)
        seal.precommit1(d, ticket, backend=impl)
        pc2 = seal.precommit2(d, backend=impl)
        assert pc2.backend == ("cpu" if impl == "cpu" else "cuda")
        c1 = seal.commit1(d, seed, backend=impl)
        rand = post.canonical_randomness(bytes(32 * [0xAB]))
        wp = post.generate_window_post(5, rand, [post.SectorRef(3, str(d))], backend=impl)
        out[name] = (pc2.comm_d, pc2.comm_r, c1.proof, [p.proof for p in wp.partitions], wp.skipped)
    assert out["gpu"] == out["cpu"]
    assert len(launches) > 10              # the kernels really ran (on the host harness)
