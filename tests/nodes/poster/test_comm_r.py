"""The poster node's own bookkeeping of the chain (nodes/poster/node.py)."""


def test_comm_r_read_at_a_reverted_epoch_is_read_again():
    """SnapDeals changes a sector's comm_r; a reorg may take the update back: what the
    poster read at a reverted epoch (or before a snapshot) is forgotten."""
    from types import SimpleNamespace
    from zqnode.nodes.chain.api import HeadUpdate
    from zqnode.nodes.chain.messages import TipsetSummary
    from zqnode.nodes.poster.node import PosterNode
    tip = lambda epoch: TipsetSummary(epoch=epoch, key=f"k{epoch}", parent="", timestamp=0.0,   # noqa: E731
                                      ticket=b"", beacon=b"")
    poster = SimpleNamespace(_comm_r={(1000, 1): (b"old", 90), (1000, 2): (b"new", 101)})
    PosterNode._forget_comm_r(poster, HeadUpdate(reverted=[tip(102), tip(101)], applied=[tip(101), tip(102)]))
    assert poster._comm_r == {(1000, 1): (b"old", 90)}
    PosterNode._forget_comm_r(poster, HeadUpdate(applied=[tip(103)], current=True))
    assert poster._comm_r == {}
