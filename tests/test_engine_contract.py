"""The MD contract shared by ASE, OpenMM and LAMMPS (hessdistill.engines.contract): for every student architecture
(and a compiled .pt2 student, which OpenMM runs through openmm.PythonForce), a molecule and a periodic (tilted, two-element) cell start from the same state in every engine - the student's own
energy and forces, the same velocities - and follow the same velocity-Verlet trajectory; results have one schema and
one set of file names; an unknown option is the same ConfigError everywhere.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import read

from conftest import make_student
from hessdistill.engines import MDOptions, MDResult, initial_momenta, run_md
from hessdistill.engines.ase import StudentCalculator
from hessdistill.errors import ConfigError
from hessdistill.formats import export_student
from hessdistill.monitor import read_monitor_csv

HAS_OPENMM = importlib.util.find_spec("openmm") is not None
HAS_LAMMPS = importlib.util.find_spec("lammps") is not None and shutil.which("cmake") is not None
ENGINE_NAMES = ("ase", "openmm", "lammps")  # OpenMM and LAMMPS are left out where absent (CI's newer stack)
#: files beyond the contract's own, by engine
EXTRA_FILES = {"ase": set(), "openmm": {"topology", "analysis_png"}, "lammps": {"data", "input", "log"}}
COMMON_FILES = {"monitor_csv": "monitor.csv", "monitor_png": "monitor.png", "summary": "summary.json"}
OPTIONS = MDOptions(steps=20, timestep_fs=1.0, temperature_K=300.0, report_interval=5, seed=11, max_drift=None,
                    max_deviation=None)
KE_RTOL = {"ase": 1e-12, "openmm": 2e-8, "lammps": 1e-6}
ENGINE_OPTIONS = {"ase": {}, "openmm": {"platform": "Reference"}, "lammps": {}}


@pytest.fixture(scope="module")
def students(tmp_path_factory, compiled_student):
    d = tmp_path_factory.mktemp("students")
    files = {arch: export_student(make_student(arch, type_names=("H", "C", "O", "Si"), cutoff=3.0, seed=2),
                                  d / f"{arch}.pt", dtype="float64") for arch in ("painn", "schnet", "tensornet")}
    # the same PaiNN compiled (AOTInductor): ASE and LAMMPS load the package, OpenMM runs it through PythonForce
    files["painn.pt2"] = compiled_student
    return files


@pytest.fixture(scope="module")
def plugin():
    if not HAS_LAMMPS:
        return None
    from hessdistill.engines.lammps import build_plugin

    return build_plugin()


def structure(kind):
    """Ethanol (velocities drawn by the contract), or a tilted, turned Si7C cell carrying its own momenta."""
    if kind == "molecule":
        atoms = molecule("CH3CH2OH")
        atoms.rattle(0.05, seed=1)
        return atoms
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.symbols[5] = "C"
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0, 0], [0.1, 1.0, 0], [0.05, -0.08, 1.0]]), scale_atoms=True)
    atoms.rotate(25, (1, 2, 3), rotate_cell=True)  # OpenMM and LAMMPS turn the cell back: velocities turn with it
    atoms.rattle(0.05, seed=2)
    atoms.set_momenta(1.3 * initial_momenta(atoms.get_masses(), 300.0, seed=5))  # kept by every engine
    return atoms


def kinetic(momenta, masses):
    return 0.5 * float(np.sum(momenta**2 / masses[:, None]))


def engine_options(engine, plugin):
    return {**ENGINE_OPTIONS[engine], **({"plugin": plugin} if engine == "lammps" else {})}


def frame0_forces(engine, result, atoms, student):
    """(forces of the engine at step 0 in eV/A, the student's own forces of the same configuration)."""
    if engine == "ase":
        frame = read(result.files["trajectory"], index=0)
        got = frame.get_forces()
    elif engine == "lammps":
        frame = read(result.files["trajectory"], index=0, format="lammps-dump-text")
        got = frame.get_forces()
    else:  # a DCD has positions only: ask OpenMM itself at the engine's own (rotated) start
        import openmm
        from openmm import unit

        from hessdistill.engines.openmm import create_system, topology_from_atoms
        from hessdistill.units import EV_TO_KJ_PER_MOL

        topology, positions, frame = topology_from_atoms(atoms)
        context = openmm.Context(create_system(topology, student), openmm.VerletIntegrator(0.001),
                                 openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(positions)
        forces = context.getState(getForces=True).getForces(asNumpy=True)
        got = forces.value_in_unit(unit.kilojoule_per_mole / unit.nanometer) / EV_TO_KJ_PER_MOL / 10.0
    frame = frame.copy()
    frame.calc = StudentCalculator(student, device="cpu")
    return got, frame.get_forces()


@pytest.mark.parametrize("kind", ["molecule", "periodic"])
@pytest.mark.parametrize("arch", ["painn", "schnet", "tensornet", "painn.pt2"])
def test_engines_agree(tmp_path, students, plugin, arch, kind):
    atoms = structure(kind)
    reference = atoms.copy()
    reference.calc = StudentCalculator(students[arch], device="cpu")
    e_ref = reference.get_potential_energy()
    momenta = atoms.get_momenta() if kind == "periodic" else initial_momenta(atoms.get_masses(), 300.0, OPTIONS.seed)
    ke_ref = kinetic(momenta, atoms.get_masses())
    results, rows = {}, {}
    for engine in ENGINE_NAMES:
        if (engine == "openmm" and not HAS_OPENMM) or (engine == "lammps" and not HAS_LAMMPS):
            continue
        result = run_md(engine, students[arch], atoms, tmp_path / engine, OPTIONS, **engine_options(engine, plugin))
        results[engine], rows[engine] = result, read_monitor_csv(result.files["monitor_csv"])
        assert isinstance(result, MDResult) and result.engine == engine
        assert not result.stopped and result.steps_done == 20 and result.n_samples == 5, result.reason
        assert json.loads(Path(result.files["summary"]).read_text()) == json.loads(json.dumps(result.to_dict()))
        # the one file naming
        assert set(result.files) - EXTRA_FILES[engine] == {*COMMON_FILES, "trajectory"}
        for key, name in COMMON_FILES.items():
            assert Path(result.files[key]).name == name and Path(result.files[key]).stat().st_size > 0
        assert Path(result.files["trajectory"]).stem == "trajectory"
        # the student's energy and forces at the start, in the engine's own frame
        r = rows[engine]
        np.testing.assert_allclose(r["potential_eV"][0], e_ref, rtol=1e-10)
        got, want = frame0_forces(engine, result, atoms, students[arch])
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
        # the same velocities: drawn once by the contract from the seed (molecule), or kept as given (periodic).
        # The engines' unit constants differ in the last digits: LAMMPS units metal has amu A^2/ps^2 = 1.0364269e-4
        # eV (8 digits), and units.EV_TO_KJ_PER_MOL (CODATA 2018) is 8e-9 from ASE's (CODATA 2014).
        np.testing.assert_allclose(r["kinetic_eV"][0], ke_ref, rtol=KE_RTOL[engine])
    assert len({tuple(sorted(r.to_dict())) for r in results.values()}) == 1  # one schema
    # ... and the same velocity-Verlet trajectory (OpenMM's leapfrog started half a step back)
    # (measured: potential energies 4e-10 (OpenMM) and 3e-9 (LAMMPS) apart after 20 steps; without the half step
    # OpenMM's trajectory is a different one)
    for engine, r in rows.items():
        np.testing.assert_array_equal(r["step"], rows["ase"]["step"])
        np.testing.assert_allclose(r["potential_eV"], rows["ase"]["potential_eV"], rtol=1e-8)
        np.testing.assert_allclose(r["kinetic_eV"], rows["ase"]["kinetic_eV"], rtol=KE_RTOL[engine])
        # 3N - 3 degrees of freedom everywhere; LAMMPS metal's own kB (8.617343e-5 eV/K) is 1.2e-6 from ASE's
        np.testing.assert_allclose(r["temperature_K"], rows["ase"]["temperature_K"], rtol=3 * KE_RTOL[engine])


@pytest.mark.parametrize("engine", ENGINE_NAMES)  # the check comes before any engine is imported: no skips
def test_unknown_option_same_error_everywhere(tmp_path, students, engine):
    atoms = molecule("H2O")
    with pytest.raises(ConfigError, match=rf"^unknown {engine} option\(s\) colour; known: \w+"):
        run_md(engine, students["painn"], atoms, tmp_path / "x", OPTIONS, colour="red")
    with pytest.raises(ConfigError, match=rf"^unknown {engine} option\(s\) steps \(steps: give it in MDOptions\)"):
        run_md(engine, students["painn"], atoms, tmp_path / "x", OPTIONS, steps=3)
    assert not (tmp_path / "x").exists()


def test_md_options_are_checked_once():
    for bad, match in [({"ensemble": "npH"}, "ensemble must be 'nve', 'nvt' or 'npt'"), ({"steps": -1}, "steps must be"),
                       ({"timestep_fs": 0}, "timestep_fs must be a positive"),
                       ({"ensemble": "nvt", "temperature_K": 0}, "'nvt' needs temperature_K > 0"),
                       ({"report_interval": 0}, "report_interval must be an integer >= 1"),
                       ({"max_drift": -1.0}, "max_drift must be a positive number or None")]:
        with pytest.raises(ConfigError, match=match):
            MDOptions(**bad)
    assert MDOptions(report_interval=7).frame_interval == 7 and MDOptions(trajectory_interval=3).frame_interval == 3


def test_initial_momenta_rule():
    masses = molecule("CH3CH2OH").get_masses()
    p = initial_momenta(masses, 300.0, seed=4)
    from ase import units

    assert np.abs(p.sum(axis=0)).max() < 1e-12  # no centre-of-mass motion
    assert 2 * kinetic(p, masses) / ((3 * len(masses) - 3) * units.kB) == pytest.approx(300.0, rel=1e-12)
    np.testing.assert_array_equal(p, initial_momenta(masses, 300.0, seed=4))
    assert not np.allclose(p, initial_momenta(masses, 300.0, seed=5))
    assert not np.any(initial_momenta(masses, 0.0, seed=4))


def test_cli_md_runs_one_engine_and_refuses_other_engines_flags(tmp_path, students, capsys):
    from hessdistill.cli import main

    args = ["md", "--engine", "ase", "--model", str(students["painn"]), "--structure", "CH3CH2OH", "--out",
            str(tmp_path / "md"), "--steps", "10", "--report-interval", "5", "--no-progress"]
    with pytest.raises(SystemExit) as err:
        main(args + ["--platform", "Reference"])
    assert err.value.code == 2 and "--platform applies to --engine openmm, not ase" in capsys.readouterr().err
    main(args)
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "md" / "summary.json").read_text())
    assert printed["engine"] == "ase" and printed["steps_done"] == 10 and not printed["stopped"]
