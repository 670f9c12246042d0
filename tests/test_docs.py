"""docs/: the generated reference pages are up to date, the Grafana dashboard queries only
metrics that exist, and every relative link in the README and docs/ leads to a file."""
import json
import pathlib
import re
import subprocess
import sys

from nodes.observe.catalog import REGISTRY

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
