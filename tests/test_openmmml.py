"""openmm-ml: ``MLPotential('hessdistill', modelPath=...)`` through the package's ``openmmml.potentials`` entry point.

``createSystem`` gives the student's own energies and forces; ``createMixedSystem`` of ethanol (the student) in MM
water (a small ethanol template next to amber14's TIP3P, built by OpenMM's ForceField) equals the MM system minus
the MM energy of ethanol alone plus the student (no cutoff: that sum is exact), equals a system built by hand with
ethanol's MM terms zeroed (PME), interpolates between MM (lambda 0) and mixed (lambda 1), and runs NVE with the
energy monitor; a compiled .pt2 student does the same through openmm.PythonForce. Runs with openmm-ml 1.7 (OpenMM
8.5.2, TorchForce) and 1.8 (OpenMM 8.6.1, PythonForce alone).
"""

import copy
import io
import subprocess
import sys
from importlib.metadata import entry_points

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")
pytest.importorskip("openmmml")
from ase import Atoms  # noqa: E402
from openmm import app, unit  # noqa: E402
from openmmml import MLPotential  # noqa: E402

from conftest import make_student  # noqa: E402
from hessdistill.engines.ase import StudentCalculator  # noqa: E402
from hessdistill.engines.openmm import EnergyMonitorReporter, add_student_force  # noqa: E402
from hessdistill.errors import InputError, UnsupportedElementError  # noqa: E402
from hessdistill.formats import export_student  # noqa: E402
from hessdistill.units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM  # noqa: E402

ENTRY_POINT = "hessdistill.engines.openmm_ml:HessdistillPotentialImplFactory"
KJ, KJ_NM = unit.kilojoule_per_mole, unit.kilojoule_per_mole / unit.nanometer
N_SOLUTE = 9  # ethanol, the first residue

# Ethanol for OpenMM's ForceField (GAFF-like values; any sane MM terms do): bonds, angles and torsions inside the
# ML region are what createMixedSystem must remove. Charges sum to zero.
ETHANOL_XML = """<ForceField>
 <AtomTypes>
  <Type name="eth-c3" class="eth-c3" element="C" mass="12.011"/>
  <Type name="eth-c2" class="eth-c3" element="C" mass="12.011"/>
  <Type name="eth-oh" class="eth-oh" element="O" mass="15.999"/>
  <Type name="eth-ho" class="eth-ho" element="H" mass="1.008"/>
  <Type name="eth-h1" class="eth-hc" element="H" mass="1.008"/>
  <Type name="eth-hc" class="eth-hc" element="H" mass="1.008"/>
 </AtomTypes>
 <Residues>
  <Residue name="ETH">
   <Atom name="C1" type="eth-c3"/><Atom name="C2" type="eth-c2"/><Atom name="O1" type="eth-oh"/>
   <Atom name="H1" type="eth-ho"/><Atom name="H2" type="eth-h1"/><Atom name="H3" type="eth-h1"/>
   <Atom name="H4" type="eth-hc"/><Atom name="H5" type="eth-hc"/><Atom name="H6" type="eth-hc"/>
   <Bond atomName1="C1" atomName2="C2"/><Bond atomName1="C2" atomName2="O1"/><Bond atomName1="O1" atomName2="H1"/>
   <Bond atomName1="C2" atomName2="H2"/><Bond atomName1="C2" atomName2="H3"/><Bond atomName1="C1" atomName2="H4"/>
   <Bond atomName1="C1" atomName2="H5"/><Bond atomName1="C1" atomName2="H6"/>
  </Residue>
 </Residues>
 <HarmonicBondForce>
  <Bond class1="eth-c3" class2="eth-c3" length="0.1535" k="253634"/>
  <Bond class1="eth-c3" class2="eth-oh" length="0.1426" k="262252"/>
  <Bond class1="eth-oh" class2="eth-ho" length="0.0974" k="309281"/>
  <Bond class1="eth-c3" class2="eth-hc" length="0.1092" k="282001"/>
 </HarmonicBondForce>
 <HarmonicAngleForce>
  <Angle class1="eth-c3" class2="eth-c3" class3="eth-hc" angle="1.9216" k="388.02"/>
  <Angle class1="eth-hc" class2="eth-c3" class3="eth-hc" angle="1.8927" k="329.70"/>
  <Angle class1="eth-c3" class2="eth-c3" class3="eth-oh" angle="1.9127" k="566.51"/>
  <Angle class1="eth-oh" class2="eth-c3" class3="eth-hc" angle="1.9100" k="426.77"/>
  <Angle class1="eth-c3" class2="eth-oh" class3="eth-ho" angle="1.8849" k="394.13"/>
 </HarmonicAngleForce>
 <PeriodicTorsionForce>
  <Proper class1="" class2="eth-c3" class3="eth-c3" class4="" periodicity1="3" phase1="0" k1="0.6276"/>
  <Proper class1="" class2="eth-c3" class3="eth-oh" class4="" periodicity1="3" phase1="0" k1="0.6974"/>
 </PeriodicTorsionForce>
 <NonbondedForce coulomb14scale="0.833333" lj14scale="0.5">
  <Atom type="eth-c3" charge="-0.18" sigma="0.3400" epsilon="0.4577"/>
  <Atom type="eth-c2" charge="0.13" sigma="0.3400" epsilon="0.4577"/>
  <Atom type="eth-oh" charge="-0.60" sigma="0.3066" epsilon="0.8803"/>
  <Atom type="eth-ho" charge="0.41" sigma="0.0000" epsilon="0.0000"/>
  <Atom type="eth-h1" charge="0.03" sigma="0.2471" epsilon="0.0657"/>
  <Atom type="eth-hc" charge="0.06" sigma="0.2650" epsilon="0.0657"/>
 </NonbondedForce>
</ForceField>
"""
ETHANOL_PDB = """HETATM    1  C1  ETH A   1       1.168  -0.400   0.000  1.00  0.00           C
HETATM    2  C2  ETH A   1       0.000   0.559   0.000  1.00  0.00           C
HETATM    3  O1  ETH A   1      -1.190  -0.228   0.000  1.00  0.00           O
HETATM    4  H1  ETH A   1      -1.947   0.382   0.000  1.00  0.00           H
HETATM    5  H2  ETH A   1       0.043   1.208   0.887  1.00  0.00           H
HETATM    6  H3  ETH A   1       0.043   1.208  -0.887  1.00  0.00           H
HETATM    7  H4  ETH A   1       2.116   0.145   0.000  1.00  0.00           H
HETATM    8  H5  ETH A   1       1.129  -1.037   0.886  1.00  0.00           H
HETATM    9  H6  ETH A   1       1.129  -1.037  -0.886  1.00  0.00           H
CONECT    1    2    7    8    9
CONECT    2    1    3    5    6
CONECT    3    2    4
END
"""


def registered() -> bool:
    return any(ep.name == "hessdistill" for ep in entry_points(group="openmmml.potentials"))



@pytest.fixture(scope="module")
def student(tmp_path_factory):
    if not registered():
        pytest.fail("hessdistill is not registered with openmm-ml: reinstall it (pip install --no-deps -e .)")
    return export_student(make_student(type_names=("H", "C", "O")), tmp_path_factory.mktemp("s") / "s64.pt")


@pytest.fixture(scope="module")
def forcefield():
    return app.ForceField("amber14/tip3p.xml", io.StringIO(ETHANOL_XML))


@pytest.fixture(scope="module")
def solvated(forcefield):
    """Ethanol in 30 TIP3P waters (periodic box); positions in nm."""
    pdb = app.PDBFile(io.StringIO(ETHANOL_PDB))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield, model="tip3p", numAdded=30, neutralize=False)
    rng = np.random.default_rng(5)  # off the force field's minimum, so forces are not small
    pos = np.asarray(modeller.positions.value_in_unit(unit.nanometer)) + rng.normal(scale=0.003, size=(
        modeller.topology.getNumAtoms(), 3))
    return modeller.topology, pos


def energy_forces(system, positions, platform="Reference", parameters=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions)
    for name, value in (parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True)
    return state.getPotentialEnergy().value_in_unit(KJ), np.asarray(state.getForces(asNumpy=True).value_in_unit(KJ_NM))


def student_reference(path, symbols, positions_nm, cell_nm=None):
    """The student's own energy (kJ/mol) and forces (kJ/mol/nm) from the ASE calculator."""
    atoms = Atoms(symbols, positions=positions_nm * NM_TO_ANGSTROM)
    if cell_nm is not None:
        atoms.set_cell(np.asarray(cell_nm) * NM_TO_ANGSTROM)
        atoms.pbc = True
    atoms.calc = StudentCalculator(path)
    return atoms.get_potential_energy() * EV_TO_KJ_PER_MOL, atoms.get_forces() * EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM


def assert_close(actual, expected, rtol=1e-6):
    (e, f), (e_ref, f_ref) = actual, expected
    scale = np.abs(f_ref).max()
    assert abs(e - e_ref) <= rtol * max(abs(e_ref), 1.0), (e, e_ref)
    assert np.abs(f - f_ref).max() <= rtol * scale, np.abs(f - f_ref).max() / scale


def test_entry_point_and_light_import():
    """The package declares the entry point, and loading it (``import openmmml`` loads every registered potential)
    does not import torch."""
    assert [ep.value for ep in entry_points(group="openmmml.potentials") if ep.name == "hessdistill"] == [ENTRY_POINT]
    code = "import sys, hessdistill.engines.openmm_ml\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["TorchScript", "pt2"])
def test_create_system_equals_student(kind, student, compiled_student):
    student = student if kind == "TorchScript" else compiled_student
    pdb = app.PDBFile(io.StringIO(ETHANOL_PDB))
    system = MLPotential("hessdistill", modelPath=str(student)).createSystem(pdb.topology)
    pos = np.asarray(pdb.positions.value_in_unit(unit.nanometer)) + np.random.default_rng(0).normal(
        scale=0.01, size=(N_SOLUTE, 3))
    symbols = [a.element.symbol for a in pdb.topology.atoms()]
    assert_close(energy_forces(system, pos), student_reference(student, symbols, pos))


@pytest.mark.parametrize("kind", ["TorchScript", "pt2"])
def test_mixed_system_replaces_solute_mm_terms(kind, student, compiled_student, forcefield, solvated):
    """No cutoff: mixed = MM(all) - MM(ethanol alone) + student(ethanol), energies and forces; interpolation
    gives the MM system at lambda 0 and the mixed one at lambda 1."""
    student = student if kind == "TorchScript" else compiled_student
    topology, pos = copy.deepcopy(solvated[0]), solvated[1]
    topology.setPeriodicBoxVectors(None)  # the same molecules without the box
    mm = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=True)
    solute = list(range(N_SOLUTE))
    potential = MLPotential("hessdistill", modelPath=str(student))
    mixed = potential.createMixedSystem(topology, mm, solute)

    pdb = app.PDBFile(io.StringIO(ETHANOL_PDB))
    alone = forcefield.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    e_mm, f_mm = energy_forces(mm, pos)
    e_alone, f_alone = energy_forces(alone, pos[:N_SOLUTE])
    e_st, f_st = student_reference(student, [a.element.symbol for a in pdb.topology.atoms()], pos[:N_SOLUTE])
    assert abs(e_alone) > 1.0 and np.abs(f_alone).max() > 100.0  # the removed MM terms are not negligible
    f_ref = f_mm.copy()
    f_ref[:N_SOLUTE] += f_st - f_alone
    assert_close(energy_forces(mixed, pos), (e_mm - e_alone + e_st, f_ref))

    interpolating = potential.createMixedSystem(topology, mm, solute, interpolate=True)
    assert_close(energy_forces(interpolating, pos, parameters={"lambda_interpolate": 0.0}), (e_mm, f_mm))
    assert_close(energy_forces(interpolating, pos, parameters={"lambda_interpolate": 1.0}),
                 (e_mm - e_alone + e_st, f_ref))


def periodic_mixed(student, forcefield, solvated, **args):
    topology, pos = solvated
    mm = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.5 * unit.nanometer,
                                 constraints=None, rigidWater=True)
    potential = MLPotential("hessdistill", modelPath=str(student))
    return mm, potential.createMixedSystem(topology, mm, list(range(N_SOLUTE)), **args)


def test_periodic_mixed_system_equals_hand_built(student, forcefield, solvated):
    """PME box: equals the MM system with ethanol's bonded terms set to zero, its internal nonbonded pairs
    excepted to zero, plus the student's force for ethanol; the student's force sits in the requested group and
    gives the student's own periodic energy there."""
    topology, pos = solvated
    mm, mixed = periodic_mixed(student, forcefield, solvated, forceGroup=1)
    hand = forcefield.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.5 * unit.nanometer,
                                   constraints=None, rigidWater=True)
    inside = lambda *p: all(i < N_SOLUTE for i in p)  # noqa: E731
    zeroed = 0
    for force in hand.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                i, j, r0, _ = force.getBondParameters(k)
                if inside(i, j):
                    force.setBondParameters(k, i, j, r0, 0.0)
                    zeroed += 1
        elif isinstance(force, openmm.HarmonicAngleForce):
            for k in range(force.getNumAngles()):
                i, j, l, theta0, _ = force.getAngleParameters(k)
                if inside(i, j, l):
                    force.setAngleParameters(k, i, j, l, theta0, 0.0)
                    zeroed += 1
        elif isinstance(force, openmm.PeriodicTorsionForce):
            for k in range(force.getNumTorsions()):
                i, j, l, m, n, phase, _ = force.getTorsionParameters(k)
                if inside(i, j, l, m):
                    force.setTorsionParameters(k, i, j, l, m, n, phase, 0.0)
                    zeroed += 1
        elif isinstance(force, openmm.NonbondedForce):
            for i in range(N_SOLUTE):
                for j in range(i):
                    force.addException(i, j, 0.0, 1.0, 0.0, True)
    assert zeroed == 8 + 13 + 12  # ethanol's bonds, angles and torsions
    add_student_force(hand, topology, student, atoms=range(N_SOLUTE))
    reference = energy_forces(hand, pos)
    assert_close(energy_forces(mixed, pos), reference)
    e_mm, _ = energy_forces(mm, pos)
    assert abs(e_mm - reference[0]) > 10.0  # the comparison can tell the mixed system from the MM one
    context = openmm.Context(mixed, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pos)
    e_group = context.getState(getEnergy=True, groups={1}).getPotentialEnergy().value_in_unit(KJ)
    box = topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)
    e_student, _ = student_reference(student, ["C", "C", "O"] + ["H"] * 6, pos[:N_SOLUTE], box)
    assert e_group == pytest.approx(e_student, rel=1e-6)


def test_mixed_system_runs_nve_with_monitor(student, forcefield, solvated, tmp_path):
    topology, pos = solvated
    _, mixed = periodic_mixed(student, forcefield, solvated)
    sim = app.Simulation(topology, mixed, openmm.VerletIntegrator(0.0005 * unit.picosecond),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(pos)
    sim.minimizeEnergy(maxIterations=50)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, 7)
    reporter = EnergyMonitorReporter(tmp_path / "monitor.csv", 5, mixed)  # default thresholds
    sim.reporters.append(reporter)
    reporter.record_initial(sim)
    sim.step(100)  # raises EnergyConservationError past the thresholds
    reporter.close()
    summary = reporter.summary()
    assert summary["n_samples"] == 21
    assert summary["max_deviation_eV_per_atom"] < 1e-3


def test_bad_input_fails_clearly(student, tmp_path):
    with pytest.raises(InputError, match="needs modelPath"):
        MLPotential("hessdistill")
    with pytest.raises(InputError, match="is not a file"):
        MLPotential("hessdistill", modelPath=str(tmp_path / "missing.pt"))
    with pytest.raises(InputError, match="unknown argument.*cutoff"):
        MLPotential("hessdistill", modelPath=str(student), cutoff=5.0)
    pdb = app.PDBFile(io.StringIO(ETHANOL_PDB))
    potential = MLPotential("hessdistill", modelPath=str(student))
    with pytest.raises(InputError, match="unknown argument.*precision"):
        potential.createSystem(pdb.topology, precision="single")
    hc_only = export_student(make_student(type_names=("H", "C")), tmp_path / "hc.pt")
    with pytest.raises(UnsupportedElementError, match="O"):
        MLPotential("hessdistill", modelPath=str(hc_only)).createSystem(pdb.topology)
