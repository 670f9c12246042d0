"""The floors of docs/architecture.md: a module imports only from its own floor's unit and
from the floors below it, and no role imports another role. Function-local imports count.
A new import that runs back up fails here, naming the file, the line and both floors."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Bottom to top. A unit is a module (a .py file) or a package (a folder); the longest
# match decides.
FLOORS = [
    ("libraries", ["bus/", "proofs/"]),
    ("shared", ["nodes/sqlite_store.py", "nodes/observe/", "nodes/fetched.py", "nodes/preflight.py",
                "nodes/repo.py", "nodes/sector_dirs.py", "nodes/identity.py", "nodes/groups.py"]),
    ("filecoin", ["nodes/chain/"]),                  # the chain's rules: actor, policy, messages
    ("vocabulary", ["nodes/wire/", "nodes/chain/api.py", "nodes/manager/api.py",
                    "nodes/manager/errors.py"]),       # what roles say, and their bus clients
    ("roles", ["nodes/chain/node.py", "nodes/chain/lotus/watcher.py", "nodes/scheduler/", "nodes/worker/", "nodes/sealing/",
               "nodes/poster/"]),
    ("manager", ["nodes/manager/"]),                 # hosts the sector state machine
    ("composition", ["nodes/", "nodes/config.py", "nodes/configdoc.py", "nodes/messagedoc.py",
                     "nodes/runtime.py", "nodes/devnet.py", "nodes/cli/"]),
]
ROLES = FLOORS[4][1]

def _unit(module: str) -> tuple[int, str] | None:
    """(floor, unit) of a dotted module name: the unit that names it or its package."""
    path, best = module.replace(".", "/"), None
    for floor, (_, units) in enumerate(FLOORS):
        for unit in units:
            name = unit.removesuffix(".py").rstrip("/")
            if (path == name or path.startswith(name + "/")) and (best is None or len(unit) > len(best[1])):
                best = (floor, unit)
    return best


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(tree: ast.AST):
    """(line, module) of every zqnode import, `from zqnode.nodes import observe` as
    zqnode.nodes.observe."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if not node.module.startswith("zqnode."):
                continue
            inner = node.module.removeprefix("zqnode.")
            subs = [f"{inner}.{a.name}" for a in node.names if _is_module(f"{inner}.{a.name}")]
            for module in subs or [inner]:
                yield node.lineno, module
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("zqnode."):
                    yield node.lineno, a.name.removeprefix("zqnode.")


def upward_imports() -> list[tuple[str, str, str]]:
    """(where, from unit, to unit) of every import that runs up a floor or between roles."""
    out = []
    for folder in ("bus", "nodes", "proofs"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            src = _unit(".".join(rel.with_suffix("").parts).removesuffix(".__init__"))
            for line, module in _imports(ast.parse(path.read_text())):
                dst = _unit(module)
                if dst is None or dst[1] == src[1]:
                    continue
                if dst[0] > src[0] or (dst[0] == src[0] and src[1] in ROLES):
                    out.append((f"{rel}:{line}", src[1], dst[1]))
    return out


def test_every_module_is_on_a_floor():
    for folder in ("bus", "nodes", "proofs"):
        for path in (ROOT / folder).rglob("*.py"):
            assert _unit(".".join(path.relative_to(ROOT).with_suffix("").parts)) is not None, path


def test_no_import_runs_up_a_floor_or_across_roles():
    found = [f"{where}: {src} imports {dst}" for where, src, dst in upward_imports()]
    assert found == [], "\n".join(found)


def test_the_floors_are_drawn_in_the_architecture_doc():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name, units in FLOORS:
        assert name in doc, name
        for unit in units:
            assert re.search(rf"(?<![\w/]){unit}(?![\w/])", doc), unit
