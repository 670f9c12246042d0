"""Trio nurseries wrap errors in exception groups: the one error inside, for a message."""
from __future__ import annotations


def unwrap(e: BaseException) -> BaseException:
    """The single error inside nested exception groups (Trio nurseries wrap them)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e
