"""Logging: structured key=value lines (or one JSON object a line), levels per module,
and a cause id on every line written while a sector's or a job's work is being done.

    setup("zqnode.bus=debug,info", fmt="kv")     # root at info, zqnode.bus at debug
    with cause("s-1000-3"):                      # or set_cause(...) for the rest of a task
        log.info("PreCommit1 done")              # ... cause=s-1000-3 msg="PreCommit1 done"
    log.info("done", extra={"cause": "s-1000-3"})   # explicit, where simpler

The cause lives in a context variable: Trio copies the context into every task it
starts, so a task that sets it (a sector's command, a worker's call, an RPC handler for
a request that carries a cause) marks its own lines and those of the tasks it starts.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time

CAUSE: contextvars.ContextVar[str] = contextvars.ContextVar("zqnode_cause", default="")
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("kv", "json")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "cause", "taskName"}


class LogSpecError(ValueError):
    pass


def set_cause(cause: str) -> None:
    """Mark the rest of the current task (and the tasks it starts) with `cause`."""
    CAUSE.set(cause)


def sector_cause(sector) -> str:
    """The cause id of a sector's lines (its SectorRef, or anything with miner and number),
    as the sealing state machine names it."""
    return f"s-{sector.miner}-{sector.number}"


@contextlib.contextmanager
def cause(value: str):
    token = CAUSE.set(value)
    try:
        yield
    finally:
        CAUSE.reset(token)


class CauseFilter(logging.Filter):
    """Gives every record a `cause`: its own (extra=...), else the context's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "cause", ""):
            record.cause = CAUSE.get()
        return True


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _kv_value(v) -> str:
    text = str(v)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
        .replace("\t", "\\t") + '"'


def _fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict:
    """A record's fields in their order: ts, level, logger, cause (when there is one), msg,
    extras, exc."""
    fields = {"ts": _timestamp(record), "level": record.levelname.lower(), "logger": record.name}
    if getattr(record, "cause", ""):
        fields["cause"] = record.cause
    fields["msg"] = record.getMessage()
    fields.update(_extras(record))
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


class KeyValueFormatter(logging.Formatter):
    """ts=... level=info logger=zqnode.worker cause=s-1000-3 msg="..." [key=value ...]"""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_kv_value(v)}" for k, v in _fields(self, record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, cause (when there is one), msg, extras."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(self, record), default=str)


def parse_levels(spec: str) -> tuple[int, dict[str, int]]:
    """"info" or "zqnode.bus=debug,zqnode.worker=warning,info": the root level (the one
    entry without a logger name; default info) and a level per logger."""
    root, per = logging.INFO, {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, level = part.rpartition("=")
        level = level.strip().lower()
        if level not in LEVELS:
            raise LogSpecError(f"log level {level!r} in {part!r} is not one of {', '.join(LEVELS)}")
        if sep and not name.strip():
            raise LogSpecError(f"{part!r}: a logger name is needed before '='")
        if sep:
            per[name.strip()] = getattr(logging, level.upper())
        else:
            root = getattr(logging, level.upper())
    return root, per


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise LogSpecError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return JsonFormatter() if fmt == "json" else KeyValueFormatter()


def handler(stream_or_path=None, fmt: str = "kv", level: int = logging.NOTSET) -> logging.Handler:
    """A handler with our formatter and the cause filter: to a path (appended to), a
    stream, or (None) the process's stderr (not a stand-in such as click's test runner
    puts in sys.stderr: nodes running beside a command keep logging after it)."""
    if isinstance(stream_or_path, (str, bytes)) or hasattr(stream_or_path, "__fspath__"):
        h: logging.Handler = logging.FileHandler(stream_or_path)
    elif stream_or_path is None:
        h = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    else:
        h = logging.StreamHandler(stream_or_path)
    h.setFormatter(formatter(fmt))
    h.addFilter(CauseFilter())
    h.setLevel(level)
    h._zqnode = True
    return h


_configured: list[str] = []          # loggers given a level by the last setup
_current = {"format": "kv"}


def setup(levels: str = "info", fmt: str = "kv", stream=None) -> None:
    """Configure logging: our handler on the root logger (stderr unless `stream`; the
    handlers of an earlier setup are replaced, others are kept), our format, and the
    levels of `levels`."""
    root_level, per = parse_levels(levels)
    h = handler(stream, fmt)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_zqnode", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(h)
    root.setLevel(root_level)
    for name in _configured:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _configured[:] = list(per)
    for name, level in per.items():
        logging.getLogger(name).setLevel(level)
    _current["format"] = fmt


def current_format() -> str:
    """The format the last `setup` chose (for handlers added later, e.g. a log file)."""
    return _current["format"]
