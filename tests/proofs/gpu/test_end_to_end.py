"""The lotus-bench 2 KiB seal check values (PROOFS.md section 5) through the GPU code paths,
run on the host harness: CPU labels, then tree-c, tree-r-last and comm_r from proofs.gpu."""
from zqnode.proofs.cid import sealed_cid
from zqnode.proofs.gpu import poseidon as gpu
from zqnode.proofs.gpu import sha254
from zqnode.proofs.sdr.cache import Graph
from zqnode.proofs.sdr.labels import label_layers

REPLICA_ID = bytes.fromhex("2940faa406e4c6cbad015e2b08e76fd9e3b0e5b852cea7f8174c02ba33039a01")


def test_two_kib_seal_of_zeros(hx, tmp_path):
    comm_d = sha254.commp(hx, bytes(2032), chunk_size=127 * 32)
    assert comm_d.cid() == "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy"

    layers = label_layers(REPLICA_ID, Graph.for_proof(5), 2, tmp_path / "sector", parent_cache_dir=tmp_path / "pc")
    layers = [bytes(layer) for layer in layers]
    comm_c = gpu.tree_c(hx, layers, 8)[-1]
    assert comm_c.hex() == "95dd0e3fd2b1226dfcff24b2c337b96a965aebea8fa2c3ed1a0470582191de0b"

    replica, upper = gpu.tree_r_last(hx, bytes(2048), layers[-1], 8)
    assert replica == layers[-1]  # data of zeros: the replica is the last layer
    comm_r_last = upper[-1]
    assert comm_r_last.hex() == "d75cfa6d30ece5e2d0354a1f855d7fb128e42e84a16a133278fd9ea8b72a8f15"

    comm_r = gpu.hash_words(hx, comm_c + comm_r_last, 2)
    assert sealed_cid(comm_r) == "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"
