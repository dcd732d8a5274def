"""Real teachers (ANI-1x, SevenNet-0, CHGNet, an ASE calculator by finite differences) on small structures:
Hessian symmetry and translational sum rule, agreement with finite differences of the teacher's own forces,
forces against the packages' own ASE calculators, batched = loop rows, element and input errors; periodic stress
against the packages' own calculators and finite differences of the energy under strain."""

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from conftest import fd_rows, fd_stress, sum_rule
from hessdistill.errors import ConfigError, StructureError, UnsupportedElementError


def water_box():
    """Four rattled waters in a 6 A periodic cube; the first sits on a corner, partly outside the cell."""
    atoms = Atoms(cell=[6.0, 6.0, 6.0], pbc=True)
    for shift in [(0, 0, 0), (3, 3, 1.5), (3, 1, 4), (1, 4, 3.5)]:
        w = molecule("H2O")
        w.translate(shift)
        atoms += w
    atoms.rattle(0.03, seed=5)
    return atoms


def silicon2():
    a = bulk("Si")
    a.rattle(0.05, seed=2)
    return a


# ----------------------------------------------------------------------------------------------------- ANI-1x
@pytest.fixture(scope="module")
def ani():
    pytest.importorskip("torchani")
    from hessdistill.teachers import load_teacher

    return load_teacher("ani1x")  # float64 by default


@pytest.fixture
def ethanol_r():
    a = molecule("CH3CH2OH")
    a.rattle(0.02, seed=3)
    return a


def test_ani_hessian_symmetric_sum_rule_and_finite_differences(ani, ethanol_r):
    h = ani.hessian(ethanol_r)
    n = len(ethanol_r)
    assert h.shape == (3 * n, 3 * n)
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    assert sum_rule(h, n) < 1e-10
    # CELU kinks: h = 1e-4 is off by ~0.07 eV/A^2; h = 1e-5 agrees to ~1e-6.
    fd = fd_rows(ani, ethanol_r, range(3 * n), 1e-5)
    np.testing.assert_allclose(h, fd, atol=1e-5)


def test_ani_hessian_of_a_planar_molecule_with_rounding_noise(ani):
    """Heavy atoms on z = 0 up to ~1e-17 A of noise (as a relaxation leaves them) and no exact zeros in plane:
    torchani's angular terms, differentiated twice in the input frame, gave out-of-plane entries off by ~10."""
    atoms = molecule("CH3CH2OH")
    rng = np.random.default_rng(4)
    planar = np.abs(atoms.positions[:, 2]) < 1e-12
    assert planar.sum() == 5
    atoms.positions[:, :2] += 0.02 * rng.standard_normal((len(atoms), 2))
    atoms.positions[planar, 2] = 1e-17 * rng.standard_normal(planar.sum())
    n = len(atoms)
    # h = 1e-6: at this structure a CELU kink lies within 1e-5 A (h = 1e-5 is off by 0.016; 1e-6 by ~1e-7)
    np.testing.assert_allclose(ani.hessian(atoms), fd_rows(ani, atoms, range(3 * n), 1e-6), atol=1e-5)


def test_ani_forces_are_minus_energy_gradient(ani, ethanol_r):
    energy, forces = ani.energy_forces(ethanol_r)
    assert forces.shape == (len(ethanol_r), 3)
    eps = 1e-5
    for a, c in [(0, 0), (2, 1), (5, 2), (8, 0)]:
        p, m = ethanol_r.copy(), ethanol_r.copy()
        p.positions[a, c] += eps
        m.positions[a, c] -= eps
        fd = -(ani.energy_forces(p)[0] - ani.energy_forces(m)[0]) / (2 * eps)
        assert abs(fd - forces[a, c]) < 1e-6


def test_ani_energy_matches_torchani_calculator(ani, ethanol_r):
    """Same network through torchani's own ASE calculator: checks the Hartree -> eV conversion and species order."""
    import torchani.ase

    ref = ethanol_r.copy()
    ref.calc = torchani.ase.Calculator(["H", "C", "N", "O"], ani.model)
    energy, forces = ani.energy_forces(ethanol_r)
    np.testing.assert_allclose(energy, ref.get_potential_energy(), rtol=1e-7)  # ase.units is CODATA 2014
    np.testing.assert_allclose(forces, ref.get_forces(), rtol=1e-6, atol=1e-9)


def test_ani_batched_loop_and_row_subsets_agree(ani, ethanol_r):
    try:
        ani.hessian_mode = "batched"
        full = ani.hessian(ethanol_r)
        ani.hessian_mode = "loop"
        loop = ani.hessian(ethanol_r)
        rows = [25, 0, 7, 7, 13]
        sub_loop = ani.hessian(ethanol_r, rows)
    finally:
        ani.hessian_mode = "auto"
    np.testing.assert_allclose(loop, full, atol=1e-11)
    np.testing.assert_allclose(sub_loop, full[rows], atol=1e-11)
    np.testing.assert_allclose(ani.hessian(ethanol_r, rows), full[rows], atol=1e-11)
    label = ani.label(ethanol_r, rows=rows)
    np.testing.assert_array_equal(label.hessian_rows, rows)
    np.testing.assert_allclose(label.hessian, full[rows], atol=1e-11)


def test_ani_periodic_box(ani):
    atoms = water_box()
    n = len(atoms)
    energy, forces = ani.energy_forces(atoms)
    # Periodic: translating every atom by any vector (some cross the boundary) changes nothing.
    moved = atoms.copy()
    moved.translate([1.7, -2.2, 0.9])
    e2, f2 = ani.energy_forces(moved)
    assert abs(e2 - energy) < 1e-8
    np.testing.assert_allclose(f2, forces, atol=1e-8)
    h = ani.hessian(atoms)
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    assert sum_rule(h, n) < 1e-10
    rows = [0, 4, 17, 35]
    np.testing.assert_allclose(h[rows], fd_rows(ani, atoms, rows, 1e-5), atol=1e-5)
    # Interactions through the boundary are really there: the isolated cluster differs.
    free = atoms.copy()
    free.pbc = False
    assert abs(ani.energy_forces(free)[0] - energy) > 1e-3


def test_ani_periodic_large_box_equals_molecule(ani, ethanol_r):
    boxed = ethanol_r.copy()
    boxed.cell = [20.0, 20.0, 20.0]
    boxed.pbc = True
    e0, f0 = ani.energy_forces(ethanol_r)
    e1, f1 = ani.energy_forces(boxed)
    assert abs(e1 - e0) < 1e-9
    np.testing.assert_allclose(f1, f0, atol=1e-9)


def test_ani_rejects_silicon(ani):
    atoms = molecule("SiH4")
    with pytest.raises(UnsupportedElementError, match="Si"):
        ani.check(atoms)
    with pytest.raises(UnsupportedElementError, match="Si"):
        ani.label(atoms)


def test_ani_bad_dtype():
    pytest.importorskip("torchani")
    from hessdistill.teachers.ani import ANI1xTeacher

    with pytest.raises(ConfigError, match="dtype"):
        ANI1xTeacher(dtype="float16")


# ------------------------------------------------------------------------------------------------ SevenNet-0
@pytest.fixture(scope="module")
def sevennet():
    pytest.importorskip("sevenn")
    from hessdistill.teachers import load_teacher

    return load_teacher("sevennet0")


def test_sevennet_forces_match_sevenn_calculator(sevennet):
    from sevenn.calculator import SevenNetCalculator

    atoms = silicon2()
    energy, forces = sevennet.energy_forces(atoms)
    ref = atoms.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.calc = SevenNetCalculator("7net-0", device="cpu")
    assert abs(energy - ref.get_potential_energy()) < 1e-4
    np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-4)


def test_sevennet_hessian_float32(sevennet):
    atoms = silicon2()
    h = sevennet.hessian(atoms)
    scale = np.abs(h).max()
    np.testing.assert_allclose(h, h.T, atol=1e-5 * scale)
    assert sum_rule(h, len(atoms)) < 1e-5 * scale
    # float32 forces: h = 3e-3 balances truncation against round-off (~5e-4 eV/A^2 here).
    np.testing.assert_allclose(h, fd_rows(sevennet, atoms, range(6), 3e-3), atol=5e-4 * scale)
    sevennet.hessian_mode = "loop"
    try:
        np.testing.assert_allclose(sevennet.hessian(atoms, [1, 4]), h[[1, 4]], atol=1e-5 * scale)
    finally:
        sevennet.hessian_mode = "auto"


@pytest.mark.filterwarnings("ignore")  # SevenNetCalculator: no tensor product accelerator on CPU
def test_sevennet_stress(sevennet):
    from sevenn.calculator import SevenNetCalculator

    atoms = silicon2()
    stress = sevennet.stress(atoms)
    ref = atoms.copy()
    ref.calc = SevenNetCalculator("7net-0", device="cpu")
    np.testing.assert_allclose(stress, ref.get_stress(), atol=1e-6)
    # float32 energies: strain step 1e-3 balances truncation against round-off (~2e-5 eV/A^3 here)
    fd = fd_stress(lambda a: sevennet.energy_forces(a)[0], atoms, 1e-3)
    np.testing.assert_allclose(stress, fd, atol=1e-3 * np.abs(stress).max())


def test_sevennet_metadata_and_float64_refused(sevennet):
    from hessdistill.teachers.sevennet import SevenNetTeacher

    assert {"H", "O", "Si", "Cu"} <= sevennet.elements and "Am" not in sevennet.elements
    with pytest.raises(ConfigError, match="float32"):
        SevenNetTeacher(dtype="float64")


# ---------------------------------------------------------------------------------------------------- CHGNet
@pytest.fixture(scope="module")
def chgnet():
    pytest.importorskip("chgnet")
    from hessdistill.teachers import load_teacher

    return load_teacher("chgnet")  # float64 by default


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # inside CHGNetCalculator
def test_chgnet_forces_match_chgnet_calculator(chgnet):
    from chgnet.model.dynamics import CHGNetCalculator

    atoms = silicon2()
    energy, forces = chgnet.energy_forces(atoms)
    ref = atoms.copy()
    ref.calc = CHGNetCalculator(use_device="cpu")  # its own float32 model
    assert abs(energy - ref.get_potential_energy()) < 1e-4
    np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-4)


def test_chgnet_hessian(chgnet):
    atoms = silicon2()
    h = chgnet.hessian(atoms)
    scale = np.abs(h).max()
    np.testing.assert_allclose(h, h.T, atol=1e-10 * scale)
    assert sum_rule(h, len(atoms)) < 1e-10 * scale
    # Rough surface: h = 1e-3 is off by ~1e-2 relative; h = 1e-4 in float64 agrees to ~1e-4.
    np.testing.assert_allclose(h, fd_rows(chgnet, atoms, range(6), 1e-4), atol=1e-3 * scale)
    chgnet.hessian_mode = "loop"
    try:
        np.testing.assert_allclose(chgnet.hessian(atoms, [5, 0]), h[[5, 0]], atol=1e-10 * scale)
    finally:
        chgnet.hessian_mode = "auto"


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # inside CHGNetCalculator
def test_chgnet_stress(chgnet):
    from chgnet.model.dynamics import CHGNetCalculator

    atoms = silicon2()
    stress = chgnet.stress(atoms)
    ref = atoms.copy()
    ref.calc = CHGNetCalculator(use_device="cpu")  # its own float32 model; GPa converted to eV/A^3
    np.testing.assert_allclose(stress, ref.get_stress(), atol=1e-6)
    fd = fd_stress(lambda a: chgnet.energy_forces(a)[0], atoms, 1e-5)  # float64: a small step works here
    np.testing.assert_allclose(stress, fd, atol=1e-5 * np.abs(stress).max())
    assert np.array_equal(chgnet.label(atoms, rows=[0]).stress, stress)


def test_chgnet_needs_a_cell(chgnet):
    with pytest.raises(StructureError, match="cell"):
        chgnet.energy_forces(molecule("H2O"))


# ------------------------------------------------------------------------------- ASE calculator (finite diff.)
def emt_cluster():
    a = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.2, 0], [1.25, 0.7, 2.0]])
    a.rattle(0.05, seed=7)
    return a


def energy_second_differences(calc, atoms, h):
    """Independent reference: H_kl from central second differences of the energy alone."""
    x0 = atoms.positions.reshape(-1).copy()
    a = atoms.copy()
    a.calc = calc

    def e(dx):
        a.set_positions((x0 + dx).reshape(-1, 3))
        return a.get_potential_energy()

    n3 = len(x0)
    out = np.zeros((n3, n3))
    for k in range(n3):
        for m in range(k, n3):
            dk, dm = np.eye(n3)[k] * h, np.eye(n3)[m] * h
            out[k, m] = out[m, k] = (e(dk + dm) - e(dk - dm) - e(dm - dk) + e(-dk - dm)) / (4 * h * h)
    return out


def test_ase_emt_finite_difference_hessian():
    from ase.calculators.emt import EMT

    from hessdistill.teachers import load_teacher
    from hessdistill.teachers.ase_fd import ASECalculatorTeacher

    teacher = load_teacher("ase:ase.calculators.emt:EMT")
    assert isinstance(teacher, ASECalculatorTeacher) and teacher.elements is None
    atoms = emt_cluster()
    with pytest.warns(UserWarning, match="finite differences"):
        h = teacher.hessian(atoms)
    np.testing.assert_array_equal(h, h.T)
    ref = energy_second_differences(EMT(), atoms, 2e-3)
    np.testing.assert_allclose(h, ref, atol=1e-3 * np.abs(ref).max())
    assert sum_rule(h, len(atoms)) < 1e-4 * np.abs(h).max()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per teacher
        rows = teacher.hessian(atoms, [3, 10])
    np.testing.assert_allclose(rows, h[[3, 10]], atol=1e-5 * np.abs(h).max())
    energy, forces = teacher.energy_forces(atoms)
    np.testing.assert_allclose(forces, fd_rows_energy(EMT(), atoms), atol=1e-6)


def fd_rows_energy(calc, atoms, eps=1e-5):
    a = atoms.copy()
    a.calc = calc
    x0 = atoms.positions.copy()
    out = np.zeros_like(x0)
    for i in range(len(a)):
        for c in range(3):
            for s in (1, -1):
                x = x0.copy()
                x[i, c] += s * eps
                a.set_positions(x)
                out[i, c] -= s * a.get_potential_energy() / (2 * eps)
    return out


def test_ase_teacher_stress_where_the_calculator_has_it():
    from ase.calculators.emt import EMT
    from ase.calculators.lj import LennardJones

    from hessdistill.teachers.ase_fd import ASECalculatorTeacher

    atoms = bulk("Cu", cubic=True)
    atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    teacher = ASECalculatorTeacher(EMT())
    assert teacher.has_stress
    stress = teacher.stress(atoms)
    np.testing.assert_allclose(stress, fd_stress(lambda a: teacher.energy_forces(a)[0], atoms, 1e-5), atol=1e-7)
    np.testing.assert_array_equal(teacher.label(atoms, with_hessian=False).stress, stress)
    with pytest.raises(StructureError, match="periodic in all three"):
        teacher.stress(emt_cluster())

    class NoStress(LennardJones):
        implemented_properties = ["energy", "forces"]

    plain = ASECalculatorTeacher(NoStress())
    assert not plain.has_stress and plain.label(atoms, with_hessian=False).stress is None
    with pytest.raises(ConfigError, match="gives no stress"):
        plain.stress(atoms)


def test_ase_teacher_step_and_elements():
    from ase.calculators.emt import EMT

    from hessdistill.teachers.ase_fd import ASECalculatorTeacher

    with pytest.raises(ConfigError, match="delta"):
        ASECalculatorTeacher(EMT(), delta=0.0)
    teacher = ASECalculatorTeacher(EMT(), delta=5e-4, elements=["Cu", "Al"])
    with pytest.raises(UnsupportedElementError, match="Fe"):
        teacher.label(bulk("Fe"))


def test_ani_stress_equals_finite_differences_of_the_energy(ani):
    """ANI-1x stress of a periodic water box (autograd strain derivative) against ASE's central differences of the
    teacher's energy under strain; the teacher's labels of the box carry it."""
    atoms = water_box()
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.03], [0.0, 0.0, 1.0]]),
                   scale_atoms=True)  # a sheared cell: every Voigt component matters
    stress = ani.stress(atoms)

    def strained_energy(a, b, h):
        eps = np.zeros((3, 3))
        eps[a, b] += h / 2
        eps[b, a] += h / 2  # symmetric strain; h on the diagonal
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        return ani.energy_forces(strained)[0]

    h = 1e-5
    reference = [(strained_energy(a, b, h) - strained_energy(a, b, -h)) / (2 * h) / atoms.get_volume()
                 for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))]  # ASE's Voigt order
    assert np.abs(stress).max() > 1e-3  # a real stress, not zeros on both sides
    np.testing.assert_allclose(stress, reference, atol=1e-7)
    label = ani.label(atoms, rows=[0])
    np.testing.assert_allclose(label.stress, stress, atol=1e-12)
