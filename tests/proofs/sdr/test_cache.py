import hashlib

import numpy as np
import pytest

from zqnode.proofs.params import ApiVersion, porep_id
from zqnode.proofs.sdr import cache as cache_mod
from zqnode.proofs.sdr.cache import (
    DEGREE, Graph, ParentCacheError, cache_path, file_sha256, graph_parents, parent_cache,
)

V1_1_2KIB_DIGEST = "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97"
V1_2KIB_DIGEST = "3da49221e2ed55371b86d0bf3d6526fcf128af61bed904f966428db1b531750d"
TEST_GRAPH = Graph(4096, bytes([0x7B]) * 32, ApiVersion.V1_1_0)


def test_2kib_v1_1_cache_digest(tmp_path):
    graph = Graph.for_proof("StackedDrg2KiBV1_1")
    parents = parent_cache(graph, tmp_path)
    assert parents.shape == (64, DEGREE) and parents.dtype == np.dtype("<u4")
    assert file_sha256(cache_path(graph, tmp_path)) == V1_1_2KIB_DIGEST
    assert hashlib.sha256(parents.tobytes()).hexdigest() == V1_1_2KIB_DIGEST
    assert graph.production_digest == V1_1_2KIB_DIGEST


def test_2kib_legacy_cache_digest(tmp_path):
    graph = Graph.for_proof(0)
    assert graph.api_version is ApiVersion.V1_0_0
    parent_cache(graph, tmp_path, verify=True)
    assert file_sha256(cache_path(graph, tmp_path)) == V1_2KIB_DIGEST


def test_cache_rows_are_base_then_expander_parents(tmp_path):
    parents = parent_cache(TEST_GRAPH, tmp_path)
    v = np.arange(TEST_GRAPH.nodes)
    assert np.array_equal(parents, graph_parents(TEST_GRAPH, v))
    assert (parents[2:, :6] < v[2:, None]).all()
    assert (parents[:, 6:] < TEST_GRAPH.nodes).all()
    with pytest.raises(ValueError):
        parents[5, 0] = 1                     # read-only map


def test_distinct_graphs_get_distinct_files(tmp_path):
    legacy = Graph(TEST_GRAPH.nodes, TEST_GRAPH.porep_id, ApiVersion.V1_0_0)
    assert cache_path(legacy, tmp_path) != cache_path(TEST_GRAPH, tmp_path)
    assert cache_path(Graph(2048, TEST_GRAPH.porep_id, ApiVersion.V1_1_0), tmp_path) != \
        cache_path(TEST_GRAPH, tmp_path)


def test_second_open_reuses_the_file(tmp_path, monkeypatch):
    parent_cache(TEST_GRAPH, tmp_path)
    path = cache_path(TEST_GRAPH, tmp_path)
    before = path.stat()

    def must_not_generate(*args):
        raise AssertionError("regenerated a good cache")

    monkeypatch.setattr(cache_mod, "generate_parent_cache", must_not_generate)
    parents = parent_cache(TEST_GRAPH, tmp_path, verify=True)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert parents[TEST_GRAPH.nodes - 1].tolist() == \
        graph_parents(TEST_GRAPH, [TEST_GRAPH.nodes - 1])[0].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".sha256"]


def test_truncated_cache_is_rebuilt(tmp_path):
    graph = Graph.for_proof(5)
    parent_cache(graph, tmp_path)
    path = cache_path(graph, tmp_path)
    path.write_bytes(path.read_bytes()[:-4])
    parents = parent_cache(graph, tmp_path)
    assert parents.shape == (64, DEGREE)
    assert file_sha256(path) == V1_1_2KIB_DIGEST


def _corrupt(path, node, slot):
    data = bytearray(path.read_bytes())
    offset = (node * DEGREE + slot) * 4
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_corrupt_sampled_node_is_rebuilt(tmp_path):
    parent_cache(TEST_GRAPH, tmp_path)
    path = cache_path(TEST_GRAPH, tmp_path)
    good = file_sha256(path)
    _corrupt(path, TEST_GRAPH.nodes - 1, 9)    # the last node is always sampled
    parent_cache(TEST_GRAPH, tmp_path)
    assert file_sha256(path) == good


def test_corrupt_unsampled_node_needs_verify(tmp_path):
    parent_cache(TEST_GRAPH, tmp_path)
    path = cache_path(TEST_GRAPH, tmp_path)
    good = file_sha256(path)
    sampled = set(cache_mod._spot_check_nodes(TEST_GRAPH.nodes).tolist())
    node = next(v for v in range(1000, TEST_GRAPH.nodes) if v not in sampled)
    _corrupt(path, node, 3)
    assert parent_cache(TEST_GRAPH, tmp_path)[node, 3] != graph_parents(TEST_GRAPH, [node])[0, 3]
    parents = parent_cache(TEST_GRAPH, tmp_path, verify=True)
    assert file_sha256(path) == good
    assert parents[node, 3] == graph_parents(TEST_GRAPH, [node])[0, 3]


def test_production_graph_verifies_against_the_manifest(tmp_path):
    graph = Graph.for_proof(5)
    parent_cache(graph, tmp_path)
    path = cache_path(graph, tmp_path)
    path.with_name(path.name + ".sha256").write_text("0" * 64)   # a wrong local record
    _corrupt(path, 40, 12)                                        # and a wrong parent
    parent_cache(graph, tmp_path, verify=True)
    assert file_sha256(path) == V1_1_2KIB_DIGEST


def test_cache_path_that_is_a_directory_is_rejected(tmp_path):
    cache_path(TEST_GRAPH, tmp_path).mkdir(parents=True)
    with pytest.raises(ParentCacheError, match="not a regular file"):
        parent_cache(TEST_GRAPH, tmp_path)


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    parent_cache(Graph.for_proof(5))
    assert (tmp_path / ".zqnode" / "parent-cache" / Graph.for_proof(5).file_name).is_file()


@pytest.mark.parametrize("nodes, porep, api", [
    (1, bytes(32), ApiVersion.V1_1_0), (1 << 32, bytes(32), ApiVersion.V1_1_0),
    (64, bytes(31), ApiVersion.V1_1_0), (64, bytes(32), "1.1.0"),
    (64.0, bytes(32), ApiVersion.V1_1_0),
])
def test_bad_graph(nodes, porep, api):
    with pytest.raises(ParentCacheError):
        Graph(nodes, porep, api)


def test_graph_for_proof():
    g = Graph.for_proof("StackedDrg32GiBV1")
    assert (g.nodes, g.porep_id, g.api_version) == (1 << 30, porep_id(3), ApiVersion.V1_0_0)
    with pytest.raises(ParentCacheError):
        graph_parents(Graph.for_proof(5), [64])
