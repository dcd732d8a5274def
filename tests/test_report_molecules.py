"""The intermolecular part of the report: molecules from the bond graph, their net forces and torques.

References: a pair potential, whose forces split exactly into intra- and intermolecular parts (the forces of each
molecule alone subtracted from those of the whole), so the net force and torque of a molecule must equal those of
the intermolecular part alone; the same molecule whole and split across a periodic boundary; the teacher standing
in for the student (zero error) and a student that differs from it only between molecules.
"""

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.mixing import SumCalculator
from scipy.spatial.transform import Rotation

from hessdistill.label import label_structures, load_labels
from hessdistill.report import label_errors, summary_lines
from hessdistill.molecules import molecules, net_force_torque
from hessdistill.teachers.analytic import LennardJonesTeacher, MorseTeacher


def _dimer(seed=0, distance=3.2):
    """Two rattled water molecules, the second rotated and placed ``distance`` A away."""
    a, b = molecule("H2O"), molecule("H2O")
    b.positions = b.positions @ Rotation.from_euler("xyz", [0.4, 1.3, -0.7]).as_matrix().T + [distance, 0.4, -0.3]
    both = a + b
    both.rattle(0.03, seed=seed)
    return both


def test_molecules_are_the_bond_graphs_components():
    groups, whole = molecules(_dimer())
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5]]
    assert np.allclose(whole, _dimer().positions)  # nothing to unwrap without a cell


def test_net_force_and_torque_are_the_intermolecular_part():
    atoms = _dimer(seed=1)
    teacher = MorseTeacher()
    forces = teacher.energy_forces(atoms)[1]
    groups, whole = molecules(atoms)
    inter = forces.copy()
    for g in groups:  # a pair potential: the intramolecular forces are those of the molecule alone
        inter[g] -= teacher.energy_forces(atoms[g])[1]
    assert np.abs(inter).max() > 1e-3  # the molecules do interact
    masses = atoms.get_masses()
    f_all, t_all = net_force_torque(masses, whole, forces, groups)
    f_inter, t_inter = net_force_torque(masses, whole, inter, groups)
    assert np.allclose(f_all, f_inter, atol=1e-10) and np.allclose(t_all, t_inter, atol=1e-10)
    assert np.allclose(f_all[0], -f_all[1], atol=1e-10)  # Newton's third law between the two molecules
    # the intramolecular forces alone carry no net force or torque
    f_intra, t_intra = net_force_torque(masses, whole, forces - inter, groups)
    assert np.abs(f_intra).max() < 1e-10 and np.abs(t_intra).max() < 1e-10


def test_a_molecule_split_by_the_periodic_boundary_is_made_whole():
    atoms = _dimer(seed=2)
    atoms.positions -= atoms.positions[0] - [5.0, 0.1, 5.0]  # a hydrogen of the first water at y < 0
    atoms.cell = [11.0, 10.0, 10.0]
    atoms.pbc = True
    wrapped = atoms.copy()
    wrapped.wrap()
    assert not np.allclose(wrapped.positions, atoms.positions)  # the first water is split across y = 0
    forces = np.random.default_rng(0).normal(size=(len(atoms), 3))
    masses = atoms.get_masses()
    reference = net_force_torque(masses, atoms.positions, forces, molecules(atoms)[0])
    groups, whole = molecules(wrapped)
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5]]
    for got, want in zip(net_force_torque(masses, whole, forces, groups), reference):
        assert np.allclose(got, want, atol=1e-12)


def test_label_errors_report_the_molecules_net_force_and_torque(tmp_path):
    structures = [_dimer(seed=s, distance=3.0 + 0.1 * s) for s in range(4)]
    for s in structures:
        s.info["split"] = "test"
    teacher = MorseTeacher()
    label_structures(structures, teacher, tmp_path / "l.h5", rows=2, progress=False)
    items = load_labels(tmp_path / "l.h5")
    same, _ = label_errors(items, teacher.as_calculator(), hessian_rows=0, progress=False)
    assert same["most_molecules"] == 2
    assert same["net_force_mae"] < 1e-10 and same["net_torque_mae"] < 1e-10
    assert same["teacher_mean_abs_net_force"] > 1e-3
    # a student that adds a weak Lennard-Jones attraction: the molecules' net forces change, and are now wrong
    other = SumCalculator([teacher.as_calculator(), LennardJonesTeacher(epsilon=0.01, sigma=2.5).as_calculator()])
    off, values = label_errors(items, other, hessian_rows=0, progress=False)
    assert off["net_force_mae"] > 1e-3 and off["net_torque_mae"] > 1e-4
    t, s = values["net_force"]
    assert t.shape == s.shape == (4 * 2 * 3,)
    assert off["net_force_mae"] == pytest.approx(np.mean(np.abs(s - t)))
    (line,) = [x for x in summary_lines({"split": "test", "label_errors": off}) if x.startswith("intermolecular")]
    assert f"{100 * off['net_force_mae_relative']:.1f}%" in line


def test_a_single_molecule_has_no_intermolecular_rows(tmp_path):
    atoms = molecule("H2O")
    atoms.info["split"] = "test"
    label_structures([atoms], MorseTeacher(), tmp_path / "l.h5", rows=1, progress=False)
    errors, _ = label_errors(load_labels(tmp_path / "l.h5"), MorseTeacher().as_calculator(), progress=False)
    assert errors["most_molecules"] == 1 and "net_force_mae" not in errors

