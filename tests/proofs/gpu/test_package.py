"""proofs.gpu without a GPU: lazy imports, clear unavailability, constants from the CPU code."""
import subprocess
import sys

import pytest

from zqnode.proofs import gpu, poseidon
from zqnode.proofs.gpu import constants
from zqnode.proofs.poseidon_constants import P, params


def test_importing_the_package_does_not_import_pycuda(tmp_path):
    # A stand-in pycuda that records being imported, first on the path.
    fake = tmp_path / "pycuda"
    fake.mkdir()
    (fake / "__init__.py").write_text("import builtins\nbuiltins.PYCUDA_IMPORTED = True\n")
    code = ("import builtins, zqnode.proofs.gpu as gpu, zqnode.proofs.gpu.backend, zqnode.proofs.gpu.device, "
            "zqnode.proofs.gpu.sha254, zqnode.proofs.gpu.poseidon, zqnode.proofs.gpu.post, "
            "zqnode.proofs.gpu.sources, zqnode.proofs.gpu.constants\n"
            "assert not hasattr(builtins, 'PYCUDA_IMPORTED'), 'imported at import time'\n"
            "usable, reason = gpu.available()\n"
            "assert hasattr(builtins, 'PYCUDA_IMPORTED') and not usable, reason\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}     # zqnode: the installed package
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_available_gives_a_reason_when_there_is_no_device():
    usable, reason = gpu.available()
    assert isinstance(usable, bool) and reason
    if not usable:
        with pytest.raises(gpu.GpuUnavailable, match=reason[:20]):
            gpu.CudaBackend()


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        _ = gpu.nothing_here


def test_pycuda_missing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)  # makes `import pycuda...` fail
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    usable, reason = gpu.available()
    assert not usable and "pycuda" in reason and "gpu" in reason


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_blob_holds_the_cpu_parameters_in_montgomery_form(arity):
    blob = constants.poseidon_blob(arity)
    layout = constants.layout(arity)
    prm = params(arity)

    def element(i):
        return constants.from_montgomery(int.from_bytes(blob[32 * i:32 * i + 32], "little"))

    assert element(layout["TAG"]) == (1 << arity) - 1
    t = prm.width
    assert [element(layout["MDS"] + i) for i in range(t * t)] == [v for row in prm.mds for v in row]
    # the first full round's constants are the textbook ones (the plan only moves partial ones)
    assert [element(layout["FIRST"] + i) for i in range(t)] == list(prm.constants[:t])
    assert all(int.from_bytes(blob[i:i + 32], "little") < P for i in range(0, len(blob), 32))


def test_montgomery_round_trip():
    for x in (0, 1, P - 1, 12345678901234567890):
        assert constants.from_montgomery(constants.to_montgomery(x)) == x
    assert constants.to_montgomery(1) == constants.MONTGOMERY_R


def test_cpu_and_gpu_agree_on_supported_arities():
    from zqnode.proofs.gpu.poseidon import GPU_ARITIES
    assert set(GPU_ARITIES) <= set(poseidon.ARITIES)
