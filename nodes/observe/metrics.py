"""A small Prometheus registry: counters, gauges and histograms with labels, rendered in
the text exposition format 0.0.4 (what `/metrics` serves).

Two ways a family gets its samples:

- updated in place where things happen (`family.labels(...).inc()`, `.observe(s)`):
  counts and durations;
- `collected=True`: cleared before every scrape and filled by the collectors
  (`registry.add_collector(fn, owner)`), which read a node's state at that moment
  (queue lengths, sectors by state, resource use, totals a node already keeps).

Everything runs on one thread (the nodes' Trio thread serves `/metrics` too), so there
are no locks. A collector is held by a weak reference to its owner (a node), so nodes
that are gone stop being scraped.
"""
from __future__ import annotations

import bisect
import math
import re
import weakref
from typing import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: from a quick RPC (1 ms) to a sealing task (hours)
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class MetricError(ValueError):
    pass


def _number(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Value:
    __slots__ = ("value",)

    def __init__(self):
        self.value = 0.0

    def inc(self, n: float = 1.0) -> None:
        self.value += n

    def dec(self, n: float = 1.0) -> None:
        self.value -= n

    def set(self, v: float) -> None:
        self.value = v


class _Histo:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)      # per bucket, the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v
        self.count += 1


class Family:
    type = ""

    def __init__(self, name: str, help: str, labels: Iterable[str] = (), *, collected: bool = False):
        if not _NAME.match(name):
            raise MetricError(f"bad metric name {name!r}")
        self.name, self.help = name, help
        self.labelnames = tuple(labels)
        for label in self.labelnames:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise MetricError(f"{name}: bad label name {label!r}")
        self.collected = collected
        self.children: dict[tuple[str, ...], object] = {}

    def _new(self):
        return _Value()

    def labels(self, *values, **named):
        """The child of these label values (positional in declaration order, or named)."""
        if named:
            if values or set(named) != set(self.labelnames):
                raise MetricError(f"{self.name}: labels are {', '.join(self.labelnames) or 'none'}, "
                                  f"got {', '.join(named)}")
            values = tuple(named[n] for n in self.labelnames)
        elif len(values) != len(self.labelnames):
            raise MetricError(f"{self.name}: {len(self.labelnames)} label values needed, got {len(values)}")
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self._new()
        return child

    def clear(self) -> None:
        self.children.clear()

    def samples(self) -> Iterable[tuple[str, str, float]]:
        """(name suffix, label text, value) of every sample."""
        for key, child in sorted(self.children.items()):
            yield "", _labels_text(self.labelnames, key), child.value
        if not self.children and not self.labelnames and not self.collected:
            yield "", "", 0.0

    def render(self) -> str:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_text}",
                 f"# TYPE {self.name} {self.type}"]
        lines += [f"{self.name}{suffix}{labels} {_number(v)}" for suffix, labels, v in self.samples()]
        return "\n".join(lines) + "\n"


class Counter(Family):
    type = "counter"

    def inc(self, n: float = 1.0) -> None:
        """A family without labels counts on itself."""
        self.labels().inc(n)


class Gauge(Family):
    type = "gauge"

    def set(self, v: float) -> None:
        self.labels().set(v)


class Histogram(Family):
    type = "histogram"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (), *,
                 buckets: Iterable[float] = DEFAULT_BUCKETS):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets if b != math.inf))
        if not self.buckets:
            raise MetricError(f"{name}: a histogram needs buckets")

    def _new(self):
        return _Histo(self.buckets)

    def observe(self, v: float) -> None:
        self.labels().observe(v)

    def samples(self):
        for key, h in sorted(self.children.items()):
            running = 0
            for bound, n in zip((*h.bounds, math.inf), h.counts):
                running += n
                yield "_bucket", _labels_text(self.labelnames, key, f'le="{_number(bound)}"'), running
            plain = _labels_text(self.labelnames, key)
            yield "_sum", plain, h.sum
            yield "_count", plain, h.count


class Registry:
    def __init__(self):
        self.families: dict[str, Family] = {}
        self._collectors: list[tuple[weakref.ref | None, Callable]] = []

    def _add(self, family: Family) -> Family:
        old = self.families.get(family.name)
        if old is not None:
            if (type(old), old.labelnames, old.collected) != (type(family), family.labelnames,
                                                              family.collected):
                raise MetricError(f"metric {family.name} registered twice, differently")
            return old
        self.families[family.name] = family
        return family

    def counter(self, name: str, help: str, labels: Iterable[str] = (), *,
                collected: bool = False) -> Counter:
        return self._add(Counter(name, help, labels, collected=collected))

    def gauge(self, name: str, help: str, labels: Iterable[str] = (), *,
              collected: bool = False) -> Gauge:
        return self._add(Gauge(name, help, labels, collected=collected))

    def histogram(self, name: str, help: str, labels: Iterable[str] = (), *,
                  buckets: Iterable[float] = DEFAULT_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets=buckets))

    def add_collector(self, fn: Callable[[object], None], owner: object) -> None:
        """Call `fn(owner)` before every scrape while `owner` lives; it fills the
        collected families."""
        self._collectors.append((weakref.ref(owner), fn))

    def collect(self) -> None:
        for family in self.families.values():
            if family.collected:
                family.clear()
        alive = []
        for ref, fn in self._collectors:
            owner = ref()
            if owner is None:
                continue
            alive.append((ref, fn))
            fn(owner)
        self._collectors = alive

    def render(self) -> str:
        """Collect, then every family in the text format, by name."""
        self.collect()
        return "".join(self.families[name].render() for name in sorted(self.families))

    def names(self) -> set[str]:
        """The names a scrape can contain (histograms: with _bucket, _sum, _count)."""
        out = set()
        for f in self.families.values():
            out |= {f.name + s for s in ("_bucket", "_sum", "_count")} if f.type == "histogram" \
                else {f.name}
        return out


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples of a text exposition: name -> {sorted label pairs: value}. Strict enough
    for tests: every line is a comment, blank, or `name{labels} value`."""
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)\Z')
    pair = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\Z)')
    out: dict[str, dict] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if m is None:
            raise MetricError(f"line {n} is not a sample: {line!r}")
        labels, rest = [], m.group(3) or ""
        while rest:
            p = pair.match(rest)
            if p is None:
                raise MetricError(f"line {n}: bad labels {m.group(2)!r}")
            labels.append((p.group(1), p.group(2).replace('\\"', '"').replace("\\n", "\n")
                           .replace("\\\\", "\\")))
            rest = rest[p.end():]
        value = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(m.group(4))
        out.setdefault(m.group(1), {})[tuple(sorted(labels))] = (
            float(m.group(4)) if value is None else value)
    return out
