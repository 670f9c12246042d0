"""The worker's calls, pure: no trio, bus, disk or clock (`now` is given).

    core = WorkerCore(new_call_id)          # call ids: uuids in the shell, a counter in tools/sim
    core.restore(store.pending())           # what the call store holds
    commands = core.handle(Restarted(last_beat=...), now)
    commands = core.handle(event, now)      # the scheduler's requests, the answers to commands

A call, start to end: Run -> accepted (Save; Announce: ask the manager whether to run it)
-> Announced: running (Save; RunTask) or, refused (its result is stored, or it was
aborted), dropped (Save; Report) -> Ran: done (Save; Return the result to the manager;
Report TaskDone to the scheduler) -> Returned and Reported: over. Abort ends a call that
is announced or running as failed ("aborted"). A preparation (Prepare -> Fetch ->
Fetched) tells the scheduler it is ready, or ends as a failed call so the manager hears.

After a restart (Restarted) every stored call goes on: accepted ones ask the manager
again, running ones run again under the same call id (their computation died with the
old process), done ones are returned again (a stored result is replayed, never
computed again), and TaskDones not acknowledged are sent again. Moves follow
nodes.worker.calls.TRANSITIONS; one it does not list raises CallError. An answer for a
call that moved on meanwhile (aborted) is stale and changes nothing.
"""
from __future__ import annotations

from collections.abc import Callable

import msgspec

from zqnode.nodes.wire.sectors import SectorRef
from zqnode.nodes.wire.scheduler import RunningRequest
from zqnode.nodes.worker import commands as C
from zqnode.nodes.worker import events as E
from zqnode.nodes.worker.calls import ABORTED, ACCEPTED, DONE, ENDED, RUNNING, Call, CallError, moved

replace = msgspec.structs.replace


class WorkerCore:
    def __init__(self, new_call_id: Callable[[SectorRef], str]):
        self.new_call_id = new_call_id
        self.calls: dict[str, Call] = {}               # not yet acknowledged by both, oldest first
        self.live: dict[str, str] = {}                 # work id -> its call not yet returned
        self.preparing: dict[str, E.Prepare] = {}      # request -> its preparation
        self.prepared: set[str] = set()                # requests whose files are here

    def restore(self, calls: list[Call]) -> None:
        self.calls = {c.call_id: c for c in calls if not (c.returned and c.sched_done)}
        self.live = {c.work_id: c.call_id for c in self.calls.values() if not c.returned}
        self.preparing, self.prepared = {}, set()

    # -- queries ---------------------------------------------------------------------------
    def live_for(self, work_id: str) -> Call | None:
        """The call of this work not yet returned to the manager, if any."""
        call_id = self.live.get(work_id)
        return None if call_id is None else self.calls[call_id]

    def running(self) -> list[RunningRequest]:
        """What the scheduler should count as running here: calls whose end it has not
        acknowledged (oldest first), then requests being prepared."""
        out = {c.work_id: RunningRequest(request=c.work_id, task=c.task, sector=c.sector,
                                         sector_size=c.sector_size)
               for c in self.calls.values() if not c.sched_done}
        for p in self.preparing.values():
            out.setdefault(p.request, RunningRequest(request=p.request, task=p.task, sector=p.sector,
                                                     sector_size=p.sector_size, state="preparing"))
        return list(out.values())

    # -- events ----------------------------------------------------------------------------
    def handle(self, event: E.Event, now: float) -> list[C.Command]:
        handler = getattr(self, f"_on_{type(event).__name__}")
        return handler(event, now)

    def _on_Restarted(self, ev: E.Restarted, now: float) -> list[C.Command]:
        out: list[C.Command] = []
        for call in list(self.calls.values()):
            if call.state == ACCEPTED:
                out.append(C.Announce(cause=call.cause, call=call))
            elif call.state == RUNNING:
                lost = max(0.0, ev.last_beat - call.updated)   # updated: when the run began
                call = self._move(call, "rerun", now, runs=call.runs + 1)
                out += [C.Save(cause=call.cause, call=call,
                               note=f"running again after a restart (run {call.runs}; about "
                                    f"{lost:.0f}s of the last run lost)"),
                        C.CountRerun(cause=call.cause, call=call, lost_s=lost),
                        self._run_task(call)]
            else:
                out += self._tell(call)
        return out

    def _on_Run(self, ev: E.Run, now: float) -> list[C.Command]:
        call = self.live_for(ev.request)
        if call is None:
            call = self._add(ev, now)
            return [C.Save(cause=call.cause, call=call), C.Announce(cause=call.cause, call=call)]
        if call.state in ENDED:                        # the scheduler asks again: tell it again
            return [C.Report(cause=call.cause, call=call)]
        return []

    def _on_Unrecorded(self, ev: E.Unrecorded, now: float) -> list[C.Command]:
        call = self.calls[ev.call_id]
        if call.state != ACCEPTED:
            raise CallError(f"call {call.call_id} is {call.state}: it was recorded")
        del self.calls[call.call_id]
        if self.live.get(call.work_id) == call.call_id:
            del self.live[call.work_id]
        return []

    def _on_Prepare(self, ev: E.Prepare, now: float) -> list[C.Command]:
        if ev.request in self.preparing:
            return []
        self.preparing[ev.request] = ev
        return [C.Fetch(cause=_cause(ev.sector), request=ev.request, task=ev.task, sector=ev.sector,
                        sector_size=ev.sector_size, params=ev.params, sources=list(ev.sources))]

    def _on_Fetched(self, ev: E.Fetched, now: float) -> list[C.Command]:
        prep = self.preparing.pop(ev.request, None)
        if prep is None:                               # aborted meanwhile
            return []
        if ev.error:                                   # the work ends here, as a failed call
            return self._failed(self._add(prep, now), ev.error, now)
        self.prepared.add(ev.request)
        return [C.TellPrepared(cause=_cause(prep.sector), request=ev.request)]

    def _on_Abort(self, ev: E.Abort, now: float) -> list[C.Command]:
        out: list[C.Command] = []
        call = self.live_for(ev.request)           # before a preparation's end takes its place
        prep = self.preparing.pop(ev.request, None)
        if prep is not None:
            out += [C.StopFetch(cause=_cause(prep.sector), request=ev.request),
                    *self._failed(self._add(prep, now), ABORTED, now)]
        if call is not None and call.state in (ACCEPTED, RUNNING):
            out += [C.StopCall(cause=call.cause, call_id=call.call_id),
                    *self._failed(call, ABORTED, now)]
        return out

    def _on_Announced(self, ev: E.Announced, now: float) -> list[C.Command]:
        call = self.calls.get(ev.call_id)
        if call is None or call.state != ACCEPTED:    # aborted meanwhile
            return []
        if ev.refused:
            call = self._move(call, "refuse", now, returned=True, error=ev.refused)
            return [C.Save(cause=call.cause, call=call,
                           note=f"the manager refused it ({ev.refused})"), *self._tell(call)]
        call = self._move(call, "start", now, runs=call.runs + 1)
        return [C.Save(cause=call.cause, call=call), self._run_task(call)]

    def _on_Ran(self, ev: E.Ran, now: float) -> list[C.Command]:
        call = self.calls.get(ev.call_id)
        if call is None or call.state != RUNNING:     # aborted meanwhile
            return []
        return self._finish(call, ev.ok, ev.result, ev.error, now)

    def _on_Returned(self, ev: E.Returned, now: float) -> list[C.Command]:
        call = self.calls.get(ev.call_id)
        if call is None:                               # over: both acknowledged it
            return []
        call = self._move(call, "returned", now, returned=True)
        return [C.Save(cause=call.cause, call=call)]

    def _on_Reported(self, ev: E.Reported, now: float) -> list[C.Command]:
        call = self.calls.get(ev.call_id)
        if call is None:                               # over: both acknowledged it
            return []
        if call.state not in ENDED:
            raise CallError(f"call {call.call_id} is {call.state}: not ended")
        call = self._keep(replace(call, sched_done=True))
        return [C.Save(cause=call.cause, call=call)]

    # -- moves -------------------------------------------------------------------------------
    def _add(self, work: E.Work, now: float) -> Call:
        call = Call(call_id=self.new_call_id(work.sector), work_id=work.request, task=work.task,
                    miner=work.sector.miner, number=work.sector.number,
                    sector_size=work.sector_size, params=bytes(work.params),
                    sources=list(work.sources), state=ACCEPTED, created=now, updated=now)
        self.live[call.work_id] = call.call_id
        return self._keep(call)

    def _move(self, call: Call, event: str, now: float, **fields) -> Call:
        return self._keep(replace(call, state=moved(call, event), updated=now, **fields))

    def _keep(self, call: Call) -> Call:
        """The call's new version; a returned one is no longer its work's live call, and
        one both sides acknowledged is over (forgotten here, the store keeps it)."""
        self.calls[call.call_id] = call
        if call.returned and self.live.get(call.work_id) == call.call_id:
            del self.live[call.work_id]
        if call.returned and call.sched_done:
            del self.calls[call.call_id]
        return call

    def _finish(self, call: Call, ok: bool, result: bytes, error: str, now: float) -> list[C.Command]:
        call = self._move(call, "finish", now, ok=ok, result=bytes(result), error=error)
        return [C.Save(cause=call.cause, call=call, note="done" if ok else f"failed: {error}"),
                *self._tell(call)]

    def _failed(self, call: Call, error: str, now: float) -> list[C.Command]:
        return self._finish(call, False, b"", error, now)

    def _run_task(self, call: Call) -> C.RunTask:
        """Files come in the preparing step; tasks the scheduler starts without one (C1, C2
        go straight to 'active', as in Lotus) and GET itself fetch when they run."""
        fetch = call.task == "GET" or call.work_id not in self.prepared
        self.prepared.discard(call.work_id)
        return C.RunTask(cause=call.cause, call=call, fetch=fetch)

    def _tell(self, call: Call) -> list[C.Command]:
        """An ended call's news not yet acknowledged: its result to the manager (a refused
        call has none), its end to the scheduler."""
        out: list[C.Command] = []
        if call.state == DONE and not call.returned:
            out.append(C.Return(cause=call.cause, call=call))
        if not call.sched_done:
            out.append(C.Report(cause=call.cause, call=call))
        return out


def _cause(sector: SectorRef) -> str:
    return f"s-{sector.miner}-{sector.number}"
