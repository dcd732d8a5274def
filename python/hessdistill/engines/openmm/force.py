"""A hessdistill student as an OpenMM force: ``openmmtorch.TorchForce`` by default, ``openmm.PythonForce`` as fallback.

The student file is wrapped in a small TorchScript module, :class:`StudentForceModule`, that speaks OpenMM's
units and calling convention: positions (N, 3) in nm (and box vectors (3, 3) in nm for periodic systems) in,
energy in kJ/mol out (and forces in kJ/mol/nm when ``outputs_forces``). Species are baked in as a buffer; a subset
of atoms (an ML region) is picked out with ``atoms``.

Neighbors come from a Verlet list kept in the module (:class:`VerletList`): candidate pairs within cutoff +
``skin`` are searched again only when an atom has moved more than skin / 2 since the last search or the box has
changed; every step just keeps the candidates inside the cutoff (O(edges)), so the force costs what the bare
student costs. The search is vesin-torch's O(N) cell list (:func:`~hessdistill.neighbors.cell_list_edges`, a
TorchScript class: a process loading a serialized System must have imported ``vesin_torch``), on positions as
OpenMM gives them (unwrapped): shifts refer to them, so atoms many boxes away from the origin give the same energy.
The list is the module's own state, by design: ``forward`` updates its buffers (candidate pairs and the positions
and box of the last search), one copy per Context; the energy of a call still depends only on the positions and box
it is given, since a stale list is searched again. openmm-torch's CUDA-graph option, which replays a recorded step,
would not run the search and is not supported.

A compiled .pt2 student (:mod:`hessdistill.formats.pt2`) runs through ``openmm.PythonForce`` only, with the same
Verlet list and the package's ``evaluate()``.

Back ends, chosen by ``backend="auto"``:

* ``torchforce``: ``openmmtorch.TorchForce`` around the scripted module (runs inside the OpenMM kernels; CUDA
  platform with the model on the GPU when present, Reference/CPU otherwise).
* ``pythonforce``: ``openmm.PythonForce`` (OpenMM >= 8.5) calling the same module from Python; used when
  openmmtorch is missing or its plugin does not load. A warning says so.

Example
-------
>>> import torch  # before openmm, for openmmtorch's plugin (see the shared notes)
>>> from openmm.app import PDBFile
>>> from hessdistill.engines.openmm import create_system
>>> pdb = PDBFile("ethanol.pdb")
>>> system = create_system(pdb.topology, "student.pt")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ...errors import InputError, OpenMMBackendError, first_line
from ...formats import file_format, load_student
from ...formats.torchscript import StudentFile
from ...neighbors import VESIN_TORCH_ERROR, VesinNeighborList, cell_list_edges, edges_within
from ...units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

log = logging.getLogger("hessdistill.engines.openmm")
BACKENDS = ("auto", "torchforce", "pythonforce")
DEFAULT_SKIN = 1.0  # A: Verlet skin of the module's neighbor list (searched again after a skin/2 move)
_warned_fallback = False  # the fallback warning is given once per process, then logged at INFO


class VerletList(nn.Module):
    """TorchScript-able Verlet neighbor list: ``forward(x (N, 3) A, cell (3, 3) A, periodic)`` returns the edges
    within ``cutoff`` (edge_index (2, E), shifts (E, 3) A) at ``x``.

    Candidate pairs within cutoff + ``skin`` are searched again (:func:`~hessdistill.neighbors.cell_list_edges`,
    O(N)) only when an atom has moved more than skin / 2 since the last search or the cell has changed; every
    other call keeps the candidates inside the cutoff (O(edges)). The state lives in buffers.
    """

    def __init__(self, cutoff: float, skin: float, dtype: torch.dtype):
        super().__init__()
        if not skin >= 0:
            raise InputError(f"skin must be >= 0 A, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.register_buffer("candidates", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("candidate_shifts", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("reference_positions", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("reference_cell", torch.zeros(3, 3, dtype=dtype))
        self.searches = 0  # how many times the candidates were searched (tests read it)

    def forward(self, x: torch.Tensor, cell: torch.Tensor, periodic: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        # state kept across calls must hold no autograd history (each call's graph is freed by its backward)
        xd, cd = x.detach(), cell.detach()
        stale = xd.shape != self.reference_positions.shape or not torch.equal(cd, self.reference_cell)
        if not stale:
            moved = ((xd - self.reference_positions) ** 2).sum(dim=1).max()
            stale = bool(moved > 0.25 * self.skin * self.skin)
        if stale:
            # no_grad as well as detach: under openmm-torch, a search result kept from a call whose graph was never
            # run backward (an energy-only evaluation) otherwise broke the next call's backward
            with torch.no_grad():
                self.candidates, self.candidate_shifts = cell_list_edges(xd, cd, periodic, self.cutoff + self.skin)
                self.reference_positions = xd.clone()
                self.reference_cell = cd.clone()
            self.searches += 1
        return edges_within(xd, self.candidates, self.candidate_shifts, self.cutoff)


class StudentForceModule(nn.Module):
    """TorchScript-able OpenMM adapter around a loaded student (TorchScript) module.

    ``forward(positions (N, 3) nm, boxvectors (3, 3) nm or None)`` returns the energy in kJ/mol (float64).
    Non-finite positions give a non-finite energy (not an exception), so the energy monitor sees and reports them.
    Neighbors come from the module's :class:`VerletList` (``neighbors``).
    """

    def __init__(self, student: torch.jit.ScriptModule, species: torch.Tensor, atoms: Optional[torch.Tensor],
                 periodic: bool, dtype: torch.dtype, cutoff: float, skin: float = DEFAULT_SKIN):
        super().__init__()
        self.student = student
        self.register_buffer("species", species.to(torch.long))
        self.subset = atoms is not None
        self.register_buffer("atoms", (atoms if atoms is not None else torch.zeros(0)).to(torch.long))
        self.periodic = bool(periodic)
        self.dtype = dtype
        self.nm_to_angstrom = float(NM_TO_ANGSTROM)
        self.ev_to_kj_per_mol = float(EV_TO_KJ_PER_MOL)
        self.neighbors = VerletList(cutoff, skin, dtype)

    def energy(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> torch.Tensor:
        x = positions.to(self.dtype) * self.nm_to_angstrom
        if self.subset:
            x = x.index_select(0, self.atoms)
        cell = torch.zeros(3, 3, dtype=self.dtype, device=x.device)
        periodic = self.periodic and boxvectors is not None
        if boxvectors is not None and self.periodic:
            cell = boxvectors.to(self.dtype) * self.nm_to_angstrom
        edge_index, shifts = self.neighbors(x, cell, periodic)
        energy = self.student(x, self.species, edge_index, shifts).sum() * self.ev_to_kj_per_mol
        if not bool(torch.isfinite(x).all()):  # atoms with NaN positions have no edges: say so with a NaN energy
            energy = energy * float("nan")
        return energy.to(torch.float64)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.energy(positions, boxvectors)


class StudentForceModuleWithForces(StudentForceModule):
    """As :class:`StudentForceModule`, returning ``(energy kJ/mol, forces (N, 3) kJ/mol/nm)`` by autograd inside
    the module (TorchForce ``setOutputsForces(True)``; the PythonForce fallback)."""

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        pos = positions.detach().requires_grad_(True)
        energy = self.energy(pos, boxvectors)
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy.detach(), (-grad).to(positions.dtype)


def _import_openmm():
    import torch  # noqa: F401  (first: openmmtorch's plugin needs libtorch's libraries already loaded)

    try:
        import openmm
    except ImportError as exc:
        raise OpenMMBackendError(f"OpenMM is not installed ({exc}); pip install openmm") from exc
    return openmm


def _load_openmmtorch():
    """(openmmtorch module or None, reason). Repairs the plugin when openmm was imported before torch."""
    openmm = _import_openmm()
    try:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # openmmtorch imports simtk.openmm, which warns through the root logger
        try:
            import openmmtorch
        finally:
            root.setLevel(level)
    except Exception as exc:  # ImportError, or an undefined symbol from a libtorch/ABI mismatch
        return None, f"openmmtorch cannot be imported ({first_line(exc)})"
    if any("OpenMMTorchReference" in f for f in openmm.Platform.getPluginLoadFailures()):
        lib = os.path.join(openmm.version.openmm_library_path, "plugins", "libOpenMMTorchReference.so")
        try:
            openmm.Platform.loadPluginLibrary(lib)
        except Exception as exc:
            return None, f"openmmtorch's plugin does not load ({first_line(exc)})"
        log.info("reloaded %s (openmm was imported before torch)", lib)
    return openmmtorch, ""


def available_backend(backend: str = "auto") -> str:
    """The back end that ``backend`` resolves to here (``torchforce`` or ``pythonforce``); raises if none works."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    openmm = _import_openmm()
    has_python_force = hasattr(openmm, "PythonForce")
    if backend in ("auto", "torchforce"):
        module, reason = _load_openmmtorch()
        if module is not None:
            return "torchforce"
        if backend == "torchforce":
            raise OpenMMBackendError(f"backend 'torchforce' requested but {reason}")
        if not has_python_force:
            raise OpenMMBackendError(
                f"cannot add a student to OpenMM {openmm.__version__}: {reason}, and openmm.PythonForce needs "
                "OpenMM >= 8.5. Install openmmtorch matching your torch, or OpenMM >= 8.5"
            )
        global _warned_fallback
        level = logging.INFO if _warned_fallback else logging.WARNING
        _warned_fallback = True
        log.log(level, "%s; using the openmm.PythonForce fallback (model called from Python each step)", reason)
        return "pythonforce"
    if not has_python_force:
        raise OpenMMBackendError(f"openmm.PythonForce needs OpenMM >= 8.5; this is OpenMM {openmm.__version__}")
    return "pythonforce"


class _PythonForceCallback:
    """``openmm.PythonForce`` computation: State -> (energy kJ/mol, forces kJ/mol/nm). Picklable (PythonForce
    pickles its function when a System is copied or serialized): the module travels as TorchScript bytes."""

    def __init__(self, module: torch.jit.ScriptModule, periodic: bool, device: torch.device):
        self.module, self.periodic, self.device = module, periodic, torch.device(device)

    def __call__(self, state):
        from openmm import unit

        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        box = None
        if self.periodic:
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
            box = box.to(self.device)
        energy, forces = self.module(pos.to(self.device), box)
        return float(energy), forces.detach().cpu().numpy()

    def __getstate__(self):
        import io

        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        return {"module": buf.getvalue(), "periodic": self.periodic, "device": str(self.device)}

    def __setstate__(self, state):
        import io

        self.device = torch.device(state["device"])
        self.periodic = state["periodic"]
        self.module = torch.jit.load(io.BytesIO(state["module"]), map_location=self.device)


class _Pt2ForceCallback:
    """``openmm.PythonForce`` computation for a compiled .pt2 student: State -> (energy kJ/mol, forces kJ/mol/nm),
    neighbors from the same :class:`VerletList` as the TorchScript path, outputs from the package's
    ``evaluate()``. Pickled as the file's path and the settings (the package is loaded again from that path)."""

    def __init__(self, path, symbols: Sequence[str], atoms: Optional[Sequence[int]], periodic: bool, device,
                 skin: float):
        self.path, self.symbols, self.atoms = str(path), list(symbols), atoms
        self.periodic, self.skin = bool(periodic), float(skin)
        self.student = load_student(self.path, device=device)
        self.device = self.student.device
        self.species = self.student.species(self.symbols).to(self.device)
        self.index = None if atoms is None else torch.tensor(atoms, dtype=torch.long, device=self.device)
        self.neighbors = torch.jit.script(VerletList(self.student.cutoff, skin, self.student.dtype).to(self.device))

    def __call__(self, state):
        from openmm import unit

        dtype = self.student.dtype
        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        pos = pos.to(device=self.device, dtype=dtype) * NM_TO_ANGSTROM
        x = pos if self.index is None else pos.index_select(0, self.index)
        cell = torch.zeros(3, 3, dtype=dtype, device=self.device)
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            cell = torch.from_numpy(np.asarray(box)).to(device=self.device, dtype=dtype) * NM_TO_ANGSTROM
        edge_index, shifts = self.neighbors(x, cell, self.periodic)
        out = self.student.evaluate(x, self.species, edge_index, shifts)
        energy = float(out.energy) * EV_TO_KJ_PER_MOL
        if not bool(torch.isfinite(x).all()):  # atoms with NaN positions have no edges: say so with a NaN energy
            energy = float("nan")
        forces = out.forces.to(torch.float64) * (EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM)
        if self.index is not None:
            forces = torch.zeros(pos.shape[0], 3, dtype=torch.float64, device=self.device).index_copy(
                0, self.index, forces)
        return energy, forces.cpu().numpy()

    def __getstate__(self):
        return {"path": self.path, "symbols": self.symbols, "atoms": self.atoms, "periodic": self.periodic,
                "device": str(self.device), "skin": self.skin}

    def __setstate__(self, state):
        self.__init__(state["path"], state["symbols"], state["atoms"], state["periodic"], state["device"],
                      state["skin"])


def element_symbols(topology_or_symbols) -> list[str]:
    """Element symbols of an OpenMM Topology (or a sequence of symbols / openmm Elements / ASE Atoms)."""
    if hasattr(topology_or_symbols, "atoms") and callable(topology_or_symbols.atoms):
        symbols = []
        for atom in topology_or_symbols.atoms():
            if atom.element is None:
                raise InputError(
                    f"topology atom {atom.index} ({atom.name} in residue {atom.residue.name}) has no element; "
                    "the student needs an element for every atom it covers"
                )
            symbols.append(atom.element.symbol)
        return symbols
    if hasattr(topology_or_symbols, "get_chemical_symbols"):
        return list(topology_or_symbols.get_chemical_symbols())
    return [getattr(s, "symbol", s) for s in topology_or_symbols]


def student_force(model_path, topology, atoms: Optional[Sequence[int]] = None, *, periodic: Optional[bool] = None,
                  backend: str = "auto", outputs_forces: bool = False, device: Optional[str] = None,
                  skin: float = DEFAULT_SKIN):
    """An OpenMM Force computing the student's energy of ``atoms`` (default all) of ``topology``.

    ``model_path`` is a TorchScript student, or a compiled .pt2 one (:mod:`hessdistill.formats.pt2`), which runs
    only through ``openmm.PythonForce`` (OpenMM >= 8.5; TorchForce takes TorchScript alone).
    ``periodic`` defaults to whether the topology has box vectors. ``outputs_forces`` makes the module return
    forces itself (TorchForce ``setOutputsForces``); the PythonForce fallback always does. ``device`` places the
    model for the fallback (default: CUDA when torch sees it; a .pt2 package's own device); TorchForce follows the
    Context's platform itself. ``skin`` (A) is the Verlet skin of the force's neighbor list (0: search every step).
    It changes no process-wide setting; for small-system speed see :func:`hessdistill.heap.keep_freed_memory`.
    The force's name records the back end: ``hessdistill student (TorchForce)`` or ``(PythonForce)``.
    """
    if VesinNeighborList is None:
        raise OpenMMBackendError(f"the OpenMM force's neighbor list needs vesin-torch ({VESIN_TORCH_ERROR}); "
                                 "pip install vesin-torch")
    compiled = file_format(model_path) == "pt2"
    chosen = backend_for(model_path, backend)
    symbols = element_symbols(topology)
    n_total = len(symbols)
    if atoms is not None:
        atoms = [int(a) for a in atoms]
        bad = [a for a in atoms if not 0 <= a < n_total]
        if bad or len(set(atoms)) != len(atoms) or not atoms:
            raise InputError(
                f"atoms must be distinct indices in [0, {n_total}) of the topology; got "
                f"{'out-of-range ' + str(bad[:5]) if bad else 'an empty or repeated list'}"
            )
        symbols = [symbols[a] for a in atoms]
    if periodic is None:
        periodic = getattr(topology, "getPeriodicBoxVectors", lambda: None)() is not None
    if atoms == list(range(n_total)):
        atoms = None
    openmm = _import_openmm()
    if compiled:
        callback = _Pt2ForceCallback(model_path, symbols, atoms, periodic, device, skin)
        force = openmm.PythonForce(callback)
        log.info("student %s (.pt2) -> openmm.PythonForce on %s (%d atoms, periodic=%s)", Path(model_path).name,
                 callback.device, len(symbols), periodic)
    else:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        sf = StudentFile(model_path, device="cpu" if chosen == "torchforce" else device)
        species = sf.species(symbols)
        index = None if atoms is None else torch.tensor(atoms)
        cls = StudentForceModuleWithForces if outputs_forces or chosen == "pythonforce" else StudentForceModule
        wrapper = cls(sf.module, species, index, periodic, sf.dtype, sf.cutoff, skin)
        module = torch.jit.script(wrapper.to(sf.device))
        if chosen == "torchforce":
            openmmtorch, _ = _load_openmmtorch()
            force = openmmtorch.TorchForce(module)
            force.setOutputsForces(bool(outputs_forces))
            log.info("student %s -> openmmtorch.TorchForce (%d atoms, periodic=%s)", sf.path.name, len(symbols),
                     periodic)
        else:
            force = openmm.PythonForce(_PythonForceCallback(module, periodic, sf.device))
            log.info("student %s -> openmm.PythonForce on %s (%d atoms, periodic=%s)", sf.path.name, sf.device,
                     len(symbols), periodic)
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    force.setName(f"{STUDENT_FORCE_PREFIX} ({'TorchForce' if chosen == 'torchforce' else 'PythonForce'})")
    return force


def backend_for(model_path, backend: str = "auto") -> str:
    """The back end that runs the student file ``model_path`` here: ``available_backend(backend)`` for TorchScript;
    ``pythonforce`` for a .pt2 package (TorchForce takes only TorchScript), or a one-line error why it cannot run."""
    return _pt2_backend(model_path, backend) if file_format(model_path) == "pt2" else available_backend(backend)


def _pt2_backend(model_path, backend: str) -> str:
    """``pythonforce`` for a .pt2 student, or a one-line error saying why it cannot run here."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    openmm = _import_openmm()
    if backend == "torchforce":
        raise OpenMMBackendError(f"{model_path} is a compiled .pt2 student; openmmtorch.TorchForce takes only "
                                 "TorchScript: use the TorchScript file, or backend 'pythonforce'")
    if not hasattr(openmm, "PythonForce"):
        raise OpenMMBackendError(f"{model_path} is a compiled .pt2 student, which OpenMM runs through "
                                 f"openmm.PythonForce (OpenMM >= 8.5); this is OpenMM {openmm.__version__}: use the "
                                 "TorchScript file here")
    return "pythonforce"


def add_student_force(system, topology, model_path, atoms: Optional[Sequence[int]] = None, *,
                      force_group: int = 0, **kwargs) -> int:
    """Add the student's force for ``atoms`` (default all) to ``system``; returns the force index.

    The system must hold one particle per topology atom. Other forces in the system (an MM force field for the
    atoms outside an ML region, restraints) are left alone: removing double-counted MM terms is the caller's job.
    """
    n_topology = topology.getNumAtoms()
    if system.getNumParticles() != n_topology:
        raise InputError(
            f"system has {system.getNumParticles()} particles but the topology has {n_topology} atoms; "
            "they must match one to one"
        )
    force = student_force(model_path, topology, atoms, **kwargs)
    force.setForceGroup(force_group)
    return system.addForce(force)


def create_system(topology, model_path, *, masses: Optional[Sequence[float]] = None, remove_cm_motion: bool = False,
                  **kwargs):
    """A System of ``topology`` whose only force is the student: element masses (or ``masses`` in amu), no
    constraints, the topology's box when it has one. Keyword arguments go to :func:`student_force`."""
    openmm = _import_openmm()
    symbols = element_symbols(topology)
    if masses is None:
        masses = [atom.element.mass.value_in_unit(atom.element.mass.unit) for atom in topology.atoms()]
    if len(masses) != len(symbols):
        raise InputError(f"got {len(masses)} masses for {len(symbols)} atoms")
    system = openmm.System()
    for m in masses:
        system.addParticle(float(m))
    box = topology.getPeriodicBoxVectors()
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    if remove_cm_motion:
        system.addForce(openmm.CMMotionRemover())
    add_student_force(system, topology, model_path, **kwargs)
    return system


STUDENT_FORCE_PREFIX = "hessdistill student"
# Forces that cost nothing next to a student: with only these and students, the Reference platform is the faster one
_LIGHT_FORCES = ("CMMotionRemover",)


def only_students(system) -> bool:
    """Whether every force of ``system`` is a hessdistill student (or a center-of-mass motion remover)."""
    forces = system.getForces()
    return bool(forces) and all(
        f.getName().startswith(STUDENT_FORCE_PREFIX) or type(f).__name__ in _LIGHT_FORCES for f in forces
    )


def select_platform(name: Optional[str] = None, precision: Optional[str] = None,
                    system=None) -> Tuple[object, dict]:
    """(Platform, properties): ``name`` if given, else CUDA when both OpenMM and torch see a GPU, else CPU, or
    Reference when ``system`` is given and holds only students (:func:`only_students`). Without an MM force to
    speed up, the CPU platform's own work per step costs more than Reference's (measured with a trivial
    TorchForce: 0.14-0.18 against 0.06 ms at 54 atoms), and Reference integrates in double precision.
    ``precision`` (single/mixed/double) applies to CUDA/OpenCL; Reference is always double, CPU mixed."""
    openmm = _import_openmm()
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name is None:
        if "CUDA" in names and torch.cuda.is_available():
            name = "CUDA"
        elif "CPU" in names and not (system is not None and only_students(system)):
            name = "CPU"
        else:
            name = "Reference"
        log.info("OpenMM platform: %s", name)
    if name not in names:
        raise InputError(f"OpenMM platform {name!r} is not available here; available: {', '.join(names)}")
    platform = openmm.Platform.getPlatformByName(name)
    properties = {}
    if precision is not None:
        if precision not in ("single", "mixed", "double"):
            raise InputError(f"precision must be single, mixed or double, got {precision!r}")
        if "Precision" in platform.getPropertyNames():
            properties["Precision"] = precision
        else:
            log.warning("platform %s has no precision setting; ignoring precision=%s", name, precision)
    return platform, properties


__all__ = [
    "BACKENDS", "OpenMMBackendError", "StudentForceModule", "StudentForceModuleWithForces", "VerletList",
    "add_student_force",
    "available_backend", "backend_for", "create_system", "element_symbols", "only_students", "select_platform",
    "student_force",
]
