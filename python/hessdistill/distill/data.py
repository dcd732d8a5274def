"""Labelled structures as tensors for training: per-structure graphs and their batching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..label.store import SPLITS, LabeledStructure, load_labels
from ..molecules import fitted_molecules, lever_arms, molecules
from ..neighbors import neighbor_list
from ..structures import check_elements

def load_splits(labels) -> dict[str, list[LabeledStructure]]:
    """The structures of a merged label store by split; training and validation structures are required."""
    items = load_labels(labels)
    by_split = {s: [it for it in items if it.split == s] for s in SPLITS}
    if not by_split["train"]:
        raise InputError(f"label store {labels} holds no training structures")
    if not by_split["val"]:
        raise InputError(f"label store {labels} holds no validation structures (split 'val')")
    return by_split


def element_types(items: Sequence[LabeledStructure]) -> tuple[list[str], list[int]]:
    """The student's types: element names and atomic numbers present in ``items``, by atomic number."""
    from ase.data import chemical_symbols

    zs = sorted({int(z) for it in items for z in it.numbers})
    return [chemical_symbols[z] for z in zs], zs


def check_hessian_rows(items: Sequence[LabeledStructure], s: int) -> None:
    """Every structure must store at least the ``s`` Hessian rows (or probes) a step samples from it."""
    for it in items:
        n3 = 3 * len(it.numbers)
        if s > n3:
            raise InputError(f"hessian_rows s = {s} is larger than 3N = {n3} of structure #{it.index}")
        stored = len(it.hvp) if it.probes is not None else len(it.hessian_rows)
        if s > stored:
            raise InputError(
                f"hessian_rows s = {s} but structure #{it.index} has only {stored} stored Hessian rows or probes; "
                "label with more rows or lower s"
            )


@dataclass
class Graph:
    species: torch.Tensor  # (N,)
    positions: torch.Tensor  # (N, 3)
    edge_index: torch.Tensor  # (2, E)
    shifts: torch.Tensor  # (E, 3)
    energy: float
    forces: torch.Tensor  # (N, 3)
    hessian_rows: np.ndarray  # (R,) stored row numbers in 0..3N-1; (0,) where probes are stored instead
    hessian: torch.Tensor  # (R, 3N) the teacher's H v for each stored probe (a row: the product with e_k)
    stress: torch.Tensor | None = None  # (6,) eV/A^3, Voigt, ASE's sign; None: no stress label
    volume: float = 0.0  # cell volume, A^3 (periodic cells; 0 otherwise)
    molecule: torch.Tensor | None = None  # (N,) each atom's molecule (covalent bond graph), 0..n_molecules-1
    lever: torch.Tensor | None = None  # (N, 3) position relative to its molecule's centre of mass, A
    n_molecules: int = 1
    molecule_mask: torch.Tensor | None = None  # (n_molecules,) 1 for molecules the loss fits (``fitted_molecules``)
    probes: torch.Tensor | None = None  # (R, 3N) unit probes v of ``hessian``; None: the unit vectors of the rows
    curvature: np.ndarray = field(init=False, repr=False)  # (R,) the teacher's v . H v along each probe

    def __post_init__(self):
        h = self.hessian.detach().cpu().double().numpy()
        if self.probes is None:  # of a row k: H_kk
            self.curvature = h[np.arange(len(h)), self.hessian_rows] if len(h) else np.zeros(0)
        else:
            self.curvature = np.einsum("rk,rk->r", self.probes.detach().cpu().double().numpy(), h)
        if self.molecule is None:  # a graph made without its bond graph: one molecule, nothing intermolecular
            self.molecule = torch.zeros(self.n_atoms, dtype=torch.long, device=self.positions.device)
            self.lever = torch.zeros_like(self.positions)
            self.n_molecules = 1
        if self.molecule_mask is None:
            self.molecule_mask = torch.full((self.n_molecules,), float(self.n_molecules > 1),
                                            dtype=self.positions.dtype, device=self.positions.device)

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def n_probes(self) -> int:
        """Stored Hessian rows or probes."""
        return self.hessian.shape[0]


def build_graphs(items: Sequence[LabeledStructure], type_names: list[str], cutoff: float, dtype, device) -> list[Graph]:
    from ase.data import chemical_symbols

    index = {s: k for k, s in enumerate(type_names)}
    graphs = []
    for it in items:
        symbols = [chemical_symbols[z] for z in it.numbers]
        check_elements(symbols, type_names, f"the student (structure #{it.index})")
        atoms = it.atoms()
        ei, sh = neighbor_list(atoms, cutoff)
        kw = dict(dtype=dtype, device=device)
        periodic = bool(np.all(it.pbc))
        groups, whole = molecules(atoms)
        probed = it.probes is not None
        molecule, lever = lever_arms(atoms.get_masses(), whole, groups)
        graphs.append(
            Graph(
                species=torch.tensor([index[s] for s in symbols], dtype=torch.long, device=device),
                positions=torch.tensor(it.positions, **kw),
                edge_index=torch.tensor(ei, dtype=torch.long, device=device),
                shifts=torch.tensor(sh, **kw),
                energy=it.energy,
                forces=torch.tensor(it.forces, **kw),
                hessian_rows=np.asarray(it.hessian_rows, dtype=np.int64),
                hessian=torch.tensor(it.hvp.reshape(len(it.hvp), -1) if probed else it.hessian, **kw),
                stress=None if it.stress is None else torch.tensor(it.stress, **kw),
                volume=abs(float(np.linalg.det(it.cell))) if periodic else 0.0,
                molecule=torch.tensor(molecule, dtype=torch.long, device=device),
                lever=torch.tensor(lever, **kw),
                n_molecules=len(groups),
                molecule_mask=torch.tensor(fitted_molecules(atoms, groups, whole), **kw),
                probes=torch.tensor(it.probes.reshape(len(it.probes), -1), **kw) if probed else None,
            )
        )
    if graphs and all(g.edge_index.shape[1] == 0 for g in graphs) and any(g.n_atoms > 1 for g in graphs):
        nearest = min(_nearest_distance(it) for it in items if len(it.numbers) > 1)
        raise InputError(f"cutoff {cutoff} A finds no neighbour pair in any of these {len(graphs)} structures "
                         f"(nearest pair {nearest:.2f} A): the student would see no atom's environment; raise "
                         "--cutoff")
    return graphs


def _nearest_distance(item: LabeledStructure) -> float:
    from ase.geometry import get_distances

    _, d = get_distances(item.positions, cell=item.cell, pbc=item.pbc)
    return float(np.min(d[~np.eye(len(d), dtype=bool)]))


@dataclass
class Batch:
    species: torch.Tensor
    positions: torch.Tensor
    edge_index: torch.Tensor
    shifts: torch.Tensor
    batch: torch.Tensor  # (N_total,) structure index of each atom
    n_atoms: torch.Tensor  # (B,)
    offsets: list[int]  # first atom of each structure
    energy: torch.Tensor  # (B,)
    forces: torch.Tensor  # (N_total, 3)
    graphs: list[Graph]
    stress: torch.Tensor | None = None  # (B, 6) teacher stress, zeros where a structure has none
    stress_mask: torch.Tensor | None = None  # (B,) 1 where the structure has a stress label, else 0
    volume: torch.Tensor | None = None  # (B,) cell volumes, 1 where a structure has no stress label
    molecule: torch.Tensor | None = None  # (N_total,) molecule index of each atom, over the whole batch
    lever: torch.Tensor | None = None  # (N_total, 3) atom position relative to its molecule's centre of mass
    molecule_mask: torch.Tensor | None = None  # (M,) 1 for the molecules the loss fits, else 0


def collate(graphs: Sequence[Graph]) -> Batch:
    """One disjoint graph from several structures (atom and molecule indices offset per structure)."""
    offsets, total, molecule_offsets, molecules_total = [], 0, [], 0
    for g in graphs:
        offsets.append(total)
        total += g.n_atoms
        molecule_offsets.append(molecules_total)
        molecules_total += g.n_molecules
    device = graphs[0].positions.device
    dtype = graphs[0].positions.dtype
    has_stress = [g.stress is not None for g in graphs]
    return Batch(
        species=torch.cat([g.species for g in graphs]),
        positions=torch.cat([g.positions for g in graphs]),
        edge_index=torch.cat([g.edge_index + o for g, o in zip(graphs, offsets)], dim=1),
        shifts=torch.cat([g.shifts for g in graphs]),
        batch=torch.cat([torch.full((g.n_atoms,), b, dtype=torch.long, device=device) for b, g in enumerate(graphs)]),
        n_atoms=torch.tensor([g.n_atoms for g in graphs], device=device),
        offsets=offsets,
        energy=torch.tensor([g.energy for g in graphs], dtype=dtype, device=device),
        forces=torch.cat([g.forces for g in graphs]),
        graphs=list(graphs),
        stress=torch.stack([g.stress if h else torch.zeros(6, dtype=dtype, device=device)
                            for g, h in zip(graphs, has_stress)]),
        stress_mask=torch.tensor(has_stress, dtype=dtype, device=device),
        volume=torch.tensor([g.volume if h else 1.0 for g, h in zip(graphs, has_stress)], dtype=dtype, device=device),
        molecule=torch.cat([g.molecule + o for g, o in zip(graphs, molecule_offsets)]),
        lever=torch.cat([g.lever for g in graphs]),
        molecule_mask=torch.cat([g.molecule_mask for g in graphs]),
    )


def sample_row_slots(batch: Batch, s: int, rng: np.random.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick ``s`` stored Hessian rows or probes per structure, uniformly without replacement
    (``gather_slots``)."""
    return gather_slots(batch, [rng.choice(g.n_probes, size=s, replace=False) for g in batch.graphs])


def gather_slots(batch: Batch, picks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The probe slots of the stored probes ``picks[b]`` (s each) of every structure b of the batch.

    Returns (probes (s, 3 N_total): slot j holds, in each structure's block, the probe picked for it, for
    ``hessian.hessian_vector_products``; teacher (s, 3 N_total): the teacher's H v, laid out alike; curvature
    (s, B): the teacher's v . H v of each). A stored row k is the unit probe e_k.
    """
    device, dtype = batch.positions.device, batch.positions.dtype
    n_total, s = batch.positions.shape[0], len(picks[0])
    probes = torch.zeros(s, 3 * n_total, dtype=dtype, device=device)
    teacher = torch.zeros(s, 3 * n_total, dtype=dtype, device=device)
    curvature = np.empty((s, len(batch.graphs)))
    for b, (g, off, chosen) in enumerate(zip(batch.graphs, batch.offsets, picks)):
        block = slice(3 * off, 3 * (off + g.n_atoms))
        curvature[:, b] = g.curvature[chosen]
        for j, p in enumerate(chosen):
            if g.probes is None:
                probes[j, 3 * off + int(g.hessian_rows[p])] = 1.0
            else:
                probes[j, block] = g.probes[p]
            teacher[j, block] = g.hessian[p]
    return probes, teacher, torch.as_tensor(curvature, dtype=dtype, device=device)
