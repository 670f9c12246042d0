"""Permission rules as nodes declare them (the Peer's check is in test_security)."""
from zqnode.bus.permissions import (ADMIN, ANY_RULE, ANYONE, NODES, NODES_RULE, compile_rule, describe,
                                    permits)


def test_permission_rules():
    assert compile_rule(ANYONE) is ANY_RULE and compile_rule(NODES) is NODES_RULE
    assert compile_rule(["worker", ANYONE]) is ANY_RULE
    worker = compile_rule("worker")
    assert describe(worker) == "admin, worker" and describe(compile_rule(ADMIN)) == "admin"
    cases = {ANY_RULE: [b"reader", b"worker", b"admin", b"scheduler", b""],
             NODES_RULE: [b"worker", b"admin", b"scheduler"],
             worker: [b"worker", b"admin"],
             compile_rule(ADMIN): [b"admin"]}
    for rule, allowed in cases.items():
        for role in (b"reader", b"worker", b"admin", b"scheduler", b""):
            assert permits(rule, role) == (role in allowed), (rule, role)
    for bad in ([], "", [""], [3]):
        try:
            compile_rule(bad)
        except ValueError as e:
            assert "a permission is ANYONE, NODES, ADMIN or role names" in str(e)
        else:
            raise AssertionError(bad)
