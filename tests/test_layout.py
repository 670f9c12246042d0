"""The repository's shape: what the architecture promises a newcomer."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
