"""What each task needs, per sector size: Lotus's resource table and its overrides.

`DEFAULT_TABLE` holds Lotus's defaults (storiface/resources.go) keyed by
(task short name, sector size in bytes). `parse_resource_env` applies Lotus-style
override names such as `PC1_32G_MAX_CONCURRENT=4` (sector-size specific) or
`PC1_MAX_CONCURRENT=4` (all sizes), and the multicore SDR variables for PC1/UNS
threads. Unlike Lotus, a value that does not parse raises `ResourceEnvError` naming the
variable, instead of silently becoming 0.

Tasks Lotus has no row for (FIN, FUS, FRU, DL) need nothing (all zero) by default, as in
Lotus; here they accept overrides too (e.g. `FIN_MAX_CONCURRENT`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import msgspec

from zqnode.nodes.wire.tasks import GiB, KiB, MiB, SECTOR_SIZES, TASK_TYPES

from .errors import ResourceEnvError

# Share of a worker's CPUs that a "use all threads" (MaxParallelism -1) task takes.
PARALLEL_NUM, PARALLEL_DENOM = 92, 100


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """One task's needs on one worker (Lotus storiface.Resources)."""

    min_memory: int = 0  # must be in RAM for decent performance
    max_memory: int = 0  # peak use, RAM + swap
    gpu_utilization: float = 0.0  # how many GPUs the task uses
    max_parallelism: int = 0  # CPU threads without a GPU; -1 = 92% of the CPUs
    max_parallelism_gpu: int = 0  # CPU threads when a GPU is used; 0 = as above
    base_min_memory: int = 0  # shared between tasks of this type (e.g. parameters)
    max_concurrent: int = 0  # tasks of this type per worker; 0 = no limit

    def threads(self, cpus: int, gpus: int) -> int:
        mp = self.max_parallelism
        if self.gpu_utilization > 0 and gpus > 0 and self.max_parallelism_gpu != 0:
            mp = self.max_parallelism_gpu
        if mp == -1:
            n = cpus * PARALLEL_NUM // PARALLEL_DENOM
            return n if n else cpus
        return mp


ResourceTable = dict[tuple[str, int], Resources]

# Override names: env suffix -> (Resources field, kind).
FIELDS: dict[str, tuple[str, str]] = {
    "MIN_MEMORY": ("min_memory", "uint"),
    "MAX_MEMORY": ("max_memory", "uint"),
    "GPU_UTILIZATION": ("gpu_utilization", "float"),
    "MAX_PARALLELISM": ("max_parallelism", "int"),
    "MAX_PARALLELISM_GPU": ("max_parallelism_gpu", "int"),
    "BASE_MIN_MEMORY": ("base_min_memory", "uint"),
    "MAX_CONCURRENT": ("max_concurrent", "uint"),
}
SDR_VARS = ("FIL_PROOFS_USE_MULTICORE_SDR", "FIL_PROOFS_MULTICORE_SDR_PRODUCERS")

_K2, _M8, _M512, _G32, _G64 = 2 * KiB, 8 * MiB, 512 * MiB, 32 * GiB, 64 * GiB


def _r(mn: int, mx: int, mp: int, base: int, gpu: float = 0.0, mpg: int = 0) -> Resources:
    return Resources(min_memory=mn, max_memory=mx, max_parallelism=mp, base_min_memory=base,
                     gpu_utilization=gpu, max_parallelism_gpu=mpg)


def _small(mp: int, gpu: float = 0.0) -> dict[int, Resources]:
    """The 2 KiB and 8 MiB rows: memory and base equal to the sector size."""
    return {_K2: _r(2 * KiB, 2 * KiB, mp, 2 * KiB, gpu),
            _M8: _r(8 * MiB, 8 * MiB, mp, 8 * MiB, gpu)}


_AP = {_G64: _r(8 * GiB, 8 * GiB, 1, GiB), _G32: _r(4 * GiB, 4 * GiB, 1, GiB),
       _M512: _r(GiB, GiB, 1, GiB), **_small(1)}
_PC1 = {_G64: _r(112 * GiB, 128 * GiB, 1, 10 * MiB), _G32: _r(56 * GiB, 64 * GiB, 1, 10 * MiB),
        _M512: _r(768 * MiB, GiB, 1, MiB), **_small(1)}
_PC2 = {_G64: _r(30 * GiB, 30 * GiB, -1, GiB, 1.0, 6),
        _G32: _r(15 * GiB, 15 * GiB, -1, GiB, 1.0, 6),
        _M512: _r(GiB, 3 * GiB // 2, -1, GiB), **_small(-1)}
_C1 = {_G64: _r(GiB, GiB, 0, GiB), _G32: _r(GiB, GiB, 0, GiB), _M512: _r(GiB, GiB, 0, GiB),
       **_small(0)}
_C2 = {_G64: _r(60 * GiB, 190 * GiB, -1, 64 * GiB, 1.0, 6),
       _G32: _r(30 * GiB, 150 * GiB, -1, 32 * GiB, 1.0, 6),
       _M512: _r(GiB, 3 * GiB // 2, 1, 10 * GiB, 1.0), **_small(1, 1.0)}
_GET = {size: _r(MiB, MiB, 0, 0) for size in SECTOR_SIZES}
_RU = {_G64: _r(8 * GiB, 8 * GiB, 1, GiB, 1.0, 6), _G32: _r(4 * GiB, 4 * GiB, 1, GiB, 1.0, 6),
       _M512: _r(GiB, GiB, 1, GiB, 1.0), **_small(1, 1.0)}
_WDP = {_G64: _r(60 * GiB, 120 * GiB, -1, 64 * GiB, 1.0, 6),
        _G32: _r(30 * GiB, 96 * GiB, -1, 32 * GiB, 1.0, 6),
        _M512: _r(GiB, 3 * GiB // 2, 1, 10 * GiB, 1.0), **_small(1, 1.0)}
_WNP = {_G64: _r(GiB, GiB, -1, 64 * GiB, 1.0, 6), _G32: _r(GiB, GiB, -1, 32 * GiB, 1.0, 6),
        _M512: _r(2 * KiB, 2 * KiB, 1, 10 * GiB, 1.0), **_small(1, 1.0)}
_NOTHING = {size: Resources() for size in SECTOR_SIZES}

_ROWS: dict[str, dict[int, Resources]] = {
    "AP": _AP, "PC1": _PC1, "PC2": _PC2, "C1": _C1, "C2": _C2, "GET": _GET, "RU": _RU,
    "PR1": _C1, "PR2": _C2, "WDP": _WDP, "WNP": _WNP,
    "UNS": _PC1,  # Lotus: "TODO: measure accurately"
    "GSK": _RU,
    "DC": {size: _AP[_G32] for size in SECTOR_SIZES},  # DataCid is not sector sized
    "FIN": _NOTHING, "FUS": _NOTHING, "FRU": _NOTHING, "DL": _NOTHING,
}

DEFAULT_TABLE: ResourceTable = {(task, size): _ROWS[task][size]
                                for task in TASK_TYPES for size in SECTOR_SIZES}

_NAME = re.compile(r"^(?P<task>[A-Z0-9]+?)_(?:(?P<size>\d+[KMG])_)?(?P<field>%s)$"
                   % "|".join(sorted(FIELDS, key=len, reverse=True)))


def _parse(name: str, value: object, kind: str) -> int | float:
    """One override value, parsed as strictly as Go's strconv does, plus range checks."""
    if isinstance(value, bool):
        raise ResourceEnvError(f"{name}={value!r}: expected a number, got a boolean")
    text = str(value).strip() if isinstance(value, (str, int, float)) else None
    if text is None:
        raise ResourceEnvError(f"{name}={value!r}: expected a number")
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise ResourceEnvError(f"{name}={value!r}: not a number") from None
        if not math.isfinite(number) or number < 0:
            raise ResourceEnvError(f"{name}={value!r}: must be a finite number >= 0")
        return number
    if not re.fullmatch(r"-?\d+" if kind == "int" else r"\d+", text):
        what = "an integer" if kind == "int" else "a whole number >= 0 (bytes or a count)"
        raise ResourceEnvError(f"{name}={value!r}: not {what}")
    number = int(text)
    if kind == "int" and number < -1:
        raise ResourceEnvError(f"{name}={value!r}: must be -1 (all threads) or >= 0")
    if kind == "uint" and number >= 1 << 64:
        raise ResourceEnvError(f"{name}={value!r}: does not fit in 64 bits")
    return number


def _sdr_threads(env: Mapping[str, object]) -> int:
    """PC1/UNS threads when no override names them: SDR producers + the worker thread."""
    producers = 0
    if str(env.get("FIL_PROOFS_USE_MULTICORE_SDR", "")).strip() == "1":
        producers = 3
        if "FIL_PROOFS_MULTICORE_SDR_PRODUCERS" in env:
            producers = int(_parse("FIL_PROOFS_MULTICORE_SDR_PRODUCERS",
                                   env["FIL_PROOFS_MULTICORE_SDR_PRODUCERS"], "uint"))
    return producers + 1


def _check_names(env: Mapping[str, object], strict: bool) -> None:
    """Reject names that look like overrides but match no task/size (typos)."""
    for name in env:
        if name in SDR_VARS:
            continue
        m = _NAME.match(name)
        if m is None:
            if strict:
                raise ResourceEnvError(f"{name}: not a resource override name "
                                       f"(TASK[_SIZE]_FIELD, e.g. PC1_32G_MAX_CONCURRENT)")
            continue
        if m["task"] not in _ROWS:
            if strict:
                raise ResourceEnvError(f"{name}: unknown task type {m['task']!r}")
            continue
        if m["size"] is not None and m["size"] not in SECTOR_SIZES.values():
            raise ResourceEnvError(f"{name}: unknown sector size {m['size']!r} "
                                   f"(one of {', '.join(SECTOR_SIZES.values())})")


def parse_resource_env(env: Mapping[str, object], *, base: ResourceTable | None = None,
                       strict: bool = False) -> ResourceTable:
    """A resource table with Lotus-style overrides from `env` applied to `base`.

    For each task, sector size and field, `TASK_SIZE_FIELD` wins over `TASK_FIELD`, which
    wins over the base value; PC1 and UNS threads otherwise follow
    FIL_PROOFS_USE_MULTICORE_SDR / FIL_PROOFS_MULTICORE_SDR_PRODUCERS, as in Lotus.
    `strict` (for config files) also rejects names that are not override names. Raises
    ResourceEnvError naming the variable on any bad value; `base` is never modified.
    """
    base = DEFAULT_TABLE if base is None else base
    _check_names(env, strict)
    sdr_threads: int | None = None
    out: ResourceTable = {}
    for (task, size), res in base.items():
        short = SECTOR_SIZES[size]
        changes: dict[str, int | float] = {}
        for suffix, (field, kind) in FIELDS.items():
            sized, unsized = f"{task}_{short}_{suffix}", f"{task}_{suffix}"
            if sized in env:
                changes[field] = _parse(sized, env[sized], kind)
            elif unsized in env:
                changes[field] = _parse(unsized, env[unsized], kind)
            elif task in ("PC1", "UNS") and suffix == "MAX_PARALLELISM":
                if sdr_threads is None:
                    sdr_threads = _sdr_threads(env)
                changes[field] = sdr_threads
        out[(task, size)] = msgspec.structs.replace(res, **changes) if changes else res
    return out


def resource_env_from_config(config: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """Turn a worker's config mapping into override names for `parse_resource_env`.

    Shape: `{task: {field: value, size: {field: value}}}`, e.g.
    `{"PC1": {"32G": {"max_concurrent": 4}}, "AP": {"max_memory": 1 << 30}}`. Field
    names are the Resources field names (any case). Unknown tasks, sizes or fields raise.
    """
    out: dict[str, object] = {}
    by_field = {field: suffix for suffix, (field, _) in FIELDS.items()}
    sizes = set(SECTOR_SIZES.values())

    def suffix_of(task: str, key: str) -> str:
        suffix = by_field.get(key.lower()) or (key.upper() if key.upper() in FIELDS else None)
        if suffix is None:
            raise ResourceEnvError(f"{task}.{key}: unknown resource field "
                                   f"(one of {', '.join(sorted(by_field))})")
        return suffix

    for task, entries in config.items():
        if task not in _ROWS:
            raise ResourceEnvError(f"{task}: unknown task type")
        if not isinstance(entries, Mapping):
            raise ResourceEnvError(f"{task}: expected a mapping of fields or sizes")
        for key, value in entries.items():
            if key in sizes:
                if not isinstance(value, Mapping):
                    raise ResourceEnvError(f"{task}.{key}: expected a mapping of fields")
                for field, v in value.items():
                    out[f"{task}_{key}_{suffix_of(f'{task}.{key}', field)}"] = v
            elif re.fullmatch(r"\d+[KMG]", str(key)):
                raise ResourceEnvError(f"{task}.{key}: unknown sector size "
                                       f"(one of {', '.join(SECTOR_SIZES.values())})")
            else:
                out[f"{task}_{suffix_of(task, key)}"] = value
    return out
