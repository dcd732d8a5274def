"""The compiled student file (.pt2, AOTInductor): same numbers as TorchScript and the eager student, clear errors.

Compiling takes tens of seconds, so the module compiles two packages (float64 from Python, float32 through the CLI)
and runs every structure through the same loaded package.
"""

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from conftest import make_student, rewrite_pt2_metadata

from hessdistill.distill.checkpoint import save_checkpoint
from hessdistill.errors import EngineError, ModelFileError
from hessdistill.formats import export_student, file_format, load_student, read_metadata, save_student
from hessdistill.formats.pt2 import Pt2StudentFile
from hessdistill.neighbors import neighbor_list


@pytest.fixture(scope="module")
def model():
    return make_student(layers=2).eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("pt2")
    return export_student(model, d / "student.pt"), save_student(model, d / "student.pt2")


@pytest.fixture(scope="module")
def calculators(files):
    """One calculator per format, loaded once: every structure below goes through the same loaded package."""
    from hessdistill.engines.ase import StudentCalculator

    return [StudentCalculator(path, device="cpu") for path in files]


@pytest.fixture(scope="module")
def loaded(calculators):
    return [c.student for c in calculators]


def structures():
    eth = molecule("CH3CH2OH")
    eth.rattle(0.05, seed=3)
    water = molecule("H2O")
    si = bulk("Si", cubic=True)
    si.rattle(0.05, seed=4)
    si16 = si.repeat((2, 1, 1))
    si16.rattle(0.03, seed=5)
    prim = bulk("Si")  # 2 atoms, each with many periodic images of itself and the other within the cutoff
    prim.rattle(0.02, seed=6)
    return {
        "ethanol": eth, "water": water, "single atom": Atoms("C", positions=[[0.0, 0.0, 0.0]]),
        "two atoms, no edges": Atoms("CO", positions=[[0, 0, 0], [6.0, 0, 0]]),
        "Si8": si, "Si16": si16, "Si2 primitive": prim,
    }


def eager(model, atoms):
    """Energy, per-atom energies, forces and stress of the eager student, stress by an explicit strain."""
    ei, sh = neighbor_list(atoms, model.cutoff)
    index = {s: k for k, s in enumerate(model.type_names)}
    species = torch.tensor([index[s] for s in atoms.get_chemical_symbols()])
    pos = torch.tensor(atoms.positions, requires_grad=True)
    strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    deform = torch.eye(3, dtype=torch.float64) + strain
    atomic = model(pos @ deform, species, torch.tensor(ei), torch.tensor(sh) @ deform)
    gx, gs = torch.autograd.grad(atomic.sum(), [pos, strain])
    out = {"energy": atomic.sum().item(), "energies": atomic.detach().numpy(), "forces": -gx.numpy()}
    if atoms.pbc.all():
        sigma = gs.numpy() / atoms.get_volume()
        out["stress"] = 0.5 * (sigma + sigma.T).flat[[0, 4, 8, 5, 2, 1]]
    return out


@pytest.mark.parametrize("name", list(structures()))
def test_pt2_equals_torchscript_and_eager_in_ase(name, model, calculators):
    atoms = structures()[name]
    ref = eager(model, atoms)
    for calc in calculators:
        a = atoms.copy()
        a.calc = calc
        got = {"energy": a.get_potential_energy(), "energies": a.get_potential_energies(), "forces": a.get_forces()}
        if "stress" in ref:
            got["stress"] = a.get_stress()
        for key, value in ref.items():
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-12, err_msg=f"{calc.student.format} {key}")
    assert np.abs(ref["forces"]).max() > 1e-3 or len(atoms) == 1 or name.startswith("two")  # not trivially 0


def test_local_mask_and_shift_forces_as_lammps_uses_them(model, loaded):
    """Ghost-style nodes: only local energies count, but forces reach every node; shift forces are -dE/dshifts."""
    _, pt2 = loaded
    atoms = structures()["Si8"]
    ei, sh = neighbor_list(atoms, model.cutoff)
    pos = torch.tensor(atoms.positions, requires_grad=True)
    shifts = torch.tensor(sh, requires_grad=True)
    species = pt2.species(atoms.get_chemical_symbols())
    local = torch.arange(len(atoms)) < 3
    out = pt2.evaluate(pos.detach(), species, torch.tensor(ei), shifts.detach(), local)
    atomic = model(pos, species, torch.tensor(ei), shifts)
    energy = atomic[:3].sum()
    gx, gs = torch.autograd.grad(energy, [pos, shifts])
    assert abs(out.energy.item() - energy.item()) < 1e-12
    np.testing.assert_allclose(out.energies.numpy(), atomic.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.forces.numpy(), -gx.numpy(), rtol=0, atol=1e-12)
    # the package reads each pair once: an edge's shift force is its pair's (-dE/ds_e + dE/ds_reverse) on the
    # kept edge and 0 on the reverse
    reverse = {(int(a), int(b), *np.round(s, 6)): e for e, (a, b, s) in enumerate(zip(ei[0], ei[1], sh))}
    rev = np.array([reverse[(int(b), int(a), *np.round(-s, 6))] for a, b, s in zip(ei[0], ei[1], sh)])
    kept = out.shift_forces.abs().sum(1).numpy() > 0
    assert kept.sum() * 2 == len(kept) and not (kept & kept[rev]).any()
    pair = (-gs + gs[rev]).numpy()
    np.testing.assert_allclose(out.shift_forces.numpy()[kept], pair[kept], rtol=0, atol=1e-12)
    # a list without every reverse (here one edge short) cannot be made into pair records: one line, not a number
    with pytest.raises(EngineError, match="every edge and its reverse"):
        pt2.evaluate(pos.detach(), species, torch.tensor(ei)[:, 1:], shifts.detach()[1:], local)
    assert np.abs(gx[3:].numpy()).max() > 1e-3  # non-local nodes feel the local energy
    virial = pos.detach().T @ -gx + shifts.detach().T @ -gs
    np.testing.assert_allclose(out.virial.numpy(), virial.numpy(), rtol=0, atol=1e-12)


def test_strided_inputs_give_the_same_numbers(loaded):
    """Pair records picked by NumPy fancy indexing (``pairs[:, keep]`` is Fortran-ordered) and positions seen
    through a transposed array: the compiled kernels read their inputs as contiguous, so these must be laid out
    again, not read in the wrong order."""
    from hessdistill.formats.evaluate import pair_records

    _, pt2 = loaded
    atoms = structures()["Si16"]
    ei, sh = neighbor_list(atoms, pt2.cutoff)
    kept = pair_records(torch.tensor(ei), torch.tensor(sh)).numpy()
    pairs, shifts = ei[:, kept], sh[kept]
    species = pt2.species(atoms.get_chemical_symbols())
    x = torch.tensor(atoms.positions)
    energy, forces = pt2.energy_forces(x, species, torch.tensor(np.ascontiguousarray(pairs)), torch.tensor(shifts))
    strided_pairs = torch.from_numpy(pairs)
    strided_x = torch.from_numpy(np.asfortranarray(atoms.positions))
    assert not strided_pairs.is_contiguous() and not strided_x.is_contiguous()
    e2, f2 = pt2.energy_forces(strided_x, species, strided_pairs, torch.from_numpy(np.asfortranarray(shifts)))
    assert abs(e2.item() - energy.item()) < 1e-12
    np.testing.assert_allclose(f2.numpy(), forces.numpy(), rtol=0, atol=1e-12)
    assert np.abs(forces.numpy()).max() > 1e-3


@pytest.mark.parametrize("arch", ["painn", "schnet", "tensornet"])
def test_traced_graph_equals_autograd_for_any_size(arch):
    """trace_autograd of the engine signature: one graph, no autograd left, right for sizes it never saw."""
    from hessdistill.formats.evaluate import student_outputs
    from hessdistill.formats.pt2 import _edge_count, transpose_narrow_matmuls
    from hessdistill.tracing import trace_autograd

    m = make_student(arch).eval()
    gen = torch.Generator().manual_seed(1)

    def inputs(n, e):
        ei = torch.randint(0, n, (2, e), generator=gen)
        ei = ei[:, ei[0] != ei[1]]
        return (3 * torch.rand(n, 3, generator=gen, dtype=torch.float64), torch.randint(0, 4, (n,), generator=gen),
                ei, 0.1 * torch.randn(ei.shape[1], 3, generator=gen, dtype=torch.float64), torch.arange(n) < n - 1)

    graph = trace_autograd(lambda *x: tuple(student_outputs(m, *x)), inputs(7, 11))
    assert not any("autograd" in str(node.target) for node in graph.graph.nodes)
    # the export's rewrite: PaiNN's filter gradients (edges x 24) @ (24 x 16), one per interaction, transposed, same
    # numbers; this SchNet's (edges x 8) @ (8 x 16) is not narrow and stays; TensorNet's are its embedding's radial
    # (edges x 24) @ (24 x 16) and each interaction's (edges x 24) @ (24 x 8)
    transposed = transpose_narrow_matmuls(graph, rows=_edge_count(graph))
    assert transposed == {"painn": m.num_interactions, "schnet": 0, "tensornet": 1 + m.num_interactions}[arch]
    for n, e in [(2, 0), (5, 3), (40, 300)]:
        x = inputs(n, e)
        for got, want in zip(graph(*x), student_outputs(m, *x)):
            np.testing.assert_allclose(got.detach().numpy(), want.numpy(), rtol=0, atol=1e-12)


def test_metadata_matches_torchscript(loaded, files):
    ts, pt2 = loaded
    assert {k: pt2.metadata[k] for k in ts.metadata} == ts.metadata == read_metadata(files[0])
    assert read_metadata(files[1]) == pt2.metadata
    assert pt2.metadata["torch_version"] == torch.__version__ and pt2.metadata["device"] == "cpu"
    # compiled for one thread whatever torch's thread count was: no OpenMP regions, no atomic scatter-adds
    assert pt2.metadata["compile_threads"] == "1"
    with zipfile.ZipFile(files[1]) as z:
        kernels = "".join(z.read(n).decode() for n in z.namelist() if n.endswith(".cpp"))
    assert kernels and "#pragma omp parallel" not in kernels and "atomic_add" not in kernels
    # the library inside the package carries the same metadata (what C++ reads with get_metadata())
    inside = pt2.runner.get_metadata()
    assert all(inside[k] == v for k, v in pt2.metadata.items())
    assert (pt2.cutoff, pt2.type_names, pt2.dtype) == (ts.cutoff, ts.type_names, ts.dtype)


def _one_line_error(exc_type, fn, match):
    with pytest.raises(exc_type, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, match", [
    (lambda m: {k: v for k, v in m.items() if k == "AOTI_DEVICE_KEY"}, "not a hessdistill .pt2 student"),
    (lambda m: {**m, "torch_version": "2.8.0"}, "compiled by torch 2.8.0"),
    (lambda m: {**m, "cpu_isa": m["cpu_isa"] + " avx1024"}, "CPU lacks avx1024"),
    (lambda m: {**m, "cpu_isa": "aarch64 sve256"}, "CPU lacks aarch64"),
    (lambda m: {**m, "pt2_signature": "99"}, "pt2 signature"),
])
def test_mismatched_packages_are_refused(change, match, files, tmp_path):
    bad = tmp_path / "bad.pt2"
    rewrite_pt2_metadata(files[1], bad, change)
    _one_line_error(ModelFileError, lambda: load_student(bad), match)


def test_package_is_checked_against_its_student(model, files):
    """The check every export runs after compiling: the package passes against the student it was compiled from and
    is refused, in one line naming the TorchScript fallback, against another (as a miscompiled package would be)."""
    from hessdistill.errors import EngineError
    from hessdistill.formats.pt2 import _check_package

    pt2 = Path(files[1])
    _check_package(model, pt2, torch.device("cpu"), pt2.name)
    other = make_student(layers=2, seed=1).eval()
    _one_line_error(EngineError, lambda: _check_package(other, pt2, torch.device("cpu"), pt2.name),
                    "away from the student's own")


def test_bad_files_are_refused(files, tmp_path):
    ts, pt2 = files
    junk = tmp_path / "junk.pt2"
    junk.write_text("not a package\n")
    _one_line_error(ModelFileError, lambda: load_student(junk), "not a zip file")
    _one_line_error(ModelFileError, lambda: Pt2StudentFile(ts), "not a .pt2 package")
    _one_line_error(ModelFileError, lambda: load_student(tmp_path / "missing.pt2"), "does not exist")
    _one_line_error(ModelFileError, lambda: load_student(pt2, device="cuda"), "compiled for cpu")
    renamed = tmp_path / "student.pt"  # found by content, not by suffix
    shutil.copy(pt2, renamed)
    assert file_format(renamed) == "pt2" and file_format(ts) == "torchscript"


def test_no_compiler_names_the_torchscript_fallback(model, tmp_path):
    with torch._inductor.config.patch({"cpp.cxx": ("hessdistill-no-such-compiler",)}):
        _one_line_error(EngineError, lambda: save_student(model, tmp_path / "s.pt2"),
                        "no C\\+\\+ compiler.*TorchScript")
    assert not list(tmp_path.iterdir())


def test_cli_exports_float32_pt2_by_suffix(model, tmp_path):
    """`hessdistill export RUN -o x.pt2`: a float32 package that agrees with the float32 TorchScript file."""
    from hessdistill.cli import main
    from hessdistill.engines.ase import StudentCalculator

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint({"architecture": model.architecture, "hyperparameters": model.hyperparameters(),
                     "best_state": model.state_dict(), "teacher": "test"}, run / "checkpoint.pt")
    main(["export", str(run), "-o", str(tmp_path / "s32.pt2"), "--dtype", "float32"])
    main(["export", str(run), "-o", str(tmp_path / "s32.pt"), "--dtype", "float32"])
    assert load_student(tmp_path / "s32.pt2").metadata["dtype"] == "float32"
    ref = eager(model, structures()["Si8"])
    for name in ("s32.pt2", "s32.pt"):
        a = structures()["Si8"]
        a.calc = StudentCalculator(tmp_path / name, device="cpu")
        np.testing.assert_allclose(a.get_forces(), ref["forces"], rtol=0, atol=2e-5)
        np.testing.assert_allclose(a.get_stress(), ref["stress"], rtol=0, atol=2e-6)
        assert abs(a.get_potential_energy() - ref["energy"]) < 1e-4


@pytest.mark.parametrize("arch", ["schnet", "tensornet"])
def test_pt2_of_students_without_their_own_pair_pass(arch, tmp_path):
    """SchNet and TensorNet read pair records through StudentBase.forward_pairs (both edges of a record; a one-way
    record's reverse moved beyond the cutoff): compiled, they equal their TorchScript file on a cell whose atoms
    see their own images, and one-way records equal the eager student's (inductor once compiled another form of
    this, the envelope scaled by `both`, into heap-corrupting code for TensorNet)."""
    from hessdistill.formats.evaluate import pair_records, student_outputs

    m = make_student(arch, type_names=("Si", "C"))
    pt2 = Pt2StudentFile(save_student(m, tmp_path / "s.pt2"))
    ts = load_student(export_student(m, tmp_path / "s.pt"))
    atoms = bulk("SiC", "zincblende", a=4.36)
    atoms.rattle(0.05, seed=4)
    ei, sh = (torch.as_tensor(a) for a in neighbor_list(atoms, m.cutoff))
    pos, species = torch.tensor(atoms.positions), pt2.species(atoms.get_chemical_symbols())
    assert bool((ei[0] == ei[1]).any())  # self-image pairs
    got, want = pt2.evaluate(pos, species, ei, sh), ts.evaluate(pos, species, ei, sh)
    for key in ("energy", "energies", "forces", "virial"):
        np.testing.assert_allclose(getattr(got, key).numpy(), getattr(want, key).numpy(), rtol=0, atol=1e-12)
    kept = pair_records(ei, sh)
    both = (torch.arange(len(kept)) % 3 != 0).to(torch.float64)
    local = torch.ones(len(atoms), dtype=torch.bool)
    records = (pos, species, ei[:, kept], sh[kept], both)
    out = pt2.runner(*records, local)
    ref = student_outputs(m, *records[:4], local, both)
    for k, key in enumerate(("energy", "energies", "forces", "shift_forces", "virial")):
        np.testing.assert_allclose(out[k].numpy(), getattr(ref, key).numpy(), rtol=0, atol=1e-12)
    assert abs(float(ref.energy - want.energy)) > 1e-6  # the one-way records make another graph
