"""The kernel sources in the repository's cuda/ folder, made self-contained for PyCUDA.

PyCUDA compiles one source string per module; `module_source` inlines the quoted
`#include "x.cuh"` lines (each header once, as `#pragma once` would) so that the string
alone determines the binary, and PyCUDA's cache, keyed on the string, never serves a
stale build after a header changed. No pycuda needed here.
"""
from __future__ import annotations

import re
from pathlib import Path

#: cuda/ beside proofs/ (proofs/gpu/sources.py -> parents[2]): the repository root in a
#: checkout or an editable install, site-packages/zqnode otherwise (setup.py ships it).
CUDA_DIR = Path(__file__).resolve().parents[2] / "cuda"
#: The kernel modules: cuda/<name>.cu.
MODULES = ("sha254", "poseidon", "post")

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


class SourceError(ValueError):
    """A kernel module or header that is missing."""


def source_path(name: str) -> Path:
    path = CUDA_DIR / f"{name}.cu"
    if name not in MODULES or not path.is_file():
        raise SourceError(f"no kernel module {name!r} in {CUDA_DIR} (modules: {', '.join(MODULES)})")
    return path


def module_source(name: str) -> str:
    """cuda/<name>.cu with its local headers inlined, `#line` markers keeping error positions."""
    seen: set[Path] = set()

    def expand(path: Path) -> list[str]:
        out = [f'#line 1 "{path.name}"']
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = _INCLUDE.match(line)
            if not match:
                out.append(line)
                continue
            header = (path.parent / match.group(1)).resolve()
            if not header.is_file():
                raise SourceError(f"{path.name}:{number}: header {match.group(1)!r} not found")
            if header not in seen:
                seen.add(header)
                out.extend(expand(header))
            out.append(f'#line {number + 1} "{path.name}"')
        return out

    return "\n".join(expand(source_path(name))) + "\n"
