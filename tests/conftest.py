"""Shared fixtures: tiny students and structures, one thread (CI has 2 cores and runs MPI tests too)."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

torch.set_num_threads(1)


@pytest.fixture
def ethanol():
    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=3)
    return a


@pytest.fixture
def silicon():
    a = bulk("Si", cubic=True)
    a.rattle(0.05, seed=4)
    return a


def make_student(arch="painn", type_names=("H", "C", "O", "Si"), cutoff=3.5, features=8, layers=2, seed=0,
                 dtype=torch.float64):
    """A small random student; random weights still give a smooth, conservative energy."""
    from ase.data import atomic_numbers

    from hessdistill.students import build_student

    torch.manual_seed(seed)
    m = build_student(arch, type_names=list(type_names), atomic_numbers=[atomic_numbers[s] for s in type_names],
                      cutoff=cutoff, features=features, num_interactions=layers)
    with torch.no_grad():
        m.scale.fill_(0.5)
    return m.to(dtype)


@pytest.fixture(scope="session")
def compiled_student(tmp_path_factory):
    """A small PaiNN (H, C, O, Si; cutoff 3 A; float64) compiled once per session as a .pt2 package (tens of
    seconds), for the tests that run a .pt2 through every engine."""
    from hessdistill.formats import save_student

    model = make_student("painn", type_names=("H", "C", "O", "Si"), cutoff=3.0, seed=2)
    return save_student(model, tmp_path_factory.mktemp("compiled") / "painn.pt2")


def cluster(n=5, seed=0, spacing=1.6):
    """A compact random cluster of carbon-labelled atoms with no two atoms closer than 1.1 A."""
    rng = np.random.default_rng(seed)
    pts = [np.zeros(3)]
    while len(pts) < n:
        p = pts[rng.integers(len(pts))] + rng.normal(size=3) / np.sqrt(3) * spacing
        if min(np.linalg.norm(p - q) for q in pts) > 1.1:
            pts.append(p)
    return Atoms(f"C{n}", positions=np.array(pts))


def sum_rule(h, n):
    """Translational invariance: each row summed over the x (y, z) coordinates of all atoms is zero."""
    return np.abs(h.reshape(-1, n, 3).sum(axis=1)).max()


def fd_rows(teacher, atoms, rows, h):
    """Rows of the Hessian by central differences of the teacher's forces (full path, graph rebuilt per call)."""
    out = []
    for k in rows:
        a, c = divmod(int(k), 3)
        p, m = atoms.copy(), atoms.copy()
        p.positions[a, c] += h
        m.positions[a, c] -= h
        out.append(-(teacher.energy_forces(p)[1] - teacher.energy_forces(m)[1]).reshape(-1) / (2 * h))
    return np.array(out)


def fd_stress(energy, atoms, h):
    """Voigt stress (1/V) dE/d(strain) by central differences of ``energy(atoms)`` under symmetric strains of the
    cell with the atoms scaled along (an independent reference for the autograd strain derivatives)."""
    out = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            d = np.zeros((3, 3))
            d[i, j] += h / 2
            d[j, i] += h / 2
            e = []
            for sign in (1, -1):
                b = atoms.copy()
                b.set_cell(atoms.cell.array @ (np.eye(3) + sign * d), scale_atoms=True)
                e.append(energy(b))
            out[i, j] = (e[0] - e[1]) / (2 * h) / atoms.get_volume()
    return out.flat[[0, 4, 8, 5, 2, 1]]


def rewrite_pt2_metadata(src, dst, change):
    """Copy .pt2 package ``src`` to ``dst`` with its metadata JSON files (the wrapper's and the kernel's copy) passed
    through ``change``: a mismatched package without recompiling."""
    import json
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("_metadata.json"):
                data = json.dumps(change(json.loads(data))).encode()
            zout.writestr(item, data)


def assert_compiled_step_equals_eager(trainer, config, batches, term_off=None):
    """The traced and compiled loss + parameter gradients (``CompiledStep``) against eager autograd
    (``slots_loss``) on each of ``batches`` (lists of graphs), float64, to 1e-10 relative; every batch of two
    structures or more shares one compiled graph (a batch of one runs eagerly). ``term_off``: the config without
    the term under test, whose loss must differ (the term is there). Returns the step."""
    from torch._dynamo.utils import counters

    from hessdistill.distill.compiled import CompiledStep
    from hessdistill.distill.data import collate, sample_row_slots
    from hessdistill.distill.loss import slots_loss

    step = CompiledStep(trainer.model, config, trainer.norm)
    counters.clear()
    for graphs in batches:
        batch = collate(graphs)
        slots = sample_row_slots(batch, 2, np.random.default_rng(len(graphs)))
        ref_loss = slots_loss(trainer.model, batch, config, trainer.norm, slots)
        ref = torch.autograd.grad(ref_loss, step.parameters, allow_unused=True)
        if term_off is not None:
            without = slots_loss(trainer.model, batch, term_off, trainer.norm, slots)
            assert float(ref_loss.detach() - without.detach()) > 1e-4 * float(ref_loss.detach())
        loss, grads = step(batch, slots)
        assert float(abs(loss - ref_loss.detach())) <= 1e-10 * float(ref_loss.detach()), len(graphs)
        assert [g is None for g in grads] == [r is None for r in ref]
        for name, g, r in zip(step.names, grads, ref):
            assert r is None or float((g - r).norm()) <= 1e-10 * float(r.norm()), (len(graphs), name)
    assert counters["stats"]["unique_graphs"] == 1
    return step
