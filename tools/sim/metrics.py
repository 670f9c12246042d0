"""What a simulation measures: task spans on workers (the timeline and the utilisation),
queue waits per task type, sealed sectors and deadline outcomes."""
from __future__ import annotations

from collections import defaultdict

from .worker import Need, Span


class Metrics:
    def __init__(self):
        self.spans: list[Span] = []
        self.asked_at: dict[str, tuple[str, float]] = {}   # work id -> (task, asked at)
        self.waits: dict[str, list[float]] = defaultdict(list)
        self.runs: dict[str, int] = defaultdict(int)         # task -> runs that finished ok
        self.killed = 0
        self.sealed: dict[int, float] = {}                   # sector -> time it reached Proving
        self.pledged = 0
        self.deadlines: list[dict] = []                      # outcomes, as the poster recorded them

    # ---- the manager (a wait ends when the task itself starts: a fetch first counts) -----
    def asked(self, work_id: str, task: str, now: float) -> None:
        self.asked_at.setdefault(work_id, (task, now))

    # ---- workers -------------------------------------------------------------------------
    def start_span(self, worker: str, task: str, now: float, need: Need, work_id: str) -> Span:
        span = Span(worker=worker, task=task, start=now, need=need, work_id=work_id)
        self.spans.append(span)
        asked = self.asked_at.get(work_id)
        if asked is not None and asked[0] == task:
            del self.asked_at[work_id]
            self.waits[task].append(now - asked[1])
        return span

    def end_span(self, span: Span, now: float, outcome: str) -> None:
        span.end, span.outcome = now, outcome
        if outcome == "killed":
            self.killed += 1

    def ran(self, work_id: str, task: str) -> None:
        self.runs[task] += 1

    # ---- summaries ---------------------------------------------------------------------------
    def utilisation(self, workers: dict, start: float, end: float) -> tuple[dict, dict]:
        """(per worker, per resource) shares of capacity used over [start, end)."""
        length = max(end - start, 1e-9)
        used: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in workers}
        for s in self.spans:
            stop = end if s.end < 0 else min(s.end, end)
            t = max(stop - max(s.start, start), 0.0)
            if t:
                u = used[s.worker]
                u[0] += s.need.threads * t
                u[1] += s.need.mem * t
                u[2] += s.need.gpu * t
        per_worker, totals = {}, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        for name, w in workers.items():
            g = w.group
            cap = (g.cpus * length, g.ram * length, g.gpus * length)
            u = used[name]
            per_worker[name] = {"cpu": _share(u[0], cap[0]), "ram": _share(u[1], cap[1]),
                                "gpu": _share(u[2], cap[2]) if g.gpus else None}
            for i in range(3):
                totals[i] += u[i]
                totals[3 + i] += cap[i]
        per_resource = {"cpu": _share(totals[0], totals[3]), "ram": _share(totals[1], totals[4]),
                        "gpu": _share(totals[2], totals[5]) if totals[5] else None}
        return per_worker, per_resource

    def queue_waits(self) -> dict[str, dict]:
        out = {}
        for task, waits in sorted(self.waits.items()):
            w = sorted(waits)
            out[task] = {"count": len(w), "mean_s": round(sum(w) / len(w), 1),
                         "p50_s": round(w[len(w) // 2], 1), "max_s": round(w[-1], 1)}
        return out


def _share(used: float, capacity: float) -> float:
    return round(used / capacity, 4) if capacity else 0.0
