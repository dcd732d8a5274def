"""Hessian supervision along probes: the student's H v against finite differences of its forces, a store of unit
probes against the Cartesian-row loss of full Hessians, the curvature weighting against its formula, training
that lowers the probe error, and the compiled step on probes."""

import dataclasses

import numpy as np
import pytest
import torch

from conftest import assert_compiled_step_equals_eager, cluster
from hessdistill.distill import DistillConfig, Trainer
from hessdistill.distill.data import collate, sample_row_slots
from hessdistill.distill.evaluation import evaluate
from hessdistill.distill.hessian import hessian_vector_products
from hessdistill.distill.loss import predict, slots_loss
from hessdistill.label import label_structures, load_labels, write_store
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher


def tiny(**kw):
    base = dict(architecture="schnet", features=16, num_interactions=1, cutoff=4.0, batch_size=4, lr=3e-3,
                dtype="float64", patience=1000, lr_schedule="cosine", compile="off", val_every=1, hessian_rows=2,
                hessian_weight=10.0)
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def structures():
    return split(rattled(cluster(5, seed=0), 16, 0.1, seed=0), (0.5, 0.25, 0.25))


@pytest.fixture(scope="module")
def probe_labels(structures, tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "probes.h5"
    label_structures(structures, MorseTeacher(), path, rows=6, probes="random", progress=False)
    return path


@pytest.fixture(scope="module")
def row_labels(structures, tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "rows.h5"
    label_structures(structures, MorseTeacher(), path, rows=6, progress=False)
    return path


def test_student_products_equal_finite_differences_of_its_forces(probe_labels, tmp_path):
    trainer = Trainer(tiny(), probe_labels, tmp_path / "r", progress=False)
    batch = collate(trainer.graphs["train"][:3])
    probes, _, _ = sample_row_slots(batch, 2, np.random.default_rng(0))
    _, grad, pos, _ = predict(trainer.model, batch, create_graph=True)
    products = hessian_vector_products(grad, pos, probes, create_graph=False).reshape(2, -1)
    h = 1e-5
    for j in range(2):
        step = h * probes[j].reshape(-1, 3)
        plus = predict(trainer.model, dataclasses.replace(batch, positions=batch.positions + step), False)[1]
        minus = predict(trainer.model, dataclasses.replace(batch, positions=batch.positions - step), False)[1]
        fd = ((plus - minus) / (2 * h)).reshape(-1)
        torch.testing.assert_close(products[j], fd, atol=1e-6 * float(fd.abs().max()), rtol=0)


def _student_hessian(model, graph):
    """The full (3N, 3N) Hessian of the student's energy, by autograd's own dense Hessian."""

    def energy(x):
        return model(x.reshape(-1, 3), graph.species, graph.edge_index, graph.shifts).sum()

    return torch.autograd.functional.hessian(energy, graph.positions.reshape(-1).clone())


def test_unit_probes_give_the_cartesian_row_loss(row_labels, tmp_path):
    """The same rows stored as unit probes: the loss equals the rows store's, and both equal wH * MSE of the
    rows of the student's and teacher's full Hessians / <H^2>."""
    items = load_labels(row_labels)
    as_probes = []
    for it in items:
        probes, hvp = it.probe_pairs()
        as_probes.append(dataclasses.replace(it, hessian_rows=np.zeros(0, np.int64), hessian=np.zeros((0, 15)),
                                             probes=probes.reshape(-1, 5, 3), hvp=hvp.reshape(-1, 5, 3)))
    write_store(as_probes, tmp_path / "unit.h5")
    config = tiny()
    rows = Trainer(config, row_labels, tmp_path / "a", progress=False)
    unit = Trainer(config, tmp_path / "unit.h5", tmp_path / "b", progress=False)
    assert unit.norm["hessian"] == pytest.approx(rows.norm["hessian"], rel=1e-14)
    graphs = rows.graphs["train"][:4]
    loss_rows = slots_loss(rows.model, collate(graphs), config, rows.norm,
                           sample_row_slots(collate(graphs), 2, np.random.default_rng(3)))
    loss_unit = slots_loss(unit.model, collate(unit.graphs["train"][:4]), config, unit.norm,
                           sample_row_slots(collate(unit.graphs["train"][:4]), 2, np.random.default_rng(3)))
    assert float(loss_unit.detach()) == pytest.approx(float(loss_rows.detach()), rel=1e-12)
    # the reference: the same picks, from full student Hessians
    no_hessian = slots_loss(rows.model, collate(graphs), config, rows.norm, None)
    rng = np.random.default_rng(3)
    sq = []
    for g in graphs:
        picks = rng.choice(g.n_probes, size=2, replace=False)
        student = _student_hessian(rows.model, g)[g.hessian_rows[picks]]
        sq.append(((student - g.hessian[picks]) ** 2).reshape(-1))
    ref = config.hessian_weight * float(torch.cat(sq).mean()) / rows.norm["hessian"]
    assert float((loss_rows - no_hessian).detach()) == pytest.approx(ref, rel=1e-9)


def test_curvature_weighting_follows_its_formula(probe_labels, tmp_path):
    config = tiny(hessian_probe_weighting="curvature")
    trainer = Trainer(config, probe_labels, tmp_path / "w", progress=False)
    norm = trainer.norm
    train = trainer.graphs["train"]
    all_c = np.concatenate([g.curvature for g in train])
    assert norm["curvature_floor"] == pytest.approx(0.01 * np.median(np.abs(all_c)), rel=1e-12)
    for g in train:  # v . H v from the stored probe and product
        np.testing.assert_allclose(g.curvature, (g.probes * g.hessian).sum(dim=1).numpy(), rtol=1e-12)
    weighted = sum(float(((g.hessian[r] ** 2).sum()) / max(c**2, norm["curvature_floor"] ** 2))
                   for g in train for r, c in enumerate(g.curvature))
    assert norm["hessian_curvature"] == pytest.approx(weighted / sum(g.hessian.numel() for g in train), rel=1e-12)
    graphs = train[:3]
    batch = collate(graphs)
    slots = sample_row_slots(batch, 2, np.random.default_rng(5))
    extra = float((slots_loss(trainer.model, batch, config, norm, slots)
                   - slots_loss(trainer.model, batch, config, norm, None)).detach())
    rng = np.random.default_rng(5)
    total = 0.0
    for g in graphs:
        student = _student_hessian(trainer.model, g)
        for p in rng.choice(g.n_probes, size=2, replace=False):
            resid = student @ g.probes[p] - g.hessian[p]
            total += float((resid**2).sum()) / max(g.curvature[p] ** 2, norm["curvature_floor"] ** 2)
    ref = config.hessian_weight * total / (2 * 3 * sum(g.n_atoms for g in graphs)) / norm["hessian_curvature"]
    assert extra == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("weighting", ["none", "curvature"])
def test_training_on_probes_lowers_the_probe_error(probe_labels, tmp_path, weighting):
    """Same data, steps and seed; only wH differs: the probe term lowers the validation error of H v."""
    after = {}
    for wh in (0.0, 10.0):
        trainer = Trainer(tiny(epochs=200, hessian_weight=wh, hessian_probe_weighting=weighting), probe_labels,
                          tmp_path / f"{weighting}{wh}", progress=False)
        before = evaluate(trainer.model, trainer.graphs["val"], 6)
        after[wh] = evaluate(trainer.fit(), trainer.graphs["val"], 6)
    assert after[10.0]["hessian_mae"] < 0.7 * after[0.0]["hessian_mae"], after
    assert after[10.0]["hessian_mae"] < 0.5 * before["hessian_mae"], (before, after)


@pytest.mark.slow
def test_compiled_step_on_probes_equals_eager(probe_labels, tmp_path):
    config = tiny(features=8, hessian_probe_weighting="curvature")
    trainer = Trainer(config, probe_labels, tmp_path / "c", progress=False)
    train = trainer.graphs["train"]
    assert_compiled_step_equals_eager(trainer, config, [train[:size] for size in (4, 3, 1)])

def test_resume_of_a_checkpoint_older_than_the_weighting_option(probe_labels, tmp_path):
    """A checkpoint written before ``hessian_probe_weighting`` existed resumes with its default and refuses the
    other weighting."""
    from hessdistill.errors import ConfigError

    Trainer(tiny(epochs=1), probe_labels, tmp_path / "old", progress=False).fit()
    state = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=False)
    del state["config"]["hessian_probe_weighting"]
    torch.save(state, tmp_path / "old" / "checkpoint.pt")
    assert Trainer(tiny(epochs=2), probe_labels, tmp_path / "old", progress=False).epoch == 1
    with pytest.raises(ConfigError, match="hessian_probe_weighting"):
        Trainer(tiny(epochs=2, hessian_probe_weighting="curvature"), probe_labels, tmp_path / "old", progress=False)
