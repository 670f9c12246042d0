"""docs/: the generated reference pages are up to date, the Grafana dashboard and the alert
rules query only metrics that exist, every alert is explained in troubleshooting and
passes promtool, every TOML block is a valid configuration, and every relative link or
repository path in the README and docs/ leads to a file. (tests/test_docs_run.py runs
the command blocks.)"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from zqnode.nodes.observe.catalog import REGISTRY

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "zqnode.json"


def test_generated_pages_are_up_to_date():
    out = subprocess.run([sys.executable, "tools/gen_docs.py", "--check"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(exprs) > 20
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource"}
    return exprs


def test_the_dashboard_queries_metrics_that_exist():
    known = REGISTRY.names()
    used = set()
    for expr in dashboard_exprs():
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)   # no labels, ranges, strings
        names = set(re.findall(r"zqnode_\w+", bare))
        assert names, expr
        missing = names - known
        assert not missing, f"{expr}: no such metric {sorted(missing)}"
        used |= names
        for label in re.findall(r"(\w+)\s*!?=~?\s*\"", expr):       # label matchers exist too
            assert any(label in REGISTRY.families[n.removesuffix(s)].labelnames
                       for n in names for s in ("_bucket", "_count", "_sum", "")
                       if n.removesuffix(s) in REGISTRY.families), (expr, label)
    assert len(used) >= 25


def test_relative_links_lead_to_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 8
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


# -- the blocks that are not commands (tests/test_docs_run.py runs those) ----------------------
ALERTS = ROOT / "docs" / "prometheus" / "zqnode-alerts.yml"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SECTION_ROLE = {"bus": "bus", "chain": "chain", "manager": "manager", "sealing": "manager",
                "scheduler": "scheduler", "worker": "worker", "poster": "poster"}


def fenced(lang: str) -> list[tuple[str, str]]:
    return [(page.name, m[2]) for page in PAGES for m in FENCE.finditer(page.read_text())
            if m[1] == lang]


def test_every_toml_block_is_a_valid_configuration(tmp_path):
    from zqnode.nodes.config import load
    blocks = fenced("toml")
    assert len(blocks) >= 3
    for n, (page, text) in enumerate(blocks):
        section = re.search(r"^\[(\w+)", text, re.M)[1]
        path = tmp_path / f"{n}.toml"
        path.write_text(text)
        cfg = load(str(path), role=SECTION_ROLE[section], environ={})   # a wrong key raises
        assert cfg.role == SECTION_ROLE[section], page


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", ALERTS.read_text(), re.M)


def test_every_alert_queries_metrics_that_exist_and_is_explained():
    known = REGISTRY.names() | {"up"}
    text = ALERTS.read_text()
    exprs = re.findall(r"expr: (.+?)\n\s+(?:for|labels):", text, re.S)
    assert len(exprs) == len(alert_names()) >= 10
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        names = set(re.findall(r"zqnode_\w+|\bup\b", bare))
        assert names and names <= known, expr
    headings = re.findall(r"^### (\w+)$", (ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    for name in alert_names():
        assert name in headings, f"{name}: no entry in docs/troubleshooting.md"
        assert f"runbook: docs/troubleshooting.md#{name.lower()}" in text, name


promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool is not installed "
                                    "(apt-get install prometheus gives it)")


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    for args in (["check", "rules", str(ALERTS)],
                 ["test", "rules", str(ROOT / "tests" / "prometheus" / "zqnode-alerts.test.yml")]):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_the_scrape_config_in_the_docs_loads_with_the_rules(tmp_path):
    (yaml,) = [text for page, text in fenced("yaml") if page == "operating.md"]
    (tmp_path / "prometheus.yml").write_text(yaml)
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS: 12 rules found" in out.stdout, out.stdout + out.stderr


def test_the_scrape_config_scrapes_the_ports_of_the_tour():
    (yaml,) = [text for page, text in fenced("yaml") if page == "operating.md"]
    scraped = sorted(re.findall(r"\w+:(\d+)", yaml.split("targets:", 1)[1]))
    tour = sorted(re.findall(r"--metrics-listen :(\d+)", (ROOT / "README.md").read_text()))
    assert scraped == tour and len(tour) == 6


def test_files_the_docs_name_exist():
    """A path into the repository (or a .md page) named in the README or docs/ exists."""
    for page in PAGES:
        text = page.read_text()
        for path in re.findall(r"(?<![\w/.~-])((?:bus|nodes|proofs|tools|tests|docs|cuda|\.ci)/[\w./-]*\w"
                               r"|[A-Z][A-Z_]+\.md)", text):
            if "*" in path or path.endswith(("/s1", "-MINER-NUMBER")):
                continue
            assert (ROOT / path).exists() or (page.parent / path).exists(), f"{page.name}: {path}"
