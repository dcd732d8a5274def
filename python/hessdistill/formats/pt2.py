"""The compiled student file: an AOTInductor package (``.pt2``) of energy, forces and virial in one graph.

The fast path in every engine. :func:`~.evaluate.student_outputs` (energy, per-atom energies, forces, shift forces,
virial from the LAMMPS-style graph inputs) is traced with its autograd into one graph
(:func:`hessdistill.tracing.trace_autograd`), exported with dynamic numbers of atoms (>= 1) and edges (>= 0), and
compiled to machine code by ``torch._inductor.aoti_compile_and_package``. A loaded package has no autograd: every
derivative an engine needs is already an output.

Metadata: the TorchScript file's keys (:data:`.torchscript.METADATA_KEYS`, same values) plus

=================  ==========================================================================================
key                value
=================  ==========================================================================================
``package``        ``pt2``
``pt2_signature``  ``2``: inputs ``positions species pairs shifts both local``, outputs ``energy
                   energies forces shift_forces virial`` (:mod:`.evaluate`); pair records as
                   ``StudentBase.forward_pairs`` reads them (a full list gives each pair once, ``both`` = 1:
                   :func:`.evaluate.pair_records`), shift forces per record. (``1``: the full edge list;
                   such packages are refused: export again)
``inputs``         the input names, space separated
``outputs``        the output names, space separated
``torch_version``  torch that compiled it; another torch version refuses to load it (the build tag, ``+cpu`` or
                   ``+cu128``, may differ)
``device``         ``cpu`` or ``cuda``: the only device it runs on
``cpu_isa``        the exporting machine's architecture and the CPU features the code uses (``x86_64 avx2
                   avx512 amx_tile``); a CPU without one of them refuses the package
=================  ==========================================================================================

An informational ``compile_threads`` key records the CPU threads the kernels were compiled for (``1`` unless
``export_pt2(threads=...)`` says otherwise; absent from older packages).

Python reads them from the package's ``*_metadata.json`` before loading its library; C++ reads the same values
with ``AOTIModelPackageLoader::get_metadata()``.

A package is machine code for the exporting host's instruction set, one device and one torch version: compile it on
the machine (kind) that will run it. Compiling needs a C++ compiler (``g++``, or the one named by ``CXX``); without
one, export TorchScript, which runs everywhere (slower).

Example
-------
>>> export_pt2(model, "student.pt2", dtype="float64")
>>> sf = Pt2StudentFile("student.pt2")
>>> out = sf.evaluate(positions, sf.species(symbols), edge_index, shifts)
>>> out.energy, out.forces, out.virial
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from functools import partial
from pathlib import Path

import torch

from ..dtypes import parse_dtype
from ..errors import ConfigError, EngineError, ModelFileError, first_line
from ..students import StudentBase
from .evaluate import OUTPUTS, StudentOutputs, pair_records, student_outputs
from .torchscript import DTYPES, METADATA_KEYS, _clone, _species, base_metadata

SIGNATURE = "2"
PT2_INPUTS = ("positions", "species", "pairs", "shifts", "both", "local")
PT2_KEYS = ("package", "pt2_signature", "inputs", "outputs", "torch_version", "device", "cpu_isa")
FALLBACK = "export TorchScript instead (hessdistill export --format torchscript), which needs no compiler"


def export_pt2(model: StudentBase, path: str | os.PathLike, dtype: str = "float64", teacher: str = "",
               device: str = "cpu", threads: int = 1) -> Path:
    """Trace energy, forces and virial of ``model`` in ``dtype``, compile them for ``device`` on this machine and
    write the package to ``path`` (atomically). Takes tens of seconds (C++ compilation).

    ``threads``: CPU threads the compiled code uses, fixed at compile time (inductor writes ``omp parallel
    num_threads(T)`` into the kernels and, for T > 1, makes every scatter-add an atomic compare-and-swap loop),
    whatever torch's thread setting is when the package runs. The default, 1, is right for LAMMPS (one thread
    per MPI rank) and for small students; a package compiled for 1 thread runs correctly, on one thread, in a
    process that uses more. Measured (PaiNN 32x3, Si512, float64): the package compiled for 2 threads took 2.9x
    the CPU time of the 1-thread one when the caller wanted 1 thread. Before this option packages were compiled
    for torch's thread count at export time (the CLI's ``--threads``, 1 by default; in Python, all cores).

    Raises EngineError when no C++ compiler is found or compilation fails.
    """
    dtype = str(parse_dtype(dtype, "export dtype")).replace("torch.", "")
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {str(device)!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("cannot compile a .pt2 for cuda: torch sees no CUDA device here")
    if int(threads) < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    metadata = base_metadata(model, dtype, teacher)
    metadata.update(package="pt2", pt2_signature=SIGNATURE, inputs=" ".join(PT2_INPUTS), outputs=" ".join(OUTPUTS),
                    torch_version=torch.__version__, device=device.type, cpu_isa=_cpu_isa(),
                    compile_threads=str(int(threads)))
    _check_compiler()

    model = _clone(model).to(device=device, dtype=DTYPES[dtype]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    program = _export_program(model, DTYPES[dtype], device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.pt2")  # the packager insists on the .pt2 suffix
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp),
            inductor_configs={"aot_inductor.metadata": metadata, "cpp.threads": int(threads)})
    except Exception as exc:  # compiler and linker failures arrive as many exception types
        tmp.unlink(missing_ok=True)
        raise EngineError(f"compiling {path.name} failed: {first_line(exc)}; {FALLBACK}") from exc
    try:
        _check_package(model, tmp, device, path.name)
    except EngineError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _check_package(model: StudentBase, package: Path, device: torch.device, name: str) -> None:
    """The compiled package against the model's own autograd on a structure of sizes the trace never saw. Inductor
    has compiled wrong code for a correct traced graph (a training graph of the tensornet student, torch 2.9.1), so
    no package is written without this check."""
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(1)
    n = 9
    positions = (1.2 * n ** (1 / 3) * torch.rand(n, 3, generator=gen, dtype=torch.float64)).to(device, dtype)
    pairs = torch.cartesian_prod(torch.arange(n), torch.arange(n))
    edge_index = pairs[pairs[:, 0] != pairs[:, 1]].T.contiguous().to(device)
    inputs = (positions, (torch.arange(n) % len(model.type_names)).to(device), edge_index,
              torch.zeros(edge_index.shape[1], 3, dtype=dtype, device=device), torch.arange(n, device=device) < n - 1)
    got = Pt2StudentFile(package, device).evaluate(*inputs)
    want = student_outputs(model, *inputs)
    tol = 1e-9 if dtype == torch.float64 else 1e-4  # relative to each output's largest entry: reordered sums only
    for output in ("energy", "forces", "virial"):
        a, b = getattr(got, output), getattr(want, output)
        err = float((a - b).abs().max()) / max(float(b.abs().max()), 1e-12)
        if not err <= tol:
            raise EngineError(f"the compiled {name} gives {output} {err:.1e} (relative) away from the student's own "
                              f"(a compiler fault); {FALLBACK}")


def _export_program(model: StudentBase, dtype: torch.dtype, device: torch.device) -> torch.export.ExportedProgram:
    """student_outputs of ``model`` as an exported program with dynamic atom and edge counts."""
    from torch.export import Dim

    from ..tracing import trace_autograd

    # distinct sizes >= 2 (7 atoms, 11 pair records), so no size is specialized into the graph
    n_atoms, n_edges = 7, 11
    gen = torch.Generator().manual_seed(0)
    src = torch.arange(n_edges) % n_atoms
    example = (
        (3.0 * torch.rand(n_atoms, 3, generator=gen)).to(device, dtype),
        (torch.arange(n_atoms) % len(model.type_names)).to(device),
        torch.stack([src, (src + 1 + torch.arange(n_edges) // n_atoms) % n_atoms]).to(device),
        torch.zeros(n_edges, 3, dtype=dtype, device=device),
        (torch.arange(n_edges) % 2).to(device, dtype),
        torch.ones(n_atoms, dtype=torch.bool, device=device),
    )
    graph = trace_autograd(partial(_outputs_tuple, model), example)
    transpose_narrow_matmuls(graph, rows=_edge_count(graph))
    atoms, edges = Dim("atoms", min=1), Dim("edges", min=0)
    shapes = ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, {0: edges}, {0: atoms})
    return torch.export.export(graph, example, dynamic_shapes=shapes)


def transpose_narrow_matmuls(graph: torch.fx.GraphModule, rows=None, max_columns: int = 16) -> int:
    """Compute each tall, narrow product ``a @ b`` of the traced graph as ``(b^T @ a^T)^T``; returns how many.

    Tall and narrow: ``a`` has a symbolic number of rows (``rows``, the edge count's symbol, when given), ``b``
    fixed sizes K x N with N <= ``max_columns`` and N < K. In a student's force graph with ``rows`` the edge count
    these are the gradients of the radial filters, (edges x 3F) @ (3F x num_basis), one per interaction. torch's CPU GEMM (MKL) computes the transposed product,
    whose output is num_basis x edges, about twice as fast in float64 (PaiNN 32x3, 14k edges: 1.8 against 4.0 ms
    per product); inductor reads the transposed result without a copy. Same numbers up to the order of the sums.
    Wider products, and per-atom products (node MLPs), ran slower transposed (0.64x overall with N <= 32), so the
    export passes ``rows`` and only the edge products change.
    """
    aten = torch.ops.aten
    changed = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target is not aten.mm.default:
            continue
        a, b = node.args
        a_val, b_val = a.meta.get("val"), b.meta.get("val")
        if a_val is None or b_val is None or isinstance(a_val.shape[0], int):
            continue
        if rows is not None and str(a_val.shape[0]) != str(rows):
            continue
        k, n = b_val.shape
        if not (isinstance(k, int) and isinstance(n, int) and n <= max_columns and n < k):
            continue
        with graph.graph.inserting_before(node):
            product = graph.graph.call_function(aten.mm.default, (graph.graph.call_function(aten.t.default, (b,)),
                                                                 graph.graph.call_function(aten.t.default, (a,))))
            transposed = graph.graph.call_function(aten.t.default, (product,))
        node.replace_all_uses_with(transposed)
        graph.graph.erase_node(node)
        changed += 1
    if changed:
        graph.recompile()
    return changed


def _edge_count(graph: torch.fx.GraphModule):
    """The symbolic edge (pair) count of a traced student_outputs graph: its third input is 2 x E."""
    placeholders = [node for node in graph.graph.nodes if node.op == "placeholder"]
    return placeholders[PT2_INPUTS.index("pairs")].meta["val"].shape[1]


def _outputs_tuple(model, *inputs) -> tuple:
    positions, species, pairs, shifts, both, local = inputs
    # a plain tuple: the packager cannot serialize a NamedTuple
    return tuple(student_outputs(model, positions, species, pairs, shifts, local, both))


def _check_compiler() -> None:
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as exc:
        tried = ", ".join(str(c) for c in torch._inductor.config.cpp.cxx if c)
        raise EngineError(f"cannot compile a .pt2 package: no C++ compiler found (tried {tried}; set CXX or install "
                          f"g++); {FALLBACK}") from exc


# compiler flags of the vector instruction sets inductor may use -> the CPU feature each needs at run time
_CPU_FEATURES = {"-mavx2": "avx2", "-mavx512f": "avx512", "-mavx512bf16": "avx512_bf16", "-mamx-tile": "amx_tile",
                 "-mamx-fp16": "amx_fp16"}


def _cpu_isa() -> str:
    """This machine's architecture and the CPU features the compiled code will use, e.g. ``x86_64 avx2 avx512``."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    flags = isa.build_arch_flags().split() if isa else []
    return " ".join([platform.machine()] + [name for flag, name in _CPU_FEATURES.items() if flag in flags])


def _missing_cpu_features(cpu_isa: str) -> list[str]:
    """Features in a package's ``cpu_isa`` this CPU lacks (checked without a compiler, from torch's CPU probe)."""
    machine, *features = cpu_isa.split() or [""]
    if machine != platform.machine():
        return [machine]
    return [f for f in features
            if f not in _CPU_FEATURES.values() or not getattr(torch.cpu, f"_is_{f}_supported")()]


def read_pt2_metadata(path: str | os.PathLike) -> dict:
    """Metadata of a .pt2 package, read from the archive without loading its library."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"student file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a .pt2 package (not a zip file)")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = names[0].split("/")[0] if names else ""
        if f"{root}/archive_format" not in names or z.read(f"{root}/archive_format") != b"pt2":
            raise ModelFileError(f"{path} is not a .pt2 package (no pt2 archive_format entry)")
        # the wrapper's metadata is what the compiled library returns (get_metadata); the kernel file, named by
        # another hash that may sort first, holds a copy
        found = [n for n in names if n.startswith(f"{root}/data/aotinductor/") and n.endswith("wrapper_metadata.json")]
        if not found:
            raise ModelFileError(f"{path} is a pt2 archive without an AOTInductor model")
        try:
            metadata = json.loads(z.read(found[0]))
        except ValueError as exc:
            raise ModelFileError(f"{path}: unreadable package metadata ({exc})") from exc
    missing = [k for k in METADATA_KEYS + PT2_KEYS if k not in metadata]
    if missing:
        raise ModelFileError(f"{path} is not a hessdistill .pt2 student: metadata lacks {', '.join(missing)}")
    return metadata


class Pt2StudentFile:
    """A loaded .pt2 student: the compiled ``runner``, parsed ``metadata`` and the accessors of
    :class:`~.torchscript.StudentFile` (``cutoff``, ``type_names``, ``dtype``, ``device``, ``species()``,
    ``evaluate()``).

    Refuses, with one line, a package compiled by another torch, for another device or for a CPU instruction set
    this machine lacks.
    """

    format = "pt2"

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None):
        self.path = Path(path)
        meta = read_pt2_metadata(self.path)
        built = meta["device"]
        self.device = torch.device(device if device is not None else built)
        if self.device.type != built:
            raise ModelFileError(f"{self.path} was compiled for {built} and runs only there; asked for "
                                 f"{self.device.type} (export it again with device {self.device.type})")
        if meta["torch_version"].split("+")[0] != torch.__version__.split("+")[0]:  # +cpu/+cu128 builds share the ABI
            raise ModelFileError(f"{self.path} was compiled by torch {meta['torch_version']}; this is torch "
                                 f"{torch.__version__}: export it again here")
        if meta["pt2_signature"] != SIGNATURE:
            raise ModelFileError(f"{self.path} has pt2 signature {meta['pt2_signature']!r}; this hessdistill "
                                 f"reads {SIGNATURE!r}: export it again")
        missing = _missing_cpu_features(meta["cpu_isa"]) if built == "cpu" else []
        if missing:
            raise ModelFileError(f"{self.path} was compiled for a CPU with {meta['cpu_isa']}; this "
                                 f"{platform.machine()} CPU lacks {', '.join(missing)}: export it again here")
        try:
            index = self.device.index if self.device.index is not None else -1
            self.runner = torch._inductor.aoti_load_package(str(self.path), device_index=index)
        except Exception as exc:  # the loader raises bare RuntimeErrors
            raise ModelFileError(f"cannot load {self.path} as a .pt2 package: {first_line(exc)}") from exc
        # the loader's flat entry point: the runner's __call__ parses its call spec and pytrees every call
        self._boxed_run = self.runner.loader.boxed_run
        self.metadata = meta
        self.cutoff = float(meta["cutoff"])
        self.num_interactions = int(meta["num_interactions"])
        self.type_names = meta["type_names"].split()
        self.atomic_numbers = [int(z) for z in meta["atomic_numbers"].split()]
        self.dtype = DTYPES[meta["dtype"]]
        self._ones = None  # energy_forces' all-atoms mask and pair weights (sliced to the pair count), reused

    def _run(self, inputs: list) -> list:
        # the compiled kernels index their inputs as contiguous: a strided view (a column slice, a transposed or
        # Fortran-ordered array from NumPy) would be read in the wrong order, silently
        return self._boxed_run([t.contiguous() for t in inputs])

    def species(self, symbols) -> torch.Tensor:
        """Type indices for element symbols; raises UnsupportedElementError for elements not covered."""
        return _species(self, symbols)

    def evaluate(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                 shifts: torch.Tensor, local: torch.Tensor | None = None) -> StudentOutputs:
        """Energy, per-atom energies, forces, shift forces and virial (:mod:`.evaluate`) from the full edge list,
        as the TorchScript file takes it; ``local`` defaults to every atom. Inputs must be on ``device``,
        positions and shifts in ``dtype``.

        The package reads each pair once (:func:`.evaluate.pair_records`): shift forces are -dE/dshifts of the
        energy it computes, on the kept edge of each pair and zero on its reverse (sums, hence the virial, are
        the TorchScript file's).
        """
        if local is None:
            local = torch.ones(positions.shape[0], dtype=torch.bool, device=positions.device)
        kept = pair_records(edge_index, shifts)
        if 2 * kept.numel() != edge_index.shape[1]:
            raise EngineError(f"{self.path.name}: the edge list must hold every edge and its reverse (a full "
                              f"neighbour list); {edge_index.shape[1]} edges give {kept.numel()} pairs")
        pair_shifts = shifts.index_select(0, kept)
        both = torch.ones(kept.shape[0], dtype=shifts.dtype, device=shifts.device)
        energy, energies, forces, pair_shift_forces, virial = self._run(
            [positions, species, edge_index.index_select(1, kept), pair_shifts, both, local])
        shift_forces = torch.zeros_like(shifts).index_copy(0, kept, pair_shift_forces)
        return StudentOutputs(energy, energies, forces, shift_forces, virial)

    def energy_forces(self, positions: torch.Tensor, species: torch.Tensor, pairs: torch.Tensor,
                      pair_shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energy and forces of every atom from each pair once (``pairs`` (2, P) as
        :func:`.evaluate.pair_records` keeps them, ``pair_shifts`` (P, 3)): the package's own input, for callers
        that keep a half list (OpenMM's PythonForce), with no pair search or output scatter per call."""
        n, p = positions.shape[0], pairs.shape[1]
        local, weights = self._ones if self._ones is not None else (None, None)
        if local is None or local.shape[0] != n:
            local = torch.ones(n, dtype=torch.bool, device=positions.device)
        if weights is None or weights.shape[0] < p:  # the pair count changes every MD step: grow, then slice
            weights = torch.ones(max(p, 2 * (0 if weights is None else weights.shape[0])), dtype=pair_shifts.dtype,
                                 device=pair_shifts.device)
        self._ones = (local, weights)
        energy, _, forces, _, _ = self._run([positions, species, pairs, pair_shifts, weights[:p], local])
        return energy, forces
