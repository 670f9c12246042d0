"""Every cuda/*.cu compiles for Hopper (nvcc -ptx -arch=sm_90), and PyCUDA's inlined source
of it preprocesses to the same code. Needs nvcc, not a GPU."""
import re
import subprocess

import pytest

from zqnode.proofs.gpu import sources
from zqnode.proofs.gpu.device import find_nvcc

NVCC = find_nvcc()

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")

CU_FILES = sorted(sources.CUDA_DIR.glob("*.cu"))


def test_every_cu_file_is_a_module():
    assert {path.stem for path in CU_FILES} == set(sources.MODULES)
    assert not (sources.CUDA_DIR / "__init__.py").exists()


@pytest.fixture(scope="module")
def ptx_builds(tmp_path_factory):
    """Start all compiles at once (poseidon.cu takes the longest); results by module."""
    out = tmp_path_factory.mktemp("ptx")
    procs = {path.stem: subprocess.Popen([NVCC, "-ptx", "-arch=sm_90", str(path), "-o", str(out / f"{path.stem}.ptx")],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for path in CU_FILES}
    results = {}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, err, out / f"{name}.ptx")
    return results


@pytest.mark.parametrize("name", [path.stem for path in CU_FILES])
def test_cu_file_compiles_to_sm90_ptx(ptx_builds, name):
    code, err, ptx = ptx_builds[name]
    assert code == 0, err
    text = ptx.read_text()
    assert ".target sm_90" in text
    assert ".entry" in text


def _preprocessed(path_or_source, tmp_path, name) -> str:
    if isinstance(path_or_source, str):
        path = tmp_path / f"{name}.cu"
        path.write_text(path_or_source)
    else:
        path = path_or_source
    done = subprocess.run([NVCC, "-E", "-arch=sm_90", "-x", "cu", str(path)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # drop line markers and blank lines; what is left is the code the compiler sees
    return "\n".join(line for line in done.stdout.splitlines() if line.strip() and not re.match(r"\s*#", line))


@pytest.mark.parametrize("name", ["sha254", "post"])
def test_inlined_source_is_the_same_code(tmp_path, name):
    original = _preprocessed(sources.source_path(name), tmp_path, name)
    inlined = _preprocessed(sources.module_source(name), tmp_path, name)
    assert original == inlined


def test_inlined_source_has_no_local_includes():
    for name in sources.MODULES:
        text = sources.module_source(name)
        assert '#include "' not in text
        assert text.count("#pragma once") >= 1


def test_unknown_module_is_refused():
    with pytest.raises(sources.SourceError, match="no kernel module"):
        sources.module_source("nope")
