"""Per-task concurrency limits and named shared locks on one worker (damocles'
per-stage limits and ext_locks): a call holds its task type's slot and every lock its
task type takes while it runs. Locks are taken in name order, so two calls never wait
for each other's locks."""
from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager

import trio


class Limits:
    def __init__(self, limits: dict[str, int], locks: dict[str, list[str]]):
        self.limits = dict(limits)
        self.slots = {task: trio.Semaphore(n) for task, n in limits.items()}
        self.locks = {name: trio.Semaphore(1) for name in locks}
        self.lock_names: dict[str, list[str]] = {}
        for name in sorted(locks):
            for task in locks[name]:
                self.lock_names.setdefault(task, []).append(name)
        self.holders: dict[str, set[str]] = {name: set() for name in locks}  # lock -> call ids

    @asynccontextmanager
    async def hold(self, task: str, call_id: str):
        async with AsyncExitStack() as stack:
            slot = self.slots.get(task)
            if slot is not None:
                await stack.enter_async_context(slot)
            for name in self.lock_names.get(task, ()):
                await stack.enter_async_context(self.locks[name])
                self.holders[name].add(call_id)
                stack.callback(self.holders[name].discard, call_id)
            yield

    def max_concurrent_env(self) -> dict[str, str]:
        """The limits as Lotus-style overrides, so the scheduler does not send more."""
        return {f"{task}_MAX_CONCURRENT": str(n) for task, n in self.limits.items()}
