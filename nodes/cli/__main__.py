"""`python -m nodes.cli` is `zqnode` (used by tests that start real processes)."""
from zqnode.nodes.cli import main

main(prog_name="zqnode")
