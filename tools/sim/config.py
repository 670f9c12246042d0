"""The simulator's inputs: a task-duration profile (one per sector size) and a cluster
file (groups of identical workers), both TOML. A wrong key or value raises SimConfigError
naming the file and the key; nothing is half-loaded."""
from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass, field

import msgspec

from zqnode.nodes.scheduler.events import SchedulerConfig
from zqnode.nodes.wire.tasks import ORDER, SECTOR_SIZES
from zqnode.proofs.params import SEAL_PROOFS, parse_sector_size

GiB = 1 << 30
TOOLS = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = TOOLS / "profiles" / "32GiB.toml"
DEFAULT_CLUSTER = TOOLS / "clusters" / "32GiB.toml"


class SimConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    """Seconds each task takes on one sector (WDP: on one partition)."""
    name: str
    sector_size: int
    seal_proof: int                    # the V1_1 seal proof of that size
    seconds: dict[str, float]
    jitter: float = 0.0                # each run takes seconds * (1 ± jitter), uniformly

    def duration(self, task: str) -> float:
        try:
            return self.seconds[task]
        except KeyError:
            raise SimConfigError(f"profile {self.name}: no duration for task {task}") from None


@dataclass(frozen=True)
class WorkerGroup:
    name: str
    count: int
    cpus: int
    ram: int                           # bytes
    swap: int
    gpus: int
    tasks: tuple[str, ...]
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Cluster:
    name: str
    groups: tuple[WorkerGroup, ...]
    scheduler: SchedulerConfig

    @property
    def workers(self) -> int:
        return sum(g.count for g in self.groups)

    def scaled(self, total: int) -> Cluster:
        """The same mix with `total` workers: each group its share rounded down but at
        least one worker, then corrected one worker at a time towards the exact shares."""
        if total < 1:
            raise SimConfigError(f"--workers must be >= 1, got {total}")
        have = self.workers
        exact = [g.count * total / have for g in self.groups]
        counts = [max(int(x), 1 if g.count else 0) for x, g in zip(exact, self.groups)]
        while sum(counts) > total:               # too many: take from the most over its share
            spare = [i for i, c in enumerate(counts) if c > 1] or [i for i, c in enumerate(counts) if c]
            i = max(spare, key=lambda i: (counts[i] - exact[i], -i))
            counts[i] -= 1
        while sum(counts) < total:               # too few: give to the most under its share
            i = min(range(len(counts)), key=lambda i: (counts[i] - exact[i], i))
            counts[i] += 1
        groups = tuple(WorkerGroup(**{**g.__dict__, "count": c}) for g, c in zip(self.groups, counts))
        groups = tuple(g for g in groups if g.count)
        missing = _missing_tasks(groups)
        if missing:
            raise SimConfigError(f"--workers {total}: too few for {self.name}'s {len(self.groups)} groups "
                                 f"(no worker would run {', '.join(missing)})")
        return Cluster(self.name, groups, self.scheduler)


PIPELINE = ("PC1", "PC2", "C1", "FIN", "WDP")     # the tasks a simulated cluster must run


def _missing_tasks(groups) -> list[str]:
    return [t for t in PIPELINE if not any(t in g.tasks and g.count for g in groups)]


def _read(path: str | pathlib.Path) -> tuple[str, dict]:
    path = pathlib.Path(path)
    try:
        return path.name, tomllib.loads(path.read_text())
    except OSError as e:
        raise SimConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SimConfigError(f"{path}: not valid TOML: {e}") from None


def _unknown(where: str, data: dict, known: set[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise SimConfigError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} "
                             f"{', '.join(extra)} (known: {', '.join(sorted(known))})")


def _number(where: str, value, *, minimum: float = 0.0, integer: bool = False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        raise SimConfigError(f"{where} must be {kind} >= {minimum:g}, got {value!r}")
    return value


def load_profile(path: str | pathlib.Path = DEFAULT_PROFILE) -> Profile:
    name, data = _read(path)
    _unknown(name, data, {"sector_size", "jitter", "seconds"})
    try:
        size = parse_sector_size(str(data.get("sector_size", "")))
    except ValueError as e:
        raise SimConfigError(f"{name}: sector_size: {e}") from None
    if size not in SECTOR_SIZES:
        raise SimConfigError(f"{name}: sector_size {size} is not one the scheduler knows")
    proof = next(p.id for p in SEAL_PROOFS if p.sector_size == size and p.name.endswith("V1_1"))
    jitter = _number(f"{name}: jitter", data.get("jitter", 0.0))
    if jitter >= 1:
        raise SimConfigError(f"{name}: jitter must be < 1, got {jitter}")
    seconds = data.get("seconds")
    if not isinstance(seconds, dict) or not seconds:
        raise SimConfigError(f"{name}: needs a [seconds] table (task = seconds)")
    for task, value in seconds.items():
        if task not in ORDER:
            raise SimConfigError(f"{name}: seconds.{task}: unknown task type")
        _number(f"{name}: seconds.{task}", value)
    for task in ("PC1", "PC2", "C1", "FIN", "GET", "WDP"):
        if task not in seconds:
            raise SimConfigError(f"{name}: seconds.{task} is missing (the simulated pipeline runs it)")
    return Profile(name=name, sector_size=size, seal_proof=proof,
                   seconds={k: float(v) for k, v in seconds.items()}, jitter=float(jitter))


GROUP_KEYS = {"name", "count", "cpus", "ram_gib", "swap_gib", "gpus", "tasks", "limits"}


def load_cluster(path: str | pathlib.Path = DEFAULT_CLUSTER) -> Cluster:
    name, data = _read(path)
    _unknown(name, data, {"group", "scheduler"})
    raw = data.get("group")
    if not isinstance(raw, list) or not raw:
        raise SimConfigError(f"{name}: needs at least one [[group]] of workers")
    groups, seen = [], set()
    for i, g in enumerate(raw):
        where = f"{name}: group {i + 1}"
        if not isinstance(g, dict):
            raise SimConfigError(f"{where}: must be a table")
        gname = g.get("name")
        if isinstance(gname, str) and gname.isidentifier() and gname not in seen:
            where = f"{name}: group {gname}"
        _unknown(where, g, GROUP_KEYS)
        if not isinstance(gname, str) or not gname.isidentifier() or gname in seen:
            raise SimConfigError(f"{where}: name must be a unique identifier, got {gname!r}")
        seen.add(gname)
        where = f"{name}: group {gname}"
        tasks = g.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(t in ORDER for t in tasks):
            raise SimConfigError(f"{where}: tasks must be a list of task types ({', '.join(ORDER)}), "
                                 f"got {tasks!r}")
        limits = g.get("limits", {})
        if not isinstance(limits, dict):
            raise SimConfigError(f"{where}: limits must be a table (task = count)")
        for task, n in limits.items():
            if task not in ORDER:
                raise SimConfigError(f"{where}: limits.{task}: unknown task type")
            _number(f"{where}: limits.{task}", n, minimum=1, integer=True)
        groups.append(WorkerGroup(
            name=gname, count=_number(f"{where}: count", g.get("count", 1), minimum=0, integer=True),
            cpus=_number(f"{where}: cpus", g.get("cpus"), minimum=1, integer=True),
            ram=int(_number(f"{where}: ram_gib", g.get("ram_gib"), minimum=1) * GiB),
            swap=int(_number(f"{where}: swap_gib", g.get("swap_gib", 0)) * GiB),
            gpus=_number(f"{where}: gpus", g.get("gpus", 0), integer=True),
            tasks=tuple(dict.fromkeys([*tasks, "GET"])), limits=dict(limits)))
    if not any(g.count for g in groups):
        raise SimConfigError(f"{name}: the groups have no workers (every count is 0)")
    for need in _missing_tasks(groups):
        raise SimConfigError(f"{name}: no group runs {need}: the pipeline would stop there")
    try:
        sched = msgspec.convert(data.get("scheduler", {}), SchedulerConfig)
    except msgspec.ValidationError as e:
        raise SimConfigError(f"{name}: [scheduler]: {e}") from None
    return Cluster(name=name, groups=tuple(groups), scheduler=sched)
