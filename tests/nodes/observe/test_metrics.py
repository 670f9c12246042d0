"""The registry and the text exposition format 0.0.4, exactly."""
import gc
import math

import pytest

from zqnode.nodes.observe.metrics import MetricError, Registry, parse


def test_counters_gauges_and_histograms_render_exactly():
    r = Registry()
    c = r.counter("jobs_total", "Jobs done.", ("task", "outcome"))
    c.labels("PC1", "ok").inc()
    c.labels(task="PC1", outcome="ok").inc(2)
    c.labels("C1", "failed").inc()
    g = r.gauge("queue", "Waiting.\nSecond line with a \\ backslash.")
    g.set(3.5)
    h = r.histogram("rpc_seconds", "Calls.", ("kind",), buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        h.labels("Ping").observe(v)
    r.counter("empty_total", "Never counted.")
    assert r.render() == (
        "# HELP empty_total Never counted.\n"
        "# TYPE empty_total counter\n"
        "empty_total 0\n"
        "# HELP jobs_total Jobs done.\n"
        "# TYPE jobs_total counter\n"
        'jobs_total{task="C1",outcome="failed"} 1\n'
        'jobs_total{task="PC1",outcome="ok"} 3\n'
        "# HELP queue Waiting.\\nSecond line with a \\\\ backslash.\n"
        "# TYPE queue gauge\n"
        "queue 3.5\n"
        "# HELP rpc_seconds Calls.\n"
        "# TYPE rpc_seconds histogram\n"
        'rpc_seconds_bucket{kind="Ping",le="0.1"} 2\n'
        'rpc_seconds_bucket{kind="Ping",le="1"} 3\n'
        'rpc_seconds_bucket{kind="Ping",le="+Inf"} 4\n'
        'rpc_seconds_sum{kind="Ping"} 7.65\n'
        'rpc_seconds_count{kind="Ping"} 4\n')


def test_label_values_are_escaped_and_parse_back():
    r = Registry()
    r.gauge("g", "A gauge.", ("who",)).labels('a "quoted"\\ name\nnext').set(-2)
    r.gauge("inf", "Infinite.").set(math.inf)
    text = r.render()
    assert 'g{who="a \\"quoted\\"\\\\ name\\nnext"} -2\n' in text
    assert parse(text) == {"g": {(("who", 'a "quoted"\\ name\nnext'),): -2.0},
                           "inf": {(): math.inf}}


def test_collected_families_are_refilled_at_every_scrape_while_their_owner_lives():
    r = Registry()
    sectors = r.gauge("sectors", "By state.", ("state",), collected=True)

    class Node:
        states = {"PreCommit1": 2}

    node = Node()
    r.add_collector(lambda n: [sectors.labels(s).set(k) for s, k in n.states.items()], node)
    assert 'sectors{state="PreCommit1"} 2' in r.render()
    node.states = {"Proving": 2}                   # PreCommit1 is gone, not left at 2
    text = r.render()
    assert 'sectors{state="Proving"} 2' in text and "PreCommit1" not in text
    del node
    gc.collect()
    assert "sectors{" not in r.render()            # the node is gone: nothing collected
    assert r._collectors == []


def test_bad_names_labels_and_redefinitions_are_refused():
    r = Registry()
    r.counter("a_total", "A.", ("x",))
    assert r.counter("a_total", "A.", ("x",)) is r.families["a_total"]   # the same: shared
    for make, message in ((lambda: r.counter("a_total", "A.", ("y",)), "registered twice"),
                          (lambda: r.gauge("bad-name", "B."), "bad metric name"),
                          (lambda: r.gauge("b", "B.", ("le",)), "bad label name"),
                          (lambda: r.counter("c", "C.", ("x",)).labels("1", "2"), "1 label values"),
                          (lambda: r.counter("d", "D.", ("x",)).labels(y="1"), "labels are x")):
        with pytest.raises(MetricError, match=message):
            make()
    assert r.names() >= {"a_total"}
    r.histogram("h", "H.")
    assert {"h_bucket", "h_sum", "h_count"} <= r.names()


def test_parse_refuses_what_is_not_the_format():
    with pytest.raises(MetricError, match="line 2: bad labels"):
        parse("# HELP x X.\nx{a=1} 2\n")
    with pytest.raises(MetricError, match="line 1 is not a sample"):
        parse("x 1 2 3\n")
