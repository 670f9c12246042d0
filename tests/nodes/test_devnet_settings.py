"""What a devnet fixes at its first run and keeps: the sector size and whether its miner
seals with synthetic PoRep."""
import pytest

from zqnode.nodes.devnet import Devnet, DevnetError, seal_proof_for


def test_synthetic_porep_is_fixed_when_the_devnet_is_created(tmp_path):
    assert (seal_proof_for("2KiB"), seal_proof_for("2KiB", True), seal_proof_for("8MiB", True)) == (5, 10, 11)
    net = Devnet(base=tmp_path / "a", bus="ipc:///tmp/x", synthetic=True)
    assert net.seal_proof == 10
    assert Devnet(base=tmp_path / "a", bus="ipc:///tmp/x").seal_proof == 10       # kept
    plain = tmp_path / "b"
    Devnet(base=plain, bus="ipc:///tmp/x")
    with pytest.raises(DevnetError, match="created without --synthetic"):
        Devnet(base=plain, bus="ipc:///tmp/x", synthetic=True)
