"""`python -m nodes.cli` is `zqnode` (used by tests that start real processes)."""
from zqnode.nodes.cli import main

if __name__ == "__main__":     # not in a process multiprocessing spawns (proofs.pc2)
    main(prog_name="zqnode")
