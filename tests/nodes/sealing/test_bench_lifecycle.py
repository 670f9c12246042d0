"""tools/bench_lifecycle.py: a real in-process devnet of 4 sectors, batched and not: one
PreCommitSectorBatch2 and one aggregated ProveCommitSectors3 for all four, against four
of each one by one."""
import importlib.util
import json
import pathlib

TOOL = pathlib.Path(__file__).resolve().parents[3] / "tools" / "bench_lifecycle.py"


def test_batching_sends_one_message_per_batch_on_a_devnet(capsys):
    spec = importlib.util.spec_from_file_location("bench_lifecycle", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--json", "--sectors", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["precommit_messages"], out["provecommit_messages"]) == (1, 1)
    assert (out["precommit_messages_unbatched"], out["provecommit_messages_unbatched"]) == (4, 4)
    assert (out["messages_per_sector"], out["messages_per_sector_unbatched"]) == (0.5, 2.0)
    assert 0 < out["sealing_gas"] < out["sealing_gas_unbatched"]     # batching saves gas
