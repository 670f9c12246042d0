"""Following a Lotus node's head: its ChainNotify batches as zqnode's head changes, with
nothing lost or doubled across a dropped connection. Pure: no I/O.

A batch applies to the head we know (reverts first, from our head down; then applies, up
from there). After a reconnect the node's "current" head may be anywhere: the shell walks
its parents back (`missing`) until a tipset we know, and `resync` turns that path into one
change that reverts what the node dropped and applies what we had not seen."""
from __future__ import annotations

from zqnode.nodes.chain.lotus import types as T
from zqnode.nodes.chain.messages import TipsetSummary

KEEP = 2000                          # recent tipsets remembered (a resync walks back at most this)


class FollowError(ValueError):
    """A batch that does not fit the head we know: resync from a snapshot."""


def tipset_key(cids: list[T.Cid]) -> str:
    """A Lotus tipset key as one string (its block CIDs, in order)."""
    return ",".join(c.link for c in cids)


def summary(ts: T.TipSet) -> TipsetSummary:
    """A Lotus tipset as zqnode's: its ticket is the smallest block ticket (the one Lotus
    draws ticket randomness from), its beacon the last entry of its first block that has one."""
    blocks = ts.Blocks
    tickets = [b.Ticket.VRFProof for b in blocks if b.Ticket is not None]
    beacons = [b.BeaconEntries[-1].Data for b in blocks if b.BeaconEntries]
    parents = blocks[0].Parents if blocks else []
    return TipsetSummary(epoch=ts.Height, key=tipset_key(ts.Cids), parent=tipset_key(parents),
                         timestamp=float(min((b.Timestamp for b in blocks), default=0)),
                         ticket=min(tickets, default=b""), beacon=beacons[0] if beacons else b"")


class Follower:
    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self.chain: list[TipsetSummary] = []          # ascending epochs, each the parent of the next

    @property
    def head(self) -> TipsetSummary | None:
        return self.chain[-1] if self.chain else None

    def knows(self, key: str) -> bool:
        return any(t.key == key for t in reversed(self.chain))

    def start(self, head: TipsetSummary) -> tuple[list, list]:
        """The first head (nothing known yet): applied as it is."""
        self.chain = [head]
        return [], [head]

    def batch(self, changes: list[T.HeadChange]) -> tuple[list[TipsetSummary], list[TipsetSummary]]:
        """(reverted newest first, applied oldest first) of one ChainNotify batch;
        FollowError when it does not continue from our head."""
        reverted, applied = [], []
        chain = list(self.chain)
        for change in changes:
            ts = summary(change.Val)
            if change.Type == "revert":
                if applied or not chain or chain[-1].key != ts.key:
                    raise FollowError(f"revert of {ts.epoch} is not our head")
                reverted.append(chain.pop())
            elif change.Type == "apply":
                if chain and chain[-1].key != ts.parent:
                    raise FollowError(f"apply of {ts.epoch} does not continue our head")
                chain.append(ts)
                applied.append(ts)
            else:
                raise FollowError(f"a {change.Type!r} change in the middle of a stream")
        self.chain = chain[-self.keep:]
        return reverted, applied

    def resync(self, path: list[TipsetSummary]) -> tuple[list[TipsetSummary], list[TipsetSummary]]:
        """After a reconnect: `path` is the node's head and its ancestors back to one we know,
        oldest first (path[0] known). Returns the change from our head to the node's."""
        if not path or not self.knows(path[0].key):
            raise FollowError("a resync path starts at a tipset we know")
        base = next(i for i in range(len(self.chain) - 1, -1, -1) if self.chain[i].key == path[0].key)
        reverted = list(reversed(self.chain[base + 1:]))
        applied = path[1:]
        self.chain = (self.chain[:base + 1] + applied)[-self.keep:]
        return reverted, applied
