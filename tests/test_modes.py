"""Normal modes from a teacher's Hessian and normal-mode sampling (hessdistill.sample.modes, ``sample --normal-modes``).

References: the closed-form Morse diatomic frequency, ASE's own finite-difference vibrational analysis of the
teacher's calculator, exact conservation of the centre of mass and zero angular displacement, equipartition
(kT / 2 per sampled mode) for the sampled harmonic energy and, at low temperature, the teacher's own energy, and
the teacher's energy for the rejection of torn structures.
"""

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import molecule

from hessdistill.errors import InputError
from hessdistill.sample.modes import normal_mode_samples, normal_modes, relax
from hessdistill.sample import read_structures, share_out
from hessdistill.teachers import load_teacher
from hessdistill.teachers.analytic import pair_hessian


@pytest.fixture(scope="module")
def morse():
    return load_teacher("morse")


@pytest.fixture(scope="module")
def cluster(morse):
    """A relaxed 5-atom Morse cluster (a bipyramid; no symmetry makes any mode vanish)."""
    start = Atoms("C5", positions=[[0, 0, 0], [1.5, 0, 0], [0.75, 1.3, 0], [0.75, 0.43, 1.22], [0.75, 0.43, -1.22]])
    start.rattle(0.05, seed=1)
    return relax(start, morse.as_calculator(), fmax=1e-6)


def test_diatomic_frequency_is_the_closed_form(morse):
    atoms = Atoms("C2", positions=[[0, 0, 0], [morse.r0, 0, 0]])
    modes = normal_modes(atoms, morse.hessian(atoms))
    assert modes.frequencies_cm.shape == (1,)  # 6 - 1: a linear molecule has two rotations
    k = 2.0 * morse.D * morse.a**2  # phi''(r0), eV/A^2
    mu = atoms.get_masses()[0] / 2.0
    expected = np.sqrt(k / mu * units._e / units._amu * 1e20) / (2 * np.pi * units._c * 100.0)
    assert modes.frequencies_cm[0] == pytest.approx(expected, rel=1e-10)


def test_relaxed_cluster_is_a_minimum_with_3n_minus_6_modes(morse, cluster):
    assert np.abs(morse.energy_forces(cluster)[1]).max() < 1e-5
    modes = normal_modes(cluster, pair_hessian(morse, cluster.positions))  # closed-form Hessian
    assert len(modes.eigenvalues) == 3 * len(cluster) - 6
    assert (modes.frequencies_cm > 50).all()
    # same modes from the teacher's autograd Hessian
    np.testing.assert_allclose(normal_modes(cluster, morse.hessian(cluster)).eigenvalues, modes.eigenvalues,
                               rtol=1e-9)


def test_frequencies_equal_ase_finite_difference_vibrations(tmp_path):
    pytest.importorskip("torchani")
    from ase.vibrations import Vibrations

    ani = load_teacher("ani1x")
    minimum = relax(molecule("CH3CH2OH"), ani.as_calculator(), fmax=1e-4)
    # The relaxed heavy atoms lie on the mirror plane z = 0 up to rounding noise (~1e-17 A); whether the mirror
    # images also come out bit-identical depends on the machine's arithmetic. Breaking that in-plane with 1e-12 A
    # fixes the case on every machine: it is the one where torchani's angular terms lost the out-of-plane Hessian.
    minimum.positions[:, :2] += 1e-12 * np.random.default_rng(0).standard_normal((len(minimum), 2))
    hessian = ani.hessian(minimum)
    ours = normal_modes(minimum, hessian).frequencies_cm
    atoms = minimum.copy()
    atoms.calc = ani.as_calculator()
    # a small step: ANI-1x's CELU makes its Hessian slightly non-smooth (1e-4 A steps are off by 0.02 eV/A^2 here)
    vib = Vibrations(atoms, name=str(tmp_path / "vib"), delta=1e-6, nfree=2)
    vib.run()
    # the Hessian itself first: float64 central differences at 1e-6 A agree to ~1e-7 eV/A^2 (entries up to 62)
    np.testing.assert_allclose(hessian, vib.get_vibrations().get_hessian_2d(), atol=1e-5)
    theirs = np.sort(np.real(vib.get_frequencies()))[6:]  # ASE keeps the six rigid-body ~0 frequencies
    assert len(ours) == len(theirs) == 21
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-3)


def test_samples_keep_centre_of_mass_and_orientation(morse, cluster):
    modes = normal_modes(cluster, morse.hessian(cluster))
    frames = normal_mode_samples(cluster, modes, 20, 300.0, seed=3)
    m = cluster.get_masses()
    for f in frames:
        d = f.positions - cluster.positions
        assert np.abs(d).max() > 1e-3
        np.testing.assert_allclose(m @ d, 0.0, atol=1e-12)  # no translation
        r = cluster.positions - cluster.get_center_of_mass()
        np.testing.assert_allclose((m[:, None] * np.cross(r, d)).sum(axis=0), 0.0, atol=1e-12)  # no rotation


def test_equipartition_of_sampled_energy(morse, cluster):
    h = morse.hessian(cluster)
    modes = normal_modes(cluster, h)
    t = 50.0
    frames = normal_mode_samples(cluster, modes, 4000, t, seed=0)
    d = np.array([(f.positions - cluster.positions).reshape(-1) for f in frames])
    harmonic = 0.5 * np.einsum("si,ij,sj->s", d, h, d)
    expected = len(modes.eigenvalues) * 0.5 * units.kB * t
    # mean of a sum of 9 chi^2 terms: relative standard error sqrt(2 / 9 / 4000) ~ 0.7 %
    assert harmonic.mean() == pytest.approx(expected, rel=0.03)
    e0 = morse.energy_forces(cluster)[0]
    real = np.array([morse.energy_forces(f)[0] for f in frames[:400]]) - e0
    assert real.mean() == pytest.approx(harmonic[:400].mean(), rel=0.05)  # near-harmonic at 50 K


def test_teacher_energy_rejects_torn_structures(morse, cluster):
    """Straight-line modes at 3000 K push atoms into each other (eV above the minimum); with the teacher's energy
    such proposals are rejected, while at 50 K (near-harmonic) nearly every proposal is kept and equipartition
    holds."""
    modes = normal_modes(cluster, morse.hessian(cluster))
    e0 = morse.energy_forces(cluster)[0]

    def energy(atoms):
        return morse.energy_forces(atoms)[0]

    def excess(frames):
        return np.array([energy(f) - e0 for f in frames])

    hot = len(modes.eigenvalues) * 0.5 * units.kB * 3000.0  # equipartition of the harmonic energy, eV
    raw = excess(normal_mode_samples(cluster, modes, 200, 3000.0, seed=0))
    kept = excess(normal_mode_samples(cluster, modes, 200, 3000.0, seed=0, energy=energy))
    assert raw.max() > 5 * hot  # the failure being fixed
    assert kept.max() < 3 * hot and kept.mean() < raw.mean()
    cold = normal_mode_samples(cluster, modes, 400, 50.0, seed=1, energy=energy, max_tries=2)  # >= 50% kept
    d = np.array([(f.positions - cluster.positions).reshape(-1) for f in cold])
    harmonic = 0.5 * np.einsum("si,ij,sj->s", d, morse.hessian(cluster), d)
    assert harmonic.mean() == pytest.approx(len(modes.eigenvalues) * 0.5 * units.kB * 50.0, rel=0.1)
    with pytest.raises(InputError, match="accepted only"):
        normal_mode_samples(cluster, modes, 50, 30000.0, seed=0, energy=energy, max_tries=1)


def test_samples_are_seeded(morse, cluster):
    modes = normal_modes(cluster, morse.hessian(cluster))
    a = normal_mode_samples(cluster, modes, 3, 300.0, seed=7)
    b = normal_mode_samples(cluster, modes, 3, 300.0, seed=7)
    c = normal_mode_samples(cluster, modes, 3, 300.0, seed=8)
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(a, b))
    assert not np.array_equal(a[0].positions, c[0].positions)


def test_periodic_cell_keeps_three_translations_only():
    from ase.build import bulk

    lj = load_teacher("lj", cutoff=6.0)
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    modes = normal_modes(atoms, lj.hessian(atoms))
    assert len(modes.eigenvalues) == 3 * len(atoms) - 3


def test_bad_input():
    atoms = Atoms("C2", positions=[[0, 0, 0], [1.5, 0, 0]])
    with pytest.raises(InputError, match=r"full Hessian, shape \(6, 6\)"):
        normal_modes(atoms, np.zeros((3, 6)))
    with pytest.raises(InputError, match="non-finite"):
        normal_modes(atoms, np.full((6, 6), np.nan))
    modes = normal_modes(atoms, load_teacher("morse").hessian(atoms))
    with pytest.raises(InputError, match="temperature > 0"):
        normal_mode_samples(atoms, modes, 2, 0.0)


def test_share_out():
    assert share_out(10, 3) == [4, 3, 3]
    assert share_out(2, 3) == [1, 1, 0]
    assert sum(share_out(0, 2)) == 0


def test_cli_samples_modes_and_md_at_several_temperatures(tmp_path, capsys):
    from hessdistill.cli import main

    start = tmp_path / "start.xyz"
    Atoms("C4", positions=[[0, 0, 0], [1.5, 0, 0], [0.75, 1.3, 0], [0.75, 0.43, 1.22]]).write(start)
    out = tmp_path / "s.extxyz"
    main(["sample", "--start", str(start), "--teacher", "morse", "--md", "4", "--interval", "2",
          "--normal-modes", "6", "--temperature", "100,300", "-o", str(out)])
    frames = read_structures(out)
    assert len(frames) == 10
    assert {f.info["split"] for f in frames} == {"train", "val", "test"}
    with pytest.raises(SystemExit):
        main(["sample", "--start", str(start), "--teacher", "morse", "--md", "2", "--temperature", "hot",
              "-o", str(out)])
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("hessdistill sample: error: argument --temperature: expected a temperature > 0 K")
