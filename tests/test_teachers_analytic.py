"""Teacher Hessians against exact references: closed-form pair-potential Hessians, finite differences, sum rules;
the TorchScript-file teacher; the symmetrized Jacobian path for non-conservative forces; periodic stress by the
strain derivative against finite differences of the energy under strain."""

import sys

import numpy as np
import pytest
import torch
from ase.build import bulk

from conftest import cluster, fd_stress
from hessdistill.teachers import load_teacher
from hessdistill.teachers.analytic import LennardJonesTeacher, MorseTeacher, pair_hessian
from hessdistill.errors import ConfigError, StructureError
from hessdistill.teachers.base import AutogradTeacher


def sum_rule(h, n):
    """Translational invariance: every row summed over the x (or y, z) coordinates of all atoms is zero."""
    return np.abs(h.reshape(-1, n, 3).sum(axis=1)).max()


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_morse_hessian_equals_closed_form(mode):
    atoms = cluster(6, seed=1)
    teacher = MorseTeacher(hessian_mode=mode, chunk_size=5)
    h = teacher.hessian(atoms)
    ref = pair_hessian(teacher, atoms.positions)
    np.testing.assert_allclose(h, ref, atol=1e-11)
    rows = [2, 7, 11]
    np.testing.assert_allclose(teacher.hessian(atoms, rows), ref[rows], atol=1e-11)
    assert sum_rule(h, len(atoms)) < 1e-11


def test_lj_periodic_hessian_symmetric_sum_rule_and_finite_differences():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.rattle(0.1, seed=2)
    teacher = LennardJonesTeacher(cutoff=6.0)
    h = teacher.hessian(atoms)
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    assert sum_rule(h, len(atoms)) < 1e-12
    eps = 1e-5
    for k in (0, 5, 10):
        a, c = divmod(k, 3)
        p, m = atoms.copy(), atoms.copy()
        p.positions[a, c] += eps
        m.positions[a, c] -= eps
        fd = -(teacher.energy_forces(p)[1] - teacher.energy_forces(m)[1]).reshape(-1) / (2 * eps)
        np.testing.assert_allclose(h[k], fd, atol=1e-7)


@pytest.mark.parametrize("teacher", [LennardJonesTeacher(cutoff=6.0), MorseTeacher(D=0.01, a=1.2, r0=3.7, cutoff=6.0)],
                         ids=["lj", "morse"])
def test_pair_stress_equals_energy_under_strain(teacher):
    """Stress of a rattled, sheared fcc cell (all six components non-zero) against central differences of the
    energy; it is the label of periodic structures, and ASE's NPT sees it through the teacher's calculator."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0.01, 0.02, 0], [0.02, -0.01, 0.01], [0, 0.01, 0]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=2)
    stress = teacher.stress(atoms)
    assert stress.shape == (6,) and np.abs(stress).min() > 1e-5
    ref = fd_stress(lambda a: teacher.energy_forces(a)[0], atoms, 1e-5)
    np.testing.assert_allclose(stress, ref, atol=1e-9 * np.abs(ref).max() + 1e-12, rtol=1e-6)
    np.testing.assert_array_equal(teacher.label(atoms, rows=[0]).stress, stress)
    calc_atoms = atoms.copy()
    calc_atoms.calc = teacher.as_calculator()
    np.testing.assert_array_equal(calc_atoms.get_stress(), stress)


def test_no_stress_without_a_periodic_cell_or_a_teacher_that_gives_one(tmp_path):
    molecule_like = cluster(4, seed=1)
    assert MorseTeacher().label(molecule_like).stress is None  # a molecule: no stress label
    with pytest.raises(StructureError, match="periodic in all three"):
        MorseTeacher(cutoff=5.0).stress(molecule_like)
    path = tmp_path / "lj.pt"
    torch.jit.save(torch.jit.script(_LJModule()), str(path))
    ts = load_teacher(f"torchscript:{path}")
    assert not ts.has_stress and ts.label(cluster(3, spacing=3.6)).stress is None
    with pytest.raises(ConfigError, match="gives no stress"):
        ts.stress(bulk("Ar", "fcc", a=5.26))


class _LJModule(torch.nn.Module):
    """A user's TorchScript energy model: uncut LJ over all pairs (eV, A)."""

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor):
        n = positions.shape[0]
        ij = torch.triu_indices(n, n, 1)
        r = torch.linalg.norm(positions[ij[1]] - positions[ij[0]], dim=-1)
        s6 = (3.4 / r) ** 6
        return (4 * 0.0104 * (s6 * s6 - s6)).sum()


def test_torchscript_teacher_equals_python_teacher(tmp_path):
    path = tmp_path / "lj.pt"
    torch.jit.save(torch.jit.script(_LJModule()), str(path))
    atoms = cluster(5, seed=4, spacing=3.6)
    ts = load_teacher(f"torchscript:{path}")
    ref = LennardJonesTeacher()
    e1, f1 = ts.energy_forces(atoms)
    e2, f2 = ref.energy_forces(atoms)
    assert abs(e1 - e2) < 1e-12
    np.testing.assert_allclose(f1, f2, atol=1e-12)
    np.testing.assert_allclose(ts.hessian(atoms), pair_hessian(ref, atoms.positions), atol=1e-12)


class _CurlTeacher(AutogradTeacher):
    """Morse forces plus a non-conservative swirl: its Hessian must be the symmetrized -Jacobian."""

    name = "curl"
    conservative = False

    def __init__(self):
        super().__init__()
        self.morse = MorseTeacher()

    def energy_function(self, atoms):
        return self.morse.energy_function(atoms)

    def forces_function(self, atoms):
        energy_fn, pos = self.energy_function(atoms)

        def forces_fn(x):
            x = x if x.requires_grad else x.requires_grad_(True)
            f = -torch.autograd.grad(energy_fn(x), x, create_graph=True)[0]
            swirl = 0.3 * torch.stack([-x[:, 1], x[:, 0], torch.zeros_like(x[:, 0])], dim=1)
            return f + swirl

        return forces_fn, pos


def test_non_conservative_teacher_gets_symmetrized_jacobian():
    atoms = cluster(4, seed=5)
    teacher = _CurlTeacher()
    forces_fn, pos = teacher.forces_function(atoms)
    jac = torch.autograd.functional.jacobian(lambda x: forces_fn(x.reshape(-1, 3)).reshape(-1), pos.reshape(-1))
    jac = jac.numpy()
    assert np.abs(jac - jac.T).max() > 0.1  # the swirl really breaks symmetry
    h = teacher.hessian(atoms)
    np.testing.assert_allclose(h, -0.5 * (jac + jac.T), atol=1e-10)
    np.testing.assert_allclose(teacher.hessian(atoms, [1, 4]), h[[1, 4]], atol=1e-10)
    assert np.abs(h - h.T).max() < 1e-12


def _register(tmp_path, monkeypatch, entry_points):
    """A package installed under ``tmp_path`` (a dist-info folder, as pip leaves it) registering ``entry_points``
    in the group hessdistill.teachers, and its module ``third_party_teachers`` with a teacher class."""
    (tmp_path / "third_party_teachers.py").write_text(
        "from hessdistill.teachers.analytic import MorseTeacher\n\n\n"
        "class DoubleMorse(MorseTeacher):\n"
        "    name = 'double-morse'\n\n"
        "    def __init__(self, D=0.5, **kwargs):\n"
        "        super().__init__(D=2 * D, **kwargs)\n"
    )
    info = tmp_path / "third_party_teachers-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-teachers\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hessdistill.teachers]\n" + "".join(f"{k} = {v}\n" for k, v in
                                                                                 entry_points.items()))
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import caches


def test_third_party_teachers_register_by_entry_point(tmp_path, monkeypatch):
    _register(tmp_path, monkeypatch, {"double-morse": "third_party_teachers:DoubleMorse",
                                      "absent": "not_installed_pkg.teachers:Teacher",
                                      "misnamed": "third_party_teachers:NoSuchTeacher"})
    atoms = cluster(5, seed=3)
    teacher = load_teacher("double-morse", D=0.3)
    assert type(teacher).__name__ == "DoubleMorse"
    e, f = teacher.energy_forces(atoms)
    e_ref, f_ref = MorseTeacher(D=0.6).energy_forces(atoms)
    assert e == pytest.approx(e_ref, rel=1e-14) and np.allclose(f, f_ref, rtol=0, atol=1e-14)
    assert e != pytest.approx(MorseTeacher(D=0.3).energy_forces(atoms)[0])
    with pytest.raises(ConfigError, match="unknown teacher 'nope'; choose one of ani1x, .*lj, .*double-morse"):
        load_teacher("nope")
    with pytest.raises(ConfigError, match="teacher absent needs a package that is not installed .*"
                                          "install the package that provides not_installed_pkg.teachers"):
        load_teacher("absent")
    with pytest.raises(ConfigError, match="third_party_teachers has no NoSuchTeacher"):
        load_teacher("misnamed")


def test_built_in_teachers_cannot_be_shadowed_and_keep_their_install_hints(tmp_path, monkeypatch):
    _register(tmp_path, monkeypatch, {"lj": "third_party_teachers:DoubleMorse",
                                      "morse": "hessdistill.teachers.analytic:MorseTeacher"})  # the same: no warning
    with pytest.warns(UserWarning, match="lj = third_party_teachers:DoubleMorse ignored: lj is the built-in") as got:
        teacher = load_teacher("lj")
    assert type(teacher) is LennardJonesTeacher and len(got) == 1
    # torchani missing (None in sys.modules makes its import fail): the error says what to install
    monkeypatch.setitem(sys.modules, "torchani", None)
    monkeypatch.delitem(sys.modules, "hessdistill.teachers.ani", raising=False)
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="pip install torchani==2.2.4") as err:
        load_teacher("ani1x")
    assert isinstance(err.value.__cause__, ImportError)
