"""NPT in every engine (MDOptions(ensemble="npt")): a student of a stiff Morse solid (8 atoms, a triangular fcc
cell) fitted here in seconds runs at 1 bar and at 100 kbar; the volume column of monitor.csv moves, the run is not
stopped, and the higher pressure gives the smaller mean volume in the same engine, as the student's own pressure
on a strained cell says it must. ASE and OpenMM (both Langevin) agree on the mean volume within a loose tolerance.
"""

import importlib.util
import shutil

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk

from conftest import make_student
from hessdistill.engines import MDOptions, run_md
from hessdistill.engines.ase import StudentCalculator
from hessdistill.errors import ConfigError, InputError
from hessdistill.formats import export_student
from hessdistill.monitor import read_monitor_csv
from hessdistill.teachers.analytic import MorseTeacher

HAS_OPENMM = importlib.util.find_spec("openmm") is not None
HAS_LAMMPS = importlib.util.find_spec("lammps") is not None and shutil.which("cmake") is not None
PRESSURES = (1.0, 1.0e5)  # bar: the solid is stiff (bulk modulus of order Mbar)
NN = 2.0  # nearest-neighbour distance of the solid, A (the Morse minimum)
ENGINE_OPTIONS = {"ase": {}, "openmm": {"platform": "Reference"}, "lammps": {}}


def solid():
    """8 atoms of fcc carbon-labelled Morse solid in its primitive (rhombohedral) cell, 2 x 2 x 2."""
    return bulk("C", "fcc", a=NN * np.sqrt(2)).repeat(2)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A SchNet student fitted to energies and forces of a stiff Morse teacher on strained, rattled copies of the
    solid: repulsive enough that no compression in the runs below folds second neighbours into the cutoff."""
    teacher = MorseTeacher(D=0.2, a=2.5, r0=NN, cutoff=2.6)
    model = make_student("schnet", type_names=("C",), cutoff=2.6, features=8, layers=1, seed=0)
    rng = np.random.default_rng(0)
    species, pbc = torch.zeros(8, dtype=torch.long), torch.tensor([True] * 3)
    data = []
    for k in range(24):
        atoms = solid()
        atoms.set_cell(atoms.cell * rng.uniform(0.88, 1.12), scale_atoms=True)
        atoms.rattle(0.12, seed=k)
        atoms.calc = teacher.as_calculator()
        x = torch.tensor(atoms.positions)
        edges = model.neighbor_list(x, torch.tensor(atoms.cell.array), pbc)
        data.append((x.requires_grad_(True), *edges, atoms.get_potential_energy(), torch.tensor(atoms.get_forces())))
    with torch.no_grad():
        model.shift.fill_(np.mean([d[3] for d in data]) / 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss = 0.0
        for x, edge_index, shifts, energy, forces in data:
            e = model(x, species, edge_index, shifts).sum()
            (grad,) = torch.autograd.grad(e, x, create_graph=True)
            loss = loss + (e - energy) ** 2 / 64 + ((grad + forces) ** 2).mean()
        loss.backward()
        opt.step()
    return export_student(model, tmp_path_factory.mktemp("npt") / "morse.pt", dtype="float64")


def options(pressure_bar, **kw):
    return MDOptions(steps=400, timestep_fs=1.0, temperature_K=300.0, ensemble="npt", friction_per_ps=10.0,
                     pressure_bar=pressure_bar, barostat_time_ps=0.1, barostat_interval=5, report_interval=10,
                     seed=3, **kw)


def test_student_pressure_rises_under_compression(student):
    """The premise of the runs: the student's own virial pressure on a strained, unrattled cell grows as the cell shrinks."""
    calc = StudentCalculator(student, device="cpu")
    pressures = []
    for scale in (0.96, 1.0, 1.04):
        atoms = solid()
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
        atoms.calc = calc
        pressures.append(-np.trace(atoms.get_stress(voigt=False)) / 3 / units.bar)
    assert pressures[0] > pressures[1] > pressures[2] and pressures[0] - pressures[2] > 2 * PRESSURES[1]


#: engine -> pressure -> mean volume of the second half of the run, A^3 (each engine's runs happen once)
VOLUMES = {}


def mean_volumes(engine, student, tmp_path):
    if engine in VOLUMES:
        return VOLUMES[engine]
    out = VOLUMES[engine] = {}
    for pressure in PRESSURES:
        result = run_md(engine, student, solid(), tmp_path / f"{engine}_{pressure:g}", options(pressure),
                        **ENGINE_OPTIONS[engine])
        assert not result.stopped and result.steps_done == 400, result.reason
        rows = read_monitor_csv(result.files["monitor_csv"])
        volume = rows["volume_A3"]
        assert np.all(np.isfinite(volume)) and len(volume) == 41
        np.testing.assert_allclose(volume[0], solid().get_volume(), rtol=1e-9)
        assert np.ptp(volume) > 0.5  # the box moves
        out[pressure] = volume[len(volume) // 2:].mean()  # the second half, after the box has relaxed
    return out


ENGINES = [pytest.param("ase"),
           pytest.param("openmm", marks=pytest.mark.skipif(not HAS_OPENMM, reason="needs openmm")),
           pytest.param("lammps", marks=[pytest.mark.slow,
                                         pytest.mark.skipif(not HAS_LAMMPS, reason="needs lammps and cmake")])]


@pytest.mark.parametrize("engine", ENGINES)
def test_higher_pressure_smaller_volume(engine, student, tmp_path):
    low, high = (v := mean_volumes(engine, student, tmp_path))[PRESSURES[0]], v[PRESSURES[1]]
    assert high < 0.97 * low, (engine, low, high)


@pytest.mark.skipif(not HAS_OPENMM, reason="needs openmm")
def test_ase_and_openmm_agree_on_the_volume(student, tmp_path):
    """Two samplers of one ensemble (Langevin-Hoover cell, Monte Carlo volume moves): the same mean volume at 1 bar
    within 3% (measured 0.4-0.8% over two seeds; the volume's own spread is 1-4%)."""
    ase, openmm = (mean_volumes(engine, student, tmp_path)[PRESSURES[0]] for engine in ("ase", "openmm"))
    np.testing.assert_allclose(openmm, ase, rtol=0.03)


def test_npt_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="barostat_time_ps must be a positive number"):
        MDOptions(ensemble="npt", barostat_time_ps=0.0)
    with pytest.raises(ConfigError, match="pressure_bar must be a finite number"):
        MDOptions(ensemble="npt", pressure_bar=float("nan"))
    with pytest.raises(ConfigError, match="'npt' needs temperature_K > 0"):
        MDOptions(ensemble="npt", temperature_K=0.0)
    with pytest.raises(ConfigError, match="barostat_interval must be an integer >= 1"):
        MDOptions(ensemble="npt", barostat_interval=0)
    molecule = solid()
    molecule.pbc = (True, True, False)
    with pytest.raises(InputError, match="npt needs a cell periodic in all three directions"):
        run_md("ase", "unused.pt", molecule, tmp_path, MDOptions(ensemble="npt"))


def test_volume_column_is_empty_without_a_cell(student, tmp_path):
    """A molecule has no volume: the column is there, empty, and read back as NaN."""
    atoms = solid()
    atoms.pbc = False
    result = run_md("ase", student, atoms, tmp_path, MDOptions(steps=4, report_interval=2, max_drift=None))
    assert np.all(np.isnan(read_monitor_csv(result.files["monitor_csv"])["volume_A3"]))
    header, first = result.files["monitor_csv"].read_text().splitlines()[:2]
    assert header.endswith(",volume_A3") and first.endswith(",")


def test_cli_passes_npt_options():
    from hessdistill.cli import build_parser

    a = build_parser().parse_args(["md", "--model", "s.pt", "--structure", "x.xyz", "--ensemble", "npt",
                                   "--pressure", "250", "--barostat-time", "0.5"])
    assert (a.ensemble, a.pressure, a.barostat_time, a.barostat_interval) == ("npt", 250.0, 0.5, 25)


def test_thermostat_work_does_not_trip_the_energy_thresholds(student, tmp_path):
    """The Langevin bath changes E_pot + E_kin: a hot NVT run is not stopped by thresholds its own NVE run, from the
    same start, trips at once (they apply to NVE only); both report the same quantities."""
    atoms = solid()
    tight = dict(steps=20, report_interval=5, temperature_K=2000.0, max_drift=1e-9, max_deviation=1e-9)
    nve = run_md("ase", student, atoms, tmp_path / "nve", MDOptions(**tight))
    nvt = run_md("ase", student, atoms, tmp_path / "nvt", MDOptions(ensemble="nvt", friction_per_ps=50.0, **tight))
    assert nve.stopped and nve.steps_done < 20
    assert not nvt.stopped and nvt.steps_done == 20
    rows = read_monitor_csv(nvt.files["monitor_csv"])
    assert np.abs(rows["deviation_per_atom_eV"]).max() > 1e-4  # the bath did work far above the thresholds
