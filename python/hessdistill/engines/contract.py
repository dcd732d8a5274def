"""The MD contract every engine keeps: options and result as types, output file names, the velocity rule.

``run_md(engine, model_path, atoms, out_dir, options, **engine_options)`` (in :mod:`hessdistill.engines`, and
each engine's own ``run_md`` with the same signature minus ``engine``) takes

* :class:`MDOptions`: what every engine does the same way (steps, timestep, ensemble, monitor thresholds, ...),
  checked once here;
* engine options as keywords, checked against that engine's dataclass (:class:`ASEOptions`,
  :class:`OpenMMOptions`, :class:`LAMMPSOptions`): an unknown name is the same ``ConfigError`` in every engine.

and returns an :class:`MDResult` with one schema for every engine, also written to ``summary.json``.

Every engine writes ``monitor.csv`` and ``monitor.png`` (the one energy monitor), ``trajectory.<ext>`` in its
native format (ASE ``.traj``, OpenMM ``.dcd`` with ``topology.pdb``, LAMMPS ``.lammpstrj``) and ``summary.json``.

Velocities: atoms that carry non-zero momenta keep them; otherwise :func:`initial_momenta` draws them here, once,
for every engine (Maxwell-Boltzmann at ``temperature_K`` from ``seed``, no centre-of-mass motion, scaled to exactly
``temperature_K``), so the three engines start from the same state for the same seed. Temperatures are reported
with 3N - 3 degrees of freedom in every engine (LAMMPS' convention; the centre of mass does not move).

Example
-------
>>> from hessdistill.engines import MDOptions, run_md
>>> result = run_md("lammps", "student.pt", atoms, "md_run", MDOptions(steps=1000, timestep_fs=1.0), nprocs=2)
>>> result.drift_eV_per_atom_ps, result.files["trajectory"]
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import ConfigError, InputError

ENGINES = ("ase", "openmm", "lammps")
#: native trajectory format of each engine (the file is ``trajectory.<ext>``)
TRAJECTORY_EXTENSIONS = {"ase": "traj", "openmm": "dcd", "lammps": "lammpstrj"}
#: files every engine writes, by key of ``MDResult.files``
COMMON_FILES = {"monitor_csv": "monitor.csv", "monitor_png": "monitor.png", "summary": "summary.json"}
#: files of runs with a committee or teacher spot checks (``flagged`` only when frames were flagged)
TRUST_FILES = {"deviation_csv": "deviation.csv", "flagged": "flagged.extxyz"}


@dataclass(frozen=True)
class MDOptions:
    """What every engine does the same way.

    Parameters
    ----------
    steps: MD steps to run (>= 0).
    timestep_fs: time step, fs.
    temperature_K: temperature of the initial velocities (when the atoms carry none) and of the NVT/NPT bath, K.
    ensemble: ``nve`` (velocity Verlet), ``nvt`` (Langevin with ``friction_per_ps``) or ``npt`` (the NVT
        thermostat and an isotropic barostat at ``pressure_bar``; needs a cell periodic in all three directions).
        ASE: ``LangevinBAOAB`` with a hydrostatic Langevin-Hoover cell; OpenMM: ``LangevinMiddleIntegrator`` and a
        ``MonteCarloBarostat``; LAMMPS: ``fix npt ... iso`` (Nose-Hoover, thermostat time 1/``friction_per_ps``).
        The thermostat (and in NPT the box) does work, so E_pot + E_kin is not conserved outside NVE:
        ``max_drift`` and ``max_deviation`` then only report (:attr:`energy_thresholds`); non-finite energies and
        forces still stop the run.
    friction_per_ps: Langevin friction, 1/ps (NVT and NPT).
    pressure_bar: NPT pressure, bar.
    barostat_time_ps: NPT time scale of the box, ps: ASE's ``P_tau`` (the cell's fluctuation period and Langevin
        time), LAMMPS' ``Pdamp``. Tens to a thousand time steps; shorter follows the pressure faster.
    barostat_interval: NPT steps between OpenMM's Monte Carlo volume moves.
    report_interval: steps between monitor samples (and thermo output).
    trajectory_interval: steps between trajectory frames (None: ``report_interval``).
    seed: seed of the initial velocities and of the Langevin noise.
    max_drift: stop when |drift| exceeds this, eV/atom/ps (None: report only).
    max_deviation: stop when |E - E0| exceeds this, eV/atom (None: report only).
    progress: show a progress bar (ASE and OpenMM; LAMMPS writes its own log).
    committee: further student files (same elements, other training seeds): with the model they form a
        committee whose force deviation (``max_devi_f``, :mod:`hessdistill.monitor.deviation`) is reported every
        report interval in ``deviation.csv``. Every engine (LAMMPS: ``pair_style hessdistill ... committee K``
        with ``fix hessdistill/deviation``).
    committee_drive: ``mean`` (the committee's mean forces drive the dynamics; K students per step) or ``first``
        (the model alone drives; the others run only at reports).
    max_force_deviation: threshold on max_devi_f, eV/A (None: report only); needs a committee.
    deviation_action: ``stop`` (end the run with ModelDeviationError's message) or ``flag`` (save the frame to
        ``flagged.extxyz`` and go on).
    spot_check_teacher: a teacher (name for :func:`~hessdistill.teachers.load_teacher`, or a Teacher) that
        evaluates the current frame every ``spot_check_interval`` steps; the driving force's error against it is
        logged in ``deviation.csv`` (None: no spot checks). ASE and OpenMM only.
    spot_check_interval: steps between spot checks, a multiple of ``report_interval`` (None: every report).
    """

    steps: int = 1000
    timestep_fs: float = 0.5
    temperature_K: float = 300.0
    ensemble: str = "nve"
    friction_per_ps: float = 1.0
    pressure_bar: float = 1.0
    barostat_time_ps: float = 1.0
    barostat_interval: int = 25
    report_interval: int = 10
    trajectory_interval: Optional[int] = None
    seed: int = 0
    max_drift: Optional[float] = 0.01
    max_deviation: Optional[float] = 0.05
    progress: bool = False
    committee: tuple = ()
    committee_drive: str = "mean"
    max_force_deviation: Optional[float] = None
    deviation_action: str = "stop"
    spot_check_teacher: Any = None
    spot_check_interval: Optional[int] = None

    def __post_init__(self):
        def integer(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"MD option {name} must be an integer >= {low}, got {value!r}")

        def positive(name, allow_none=False, allow_zero=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (value == 0 and not allow_zero):
                raise ConfigError(f"MD option {name} must be a {'non-negative' if allow_zero else 'positive'} "
                                  f"number{' or None' if allow_none else ''}, got {value!r}")

        integer("steps", 0)
        integer("report_interval", 1)
        integer("seed", 0)
        if self.trajectory_interval is not None:
            integer("trajectory_interval", 1)
        positive("timestep_fs")
        positive("temperature_K", allow_zero=True)
        positive("friction_per_ps", allow_zero=True)
        positive("max_drift", allow_none=True)
        positive("max_deviation", allow_none=True)
        if isinstance(self.committee, (str, Path)):
            raise ConfigError("MD option committee must be a list of student files, got a single path")
        object.__setattr__(self, "committee", tuple(str(p) for p in (self.committee or ())))
        positive("max_force_deviation", allow_none=True)
        if self.committee_drive not in ("mean", "first"):
            raise ConfigError(f"MD option committee_drive must be 'mean' or 'first', got {self.committee_drive!r}")
        if self.deviation_action not in ("stop", "flag"):
            raise ConfigError(f"MD option deviation_action must be 'stop' or 'flag', got {self.deviation_action!r}")
        if self.max_force_deviation is not None and not self.committee:
            raise ConfigError("MD option max_force_deviation needs a committee (give committee=[other student files])")
        if self.spot_check_interval is not None:
            integer("spot_check_interval", 1)
            if self.spot_check_interval % self.report_interval:
                raise ConfigError(f"MD option spot_check_interval ({self.spot_check_interval}) must be a multiple of "
                                  f"report_interval ({self.report_interval})")
        integer("barostat_interval", 1)
        positive("barostat_time_ps")
        p = self.pressure_bar
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) or not math.isfinite(p):
            raise ConfigError(f"MD option pressure_bar must be a finite number (bar), got {p!r}")
        if self.ensemble not in ("nve", "nvt", "npt"):
            raise ConfigError(f"MD option ensemble must be 'nve', 'nvt' or 'npt', got {self.ensemble!r}")
        if self.ensemble != "nve" and not (self.temperature_K > 0 and self.friction_per_ps > 0):
            raise ConfigError(f"MD option ensemble {self.ensemble!r} needs temperature_K > 0 and friction_per_ps > 0")

    @property
    def frame_interval(self) -> int:
        """Steps between trajectory frames."""
        return self.trajectory_interval or self.report_interval

    @property
    def energy_thresholds(self) -> tuple:
        """``(max_drift, max_deviation)`` the energy monitor applies: both None outside NVE, where the thermostat
        and the barostat do work on the system."""
        return (self.max_drift, self.max_deviation) if self.ensemble == "nve" else (None, None)

    @property
    def watches_trust(self) -> bool:
        """Whether the run has a committee or teacher spot checks (and so writes ``deviation.csv``)."""
        return bool(self.committee) or self.spot_check_teacher is not None


@dataclass(frozen=True)
class ASEOptions:
    """ASE engine options. ``calculator``: an ASE calculator used instead of the student (to run teachers);
    ``device``: where the student runs (cpu, cuda; None: the student file's default)."""

    calculator: Any = None
    device: Optional[str] = None


@dataclass(frozen=True)
class OpenMMOptions:
    """OpenMM engine options (see :func:`hessdistill.engines.openmm.select_platform`, ``student_force``).

    platform: Reference, CPU, CUDA, OpenCL (None: CUDA with a GPU, else Reference for a system of students).
    precision: single, mixed or double (CUDA/OpenCL).
    backend: auto, torchforce or pythonforce.
    outputs_forces: the TorchScript module returns forces itself (TorchForce ``setOutputsForces``).
    device: model placement for the PythonForce fallback.
    analyze: bond-deviation analysis of the trajectory with mdtraj (when installed), written to ``analysis.png``.
    title: title of the plots.
    """

    platform: Optional[str] = None
    precision: Optional[str] = None
    backend: str = "auto"
    outputs_forces: bool = False
    device: Optional[str] = None
    analyze: bool = True
    title: str = ""


@dataclass(frozen=True)
class LAMMPSOptions:
    """LAMMPS engine options.

    nprocs: MPI ranks (> 1 runs ``mpiexec -n nprocs lmp``; 1 runs in this process).
    device: ``pair_style hessdistill device`` (cpu, cuda; None: the pair style's default, cuda when torch sees one).
    threads: ``pair_style ... threads`` (torch threads per rank; None: not written, torch's count stays as it is).
    memory: ``pair_style ... memory`` (default cache: large CPU tensors reuse last step's blocks, 1.2-1.8x faster
        at 1k-4k atoms; the allocator is torch's for the process while the run lasts; system or None: torch's own).
    skin: neighbor skin, A.
    plugin: path of a built plugin (None: :func:`build_plugin`).
    """

    nprocs: int = 1
    device: Optional[str] = None
    threads: Optional[int] = None
    memory: Optional[str] = "cache"
    skin: float = 1.0
    plugin: Any = None

    def __post_init__(self):
        if isinstance(self.nprocs, bool) or not isinstance(self.nprocs, (int, np.integer)) or self.nprocs < 1:
            raise ConfigError(f"LAMMPS option nprocs must be an integer >= 1, got {self.nprocs!r}")
        if self.device not in (None, "cpu", "cuda"):
            raise ConfigError(f"LAMMPS option device must be cpu, cuda or None, got {self.device!r}")
        if self.memory not in (None, "cache", "system"):
            raise ConfigError(f"LAMMPS option memory must be cache, system or None, got {self.memory!r}")
        if not (isinstance(self.skin, (int, float)) and self.skin >= 0):
            raise ConfigError(f"LAMMPS option skin must be a non-negative number (A), got {self.skin!r}")


ENGINE_OPTIONS = {"ase": ASEOptions, "openmm": OpenMMOptions, "lammps": LAMMPSOptions}


def engine_options(engine: str, **options):
    """The engine's options dataclass built from keywords; ConfigError naming the known ones for an unknown one."""
    cls = ENGINE_OPTIONS[check_engine(engine)]
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        common = sorted(set(unknown) & {f.name for f in dataclasses.fields(MDOptions)})
        hint = f" ({', '.join(common)}: give {'them' if len(common) > 1 else 'it'} in MDOptions)" if common else ""
        raise ConfigError(f"unknown {engine} option(s) {', '.join(unknown)}{hint}; known: {', '.join(known)}")
    return cls(**options)


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"unknown MD engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return engine


def output_files(out_dir, engine: str) -> dict[str, Path]:
    """Absolute paths of the files every engine writes (``monitor_csv``, ``monitor_png``, ``summary``,
    ``trajectory``)."""
    out = Path(out_dir).resolve()
    files = {k: out / name for k, name in COMMON_FILES.items()}
    files["trajectory"] = out / f"trajectory.{TRAJECTORY_EXTENSIONS[engine]}"
    return files


def written_files(files: dict) -> dict:
    """``files`` less ``flagged``, which exists only when a frame was flagged."""
    return {k: v for k, v in files.items() if k != "flagged" or Path(v).exists()}


@dataclass
class MDResult:
    """Outcome of an MD run, the same fields for every engine (``to_dict()`` is what ``summary.json`` holds).

    ``steps_done``: the last step reached (the step the run was stopped at when ``stopped``). ``wall_s``: seconds
    spent in the MD loop (LAMMPS: its own loop time). Drift and deviation are the energy monitor's.
    ``files``: name -> path (``monitor_csv``, ``monitor_png``, ``trajectory``, ``summary`` and engine extras).
    ``extra``: engine-specific facts (platform, back end, ranks, analysis verdicts).
    ``trust``: with a committee or spot checks, :meth:`hessdistill.monitor.deviation.DeviationMonitor.summary`
    (max and mean max_devi_f, flagged frames, teacher force MAE, their correlation); else empty.
    """

    engine: str
    steps_requested: int
    steps_done: int
    stopped: bool
    reason: str
    wall_s: float
    ns_per_day: float
    n_samples: int
    drift_eV_per_atom_ps: float
    drift_kJ_per_mol_ps: float
    max_deviation_eV_per_atom: float
    files: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    trust: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["files"] = {k: str(v) for k, v in self.files.items()}
        return d

    def write(self, path=None) -> Path:
        """Write ``to_dict()`` as JSON to ``path`` (default ``files['summary']``)."""
        from ..paths import atomic_write_text

        text = json.dumps(self.to_dict(), indent=2, default=str) + "\n"
        return atomic_write_text(path or self.files["summary"], text)


#: the fields of MDResult that come from ``EnergyMonitor.summary()``
MONITOR_FIELDS = ("n_samples", "drift_eV_per_atom_ps", "drift_kJ_per_mol_ps", "max_deviation_eV_per_atom")


def monitor_fields(summary: dict) -> dict:
    """The MDResult fields of an ``EnergyMonitor.summary()``."""
    return {k: summary[k] for k in MONITOR_FIELDS}


def ns_per_day(steps: int, timestep_fs: float, wall_s: float) -> float:
    return steps * timestep_fs * 1e-6 / wall_s * 86400.0 if wall_s > 0 else math.nan


def dof_without_centre_of_mass(n_atoms: int) -> int:
    """3N - 3, the degrees of freedom of N atoms whose centre of mass does not move (initial momenta have none; LAMMPS counts so by default)."""
    return max(3 * n_atoms - 3, 0)


def kinetic_temperature(kinetic_eV: float, n_atoms: int) -> float:
    """Temperature (K) of a kinetic energy (eV) with :func:`dof_without_centre_of_mass`; NaN for one atom."""
    from ase import units

    dof = dof_without_centre_of_mass(n_atoms)
    return 2.0 * kinetic_eV / (dof * units.kB) if dof else math.nan


def initial_momenta(masses, temperature_K: float, seed: int) -> np.ndarray:
    """Maxwell-Boltzmann momenta (ASE units, amu A / ASE time) at ``temperature_K`` from ``numpy`` seed ``seed``,
    centre-of-mass momentum removed, scaled so the kinetic temperature (3N - 3 degrees of freedom) is exactly
    ``temperature_K``. Zero for ``temperature_K`` 0 or a single atom."""
    from ase import units

    m = np.asarray(masses, dtype=float)[:, None]
    p = np.sqrt(m * units.kB * temperature_K) * np.random.default_rng(seed).standard_normal((len(m), 3))
    p -= m * (p.sum(axis=0) / m.sum())
    kinetic = 0.5 * float(np.sum(p * p / m))
    if kinetic > 0:
        p *= math.sqrt(temperature_K / kinetic_temperature(kinetic, len(m)))
    return p


def starting_atoms(atoms, options: MDOptions):
    """A copy of ``atoms`` with the momenta of the velocity rule: kept when non-zero, else drawn."""
    atoms = atoms.copy()
    if not np.any(atoms.get_momenta()):
        atoms.set_momenta(initial_momenta(atoms.get_masses(), options.temperature_K, options.seed))
    return atoms


def run_with_contract(engine: str, runner: Callable, model_path, atoms, out_dir, options: MDOptions | None,
                      engine_kwargs: dict) -> MDResult:
    """Check the options and the structure, apply the velocity rule, run ``runner(model_path, atoms, files,
    options, engine_opts) -> MDResult`` and write ``summary.json``. Each engine's ``run_md`` is this call."""
    from ..structures import check_structure

    if options is None:
        options = MDOptions()
    elif not isinstance(options, MDOptions):
        raise ConfigError(f"options must be an MDOptions, got {type(options).__name__}")
    engine_opts = engine_options(engine, **engine_kwargs)
    if engine == "lammps" and options.spot_check_teacher is not None:
        raise ConfigError("teacher spot checks are not supported in LAMMPS (it runs no teacher); run them with "
                          "engine ase or openmm (a committee alone runs in LAMMPS)")
    check_structure(atoms)
    if options.ensemble == "npt" and not atoms.pbc.all():
        raise InputError(f"MD ensemble npt needs a cell periodic in all three directions, got pbc {atoms.pbc.tolist()}")
    files = output_files(out_dir, engine)
    if options.watches_trust:
        files.update({k: files["summary"].with_name(name) for k, name in TRUST_FILES.items()})
    files["summary"].parent.mkdir(parents=True, exist_ok=True)
    result = runner(model_path, starting_atoms(atoms, options), files, options, engine_opts)
    result.write()
    return result
