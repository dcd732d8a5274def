"""Stress in training: the student's stress in the loss (strain derivative) equals the ASE calculator's (virial,
an independent path); the stress term is masked to labelled structures; strained sampling; training with the
stress term on an analytic periodic teacher follows the teacher's equation of state better than without it;
compiled loss and gradients with the stress term equal eager ones; the sample CLI's --strain."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import read

from conftest import assert_compiled_step_equals_eager, cluster, make_student
from hessdistill.distill import DistillConfig, Trainer
from hessdistill.distill.data import build_graphs, collate
from hessdistill.distill.loss import normalizers, predict, stress_loss, uses_stress
from hessdistill.engines.ase import StudentCalculator
from hessdistill.errors import InputError
from hessdistill.formats.torchscript import export_student
from hessdistill.label import label_structures
from hessdistill.label.store import LabeledStructure
from hessdistill.sample import rattled, split, strained
from hessdistill.teachers.analytic import LennardJonesTeacher
from hessdistill.units import EV_PER_A3_TO_GPA


def _item(atoms, stress=None):
    n = len(atoms)
    return LabeledStructure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, 0.0, np.zeros((n, 3)),
                            np.zeros(0, dtype=np.int64), np.zeros((0, 3 * n)), "train", 0, stress)


def _structures():
    """A triclinic, rattled Si cell, a free C cluster (no stress label) and a sheared, rattled diamond Si cell."""
    si = bulk("Si", "diamond", a=5.43)
    si.set_cell(si.cell.array @ (np.eye(3) + [[0.02, 0.01, 0], [0.01, -0.01, 0.03], [0, 0.03, 0.01]]), scale_atoms=True)
    si.rattle(0.08, seed=1)
    cubic = bulk("Si", cubic=True)
    cubic.rattle(0.05, seed=2)
    return [si, cluster(4, seed=3), cubic]


def test_loss_stress_equals_the_calculators(tmp_path):
    """predict's stress (strain derivative, the training graph) against StudentCalculator's (virial of the exported
    TorchScript student) on a mixed batch; the strain leaves energies and forces unchanged."""
    model = make_student("painn", type_names=("C", "Si"), cutoff=3.5)
    atoms = _structures()
    items = [_item(a, None if not a.pbc.all() else np.zeros(6)) for a in atoms]
    batch = collate(build_graphs(items, list(model.type_names), model.cutoff, torch.float64, "cpu"))
    energy, grad, _, stress = predict(model, batch, create_graph=True, stress=True)
    plain_energy, plain_grad, _, none = predict(model, batch, create_graph=False)
    assert none is None
    torch.testing.assert_close(energy, plain_energy, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, plain_grad, rtol=0, atol=1e-12)
    path = export_student(model, tmp_path / "student.pt")
    for b, a in enumerate(atoms):
        if not a.pbc.all():
            assert batch.stress_mask[b] == 0
            continue
        a.calc = StudentCalculator(path, device="cpu")
        ref = a.get_stress()
        assert np.abs(ref).max() > 1e-3
        np.testing.assert_allclose(stress[b].detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def test_stress_term_counts_only_labelled_structures():
    model = make_student("schnet", type_names=("C", "Si"), cutoff=3.5)
    atoms = _structures()
    target = np.array([0.01, -0.02, 0.03, 0.004, -0.005, 0.006])
    items = [_item(a, target if a.pbc.all() else None) for a in atoms]
    graphs = build_graphs(items, list(model.type_names), model.cutoff, torch.float64, "cpu")
    norm = normalizers(graphs, model)
    assert norm["stress"] == pytest.approx(np.mean(target**2))
    config = DistillConfig(stress_weight=2.0)
    assert uses_stress(config, norm) and not uses_stress(config.replace(stress_weight=0.0), norm)
    assert not uses_stress(config, normalizers(graphs[1:2], model))  # no stress label: no stress term
    batch = collate(graphs)
    stress = predict(model, batch, create_graph=False, stress=True)[3]
    periodic = [0, 2]
    expected = 2.0 * float(((stress[periodic] - torch.tensor(target)) ** 2).mean()) / norm["stress"]
    assert float(stress_loss(stress, batch, config, norm)) == pytest.approx(expected, rel=1e-12)
    lone = collate(graphs[1:2])  # a batch without labels contributes zero, not NaN
    assert float(stress_loss(predict(model, lone, False, stress=True)[3], lone, config, norm)) == 0.0


def test_strained_cells_are_seeded_and_bounded():
    start = bulk("Ar", "fcc", a=5.26, cubic=True)
    cells = strained(rattled(start, 20, 0.05, seed=0), 0.01, seed=3)
    again = strained(rattled(start, 20, 0.05, seed=0), 0.01, seed=3)
    assert all(np.array_equal(a.cell.array, b.cell.array) for a, b in zip(cells, again))
    ratio = np.array([a.get_volume() / start.get_volume() for a in cells])
    assert ratio.min() > 0.97 ** 1.01 and ratio.max() < 1.03 ** 1.01 and ratio.max() - ratio.min() > 0.03
    eps = [np.linalg.solve(start.cell.array, a.cell.array) - np.eye(3) for a in cells]
    assert all(np.allclose(e, e.T) for e in eps) and max(abs(e[0, 1]) for e in eps) > 1e-4  # shear is there
    frac = rattled(start, 1, 0.05, seed=0)[0].get_scaled_positions()
    np.testing.assert_allclose(cells[0].get_scaled_positions(), frac, atol=1e-12)  # atoms move with the cell
    with pytest.raises(InputError, match="periodic"):
        strained([cluster(3)], 0.01, seed=0)
    with pytest.raises(InputError, match="linear strain"):
        strained([start], -0.1, seed=0)


@pytest.fixture(scope="module")
def lj_crystal_labels(tmp_path_factory):
    """A compressed argon-like LJ fcc crystal (about 1 GPa), rattled and strained by up to +-3% in volume, plus
    two free tetrahedra without stress labels: labels with energies, forces, 2 Hessian rows and stress."""
    path = tmp_path_factory.mktemp("labels") / "lj.h5"
    start = bulk("Ar", "fcc", a=5.0, cubic=True)
    structures = strained(rattled(start, 30, 0.05, seed=0), 0.01, seed=0)
    tetrahedron = Atoms("Ar4", positions=2.7 * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / 2)
    structures += rattled(tetrahedron, 2, 0.05, seed=1)  # edges 3.8 A, near the LJ minimum
    label_structures(split(structures, (0.6, 0.2, 0.2)), LennardJonesTeacher(cutoff=6.0), path, rows=2,
                     progress=False)
    return path


@pytest.mark.slow
def test_compiled_step_with_stress_equals_eager(lj_crystal_labels, tmp_path):
    """The traced and compiled loss + parameter gradients with the stress term against eager autograd (float64),
    on batches mixing stress-labelled cells and clusters without stress; one compiled graph for all sizes."""
    config = DistillConfig(architecture="schnet", features=8, num_interactions=1, cutoff=5.0, dtype="float64",
                           hessian_rows=2, stress_weight=10.0, compile="off", device="cpu")
    trainer = Trainer(config, lj_crystal_labels, tmp_path / "c", progress=False)
    assert "stress" in trainer.norm
    train = trainer.graphs["train"]
    free = [g for g in train if g.stress is None]
    cells = [g for g in train if g.stress is not None]
    step = assert_compiled_step_equals_eager(trainer, config, [cells[:3] + free[:1], cells[3:5], free[:1] + cells[5:9]],
                                             term_off=config.replace(stress_weight=0.0))
    assert step.fields[-3:] == ("stress", "stress_mask", "volume")

def _pressures(calc, start, teacher):
    """Pressure (GPa) of the student and the teacher on the perfect crystal at -2 .. +2% volumetric strain."""
    out = []
    for dv in np.linspace(-0.02, 0.02, 5):
        a = start.copy()
        a.set_cell(start.cell.array * (1 + dv) ** (1 / 3), scale_atoms=True)
        ref = -teacher.stress(a)[:3].mean()
        a.calc = calc
        out.append((-a.get_stress()[:3].mean(), ref))
    return np.array(out) * EV_PER_A3_TO_GPA


def test_stress_term_makes_the_student_follow_the_equation_of_state(lj_crystal_labels, tmp_path):
    """Same strained LJ-crystal data, seed and steps; only wS differs. The student trained with the stress term
    gives the teacher's pressure over +-2% volumetric strain clearly better than one trained without it."""
    from hessdistill.distill import distill

    start = bulk("Ar", "fcc", a=5.0, cubic=True)
    teacher = LennardJonesTeacher(cutoff=6.0)
    errors = {}
    for ws in (0.0, 10.0):
        config = DistillConfig(architecture="schnet", features=16, num_interactions=1, cutoff=5.0, dtype="float64",
                               hessian_weight=0.0, stress_weight=ws, epochs=40, batch_size=2, lr_schedule="cosine",
                               compile="off", device="cpu")
        summary = distill(config, lj_crystal_labels, tmp_path / f"ws{ws:g}", progress=False)
        p = _pressures(StudentCalculator(summary["student"], device="cpu"), start, teacher)
        errors[ws] = np.abs(p[:, 0] - p[:, 1]).max() / np.abs(p[:, 1]).max()
        assert np.isfinite(summary["test"]["stress_mae"])
    # measured: 0.85 -> 0.054 of the largest teacher pressure (40 epochs; 150 epochs reach 0.04 -> 0.003)
    assert errors[10.0] < 0.3 * errors[0.0], errors


def test_sample_cli_strains_periodic_cells_and_refuses_molecules(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hessdistill", "sample", "--rattle", "6", "--strain", "0.01", "-o"]
    subprocess.run(cmd + [str(tmp_path / "si.extxyz"), "--start", "bulk:Si"], check=True, env=env,
                   capture_output=True)
    volumes = [a.get_volume() for a in read(tmp_path / "si.extxyz", ":")]
    assert len(volumes) == 6 and len({round(v, 6) for v in volumes}) == 6
    bad = subprocess.run(cmd + [str(tmp_path / "m.extxyz"), "--start", "CH3CH2OH"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "straining needs cells periodic" in bad.stderr
    assert "Traceback" not in bad.stderr
