"""Who may send which message kinds to a node.

The hub stamps every message it routes with the caller's role (a frame of its own, so a
caller cannot write it): with curve security, the role its key has on the hub's
allow-list; without security, the role the caller registered with, and `admin` for a
client that did not register (with no keys there is nothing to check a claim against).

Roles: `admin` may send anything; `reader` may send only kinds a node opens to ANYONE;
every other role is a node role (worker, scheduler, ...). A node declares, per kind:

    ANYONE            any caller, readers too (Ping, read-only queries)
    NODES             any node role, not readers (the default for kinds not listed)
    ADMIN             admins only
    "worker"          that role (and admins)
    {"worker", "scheduler"}   any of those roles (and admins)

    peer = Peer(name=..., role="manager", permissions={AbortJob: ADMIN, ReportResult: "worker"})
    peer.on(SectorStatus, handler, allow=ANYONE)        # or one kind at a time

A refused request is answered with Error(code="permission") and its handler never runs.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Union

ADMIN = "admin"
READER = "reader"
ANYONE = "*"
NODES = "+"

ADMIN_B = ADMIN.encode()
READER_B = READER.encode()

Rule = Union[str, Iterable[str]]


class _Any:
    def __repr__(self) -> str:
        return "anyone"


class _Nodes:
    def __repr__(self) -> str:
        return "any node"


ANY_RULE = _Any()          # compiled rules: these two sentinels, or a frozenset of role bytes
NODES_RULE = _Nodes()


def compile_rule(rule: Rule):
    """A declared rule as the Peer checks it."""
    if isinstance(rule, str):
        rule = (rule,)
    roles = tuple(rule)
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise ValueError(f"a permission is ANYONE, NODES, ADMIN or role names, got {rule!r}")
    if ANYONE in roles:
        return ANY_RULE
    if NODES in roles:
        return NODES_RULE
    return frozenset(r.encode() for r in roles) | {ADMIN_B}


def compile_table(table: Mapping[type, Rule] | None) -> dict[type, object]:
    return {kind: compile_rule(rule) for kind, rule in (table or {}).items()}


def permits(rule, role: bytes) -> bool:
    """Does a compiled rule let a caller of `role` through? (The Peer inlines this.)"""
    if rule is ANY_RULE or role == ADMIN_B:
        return True
    if rule is NODES_RULE:
        return role != READER_B and role != b""
    return role in rule


def describe(rule) -> str:
    if isinstance(rule, frozenset):
        return ", ".join(sorted(r.decode() for r in rule))
    return repr(rule)
