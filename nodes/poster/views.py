"""What `zqnode proving deadlines|deadline|faults` show of the chain, from any chain API
(nodes.chain.api.ChainAPI, or nodes.chain.lotus.reader.LotusReader): the poster adds its
runners, outcomes and reasons; `--lotus URL` shows the chain's part alone, for a miner no
poster of ours proves (as `lotus-miner proving deadlines` does)."""
from __future__ import annotations

from typing import Callable

from zqnode.nodes.chain.policy import DeadlineInfo, Policy, deadline_info, next_not_elapsed
from zqnode.nodes.wire import poster as W


def window(policy: Policy, current: DeadlineInfo, index: int) -> DeadlineInfo:
    """Deadline `index`'s current window, or its next one once this one has closed."""
    return next_not_elapsed(deadline_info(policy, current.period_start, index, current.current_epoch), policy)


async def deadlines(chain, policy: Policy, miner: int, runner: Callable[[int], str] = lambda i: "",
                    last: dict[int, str] | None = None) -> W.PosterDeadlines:
    """Every deadline: its window, partitions, sectors, faults, recoveries; `runner(i)` and
    `last[i]` add the poster's runner state and last outcome."""
    current = await chain.deadline(miner)
    rows = []
    for i in range(policy.period_deadlines):
        view = await chain.partitions(miner, i)
        when = window(policy, current, i)
        rows.append(W.DeadlineRow(
            index=i, open=when.open, close=when.close, partitions=len(view.partitions),
            sectors=sum(len(p.sectors) for p in view.partitions),
            faults=sum(len(p.faults) for p in view.partitions),
            recoveries=sum(len(p.recoveries) for p in view.partitions),
            posted=view.posted if i == current.index else [],
            runner=runner(i), last=(last or {}).get(i, "")))
    return W.PosterDeadlines(miner=miner, current=current, deadlines=rows)


async def faults(chain, policy: Policy, miner: int, reasons: dict[int, str] | None = None) -> list[W.FaultRow]:
    """Every faulty sector (recovering or not), with the poster's reason where it has one."""
    rows = []
    for i in range(policy.period_deadlines):
        for p in (await chain.partitions(miner, i)).partitions:
            rec = set(p.recoveries)
            rows += [W.FaultRow(deadline=i, partition=p.index, sector=n,
                                state="recovering" if n in rec else "faulty",
                                reason=(reasons or {}).get(n, "")) for n in p.faults]
    return rows
