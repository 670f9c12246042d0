import hashlib
import os

import numpy as np
import pytest

from zqnode.proofs.params import ApiVersion
from zqnode.proofs.sdr.cache import Graph, graph_parents
from zqnode.proofs.sdr.labels import (
    LabelError, label_layer, label_layers, layer_path, node_label, open_layer, open_layers,
)

CHECK_GRAPH = Graph(64, bytes([0x7B]) * 32, ApiVersion.V1_1_0)
CHECK_REPLICA_ID = bytes([0x09]) * 32


def reference_labels(replica_id, graph, layers):
    """Labels written out plainly from PROOFS.md section 4, one node at a time."""
    parents = graph_parents(graph, np.arange(graph.nodes)).tolist()
    out = []
    for layer in range(1, layers + 1):
        labels = []
        for v in range(graph.nodes):
            base = [labels[p] for p in parents[v][:6]] if v else []
            if v == 0:
                ps = []
            elif layer == 1:
                ps = base * 6 + base[:1]
            else:
                exp = [out[-1][p] for p in parents[v][6:]]
                ps = base + exp + base + exp + base + exp[:3]
            msg = replica_id + layer.to_bytes(4, "big") + v.to_bytes(8, "big") + bytes(20)
            digest = bytearray(hashlib.sha256(msg + b"".join(ps)).digest())
            digest[31] &= 0x3F
            labels.append(bytes(digest))
        out.append(labels)
    return out


def test_check_value_64_nodes_11_layers(tmp_path):
    layers = label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 11, tmp_path / "sector",
                          parent_cache_dir=tmp_path / "pc")
    assert len(layers) == 11
    assert layers[10][63].tobytes().hex() == \
        "cfef0db78bf3b3ab9f1169774d2e7a77bc9054499d954834b51ca7c788110206"
    assert sorted(p.name for p in (tmp_path / "sector").iterdir()) == \
        sorted(f"sc-02-data-layer-{i}.dat" for i in range(1, 12))


@pytest.mark.parametrize("api", [ApiVersion.V1_0_0, ApiVersion.V1_1_0])
def test_matches_reference_labeller(tmp_path, api):
    graph = Graph(256, bytes(range(32)), api)
    rid = hashlib.sha256(b"replica").digest()[:31] + b"\x01"
    got = label_layers(rid, graph, 3, tmp_path / "s", parent_cache_dir=tmp_path / "pc")
    want = reference_labels(rid, graph, 3)
    for layer, labels in zip(got, want):
        assert layer.shape == (256, 32) and layer.dtype == np.uint8
        assert [layer[v].tobytes() for v in range(256)] == labels
        assert (layer[:, 31] < 0x40).all()


def test_chunked_labelling_matches_reference(tmp_path, monkeypatch):
    from zqnode.proofs.sdr import labels as labels_mod
    monkeypatch.setattr(labels_mod, "_CHUNK_NODES", 48)      # chunks that split the graph
    graph = Graph(200, bytes([3]) * 32, ApiVersion.V1_1_0)
    got = label_layers(bytes(32), graph, 2, tmp_path / "s", parent_cache_dir=tmp_path / "pc")
    want = reference_labels(bytes(32), graph, 2)
    assert [[layer[v].tobytes() for v in range(200)] for layer in got] == want


def test_given_parents_are_used(tmp_path):
    parents = graph_parents(CHECK_GRAPH, np.arange(64))
    layers = label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 2, tmp_path, parents=parents)
    assert [layer[:, :].tobytes() for layer in layers] == \
        [b"".join(labels) for labels in reference_labels(CHECK_REPLICA_ID, CHECK_GRAPH, 2)]


def test_existing_layers_are_kept_and_short_ones_redone(tmp_path):
    pc = tmp_path / "pc"
    label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 3, tmp_path / "s", parent_cache_dir=pc)
    first = layer_path(tmp_path / "s", 1).stat()
    good3 = layer_path(tmp_path / "s", 3).read_bytes()
    os.truncate(layer_path(tmp_path / "s", 3), 100)
    layers = label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 3, tmp_path / "s", parent_cache_dir=pc)
    again = layer_path(tmp_path / "s", 1).stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert layers[2].tobytes() == good3
    assert not [p for p in (tmp_path / "s").iterdir() if p.suffix == ".tmp"]


def test_progress_says_each_layer_left_with_an_eta(tmp_path, monkeypatch):
    import zqnode.proofs.sdr.labels as labels
    monkeypatch.setattr(labels, "_CHUNK_NODES", 16)          # 4 chunks of a 64-node layer
    pc, said = tmp_path / "pc", []
    label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 3, tmp_path / "s", parent_cache_dir=pc,
                 progress=said.append)
    assert len(said) == 12 and said[0].startswith("PC1 labels layer 1/3 node 16/64 (8%,")
    assert said[-1].startswith("PC1 labels layer 3/3 node 64/64 (100%,") and "ETA 0s" in said[-1]
    os.unlink(layer_path(tmp_path / "s", 3))                   # a resumed run counts what is left
    said.clear()
    label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 3, tmp_path / "s", parent_cache_dir=pc,
                 progress=said.append)
    assert said[0].startswith("PC1 labels layer 3/3 node 16/64 (25%,") and len(said) == 4


def test_open_layers(tmp_path):
    label_layers(CHECK_REPLICA_ID, CHECK_GRAPH, 2, tmp_path, parent_cache_dir=tmp_path / "pc")
    layers = open_layers(tmp_path, 2, 64)
    assert layers[1].shape == (64, 32)
    with pytest.raises(LabelError, match="missing"):
        open_layer(tmp_path, 3, 64)
    with pytest.raises(LabelError, match="bytes"):
        open_layer(tmp_path, 1, 128)


@pytest.mark.parametrize("kwargs", [
    dict(replica_id=bytes(31)), dict(layers=0), dict(layers=True), dict(graph="2KiB"),
    dict(parents=np.zeros((64, 6), np.uint32)),
])
def test_bad_inputs(tmp_path, kwargs):
    args = dict(replica_id=bytes(32), graph=CHECK_GRAPH, layers=2, sector_cache_dir=tmp_path / "s",
                parent_cache_dir=tmp_path / "pc")
    args.update(kwargs)
    with pytest.raises(LabelError):
        label_layers(**args)
    assert not (tmp_path / "s").exists()


def test_label_layer_checks_its_buffers():
    parents = graph_parents(CHECK_GRAPH, np.arange(64))
    with pytest.raises(LabelError):
        label_layer(bytes(32), 1, parents, bytearray(63 * 32), None)
    with pytest.raises(LabelError):
        label_layer(bytes(32), 1, parents, bytes(64 * 32), None)
    with pytest.raises(LabelError):
        label_layer(bytes(32), 2, parents, bytearray(64 * 32), np.zeros((32, 32), np.uint8))
    bad = parents.copy()
    bad[40, 3] = 40                                          # a base parent not labelled yet
    with pytest.raises(LabelError, match="node 40 has a base parent at or after itself"):
        label_layer(bytes(32), 1, bad, bytearray(64 * 32), None)
    out = np.zeros((64, 32), np.uint8)                       # a 2-d buffer is fine
    label_layer(CHECK_REPLICA_ID, 1, parents, out, None)
    want = reference_labels(CHECK_REPLICA_ID, CHECK_GRAPH, 1)[0]
    assert [out[v].tobytes() for v in range(64)] == want


def test_node_label_recomputes_every_label_from_its_parents():
    layers = reference_labels(CHECK_REPLICA_ID, CHECK_GRAPH, 3)
    parents = graph_parents(CHECK_GRAPH, np.arange(CHECK_GRAPH.nodes)).tolist()
    for layer in (1, 2, 3):
        for v in range(CHECK_GRAPH.nodes):
            base = [layers[layer - 1][p] for p in parents[v][:6]]
            exp = None if layer == 1 else [layers[layer - 2][p] for p in parents[v][6:]]
            assert node_label(CHECK_REPLICA_ID, layer, v, base, exp) == layers[layer - 1][v]
    with pytest.raises(LabelError, match="6 base and 8 expander"):
        node_label(CHECK_REPLICA_ID, 2, 5, [bytes(32)] * 6, [bytes(32)] * 7)
    with pytest.raises(LabelError, match="replica_id"):
        node_label(bytes(31), 1, 5, [bytes(32)] * 6)
