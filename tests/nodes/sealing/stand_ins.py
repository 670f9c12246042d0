"""Task runners for the sealing tests: the call tracker's promise (the same work asked
twice is done once; a result stays until consumed) kept in memory, with the tasks run
in this process, either really (the worker's task table on sector directories) or as fakes whose
proofs the chain's FAKE verifier accepts. Each counts how often each task ran per sector
and can be told to fail a task."""
from __future__ import annotations

import hashlib
import pathlib
from collections import Counter
from types import SimpleNamespace

import trio

from zqnode.nodes.chain.verifiers import fake_seal_proof
from zqnode.nodes.sealing import commands as C
from zqnode.nodes.sealing.tasks import TaskError
from zqnode.nodes.manager.sealing_tasks import task_params
from zqnode.nodes.wire import params as P
from zqnode.proofs import commp as commp_mod



def work_id(cmd: C.RunTask, miner: int) -> str:
    """The WorkID the manager gives the command (task, sector and params make the work)."""
    return P.work_id(cmd.task, miner, cmd.sector, P.check_params(cmd.task, task_params(cmd)))


class LocalTasks:
    def __init__(self, root, *, fake: bool = True):
        self.root = pathlib.Path(root)
        self.fake = fake
        self.results: dict[str, tuple[bool, object]] = {}
        self.runs: Counter = Counter()          # (task, sector number) -> times run
        self.consumed: list[str] = []
        self.dropped: list[int] = []               # sectors whose files were deleted
        self.failures: dict[str, list[str]] = {}   # task -> errors the next runs raise
        self.delays: dict[str, float] = {}         # task -> seconds each run takes
        self.gates: dict[str, trio.Event] = {}     # task -> runs wait until it is set
        self._done: dict[str, trio.Event] = {}
        self._sectors: dict[int, dict] = {}        # fake: what each sector holds

    def fail(self, task: str, *errors: str) -> None:
        self.failures.setdefault(task, []).extend(errors)

    def sector_dir(self, miner: int, number: int) -> pathlib.Path:
        return self.root / f"s-t0{miner}-{number}"

    async def do(self, cmd: C.RunTask, miner: int, sector_size: int) -> str:
        wid = work_id(cmd, miner)
        if wid in self._done:
            return wid
        done = self._done[wid] = trio.Event()
        try:
            await trio.sleep(self.delays.get(cmd.task, 0))
            if cmd.task in self.gates:
                await self.gates[cmd.task].wait()
            self.runs[(cmd.task, cmd.sector)] += 1
            errors = self.failures.get(cmd.task)
            if errors:
                raise TaskError(errors.pop(0), wid)
            result = self._fake(cmd, miner, sector_size) if self.fake else \
                await trio.to_thread.run_sync(self._real, cmd, miner, sector_size)
            self.results[wid] = (True, result)
        except TaskError as e:
            self.results[wid] = (False, e.error)
        except Exception as e:
            self.results[wid] = (False, f"{type(e).__name__}: {e}")
        except BaseException:
            del self._done[wid]             # cancelled: as if never asked
            raise
        done.set()
        return wid

    async def wait(self, wid: str):
        await self._done[wid].wait()
        ok, result = self.results[wid]
        if not ok:
            raise TaskError(result, wid)
        return result

    async def consume(self, wid: str) -> None:
        self.results.pop(wid, None)
        self._done.pop(wid, None)
        self.consumed.append(wid)

    def dropped_files(self, miner: int, number: int) -> None:
        self.dropped.append(number)

    async def drop_sector(self, miner: int, number: int) -> None:
        self._sectors.pop(number, None)

    # -- fakes ---------------------------------------------------------------------------------------
    def _fake(self, cmd: C.RunTask, miner: int, sector_size: int):
        s = self._sectors.setdefault(cmd.sector, {"pieces": []})
        if isinstance(cmd, C.RunAddPiece):
            data = pathlib.Path(cmd.path).read_bytes()
            cp = commp_mod.commp(data)
            if cmd.index == len(s["pieces"]):         # else added before: the same again
                s["pieces"].append((cp.padded_size, cp.commitment))
            sizes = [size for size, _ in s["pieces"][:cmd.index + 1]]
            slots = commp_mod.piece_layout(sizes, sector_size)
            return SimpleNamespace(comm_p=cp.commitment, payload_size=cp.payload_size,
                                   padded_size=cp.padded_size,
                                   offset=next(x.offset for x in slots if x.piece == cmd.index))
        if isinstance(cmd, C.RunPreCommit1):
            s["ticket"] = cmd.ticket
            s["comm_d"] = commp_mod.commd(s["pieces"], sector_size)
            return SimpleNamespace(comm_d=s["comm_d"], replica_id=hashlib.sha256(cmd.ticket).digest())
        if isinstance(cmd, C.RunPreCommit2):
            s["comm_r"] = hashlib.sha256(b"fake comm_r" + s["ticket"] + s["comm_d"]
                                         + cmd.sector.to_bytes(8, "big")).digest()
            return SimpleNamespace(comm_d=s["comm_d"], comm_r=s["comm_r"])
        if isinstance(cmd, C.RunCommit1):
            return SimpleNamespace(proof=fake_seal_proof(
                seal_proof=cmd_seal_proof(sector_size), miner=miner, sector=cmd.sector,
                ticket=s["ticket"], seed=cmd.seed, comm_d=s["comm_d"], comm_r=s["comm_r"]))
        if isinstance(cmd, C.RunFinalize):
            return SimpleNamespace()
        if isinstance(cmd, C.RunUnseal):
            return SimpleNamespace(data=bytes(sector_size * 127 // 128))
        raise AssertionError(type(cmd).__name__)

    # -- the real thing: the worker's task table ----------------------------------------------------
    def _real(self, cmd: C.RunTask, miner: int, sector_size: int):
        from zqnode.nodes.manager.sealing_tasks import task_params
        from zqnode.nodes.worker.sealing import TASKS
        from zqnode.nodes.worker.task import TaskContext
        ctx = TaskContext(miner=miner, number=cmd.sector, sector_size=sector_size,
                          sector_dir=self.sector_dir(miner, cmd.sector), repo=self.root,
                          backend="auto", parent_cache=None)
        return TASKS[cmd.task](ctx, task_params(cmd))


def cmd_seal_proof(sector_size: int) -> int:
    """The V1_1 seal proof of a sector size (what the devnet's miners use)."""
    from zqnode.proofs.params import SEAL_PROOFS
    return next(p.id for p in SEAL_PROOFS if p.sector_size == sector_size and p.name.endswith("V1_1"))
