"""The repository's shape: what the architecture promises a newcomer."""
import ast
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("bus", "nodes", "proofs")       # installed as zqnode.bus, zqnode.nodes, zqnode.proofs


def test_cuda_is_not_a_python_package():
    # NVIDIA's cuda-python owns the `cuda` import name.
    assert not (ROOT / "cuda" / "__init__.py").exists()


def test_readme_has_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    main = lines[lines.index("<!-- main command -->") + 1].strip()
    test = lines[lines.index("<!-- test command -->") + 1].strip()
    assert main.endswith("zqnode devnet")
    assert test.endswith("pytest")


def test_console_script_answers():
    out = subprocess.run([sys.executable, "-c", "from zqnode.nodes.cli import main; main()", "--help"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "zqnode" in out.stdout


def _names_a_folder_module(text: str) -> bool:
    """"nodes.worker.fake_tasks", "proofs.gpu": a module of the folders by its bare name."""
    if not re.fullmatch(rf"({'|'.join(FOLDERS)})(\.\w+)+", text):
        return False
    path = ROOT.joinpath(*text.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_modules_are_named_only_under_zqnode():
    # One name per module: bus.codec beside zqnode.bus.codec would be a second copy (its
    # Msg kinds registered twice). Imports, and strings that are a module's name
    # (python -m, task tables, lazy imports).
    found = []
    for path in sorted(p for top in (*FOLDERS, "tools", "tests") for p in (ROOT / top).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if _names_a_folder_module(node.value) else []
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                      if name.split(".")[0] in FOLDERS]
    assert found == []


def test_installed_as_one_top_level_package(tmp_path):
    # What pip installs (editable or not) is zqnode alone, never bus, nodes or proofs: names
    # that other projects use too. Run outside the repository, whose root holds the folders.
    code = ("import importlib.metadata, importlib.util, zqnode.nodes.cli\n"
            "print(importlib.metadata.distribution('zqnode').read_text('top_level.txt').split(),\n"
            "      [name for name in ('bus', 'nodes', 'proofs') if importlib.util.find_spec(name)])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['zqnode'] []\n"
