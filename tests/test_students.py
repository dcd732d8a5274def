"""Contract every student keeps: forces = -dE/dx, invariance, and Hessian rows by VJP equal to the full
autograd Hessian and to finite differences; both neighbor searches (vesin, TorchScript) equal ase.neighborlist."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from conftest import make_student
from hessdistill.distill.data import Graph, collate
from hessdistill.distill.hessian import energy_gradient, hessian_rows
from hessdistill.neighbors import neighbor_list, neighbor_list_torch

ARCHS = ["painn", "schnet", "tensornet"]


def graph_inputs(model, atoms):
    ei, sh = neighbor_list(atoms, model.cutoff)
    index = {s: k for k, s in enumerate(model.type_names)}
    species = torch.tensor([index[s] for s in atoms.get_chemical_symbols()])
    return species, torch.tensor(ei), torch.tensor(sh)


def energy_fn(model, atoms):
    species, ei, sh = graph_inputs(model, atoms)
    return lambda x: model(x.reshape(-1, 3), species, ei, sh).sum()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("system", ["ethanol", "silicon"])
def test_hessian_rows_by_vjp_equal_full_hessian_and_finite_differences(arch, system, request):
    atoms = request.getfixturevalue(system)
    model = make_student(arch)
    f = energy_fn(model, atoms)
    x0 = torch.tensor(atoms.positions)
    full = torch.autograd.functional.hessian(f, x0.reshape(-1)).numpy()
    n3 = full.shape[0]
    rows = torch.tensor([[0], [n3 // 2], [n3 - 1]])  # three single-coordinate VJPs, batched
    x = x0.clone().requires_grad_(True)
    grad = energy_gradient(f(x).reshape(1), x)
    vjp = hessian_rows(grad, x, rows, create_graph=False).reshape(3, -1).numpy()
    np.testing.assert_allclose(vjp, full[rows[:, 0]], rtol=1e-10, atol=1e-10)
    one = hessian_rows(grad, x, rows[1:2], create_graph=False).reshape(1, -1).numpy()  # the s = 1 path
    np.testing.assert_allclose(one[0], full[rows[1, 0]], rtol=1e-10, atol=1e-10)
    # central finite differences of the gradient (float64, independent of double backward)
    h = 1e-5
    for k in rows[:, 0].tolist():
        xp, xm = x0.reshape(-1).clone(), x0.reshape(-1).clone()
        xp[k] += h
        xm[k] -= h
        gp = torch.autograd.functional.jacobian(f, xp)
        gm = torch.autograd.functional.jacobian(f, xm)
        fd = ((gp - gm) / (2 * h)).numpy()
        np.testing.assert_allclose(full[k], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    np.testing.assert_allclose(full, full.T, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_forces_are_minus_energy_gradient_and_energy_is_invariant(arch, ethanol):
    model = make_student(arch)
    f = energy_fn(model, ethanol)
    x0 = torch.tensor(ethanol.positions)
    e0 = float(f(x0))
    x = x0.clone().requires_grad_(True)
    forces = -torch.autograd.grad(f(x), x)[0]
    h = 1e-5
    for a, c in [(0, 0), (4, 2), (8, 1)]:
        xp, xm = x0.clone(), x0.clone()
        xp[a, c] += h
        xm[a, c] -= h
        fd = -(float(f(xp)) - float(f(xm))) / (2 * h)
        assert abs(fd - float(forces[a, c])) < 1e-7
    rot = torch.tensor(np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0])
    assert abs(float(f(x0 @ rot.T + torch.tensor([1.0, -2.0, 0.5]))) - e0) < 1e-10


def test_batched_rows_of_several_structures_are_rows_of_each(ethanol, silicon):
    """One VJP over a disjoint batch returns one Hessian row of every structure (block-diagonal Hessian)."""
    model = make_student("painn")
    graphs = []
    for atoms in (ethanol, silicon):
        species, ei, sh = graph_inputs(model, atoms)
        n = len(atoms)
        graphs.append(Graph(species, torch.tensor(atoms.positions), ei, sh, 0.0, torch.zeros(n, 3),
                            np.arange(3 * n), torch.zeros(3 * n, 3 * n, dtype=torch.float64)))
    batch = collate(graphs)
    x = batch.positions.clone().requires_grad_(True)
    e = model(x, batch.species, batch.edge_index, batch.shifts).sum()
    grad = energy_gradient(e.reshape(1), x)
    k_eth, k_si = 5, 7
    coords = torch.tensor([[k_eth, 3 * len(ethanol) + k_si]])
    rows = hessian_rows(grad, x, coords, create_graph=False).reshape(-1).numpy()
    full_eth = torch.autograd.functional.hessian(energy_fn(model, ethanol), torch.tensor(ethanol.positions).reshape(-1))
    full_si = torch.autograd.functional.hessian(energy_fn(model, silicon), torch.tensor(silicon.positions).reshape(-1))
    n_eth = 3 * len(ethanol)
    np.testing.assert_allclose(rows[:n_eth], full_eth[k_eth].numpy(), atol=1e-10)
    np.testing.assert_allclose(rows[n_eth:], full_si[k_si].numpy(), atol=1e-10)


def _edges(ei, sh):
    return sorted((int(i), int(j), *np.round(s, 6)) for i, j, s in zip(ei[0], ei[1], np.asarray(sh)))


def _slab():
    a = bulk("Cu", "fcc", a=3.6, orthorhombic=True).repeat((2, 2, 2))
    a.pbc = (True, True, False)
    return a


def _tilted():
    a = bulk("Si", "diamond", a=5.43, cubic=True)
    a.set_cell(a.cell.array @ np.array([[1.0, 0, 0], [0.3, 1.0, 0], [-0.2, 0.15, 1.0]]), scale_atoms=True)
    return a


SYSTEMS = {
    "si_cubic": lambda: bulk("Si", cubic=True),
    "si_primitive": lambda: bulk("Si"),  # small skewed cell: several images per direction
    "cu_2x1x1": lambda: bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)),
    "si_tilted": _tilted,
    "cu_slab": _slab,  # periodic in x and y only
    "ethanol": lambda: molecule("CH3CH2OH"),  # no cell at all
}


@pytest.mark.parametrize("system", list(SYSTEMS))
@pytest.mark.parametrize("cutoff", [2.6, 4.0, 6.5])
def test_neighbor_lists_equal_ase_edge_for_edge(system, cutoff):
    """Each directed edge (i, j, image shift) of both searches is ase.neighborlist's, and no other (vesin's test)."""
    from ase.neighborlist import neighbor_list as ase_nl

    atoms = SYSTEMS[system]()
    atoms.rattle(0.05, seed=1)
    ei, sh = neighbor_list(atoms, cutoff)
    i, j, s = ase_nl("ijS", atoms, cutoff)
    reference = _edges(np.stack([i, j]), s @ atoms.cell.array)
    assert len(reference) > len(atoms)  # every system has neighbours at these cutoffs
    assert _edges(ei, sh) == reference
    ei2, sh2 = neighbor_list_torch(torch.tensor(atoms.positions), torch.tensor(atoms.cell.array),
                                   torch.tensor(atoms.pbc), cutoff)
    assert _edges(ei2.numpy(), sh2.numpy()) == reference


def test_unwrapped_positions_give_the_same_energy(silicon):
    """Engines like OpenMM do not wrap positions: the student must not care about the image an atom sits in."""
    model = torch.jit.script(make_student("painn"))
    species = torch.zeros(len(silicon), dtype=torch.long) + 3
    cell, pbc = torch.tensor(silicon.cell.array), torch.tensor([True, True, True])
    pos = torch.tensor(silicon.positions)
    e0, f0 = model.energy_and_forces(pos, species, cell, pbc)
    moved = pos.clone()
    moved[0] += 2 * cell[0] - 3 * cell[2]
    e1, f1 = model.energy_and_forces(moved, species, cell, pbc)
    assert abs(float(e0 - e1)) < 1e-10
    np.testing.assert_allclose(f0.numpy(), f1.numpy(), atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_energy_is_smooth_at_a_perfect_lattice(arch):
    """At a perfect diamond lattice every atom's first-layer vector features cancel (v = 0, where a norm has a
    kink): the Hessian must still be the Hessian of a smooth energy, the same from autograd and from finite
    differences of the forces with steps 100x apart (PaiNN's norm sqrt(|v|^2 + 1e-8) failed this by ~1e2)."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    model = make_student(arch)
    f = energy_fn(model, atoms)
    x0 = torch.tensor(atoms.positions).reshape(-1)
    exact = torch.autograd.functional.hessian(f, x0).numpy()

    def fd(h):
        rows = []
        for k in range(6):
            xp, xm = x0.clone(), x0.clone()
            xp[k] += h
            xm[k] -= h
            rows.append(((torch.autograd.functional.jacobian(f, xp) - torch.autograd.functional.jacobian(f, xm))
                         / (2 * h)).numpy())
        return np.array(rows)

    scale = np.abs(exact[:6]).max()
    for h in (1e-3, 1e-5):
        np.testing.assert_allclose(fd(h), exact[:6], atol=1e-4 * scale)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_pairs_gives_the_full_lists_energies(arch, ethanol):
    """Each pair once (pair_records: the compiled format's input) gives the per-atom energies and forces of the
    full list, in a molecule and in a cell small enough that atoms see their own images (i == j pairs)."""
    from hessdistill.formats.evaluate import pair_records

    model = make_student(arch)
    small = bulk("Si", "sc", a=2.9) * (1, 1, 2)  # 2 atoms, a 2.9 A cell edge: within the 3.5 A cutoff
    small.rattle(0.05, seed=3)
    for atoms in (ethanol, small):
        species, ei, sh = graph_inputs(model, atoms)
        kept = pair_records(ei, sh)
        assert 2 * len(kept) == ei.shape[1]
        assert atoms is ethanol or bool((ei[0, kept] == ei[1, kept]).any())
        x = torch.tensor(atoms.positions, requires_grad=True)
        full = model(x, species, ei, sh)
        pairs = model.forward_pairs(x, species, ei[:, kept], sh[kept], torch.ones(len(kept), dtype=torch.float64))
        np.testing.assert_allclose(pairs.detach().numpy(), full.detach().numpy(), rtol=0, atol=1e-12)
        g_full, = torch.autograd.grad(full.sum(), x)
        g_pairs, = torch.autograd.grad(pairs.sum(), x)
        np.testing.assert_allclose(g_pairs.numpy(), g_full.numpy(), rtol=0, atol=1e-12)
        assert float(g_full.abs().max()) > 1e-5
        # an orientation-blind reader would not pass: dropping the kept half's reverse differs from the full list
        assert float((model(x, species, ei[:, kept], sh[kept]) - full).abs().max()) > 1e-6
        # one-way records (both = 0) are single edges: records of the kept half one way, the rest both ways
        one_way = torch.arange(len(kept)) % 3 == 0
        both = (~one_way).to(torch.float64)
        edges = torch.cat([ei[:, kept], ei[:, kept][:, ~one_way].flip(0)], 1)
        shifts = torch.cat([sh[kept], -sh[kept][~one_way]])
        np.testing.assert_allclose(model.forward_pairs(x, species, ei[:, kept], sh[kept], both).detach().numpy(),
                                   model(x, species, edges, shifts).detach().numpy(), rtol=0, atol=1e-12)
