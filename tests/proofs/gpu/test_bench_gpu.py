"""tools/bench_gpu.py: its device-only tree builder on the harness, and its no-device output."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from zqnode.proofs import poseidon, ptree
from zqnode.proofs.gpu import poseidon as gp

from .conftest import HARNESS_LIMITS, HarnessExecutor

TOOL = Path(__file__).resolve().parents[3] / "tools" / "bench_gpu.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("bench_gpu", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_device_tree_roots_match_cpu(harness_binary):
    bench = load_tool()
    # a memory budget that forces chunks of 64 leaves over a 512-leaf tree
    ex = HarnessExecutor(harness_binary, HARNESS_LIMITS._replace(total_memory=64 * 4 * 32 * 2 * 2))
    try:
        shape = (8, 8, 8)
        chunk = gp.default_chunk_leaves(ex, 512, shape, 4 * 32)
        assert chunk == 64
        roots = []
        for first in range(0, 512, chunk):
            words = gp.synthetic_words(2 * chunk, first)
            data, key = words[:32 * chunk], words[32 * chunk:]
            replica = b"".join(((int.from_bytes(data[i:i + 32], "little") + int.from_bytes(key[i:i + 32], "little"))
                                % poseidon.P).to_bytes(32, "little") for i in range(0, len(data), 32))
            roots.append(ptree.build_levels(replica, 8)[-1])
        expected = ptree.build_levels(b"".join(roots), 8)[-1]
        assert bench._device_tree(ex, 512, shape, layers=0) == expected
    finally:
        ex.close()


def test_without_a_device_it_reports_why_and_the_cpu_figures():
    done = subprocess.run([sys.executable, str(TOOL), "--json", "--small", "--cpu-seconds", "0.1"],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if not result["gpu_available"]:
        assert result["reason"] and "gpu" not in result
    assert result["cpu"]["commp_gbps"] > 0
    assert set(result["cpu"]["poseidon_hashes_per_s"]) == {"2", "8", "11"}
