"""`zqnode proofs ...` through click's CliRunner: JSON keys and values, and error paths
that print one line, exit non-zero and leave nothing behind."""
import json

import pytest
from click.testing import CliRunner

from zqnode.nodes.cli import main
from zqnode.proofs import post
from zqnode.proofs.backend import BackendUnavailable, get_backend
from zqnode.proofs.sector import P_AUX, cache_file, sealed_path

ZERO64 = "00" * 32
LOTUS = {"comm_d": "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy",
         "comm_r": "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c",
         "replica_id": "2940faa406e4c6cbad015e2b08e76fd9e3b0e5b852cea7f8174c02ba33039a01"}
RAND = "11" * 31 + "2a"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {"ZQNODE_PARENT_CACHE": str(tmp_path_factory.mktemp("parent-cache"))}


def run(env, *args):
    return CliRunner().invoke(main, ["proofs", *map(str, args)], env=env)


def _error_line(result):
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: ")
    return lines[-1]


@pytest.fixture(scope="module")
def sealed(tmp_path_factory, env):
    """Two sealed 2 KiB sectors made with the CLI: a CC sector (1) and one with data (2)."""
    base = tmp_path_factory.mktemp("cli")
    data = bytes(range(256)) * 7
    (base / "data").write_bytes(data)
    one = run(env, "seal", "--sector-size", "2KiB", "--miner", "1000", "--sector", 1,
              "--ticket", ZERO64, "--seal-proof", "StackedDrg2KiBV1_1", "--out", base / "s1",
              "--seed", "22" * 32, "--json", "--progress")
    two = run(env, "seal", "--sector-size", "2KiB", "--miner", "t01000", "--sector", 2,
              "--ticket", "33" * 32, "--seal-proof", 5, "--data", base / "data",
              "--out", base / "s2", "--json", "--backend", "cpu", "--procs", 2)
    assert one.exit_code == 0, one.output
    assert two.exit_code == 0, two.output
    assert two.stderr == ""                          # no progress: not a terminal
    return {"base": base, "data": data, "one": json.loads(one.stdout), "two": json.loads(two.stdout),
            "one_progress": one.stderr}


def test_commp_json(tmp_path, env):
    # PROOFS.md section 2's 508-byte example.
    path = tmp_path / "piece"
    path.write_bytes(b"".join(bytes([i]) * 127 for i in range(4)))
    result = run(env, "commp", path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "piece_cid": "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
        "piece_cid_v2": "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi",
        "payload_size": 508, "padded_size": 512}
    table = run(env, "commp", path)
    assert table.exit_code == 0 and "padded_size   512" in table.stdout


def test_commp_progress(tmp_path, env):
    path = tmp_path / "piece"
    path.write_bytes(bytes(3 << 20))
    quiet = run(env, "commp", path, "--json")
    shown = run(env, "commp", path, "--json", "--progress")
    assert shown.exit_code == 0 and shown.stdout == quiet.stdout and quiet.stderr == ""
    last = shown.stderr.splitlines()[-1]
    assert last.startswith("commp [########################] 100.0% 3.0 MiB of 3.0 MiB")


def test_seal_progress_counts_its_steps(sealed):
    lines = [line.split("] ", 1)[1] for line in sealed["one_progress"].splitlines()]
    expected = ["[##..........] 1/6 PC1 tree-d:",
                "[##..........] 1/6 PC1 labels layer 1/2 node 64/64 (50%,",      # within the step
                "[##..........] 1/6 PC1 labels layer 2/2 node 64/64 (100%,",
                "[####........] 2/6 PC1 labels:",
                "[######......] 3/6 PC2 tree-c:", "[########....] 4/6 PC2 tree-r-last:",
                "[##########..] 5/6 C1:", "[############] 6/6 C1 proof verified: True"]
    assert len(lines) == len(expected)
    assert all(line.startswith(start) for line, start in zip(lines, expected)), lines


def test_commp_errors(tmp_path, env):
    short = tmp_path / "short"
    short.write_bytes(bytes(64))
    result = run(env, "commp", short)
    assert result.exit_code == 1
    assert _error_line(result) == f"Error: {short}: CommP needs at least 65 payload bytes, got 64"
    missing = run(env, "commp", tmp_path / "nope")
    assert missing.exit_code == 1 and "No such file" in _error_line(missing)


def test_seal_json_has_the_lotus_values(sealed):
    one = sealed["one"]
    assert {k: one[k] for k in LOTUS} == LOTUS
    assert one["seal_proof"] == "StackedDrg2KiBV1_1" and one["sector"] == 1 and one["miner"] == "t01000"
    assert one["porep_verified"] is True and one["backend"] in ("cpu", "cuda")
    assert len(one["porep_challenges"]) == 1 and len(one["porep_challenges"][0]) == 2
    assert (sealed["base"] / "s1" / "commit1.proof").stat().st_size == one["porep_proof_bytes"]
    assert [p.name for p in sealed["base"].iterdir() if p.name.startswith(".")] == []
    two = sealed["two"]
    assert two["pieces"] == [{"piece_cid": two["comm_d"], "payload_size": 1792,
                              "padded_size": 2048, "offset": 0}]
    assert "porep_verified" not in two


def test_seal_bad_input_writes_nothing(tmp_path, env):
    cases = [
        (["--ticket", "00" * 31], "Error: --ticket must be 32 bytes (64 hex digits), got 31 bytes"),
        (["--ticket", "zz" * 32], "Error: --ticket must be hex"),
        (["--ticket", ZERO64, "--seed", "1"], "Error: --seed must be hex"),
        (["--ticket", ZERO64, "--seal-proof", "StackedDrg8MiBV1_1"],
         "Error: --seal-proof StackedDrg8MiBV1_1 is for 8MiB sectors, not --sector-size 2KiB"),
    ]
    for extra, message in cases:
        args = ["seal", "--sector-size", "2KiB", "--miner", "1000", "--sector", "1",
                "--out", tmp_path / "out", *extra]
        # later options win, so --miner in `extra` overrides the default one
        result = run(env, *args)
        assert result.exit_code == 1, extra
        assert _error_line(result).startswith(message), (extra, result.stderr)
    result = run(env, "seal", "--sector-size", "2KiB", "--miner", "f1abc", "--sector", 1,
                 "--ticket", ZERO64, "--out", tmp_path / "out")
    assert result.exit_code == 2          # a value no miner option takes: a usage error
    assert "'f1abc' is not a miner actor id (1000, f01000 or t01000)" in result.stderr
    big = tmp_path / "big"
    big.write_bytes(bytes(2033))
    result = run(env, "seal", "--sector-size", "2KiB", "--miner", 1000, "--sector", 1,
                 "--ticket", ZERO64, "--data", big, "--out", tmp_path / "out")
    assert _error_line(result) == f"Error: --data {big} is 2033 bytes; a 2KiB sector holds at most 2032"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


def test_seal_failing_midway_leaves_nothing(tmp_path, env, monkeypatch):
    from zqnode.proofs import seal

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(seal, "precommit2", broken)
    result = run(env, "seal", "--sector-size", "2KiB", "--miner", 1000, "--sector", 1,
                 "--ticket", ZERO64, "--out", tmp_path / "out")
    assert result.exit_code == 1 and _error_line(result) == "Error: disk full"
    assert list(tmp_path.iterdir()) == []


def test_seal_into_an_existing_directory_is_refused(sealed, env):
    before = sorted(p.name for p in (sealed["base"] / "s1").iterdir())
    result = run(env, "seal", "--sector-size", "2KiB", "--miner", 1000, "--sector", 1,
                 "--ticket", ZERO64, "--out", sealed["base"] / "s1")
    assert "already exists" in _error_line(result)
    assert sorted(p.name for p in (sealed["base"] / "s1").iterdir()) == before


def test_window_post_json(sealed, env, tmp_path):
    proof_file = tmp_path / "wp.proof"
    result = run(env, "window-post", "--sealed", sealed["base"] / "s1", "--sealed", sealed["base"] / "s2",
                 "--randomness", RAND, "--out", proof_file, "--json", "--progress")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    rand = bytes.fromhex(RAND)
    v1_1 = post.window_post_type(5)[1]
    assert record["challenges"] == {"1": post.leaf_challenges(v1_1, rand, 1),
                                    "2": post.leaf_challenges(v1_1, rand, 2)}
    assert record["partitions"] == [{"index": 0, "sectors": [1, 2],
                                     "proof_bytes": record["partitions"][0]["proof_bytes"]}]
    assert record["verified"] is True and record["skipped"] == []
    assert record["proof_file"] == str(proof_file) and proof_file.stat().st_size > 0
    assert record["post_proof"] == "StackedDrgWindow2KiBV1_1"
    assert "WindowPoSt: 2 sectors in 1 partitions" in result.stderr


def test_window_post_rejects_non_canonical_randomness(sealed, env):
    result = run(env, "window-post", "--sealed", sealed["base"] / "s1", "--randomness", "11" * 31 + "ff")
    assert result.exit_code == 1
    assert _error_line(result).startswith("Error: randomness is not canonical: its last byte 0xff")
    short = run(env, "window-post", "--sealed", sealed["base"] / "s1", "--randomness", "11")
    assert _error_line(short) == "Error: --randomness must be 32 bytes (64 hex digits), got 1 bytes"


def test_window_post_on_a_corrupted_sector(sealed, env, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(sealed["base"] / "s2", broken)
    cache_file(broken, P_AUX).write_bytes(bytes(64))
    result = run(env, "window-post", "--sealed", sealed["base"] / "s1", "--sealed", broken,
                 "--randomness", RAND, "--out", tmp_path / "wp", "--json")
    assert result.exit_code == 1
    assert _error_line(result).startswith("Error: sector 2 skipped: sector 2: p_aux does not hash to comm_r")
    record = json.loads(result.stdout)
    assert record["skipped"][0]["sector"] == 2 and record["partitions"][0]["sectors"] == [1]
    assert record["verified"] is True
    sealed_path(broken).unlink()
    cache_file(broken, P_AUX).unlink()
    alone = run(env, "window-post", "--sealed", broken, "--randomness", RAND, "--out", tmp_path / "wp2")
    assert alone.exit_code == 1 and "sector 2 skipped" in _error_line(alone)
    assert not (tmp_path / "wp2").exists()
    none = run(env, "window-post", "--sealed", tmp_path, "--randomness", RAND)
    assert _error_line(none) == f"Error: {tmp_path} is not a sector directory: sector.json is missing"


def test_unseal(sealed, env, tmp_path):
    result = run(env, "unseal", "--sealed", sealed["base"] / "s2", "--out", tmp_path / "piece",
                 "--piece", 0, "--json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "piece").read_bytes() == sealed["data"]
    assert json.loads(result.stdout)["bytes"] == 1792
    whole = run(env, "unseal", "--sealed", sealed["base"] / "s1", "--out", tmp_path / "whole")
    assert whole.exit_code == 0 and (tmp_path / "whole").read_bytes() == bytes(2032)
    bad = run(env, "unseal", "--sealed", tmp_path, "--out", tmp_path / "x")
    assert bad.exit_code == 1 and "not a sector directory" in _error_line(bad)
    assert not (tmp_path / "x").exists()


def test_cuda_backend_unavailable_is_one_line(sealed, env):
    try:
        get_backend("cuda")
        pytest.skip("a CUDA backend is available here")
    except BackendUnavailable:
        pass
    result = run(env, "window-post", "--sealed", sealed["base"] / "s1", "--randomness", RAND,
                 "--backend", "cuda")
    assert result.exit_code == 1
    assert _error_line(result).startswith("Error: cuda backend not available: ")


def test_plan_measures_and_prints_every_stage(env):
    result = run(env, "plan", "--sector-size", "2KiB", "--cores", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [s["name"] for s in out["stages"]] == ["parent cache", "AP", "PC1 tree-d", "PC1 labels", "PC2",
                                                  "C1", "FIN", "WindowPoSt sector"]
    assert out["cores"] == 2 and out["rates"]["labels_per_s"] > 0 and out["peak_disk_bytes"] > 2048
    text = run(env, "plan", "--sector-size", "32GiB", "--cores", "16")
    assert text.exit_code == 0 and "+352.0 GiB" in text.output and "+56.0 GiB" in text.output
    assert _error_line(run(env, "plan", "--sector-size", "3GiB")).startswith("Error: unsupported sector size")
    assert "does not model synthetic PoRep" in _error_line(
        run(env, "plan", "--seal-proof", "StackedDrg2KiBV1_1_Feat_SyntheticPoRep"))
