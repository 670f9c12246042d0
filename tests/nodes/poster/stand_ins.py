"""Stand-ins a spawned prover process can import (not a test module)."""
import msgspec

from zqnode.nodes.poster.events import PartitionProof
from zqnode.nodes.poster.prover import ProveRequest


def prove_echo(request: bytes, backend: str, verify: bool) -> bytes:
    """A 'proof' naming the backend, the randomness and the sectors; ValueError for
    randomness starting with 0xff."""
    req = msgspec.msgpack.decode(request, type=ProveRequest)
    if req.randomness[:1] == b"\xff":
        raise ValueError("the stand-in refuses this randomness")
    out = [PartitionProof(index=p.index, proven=[s.number for s in p.sectors],
                          proof=b"|".join([backend.encode(), bytes([verify]), req.randomness[:2],
                                           *(s.path.encode() for s in p.sectors)]))
           for p in req.partitions]
    return msgspec.msgpack.encode(out)
