"""tools/bench_sched.py prints one JSON object with the promised keys (tiny run)."""
import importlib.util
import json
import pathlib

TOOL = pathlib.Path(__file__).resolve().parents[3] / "tools" / "bench_sched.py"


def test_bench_json(capsys):
    spec = importlib.util.spec_from_file_location("bench_sched", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--json", "--tasks", "300", "--workers", "12",
                       "--baseline-max-tasks", "300", "--repeat", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"pass_seconds", "assigned", "growth"} <= out.keys()
    assert [g["tasks"] for g in out["growth"]] == [300]
    assert 0 < out["assigned"] <= out["schedule_assigned"] <= 300
    assert out["baseline"][0]["same_assignments"] is True
