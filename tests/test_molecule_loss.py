"""The molecule terms of the distillation loss: each molecule's net force and net torque.

References: the fidelity report's numpy sums (:mod:`hessdistill.molecules`) on the same forces; the compiled
training step against eager autograd; structures of one molecule, which must add nothing.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation
from conftest import assert_compiled_step_equals_eager

from hessdistill.distill import DistillConfig, Trainer
from hessdistill.distill.data import collate
from hessdistill.distill.loss import molecule_loss, predict, uses_molecules
from hessdistill.label import label_structures
from hessdistill.molecules import fitted_molecules, molecules, net_force_torque
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher


def _dimer(seed):
    a, b = molecule("H2O"), molecule("H2O")
    b.positions = b.positions @ Rotation.from_euler("xyz", [0.4, 1.3, -0.7]).as_matrix().T + [3.0, 0.4, -0.3]
    both = a + b
    both.rattle(0.05, seed=seed)
    return both


@pytest.fixture(scope="module")
def dimer_labels(tmp_path_factory):
    """Labels of water dimers (two molecules) and of water monomers (one), Morse teacher, 2 Hessian rows."""
    path = tmp_path_factory.mktemp("molecules") / "l.h5"
    structures = [_dimer(seed) for seed in range(10)] + rattled(molecule("H2O"), 6, 0.05, seed=0)
    label_structures(split(structures, (0.6, 0.2, 0.2), seed=1), MorseTeacher(), path, rows=2, progress=False)
    return path


def _config(**kw):
    base = dict(architecture="schnet", features=8, num_interactions=1, cutoff=4.0, dtype="float64",
                hessian_rows=2, net_force_weight=3.0, net_torque_weight=2.0, compile="off", device="cpu")
    return DistillConfig(**(base | kw))


def test_molecule_loss_equals_the_reports_net_forces_and_torques(dimer_labels, tmp_path):
    config = _config()
    trainer = Trainer(config, dimer_labels, tmp_path / "r", progress=False)
    assert uses_molecules(config, trainer.norm)
    graphs = trainer.graphs["train"]
    batch = collate(graphs)
    _, grad, _, _ = predict(trainer.model, batch, create_graph=False)
    got = float(molecule_loss(grad, batch, config, trainer.norm))
    # the same from the numpy sums of the report, molecule by molecule, student against teacher
    errors_f, errors_t, teacher_f, teacher_t = [], [], [], []
    student = (-grad).detach().numpy()
    for g, off in zip(graphs, batch.offsets):
        symbols = [trainer.model.type_names[k] for k in g.species.tolist()]
        atoms = Atoms(symbols=symbols, positions=g.positions.numpy())
        groups, whole = molecules(atoms)
        assert len(groups) == g.n_molecules
        t = net_force_torque(atoms.get_masses(), whole, g.forces.numpy(), groups)
        s = net_force_torque(atoms.get_masses(), whole, student[off:off + g.n_atoms], groups)
        if len(groups) > 1:
            errors_f.append(s[0] - t[0])
            errors_t.append(s[1] - t[1])
            teacher_f.append(t[0])
            teacher_t.append(t[1])
        else:  # one molecule: zero net force and torque for teacher and student alike
            assert np.abs(t[0]).max() < 1e-9 and np.abs(s[0]).max() < 1e-9 and np.abs(s[1]).max() < 1e-9
    assert trainer.norm["net_force"] == pytest.approx(np.mean(np.concatenate(teacher_f) ** 2), rel=1e-10)
    assert trainer.norm["net_torque"] == pytest.approx(np.mean(np.concatenate(teacher_t) ** 2), rel=1e-10)
    want = (3.0 * np.mean(np.concatenate(errors_f) ** 2) / trainer.norm["net_force"]
            + 2.0 * np.mean(np.concatenate(errors_t) ** 2) / trainer.norm["net_torque"])
    assert got == pytest.approx(want, rel=1e-9) and want > 0


def test_one_molecule_sets_have_no_molecule_terms(tmp_path):
    path = tmp_path / "mono.h5"
    label_structures(split(rattled(molecule("H2O"), 8, 0.05, seed=0)), MorseTeacher(), path, rows=2, progress=False)
    trainer = Trainer(_config(), path, tmp_path / "r", progress=False)
    assert "net_force" not in trainer.norm and not uses_molecules(trainer.config, trainer.norm)


def test_single_atoms_and_cell_spanning_chains_are_not_fitted():
    """A lone atom's net force is its force (already in the force term) and a chain closed on itself through the
    periodic boundary has no centre of mass: neither gets a molecule term; a whole water molecule beside them does."""
    water = molecule("H2O")
    water.positions += [1.0, 3.0, 3.0]
    chain = Atoms("C2", positions=[[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
    argon = Atoms("Ar", positions=[[1.5, 4.0, 0.5]])
    atoms = chain + water + argon
    atoms.cell, atoms.pbc = [3.0, 7.0, 7.0], True
    groups, whole = molecules(atoms)
    assert [list(g) for g in groups] == [[0, 1], [2, 3, 4], [5]]
    assert list(fitted_molecules(atoms, groups, whole)) == [False, True, False]
    lone = water + argon
    assert list(fitted_molecules(lone, *molecules(lone))) == [True, False]


def test_sets_of_single_atoms_have_no_molecule_terms(tmp_path):
    """Clusters of atoms with no covalent bond (argon, LJ teacher): every molecule is one atom, so nothing to fit."""
    from hessdistill.teachers.analytic import LennardJonesTeacher

    cluster = Atoms("Ar4", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0], [0, 0, 3.8]])
    path = tmp_path / "ar.h5"
    label_structures(split(rattled(cluster, 8, 0.05, seed=0)), LennardJonesTeacher(), path, rows=2, progress=False)
    trainer = Trainer(_config(), path, tmp_path / "r", progress=False)
    assert "net_force" not in trainer.norm and not uses_molecules(trainer.config, trainer.norm)


@pytest.mark.slow
def test_compiled_step_with_molecule_terms_equals_eager(dimer_labels, tmp_path):
    """The traced and compiled loss + parameter gradients with the molecule terms against eager autograd
    (float64), on batches mixing dimers and monomers; one compiled graph for all batch sizes."""
    config = _config()
    trainer = Trainer(config, dimer_labels, tmp_path / "c", progress=False)
    train = trainer.graphs["train"]
    dimers = [g for g in train if g.n_molecules > 1]
    monomers = [g for g in train if g.n_molecules == 1]
    # batches of 25 atoms or more: torch 2.9.1's compiled graph of this loss guards 'atoms >= 25' or '<= 24'
    # (with or without the molecule terms) and recompiles across that line
    step = assert_compiled_step_equals_eager(
        trainer, config, [monomers[1:2] + dimers[:4], dimers[:4] + monomers[:2], dimers[2:7]],
        term_off=config.replace(net_force_weight=0.0, net_torque_weight=0.0))
    assert step.fields[-3:] == ("molecule", "lever", "molecule_mask")
