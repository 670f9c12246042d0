"""The one thing setup.cfg cannot say: install bus/, nodes/ and proofs/ (which stay at the
repository root, the layout is part of the design) as zqnode.bus, zqnode.nodes and
zqnode.proofs, so site-packages gets one top-level name, `zqnode`, not three that collide
with other projects. `zqnode` itself has no folder: an implicit namespace package.

The kernels in cuda/ go along as zqnode/cuda (data files only, no Python in it), so that
proofs/gpu/sources.py finds them beside proofs/ both in a checkout and in site-packages.
"""
from setuptools import find_packages, setup

FOLDERS = ("bus", "nodes", "proofs")
PACKAGES = find_packages(include=[*FOLDERS, *(f"{folder}.*" for folder in FOLDERS)])

setup(
    package_dir={**{f"zqnode.{folder}": folder for folder in FOLDERS}, "zqnode.cuda": "cuda"},
    packages=[*(f"zqnode.{name}" for name in PACKAGES), "zqnode.cuda"],
    package_data={"zqnode.cuda": ["*.cu", "*.cuh"]},
)
