"""OpenMM engine: the student as an OpenMM force (TorchForce, or the PythonForce fallback where openmmtorch is
absent) gives the student's own energies and forces; the energy-monitor reporter measures drift correctly and stops
broken runs cleanly; the mdtraj bond-deviation metric tells exploded runs from stable ones; bad input fails clearly.
"""

import csv
import importlib.util
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")  # after torch (conftest): openmmtorch's plugin needs libtorch loaded first
from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402
from openmm import app, unit  # noqa: E402

from conftest import make_student  # noqa: E402
from hessdistill.engines.ase import StudentCalculator  # noqa: E402
from hessdistill.errors import (  # noqa: E402
    EnergyConservationError, InputError, ModelFileError, StructureError, UnsupportedElementError,
)
from hessdistill.engines import MDOptions  # noqa: E402
from hessdistill.formats import FORMAT, METADATA_KEYS, export_student  # noqa: E402
from hessdistill.engines.openmm import (  # noqa: E402
    EnergyMonitorReporter, add_student_force, available_backend, create_system, run_md,
    select_platform, topology_from_atoms,
)
from hessdistill.monitor import read_monitor_csv  # noqa: E402
from hessdistill.neighbors import neighbor_list_torch  # noqa: E402
from hessdistill.units import EV_TO_KJ_PER_MOL  # noqa: E402

HAS_OPENMMTORCH = importlib.util.find_spec("openmmtorch") is not None
HAS_PYTHONFORCE = hasattr(openmm, "PythonForce")
KJ, KJ_NM = unit.kilojoule_per_mole, unit.kilojoule_per_mole / unit.nanometer


# --- test doubles: TorchScript models that keep the student contract, written as student files ---------------------

class PairModel(torch.nn.Module):
    """Morse bonds (or a pure repulsion) between all pairs within the cutoff, with a smooth cutoff; optionally
    broken on purpose: the energy turns NaN, or jumps by ``jump`` eV, after ``break_after`` evaluations."""

    def __init__(self, cutoff=3.0, D=4.0, a=2.0, r0=1.2, repulsive=False, break_after=-1, jump=0.0):
        super().__init__()
        self.cutoff, self.D, self.a, self.r0 = float(cutoff), float(D), float(a), float(r0)
        self.repulsive, self.break_after, self.jump = bool(repulsive), int(break_after), float(jump)
        self.calls = 0

    def forward(self, positions, species, edge_index, shifts):
        r = torch.linalg.norm(positions[edge_index[1]] - positions[edge_index[0]] + shifts, dim=-1)
        if self.repulsive:
            phi = 20.0 / r
        else:
            y = torch.exp(-self.a * (r - self.r0))
            phi = self.D * ((1.0 - y) ** 2 - 1.0)
        x = r / self.cutoff
        env = 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5
        per_atom = torch.zeros(positions.shape[0], dtype=positions.dtype).index_add(0, edge_index[0], 0.5 * phi * env)
        self.calls += 1
        if self.break_after >= 0 and self.calls > self.break_after:
            if self.jump != 0.0:
                per_atom = per_atom + self.jump / positions.shape[0]
            else:
                per_atom = per_atom * float("nan")
        return per_atom

    @torch.jit.export
    def neighbor_list(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor):
        return neighbor_list_torch(positions, cell, pbc, self.cutoff)


def write_model_file(model, path, type_names=("H", "C", "O"), atomic_numbers=(1, 6, 8)):
    meta = dict.fromkeys(METADATA_KEYS, "")
    meta.update(format=FORMAT, architecture="pair-test", cutoff=repr(model.cutoff), num_interactions="1",
                interaction_range=repr(model.cutoff), type_names=" ".join(type_names),
                atomic_numbers=" ".join(map(str, atomic_numbers)), energy_unit="eV", length_unit="A", dtype="float64")
    torch.jit.save(torch.jit.script(model), str(path), _extra_files=meta)
    return path


def dimers(n=4, r0=1.2, spacing=5.0, periodic=False):
    """n CO molecules at bond length r0, far apart (beyond the 3 A cutoff) on a line, or in a periodic box."""
    pos = []
    for k in range(n):
        c = np.array([spacing * k, 0.3 * k, 0.0])
        pos += [c, c + np.array([0.0, 0.0, r0])]
    atoms = Atoms("CO" * n, positions=pos)
    if periodic:
        atoms.cell = [spacing * n, 6.0, 7.0]
        atoms.pbc = True
    return atoms


def periodic_ethanol(box="small"):
    """Ethanol in a box narrower than two cutoffs (image search) or, "large", three rotated copies in a triclinic
    box wider than two (cutoff + skin) (minimum image)."""
    a = molecule("CH3CH2OH")
    if box == "large":
        b = a.copy()
        b.rotate(90, "x")
        b.positions += [4.5, 4.0, 0.5]
        c = a.copy()
        c.rotate(60, "z")
        c.positions += [1.0, 4.5, 4.5]
        a = a + b + c
        a.cell = [[10.0, 0.0, 0.0], [2.0, 9.5, 0.0], [-1.5, 3.0, 10.0]]
    else:
        a.cell = [6.0, 6.5, 7.0]
    a.pbc = True
    a.center()
    return a


@pytest.fixture(scope="module")
def student64(tmp_path_factory):
    return export_student(make_student(type_names=("H", "C", "O")), tmp_path_factory.mktemp("s") / "s64.pt")


@pytest.fixture(scope="module")
def student32(tmp_path_factory):
    return export_student(make_student(type_names=("H", "C", "O")), tmp_path_factory.mktemp("s") / "s32.pt",
                          dtype="float32")


def context_energy_forces(system, positions_nm, platform):
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(positions_nm)
    return context_energy_forces_of(ctx)


def context_energy_forces_of(ctx):
    """Energy (eV) and forces (eV/A) of a Context's current state."""
    state = ctx.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(KJ) / EV_TO_KJ_PER_MOL
    return energy, np.asarray(state.getForces(asNumpy=True).value_in_unit(KJ_NM)) / EV_TO_KJ_PER_MOL / 10.0


def reference(atoms, path):
    a = atoms.copy()
    a.calc = StudentCalculator(path, device="cpu")
    return a.get_potential_energy(), a.get_forces()


# --- energies and forces ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["molecule", "small-box", "large-box"])
@pytest.mark.parametrize("outputs_forces", [False, True], ids=["autograd", "module-forces"])
def test_context_energy_forces_equal_student(student64, system, outputs_forces):
    periodic = system != "molecule"
    atoms = periodic_ethanol(system.split("-")[0]) if periodic else molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, student64, outputs_forces=outputs_forces)
    assert system.getForce(0).usesPeriodicBoundaryConditions() == periodic
    if HAS_OPENMMTORCH:
        assert "TorchForce" in system.getForce(0).getName()
    e_ref, f_ref = reference(atoms, student64)
    for platform in ("Reference", "CPU"):
        e, f = context_energy_forces(system, pos_nm, platform)
        assert e == pytest.approx(e_ref, abs=1e-10)
        np.testing.assert_allclose(f, f_ref, atol=1e-10)
    if periodic:  # OpenMM does not wrap: atoms many boxes away (each by a different lattice vector) must agree
        k = np.arange(len(atoms))
        lattice = np.stack([k % 3 + 2, -(k % 5) - 4, np.full_like(k, 7)], axis=1)
        e, f = context_energy_forces(system, pos_nm + lattice @ (atoms.cell.array / 10.0), "Reference")
        assert e == pytest.approx(e_ref, abs=1e-10)
        np.testing.assert_allclose(f, f_ref, atol=1e-9)


@pytest.mark.parametrize("kind", ["TorchScript", "pt2"])
@pytest.mark.parametrize("system", ["molecule", "small-box", "large-box"])
def test_verlet_list_follows_moving_atoms_and_box(student64, compiled_student, system, kind):
    """One Context over positions that move by more than the skin, and a rescaled box: the force's kept neighbor
    list (TorchScript: the module's; .pt2: the callback's NumPy list) is searched again when needed, and every
    evaluation equals the student's own (energy-only evaluations between force evaluations included)."""
    from hessdistill.engines.openmm.pythonforce import Pt2Callback
    from hessdistill.engines.openmm.student_module import DEFAULT_SKIN, StudentForceModule
    from hessdistill.formats import StudentFile

    path = student64 if kind == "TorchScript" else compiled_student
    periodic = system != "molecule"
    atoms = periodic_ethanol(system.split("-")[0]) if periodic else molecule("CH3CH2OH")
    topology, pos_nm, atoms = topology_from_atoms(atoms)
    omm_system = create_system(topology, path)
    ctx = openmm.Context(omm_system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    if kind == "TorchScript":  # a second copy of the force's module, called directly, counts its searches
        sf = StudentFile(path)
        own = torch.jit.script(StudentForceModule(sf.module, sf.species(atoms.get_chemical_symbols()), None,
                                                  periodic, sf.dtype, sf.cutoff))
    else:
        own = Pt2Callback(path, atoms.get_chemical_symbols(), None, periodic, "cpu", DEFAULT_SKIN)
    rng = np.random.default_rng(3)
    x, cell = pos_nm.copy(), atoms.cell.array / 10.0
    # each molecule drifts its own way, 0.15 A per call (relative motion where there are several), bonds jiggle
    directions = rng.normal(size=(len(atoms) // 9, 3))
    drift = np.repeat(0.015 * directions / np.linalg.norm(directions, axis=1, keepdims=True), 9, axis=0)
    for step in range(8):
        x = x + drift + rng.normal(scale=0.002, size=x.shape)
        if periodic and step == 5:  # a barostat move: box and positions scaled together
            x, cell = x * 1.03, cell * 1.03
            ctx.setPeriodicBoxVectors(*cell)
        ctx.setPositions(x)
        energy_only = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(KJ) / EV_TO_KJ_PER_MOL
        e, f = context_energy_forces_of(ctx)
        moved = atoms.copy()
        moved.positions, moved.cell = x * 10.0, cell * 10.0
        e_ref, f_ref = reference(moved, path)
        assert energy_only == pytest.approx(e_ref, abs=1e-10) and e == pytest.approx(e_ref, abs=1e-10)
        np.testing.assert_allclose(f, f_ref, atol=1e-10)
        if kind == "TorchScript":
            own(torch.tensor(x), torch.tensor(cell) if periodic else None)
        else:
            e_own, f_own = own(ctx.getState(getPositions=True))
            assert e_own / EV_TO_KJ_PER_MOL == pytest.approx(e_ref, abs=1e-10)
            np.testing.assert_allclose(f_own / EV_TO_KJ_PER_MOL / 10.0, f_ref, atol=1e-10)
    # 8 calls moving atoms 1.2 A in all, skin 1 A: more than one search, fewer than one per call
    assert 1 < own.neighbors.searches < 8 and DEFAULT_SKIN == 1.0
    assert np.abs(f_ref).max() > 1e-3
    if kind == "pt2":  # an atom gone non-finite: a NaN energy for the monitor to see, not an exception
        x[2, 0] = np.nan
        ctx.setPositions(x)
        assert np.isnan(own(ctx.getState(getPositions=True))[0])


def _edge_set(edge_index, lattice):
    return set(zip(*edge_index.tolist(), *np.round(np.asarray(lattice)).astype(int).T.tolist()))


@pytest.mark.parametrize("case", ["cubic", "triclinic", "tiny-triclinic", "molecule", "dense"])
def test_cell_list_edges_equal_ase_and_image_search(case):
    """The force's O(N) search (vesin-torch cell list, scripted) gives the same edge set (i, j, lattice shift) as
    ase.neighborlist and as the brute-force search over periodic images, for positions many boxes from the origin,
    triclinic boxes in OpenMM's reduced form and boxes narrower than the cutoff (many images per pair)."""
    from ase.neighborlist import primitive_neighbor_list

    from hessdistill.neighbors import cell_list_edges

    cells = {"cubic": np.diag([14.0, 14.0, 14.0]), "triclinic": [[10, 0, 0], [3, 9, 0], [-4, 2, 8.5]],
             "tiny-triclinic": [[4, 0, 0], [1.5, 4, 0], [-1.2, 1.9, 3.7]], "molecule": np.zeros((3, 3)),
             "dense": [[30, 0, 0], [10, 28, 0], [-12, 9, 25]]}
    n = {"cubic": 200, "triclinic": 60, "tiny-triclinic": 5, "molecule": 80, "dense": 1500}[case]
    cell = np.asarray(cells[case], dtype=float)
    periodic = case != "molecule"
    rng = np.random.default_rng(7)
    if periodic:
        x = rng.random((n, 3)) @ cell + rng.integers(-3, 4, size=(n, 3)) @ cell  # unwrapped, as OpenMM gives them
    else:
        x = rng.normal(scale=4.0, size=(n, 3)) + 500.0
    cutoff = 6.0
    ei, sh = torch.jit.script(cell_list_edges)(torch.tensor(x), torch.tensor(cell), periodic, cutoff)
    to_lattice = (lambda s: s @ np.linalg.inv(cell)) if periodic else (lambda s: s)
    got = _edge_set(ei, to_lattice(sh.numpy()))
    i, j, S = primitive_neighbor_list("ijS", [periodic] * 3, cell, x, cutoff, self_interaction=False)
    assert got == _edge_set(np.stack([i, j]), S) and len(got) == ei.shape[1] > n
    ref_ei, ref_sh = neighbor_list_torch(torch.tensor(x), torch.tensor(cell), torch.tensor([periodic] * 3), cutoff)
    assert got == _edge_set(ref_ei, to_lattice(ref_sh.numpy()))


def test_cell_list_survives_exploded_and_nan_positions():
    """An exploded molecule (atoms 1e12 A apart) or NaN positions must not crash the search (vesin's open-boundary
    search divides by zero at such extents): the far atoms have no edges, the others keep theirs."""
    from hessdistill.neighbors import cell_list_edges

    x = torch.tensor(molecule("CH3CH2OH").positions)
    ref, _ = cell_list_edges(x, torch.zeros(3, 3, dtype=x.dtype), False, 3.0)
    bad = x.clone()
    bad[0] = torch.tensor([1e12, 0.0, 0.0])
    bad[1, 2] = float("nan")
    ei, sh = cell_list_edges(bad, torch.zeros(3, 3, dtype=x.dtype), False, 3.0)
    others = lambda e: {(i, j) for i, j in e.t().tolist() if 0 not in (i, j) and 1 not in (i, j)}  # noqa: E731
    assert others(ei) == others(ref) and len(others(ref)) > 20 and sh.abs().sum() == 0
    assert not any(0 in pair for pair in ei.t().tolist())  # the exploded atom has no neighbors


def test_float32_student_and_ml_subset(student32):
    mol = molecule("CH3CH2OH")
    spectator = mol.copy()
    spectator.positions += [20.0, 0.0, 0.0]  # a second copy, far away, left to other forces (none here)
    both = mol + spectator
    topology, pos_nm, both = topology_from_atoms(both)
    system = openmm.System()
    for m in both.get_masses():
        system.addParticle(m)
    add_student_force(system, topology, student32, atoms=range(len(mol)))
    e_ref, f_ref = reference(mol, student32)
    e, f = context_energy_forces(system, pos_nm, "Reference")
    assert e == pytest.approx(e_ref, abs=1e-5)
    np.testing.assert_allclose(f[: len(mol)], f_ref, atol=1e-4)
    assert np.all(f[len(mol):] == 0.0)


def test_default_platform_is_reference_only_for_a_system_of_students(student32):
    topology, _, _ = topology_from_atoms(molecule("CH3CH2OH"))
    system = create_system(topology, student32, remove_cm_motion=True)
    gpu = torch.cuda.is_available() and "CUDA" in [openmm.Platform.getPlatform(i).getName()
                                                   for i in range(openmm.Platform.getNumPlatforms())]
    assert select_platform(system=system)[0].getName() == ("CUDA" if gpu else "Reference")
    bonds = openmm.HarmonicBondForce()  # an MM term beside the student: the CPU platform speeds that up
    bonds.addBond(0, 1, 0.15, 1000.0)
    system.addForce(bonds)
    assert select_platform(system=system)[0].getName() == ("CUDA" if gpu else "CPU")
    assert select_platform("Reference", system=system)[0].getName() == "Reference"


@pytest.mark.skipif(not HAS_PYTHONFORCE, reason="openmm.PythonForce needs OpenMM >= 8.5 (this is "
                    f"{openmm.__version__}); the second environment (.ci/newer_env.sh) runs this test")
@pytest.mark.parametrize("system", ["molecule", "small-box", "large-box"])
def test_pythonforce_fallback_equals_student(student64, system):
    periodic = system != "molecule"
    atoms = periodic_ethanol(system.split("-")[0]) if periodic else molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=2)
    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, student64, backend="pythonforce")
    assert "PythonForce" in system.getForce(0).getName()
    e_ref, f_ref = reference(atoms, student64)
    for platform in ("Reference", "CPU"):
        e, f = context_energy_forces(system, pos_nm + 2.0 * atoms.cell.array[0] / 10.0, platform)
        assert e == pytest.approx(e_ref, abs=1e-10)
        np.testing.assert_allclose(f, f_ref, atol=1e-10)
    # PythonForce pickles its function when a System is serialized: the student must survive the round trip.
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    e, _ = context_energy_forces(copy, pos_nm, "Reference")
    assert e == pytest.approx(e_ref, abs=1e-10)
    if not HAS_OPENMMTORCH:
        assert available_backend("auto") == "pythonforce"


@pytest.fixture(scope="module")
def student64_pt2(student64):
    """The same student as ``student64``, compiled here (a .pt2 runs only under the torch that compiled it)."""
    from hessdistill.formats import save_student

    return save_student(make_student(type_names=("H", "C", "O")), student64.with_suffix(".pt2"))


@pytest.mark.skipif(not HAS_PYTHONFORCE, reason="openmm.PythonForce needs OpenMM >= 8.5 (this is "
                    f"{openmm.__version__}); the second environment (.ci/newer_env.sh) runs this test")
@pytest.mark.parametrize("system", ["molecule", "small-box"])
def test_pt2_student_in_openmm_equals_torchscript_student(student64, student64_pt2, system):
    """A compiled .pt2 student runs through openmm.PythonForce and gives the TorchScript student's own energy and
    forces (float64, 1e-10), with atoms away from the origin, after a move past the skin, and after an XML round
    trip of the System (the force pickles the package's path)."""
    periodic = system != "molecule"
    atoms = periodic_ethanol("small") if periodic else molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=4)
    topology, pos_nm, atoms = topology_from_atoms(atoms)
    omm_system = create_system(topology, student64_pt2)
    assert "PythonForce" in omm_system.getForce(0).getName()
    offset = 3.0 * (atoms.cell.array[0] - atoms.cell.array[2]) / 10.0 if periodic else np.array([4.0, -2.0, 1.0])
    ctx = openmm.Context(omm_system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for shift in (offset, offset + np.random.default_rng(5).normal(scale=0.04, size=pos_nm.shape)):
        ctx.setPositions(pos_nm + shift)
        e, f = context_energy_forces_of(ctx)
        moved = atoms.copy()
        moved.positions = (pos_nm + shift) * 10.0
        e_ref, f_ref = reference(moved, student64)
        assert e == pytest.approx(e_ref, abs=1e-10)
        np.testing.assert_allclose(f, f_ref, atol=1e-10)
    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(omm_system))
    e, f = context_energy_forces(copy, pos_nm + shift, "Reference")
    assert e == pytest.approx(e_ref, abs=1e-10)
    np.testing.assert_allclose(f, f_ref, atol=1e-10)


def test_pt2_student_needs_pythonforce(tmp_path):
    """A .pt2 student cannot go into TorchForce, and needs OpenMM >= 8.5: one-line errors saying what to use."""
    from hessdistill.errors import OpenMMBackendError

    topology, _, _ = topology_from_atoms(molecule("CH3CH2OH"))
    path = tmp_path / "student.pt2"  # judged by its suffix: the error comes before any loading
    with pytest.raises(OpenMMBackendError, match="TorchForce takes only TorchScript") as err:
        create_system(topology, path, backend="torchforce")
    assert "\n" not in str(err.value)
    if not HAS_PYTHONFORCE:
        with pytest.raises(OpenMMBackendError, match="OpenMM >= 8.5.*use the TorchScript file here") as err:
            create_system(topology, path)
        assert "\n" not in str(err.value)
        # run_md too (it once resolved the back end without looking at the file, and said to use 'pythonforce')
        with pytest.raises(OpenMMBackendError, match="OpenMM >= 8.5.*use the TorchScript file here"):
            run_md(path, molecule("CH3CH2OH"), tmp_path / "md", MDOptions(steps=2), analyze=False)


@pytest.mark.skipif(not HAS_PYTHONFORCE, reason="openmm.PythonForce needs OpenMM >= 8.5 (this is "
                    f"{openmm.__version__}); the second environment (.ci/newer_env.sh) runs this test")
def test_run_md_with_a_pt2_student_follows_the_torchscript_run(student64, student64_pt2, tmp_path):
    """run_md picks PythonForce for a .pt2 by itself (default back end) and, from the same start, gives the
    TorchScript student's energies along 40 NVE steps; so does a committee (mean drive) of the two files."""
    options = MDOptions(steps=40, timestep_fs=0.5, temperature_K=300.0, report_interval=10, max_drift=None,
                        max_deviation=None, seed=3)
    atoms = molecule("CH3CH2OH")
    runs = {p.suffix: run_md(p, atoms, tmp_path / p.suffix[1:], options, platform="Reference", analyze=False)
            for p in (student64, student64_pt2)}
    assert runs[".pt2"].extra["backend"] == "pythonforce" and not runs[".pt2"].stopped
    # a committee mixing the formats (the same student twice): each member's file picks its back end
    mixed = run_md(student64, atoms, tmp_path / "mixed", replace(options, committee=(student64_pt2,)),
                   platform="Reference", analyze=False)
    a, b, c = (read_monitor_csv(r.files["monitor_csv"]) for r in (runs[".pt"], runs[".pt2"], mixed))
    assert len(a["step"]) == 5
    for column in ("potential_eV", "total_eV"):
        np.testing.assert_allclose(b[column], a[column], atol=1e-8)
        np.testing.assert_allclose(c[column], a[column], atol=1e-8)


@pytest.mark.skipif(not HAS_OPENMMTORCH, reason="openmmtorch is not installed")
def test_openmm_imported_before_torch_still_works(student64, tmp_path):
    """In the wrong import order the default back end is still TorchForce (no silent PythonForce fallback) and
    gives the student's own energy."""
    atoms = molecule("CH3CH2OH")
    e_ref, _ = reference(atoms, student64)
    code = (
        "import openmm\n"  # the wrong order on purpose: the plugin misses libtorch's libraries at first
        "from ase.build import molecule\n"
        "from hessdistill.engines.openmm import create_system, topology_from_atoms\n"
        "top, pos, _ = topology_from_atoms(molecule('CH3CH2OH'))\n"
        f"system = create_system(top, {str(student64)!r})\n"
        "print([line.strip() for line in openmm.XmlSerializer.serialize(system).splitlines() if '<Force ' in line])\n"
        "ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName('Reference'))\n"
        "ctx.setPositions(pos)\n"
        "print(repr(ctx.getState(getEnergy=True).getPotentialEnergy()._value))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    forces, energy = out.stdout.strip().splitlines()[-2:]
    assert 'type="TorchForce"' in forces and "PythonForce" not in forces, forces
    assert float(energy) / EV_TO_KJ_PER_MOL == pytest.approx(e_ref, abs=1e-9)


# --- energy monitor reporter -------------------------------------------------------------------------------------

def make_simulation(model_path, atoms, dt_fs=0.5, temperature=300.0, seed=1):
    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, model_path, masses=atoms.get_masses())
    sim = app.Simulation(topology, system, openmm.VerletIntegrator(dt_fs * 1e-3),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos_nm)
    sim.context.setVelocitiesToTemperature(temperature, seed)
    return sim


def test_nve_drift_equals_independent_slope(student64, tmp_path):
    sim = make_simulation(student64, molecule("CH3CH2OH"), temperature=100.0)
    reporter = EnergyMonitorReporter(tmp_path / "m.csv", 10, sim.system, max_drift=None, max_deviation=None)
    sim.reporters.append(app.StateDataReporter(str(tmp_path / "state.csv"), 10, step=True, totalEnergy=True))
    sim.reporters.append(reporter)
    reporter.record_initial(sim)
    times, totals = [0.0], []
    state = sim.context.getState(getEnergy=True)
    totals.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(KJ))
    for _ in range(30):
        sim.step(10)
        state = sim.context.getState(getEnergy=True)
        times.append(state.getTime().value_in_unit(unit.picosecond))
        totals.append((state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(KJ))
    reporter.close()
    n = sim.system.getNumParticles()
    expected = np.polyfit(times, np.array(totals) / EV_TO_KJ_PER_MOL / n, 1)[0]
    summary = reporter.summary()
    assert summary["n_samples"] == 31
    assert summary["drift_eV_per_atom_ps"] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert summary["drift_kJ_per_mol_ps"] == pytest.approx(expected * n * EV_TO_KJ_PER_MOL, rel=1e-9, abs=1e-12)
    rows = read_monitor_csv(tmp_path / "m.csv")
    np.testing.assert_allclose(rows["total_eV"] * EV_TO_KJ_PER_MOL, totals, rtol=1e-12)
    # temperature from kinetic energy with 3N degrees of freedom (no constraints, no CM remover), in ASE's kB (eV/K)
    # as the other engines report it (OpenMM's R is CODATA 2018, ASE's kB CODATA 2014: 3.5e-7 apart)
    from ase.units import kB

    np.testing.assert_allclose(rows["temperature_K"], 2 * rows["kinetic_eV"] / (3 * n * kB), rtol=1e-12)
    r = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)
    np.testing.assert_allclose(rows["temperature_K"], 2 * rows["kinetic_eV"] * EV_TO_KJ_PER_MOL / (3 * n * r),
                               rtol=1e-6)


@pytest.mark.parametrize("broken", ["nan", "jump"])
def test_broken_model_stops_run_with_intact_csv(tmp_path, broken):
    path = write_model_file(PairModel(break_after=25, jump=5.0 if broken == "jump" else 0.0), tmp_path / "bad.pt")
    sim = make_simulation(path, dimers())
    reporter = EnergyMonitorReporter(tmp_path / "m.csv", 5, sim.system, max_drift=None, max_deviation=0.05)
    sim.reporters.append(reporter)
    reporter.record_initial(sim)
    with pytest.raises(EnergyConservationError, match="non-finite energy" if broken == "nan" else "max_deviation"):
        sim.step(200)
    assert sim.currentStep < 200
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 3 and int(rows[-1]["step"]) == sim.currentStep
    assert all(math.isfinite(float(r["total_eV"])) for r in rows[:-1])
    if broken == "nan":
        assert not math.isfinite(float(rows[-1]["potential_eV"]))


# --- run_md and mdtraj stability analysis ------------------------------------------------------------------------

def test_run_md_stable_run_not_flagged(tmp_path):
    path = write_model_file(PairModel(), tmp_path / "morse.pt")
    result = run_md(path, dimers(periodic=True), tmp_path / "run", MDOptions(steps=300, timestep_fs=0.5,
                    temperature_K=300.0, report_interval=10), platform="Reference")
    assert not result.stopped and result.steps_done == 300
    assert abs(result.drift_eV_per_atom_ps) < 1e-3
    assert result.extra["max_bond_deviation_A"] < 0.5 and not result.extra["unstable"]
    assert result.extra["platform"] == "Reference"
    for key in ("monitor_csv", "monitor_png", "trajectory", "topology", "analysis_png", "summary"):
        path = Path(result.files[key])
        assert path.parent == (tmp_path / "run").resolve() and path.stat().st_size > 0

    from hessdistill.monitor.analysis import load_trajectory, radial_distributions

    traj = load_trajectory(result.files["trajectory"], result.files["topology"])
    assert traj.n_frames == 31 and traj.n_atoms == 8 and traj.unitcell_vectors is not None
    rdfs = radial_distributions(traj)
    r, g = rdfs["C-O"]
    assert abs(r[np.argmax(g)] - 1.2) < 0.2  # the bond peak


def test_run_md_exploded_run_flagged(tmp_path):
    path = write_model_file(PairModel(repulsive=True), tmp_path / "repulsive.pt")
    result = run_md(path, dimers(), tmp_path / "run", MDOptions(steps=200, timestep_fs=1.0, temperature_K=300.0,
                    report_interval=10, max_drift=None, max_deviation=None, ensemble="nvt"), platform="Reference")
    assert not result.stopped
    assert result.extra["max_bond_deviation_A"] > 0.5 and result.extra["unstable"]


def test_bond_deviation_from_engine_agnostic_frames():
    from hessdistill.monitor.analysis import bond_deviation, guess_bonds, trajectory_from_frames

    mol = molecule("CH3CH2OH")
    bonds = guess_bonds(mol.get_chemical_symbols(), mol.positions)
    assert len(bonds) == 8  # C-C, C-O, O-H, 5 C-H
    frames = np.stack([mol.positions, mol.positions + 0.01, mol.positions])
    oh = mol.positions[3] - mol.positions[2]
    frames[2, 3] += 0.8 * oh / np.linalg.norm(oh)  # the hydroxyl H pulled 0.8 A off its O
    report = bond_deviation(trajectory_from_frames(mol.get_chemical_symbols(), frames))
    assert report["unstable"] and report["worst_frame"] == 2 and report["worst_bond"] == (2, 3)
    assert report["max_bond_deviation_A"] == pytest.approx(0.8, abs=1e-5)
    assert report["per_frame_A"][1] < 1e-5


# --- bad input ---------------------------------------------------------------------------------------------------

def test_bad_inputs_give_clear_errors(student64, tmp_path):
    topology, pos_nm, _ = topology_from_atoms(molecule("CH3CH2OH"))
    with pytest.raises(UnsupportedElementError, match="N"):
        create_system(topology_from_atoms(molecule("CH3CONH2"))[0], student64)
    system = openmm.System()
    system.addParticle(1.0)
    with pytest.raises(InputError, match="1 particles but the topology has 9 atoms"):
        add_student_force(system, topology, student64)
    with pytest.raises(InputError, match="distinct indices"):
        create_system(topology, student64, atoms=[0, 42])
    nan_atoms = molecule("CH3CH2OH")
    nan_atoms.positions[2, 0] = np.inf
    with pytest.raises(StructureError, match="non-finite"):
        run_md(student64, nan_atoms, tmp_path / "x", MDOptions(steps=1))
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelFileError, match="not a TorchScript archive"):
        create_system(topology, tmp_path / "notes.txt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "plain.pt"))
    with pytest.raises(ModelFileError, match="not a hessdistill student file"):
        create_system(topology, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="platform 'Nope' is not available"):
        select_platform("Nope")
    with pytest.raises(InputError, match="backend must be one of"):
        create_system(topology, student64, backend="magic")
    with pytest.raises(InputError, match="all three directions or none"):
        topology_from_atoms(Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.2]], cell=[5, 5, 5], pbc=[True, True, False]))
