"""The hub's pure core: registry, liveness, routes. Driven synchronously with a clock."""
from zqnode.bus.codec import Error, ErrorCode
from zqnode.bus.hubcore import HubCore, HubSettings
from zqnode.bus.protocol import (Goodbye, Heartbeat, HubInfo, HubInfoReply, ListNodes, NodeDown,
                                 NodeList, Ping, Pong, Register, Registered)


def core(**kw) -> HubCore:
    return HubCore(HubSettings(events_in="tcp://h:1", events_out="tcp://h:2", heartbeat_s=1.0,
                               liveness=3, forget_after_s=60, **kw))


def register(c: HubCore, name: str, role: str = "worker", session: str = "s1", now: float = 0.0):
    return c.request(name, Register(role=role, name=name, session=session), now)


def topics(events):
    return [(t, type(m).__name__) for t, m in events]


def test_register_answers_with_the_event_endpoints_and_announces_the_node():
    c = core()
    reply, events = register(c, "w1")
    assert reply == Registered(node_id="w1", events_in="tcp://h:1", events_out="tcp://h:2",
                               heartbeat_s=1.0, liveness=3)
    assert topics(events) == [("node.up", "NodeUp")]
    assert events[0][1].node.role == "worker" and events[0][1].node.state == "up"


def test_registering_again_in_the_same_session_is_quiet():
    c = core()
    register(c, "w1")
    reply, events = register(c, "w1", now=5)
    assert isinstance(reply, Registered) and events == []


def test_a_new_session_means_a_restart_down_then_up():
    c = core()
    register(c, "w1", session="a")
    _, events = register(c, "w1", session="b", now=1)
    assert topics(events) == [("node.down", "NodeDown"), ("node.up", "NodeUp")]
    assert events[0][1] == NodeDown(node_id="w1", role="worker", reason="restarted")
    assert c.nodes["w1"].session == "b"


def test_a_name_that_is_not_the_connection_identity_is_refused():
    c = core()
    reply, events = c.request("w1", Register(role="worker", name="w2", session="s"), 0)
    assert isinstance(reply, Error) and reply.code == ErrorCode.INVALID
    assert events == [] and c.nodes == {}


def test_silent_node_goes_down_after_liveness_beats_and_is_forgotten_later():
    c = core()
    register(c, "w1")
    register(c, "w2")
    c.heard("w2", 3.5)
    beat, events = c.tick(3.5)                 # w1 silent 3.5 s > 3 x 1 s
    assert beat == ["w2"]
    assert events == [("node.down", NodeDown(node_id="w1", role="worker", reason="silent"))]
    beat, events = c.tick(4.0)                 # declared once, not on every tick
    assert events == [] and beat == ["w2"]
    c.heard("w2", 60)
    c.tick(64.0)                               # down for 60.5 s > forget_after_s
    assert set(c.nodes) == {"w2"}


def test_a_heartbeat_brings_a_down_node_back_and_refreshes_capabilities():
    c = core()
    register(c, "w1")
    c.tick(10)
    reply, events = c.request("w1", Heartbeat(capabilities={"cpus": 8}), 11)
    assert reply is None and topics(events) == [("node.up", "NodeUp")]
    assert c.nodes["w1"].capabilities == {"cpus": 8} and c.nodes["w1"].state == "up"


def test_heartbeat_from_an_unknown_node_asks_it_to_register():
    reply, events = core().request("ghost", Heartbeat(), 0)
    assert reply == Error(code=ErrorCode.NOT_REGISTERED, message="unknown node: register first")


def test_goodbye_marks_the_node_down_at_once():
    c = core()
    register(c, "w1")
    reply, events = c.request("w1", Goodbye(), 1)
    assert reply is None
    assert events == [("node.down", NodeDown(node_id="w1", role="worker", reason="left"))]
    assert c.resolve("@worker") is None
    assert c.nodes["w1"].state == "left"         # counted apart from a crash (state down)


def test_role_routes_take_live_nodes_in_turn():
    c = core()
    for n in ("w1", "w2", "w3"):
        register(c, n)
    register(c, "m1", role="manager")
    c.request("w2", Goodbye(), 1)
    picks = [c.resolve("@worker") for _ in range(4)]
    assert picks == ["w1", "w3", "w1", "w3"]
    assert c.resolve("@manager") == "m1"
    assert c.resolve("@poster") is None
    assert c.resolve("w9") == "w9"            # ids pass through; the transport knows


def test_introspection_requests():
    c = core()
    register(c, "w1", now=2)
    assert c.request("x", Ping(), 3)[0] == Pong(node_id="hub", role="bus")
    listing = c.request("x", ListNodes(), 3)[0]
    assert isinstance(listing, NodeList) and listing.now == 3
    assert [(n.node_id, n.state, n.last_heard) for n in listing.nodes] == [("w1", "up", 2)]
    assert c.request("x", HubInfo(), 3)[0] == HubInfoReply(
        events_in="tcp://h:1", events_out="tcp://h:2", heartbeat_s=1.0, liveness=3)
    assert isinstance(register(c, "w1", now=3)[0], Registered)
