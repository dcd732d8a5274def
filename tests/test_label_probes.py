"""Hessian labels along random probes: the teacher's stored H v against a finite-difference Hessian, the probes
themselves, and a label run that refuses to mix probe kinds."""

import numpy as np
import pytest

from conftest import cluster, fd_rows
from hessdistill.errors import InputError, LabelStoreError
from hessdistill.label import label_structures, load_labels
from hessdistill.label.probes import choose_probes
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher


@pytest.fixture
def structures():
    return split(rattled(cluster(5, seed=2), 6, 0.05, seed=1))


def test_stored_products_equal_finite_difference_hessian_times_probe(structures, tmp_path):
    teacher = MorseTeacher()
    label_structures(structures, teacher, tmp_path / "p.h5", rows=4, probes="random", progress=False)
    items = load_labels(tmp_path / "p.h5")
    for atoms, it in zip(structures, items, strict=True):
        assert it.probes.shape == it.hvp.shape == (4, 5, 3)
        assert it.hessian_rows.shape == (0,)
        full = fd_rows(teacher, atoms, range(15), 1e-5)  # central differences of the forces, 30 force calls
        expected = it.probes.reshape(4, -1) @ full.T
        np.testing.assert_allclose(it.hvp.reshape(4, -1), expected, atol=1e-6 * np.abs(expected).max())
        # unit length, no net translation, and a direction not aligned with one coordinate
        np.testing.assert_allclose(np.linalg.norm(it.probes.reshape(4, -1), axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(it.probes.sum(axis=1), 0.0, atol=1e-12)
        assert np.abs(it.probes).reshape(4, -1).max(axis=1).max() < 0.9


def test_probes_are_reproducible_and_differ_between_structures():
    np.testing.assert_array_equal(choose_probes(5, 3, index=2, seed=7), choose_probes(5, 3, index=2, seed=7))
    assert not np.allclose(choose_probes(5, 3, index=2, seed=7), choose_probes(5, 3, index=3, seed=7))
    assert not np.allclose(choose_probes(5, 3, index=2, seed=7), choose_probes(5, 3, index=2, seed=8))


def test_probe_pairs_of_rows_are_unit_probes(structures, tmp_path):
    label_structures(structures, MorseTeacher(), tmp_path / "r.h5", rows=3, progress=False)
    for it in load_labels(tmp_path / "r.h5"):
        probes, hvp = it.probe_pairs()
        assert it.probes is None
        np.testing.assert_array_equal(np.argmax(probes, axis=1), it.hessian_rows)
        np.testing.assert_array_equal(probes.sum(axis=1), 1.0)
        np.testing.assert_array_equal(hvp, it.hessian)


def test_resume_refuses_another_probe_kind(structures, tmp_path):
    store = tmp_path / "k.h5"
    label_structures(structures, MorseTeacher(), store, rows=2, shard=(0, 2), progress=False)
    with pytest.raises(LabelStoreError, match="probes of kind rows, not random"):
        label_structures(structures, MorseTeacher(), store, rows=2, shard=(0, 2), probes="random", progress=False)
    # the other shard's parts, of the other kind, complete the set: the merge refuses to mix them
    with pytest.raises(LabelStoreError, match="probe kinds"):
        label_structures(structures, MorseTeacher(), store, rows=2, shard=(1, 2), probes="random", progress=False)
    res = label_structures(structures, MorseTeacher(), store, rows=2, probes="random", relabel=True,
                           progress=False)
    assert res["merged"] and res["labelled"] == len(structures)
    import h5py

    with h5py.File(store, "r") as f:
        assert f.attrs["hessian_probes"] == "random"
    with pytest.raises(InputError, match="rows, random, modes"):
        label_structures(structures, MorseTeacher(), tmp_path / "x.h5", probes="eigen", progress=False)


def test_finite_difference_teacher_products_equal_autograd_ones(structures):
    """An ASE calculator teacher takes H v as a central difference of its forces along v (2 calls per probe)."""
    from hessdistill.teachers.ase_fd import ASECalculatorTeacher

    morse = MorseTeacher()
    fd = ASECalculatorTeacher(morse.as_calculator(), delta=1e-4)
    probes = choose_probes(5, 3, index=0, seed=0)
    exact = morse.hessian_vector_products(structures[0], probes)
    np.testing.assert_allclose(fd.hessian_vector_products(structures[0], probes), exact,
                               atol=1e-6 * np.abs(exact).max())


def test_cli_labels_random_probes(structures, tmp_path):
    import subprocess
    import sys

    from hessdistill.sample import read_structures, write_structures

    write_structures(structures, tmp_path / "s.extxyz")
    subprocess.run([sys.executable, "-m", "hessdistill", "label", str(tmp_path / "s.extxyz"), "--teacher", "morse",
                    "-o", str(tmp_path / "cli.h5"), "--rows", "3", "--hessian-probes", "random", "--seed", "4"],
                   check=True, capture_output=True)
    label_structures(read_structures(tmp_path / "s.extxyz"), MorseTeacher(), tmp_path / "lib.h5", rows=3,
                     probes="random", seed=4, progress=False)
    for a, b in zip(load_labels(tmp_path / "cli.h5"), load_labels(tmp_path / "lib.h5"), strict=True):
        assert a.probes.shape == (3, 5, 3)
        np.testing.assert_array_equal(a.probes, b.probes)
        np.testing.assert_allclose(a.hvp, b.hvp, rtol=1e-12, atol=1e-12)


def test_report_compares_the_stored_products(structures, tmp_path):
    """The fidelity report's Hessian errors of a probe store are along its probes: zero (to the finite-difference
    error) for the teacher itself, not for another potential."""
    from hessdistill.report.labels import label_errors
    from hessdistill.teachers.analytic import LennardJonesTeacher

    label_structures(structures, MorseTeacher(), tmp_path / "p.h5", rows=3, probes="random", progress=False)
    items = load_labels(tmp_path / "p.h5")
    same, _ = label_errors(items, MorseTeacher().as_calculator(), progress=False)
    other, _ = label_errors(items, LennardJonesTeacher().as_calculator(), progress=False)
    assert same["hessian_mae"] < 1e-5 * same["teacher_mean_abs_hessian"]
    assert other["hessian_mae"] > 0.1 * other["teacher_mean_abs_hessian"]


def test_mode_probes_are_the_minimums_soft_modes_rotated_onto_each_structure(tmp_path):
    """At a rotated copy of the minimum the probes are the minimum's softest modes rotated alike, and each is an
    eigenvector of the teacher's Hessian there (equal masses: H v = c v); rattled copies get probes too; resume
    refuses the modes of another minimum."""
    from scipy.spatial.transform import Rotation

    from hessdistill.label.probes import minimum_modes
    from hessdistill.sample.modes import relax

    teacher = MorseTeacher()
    minimum = relax(cluster(5, seed=2), teacher.as_calculator(), fmax=1e-6)
    rot = Rotation.random(random_state=3).as_matrix()
    turned = minimum.copy()
    turned.positions = (minimum.positions - minimum.positions.mean(axis=0)) @ rot + 2.0
    structures = split([turned] + rattled(turned, 5, 0.05, seed=1))
    label_structures(structures, teacher, tmp_path / "m.h5", rows=3, probes="modes", minimum=minimum,
                     progress=False)
    items = load_labels(tmp_path / "m.h5")
    modes = minimum_modes(minimum, teacher)
    np.testing.assert_allclose(items[0].probes, modes[:3] @ rot, atol=1e-10)
    c = np.einsum("kna,kna->k", items[0].probes, items[0].hvp)
    np.testing.assert_allclose(items[0].hvp, c[:, None, None] * items[0].probes, atol=1e-6 * np.abs(c).max())
    assert np.all(np.diff(c) >= 0) and c[0] > 0  # softest first, all vibrations
    full = fd_rows(teacher, structures[2], range(15), 1e-5)
    np.testing.assert_allclose(items[2].hvp.reshape(3, -1), items[2].probes.reshape(3, -1) @ full.T, atol=1e-5)
    other = relax(cluster(5, seed=2), teacher.as_calculator(), fmax=1e-2)
    with pytest.raises(LabelStoreError, match="another minimum"):
        label_structures(structures, teacher, tmp_path / "m.h5", rows=3, probes="modes", minimum=other,
                         progress=False)
    with pytest.raises(InputError, match="need the minimum"):
        label_structures(structures, teacher, tmp_path / "x.h5", rows=3, probes="modes", progress=False)
    with pytest.raises(InputError, match="does not hold the minimum's atoms"):
        label_structures(rattled(cluster(6, seed=1), 3, 0.05, seed=0), teacher, tmp_path / "y.h5", rows=3,
                         probes="modes", minimum=minimum, progress=False)


def test_cli_labels_mode_probes(structures, tmp_path):
    import subprocess
    import sys

    import h5py

    from hessdistill.sample import write_structures

    write_structures(structures, tmp_path / "s.extxyz")
    write_structures([cluster(5, seed=2)], tmp_path / "start.extxyz")
    base = [sys.executable, "-m", "hessdistill", "label", str(tmp_path / "s.extxyz"), "--teacher", "morse", "-o",
            str(tmp_path / "cli.h5"), "--rows", "2"]
    subprocess.run(base + ["--hessian-probes", "modes", "--minimum", str(tmp_path / "start.extxyz")], check=True,
                   capture_output=True)
    with h5py.File(tmp_path / "cli.h5", "r") as f:
        assert f.attrs["hessian_probes"] == "modes"
    for it in load_labels(tmp_path / "cli.h5"):
        assert it.probes.shape == (2, 5, 3)
        np.testing.assert_allclose(np.linalg.norm(it.probes.reshape(2, -1), axis=1), 1.0, atol=1e-12)
    proc = subprocess.run(base + ["--minimum", str(tmp_path / "start.extxyz")], capture_output=True, text=True)
    assert proc.returncode != 0 and "need the minimum" in proc.stderr
