"""The metatomic format: metatomic's own ASE calculator on our exported AtomisticModel gives our numbers.

Reference: hessdistill's StudentCalculator on the TorchScript export of the same student (its own neighbour list,
virial by autograd through shifts). The metatomic side shares nothing with it but the student's weights: vesin's
neighbour list, metatomic's System and unit handling, forces and stress by metatomic-ase's strain autograd.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from conftest import make_student

pytest.importorskip("metatomic.torch")
metatomic_ase = pytest.importorskip("metatomic_ase")

from metatensor.torch import Labels  # noqa: E402
from metatomic.torch import ModelOutput, load_atomistic_model  # noqa: E402

from hessdistill.distill.checkpoint import save_checkpoint  # noqa: E402
from hessdistill.errors import ModelFileError  # noqa: E402
from hessdistill.formats import export_student, file_format, load_student, read_metadata, save_student  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return make_student(layers=2).eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("metatomic")
    return export_student(model, d / "student.pt"), save_student(model, d / "student-mta.pt", format="metatomic")


@pytest.fixture(scope="module")
def calculators(files):
    from hessdistill.engines.ase import StudentCalculator

    ts, mta = files
    # check_consistency: metatomic validates our inputs and the energy TensorMap against its standard output
    return StudentCalculator(ts, device="cpu"), metatomic_ase.MetatomicCalculator(mta, device="cpu",
                                                                                   check_consistency=True)


def tilted(atoms, seed):
    """``atoms`` in a sheared cell (atoms follow the cell), rattled."""
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell.array + np.array([[0, 0, 0], [0.5, 0, 0], [0.3, -0.4, 0]]), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def structures():
    eth = molecule("CH3CH2OH")
    eth.rattle(0.05, seed=3)
    prim = bulk("Si")  # 2 atoms, many periodic images of each atom within the cutoff
    prim.rattle(0.02, seed=6)
    slab = tilted(bulk("Si", cubic=True), seed=7)
    slab.pbc = (True, True, False)
    return {
        "ethanol": eth, "water": molecule("H2O"),
        "Si8 tilted": tilted(bulk("Si", cubic=True), seed=4),
        "SiC tilted": tilted(bulk("SiC", "zincblende", a=4.36, cubic=True), seed=5),
        "Si2 primitive": prim, "Si8 slab (mixed pbc)": slab,
    }


def results(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    out = {"energy": a.get_potential_energy(), "energies": a.get_potential_energies(), "forces": a.get_forces()}
    if atoms.pbc.all():
        out["stress"] = a.get_stress()
    return out


def assert_close(got, ref, rel, what):
    for key, value in ref.items():
        scale = max(np.abs(value).max(), 1e-3)
        np.testing.assert_allclose(got[key], value, rtol=rel, atol=rel * scale, err_msg=f"{what}: {key}")


@pytest.mark.parametrize("name", list(structures()))
def test_metatomic_ase_equals_student_calculator(name, calculators):
    atoms = structures()[name]
    ours, theirs = calculators
    ref = results(ours, atoms)
    assert_close(results(theirs, atoms), ref, 1e-10, name)
    assert np.abs(ref["forces"]).max() > 1e-3  # not trivially zero
    if "stress" in ref:
        assert np.abs(ref["stress"]).max() > 1e-4


def test_schnet_student_too(tmp_path):
    from hessdistill.engines.ase import StudentCalculator

    model = make_student("schnet", layers=3, seed=1).eval()
    ts = export_student(model, tmp_path / "s.pt")
    mta = save_student(model, tmp_path / "s-mta.pt", format="metatomic")
    atoms = structures()["SiC tilted"]
    assert_close(results(metatomic_ase.MetatomicCalculator(mta, device="cpu"), atoms),
                 results(StudentCalculator(ts, device="cpu"), atoms), 1e-10, "schnet")


def test_batched_systems_and_selected_atoms(calculators):
    """Several systems in one call, energies restricted to selected atoms (how domain decomposition uses it)."""
    ours, theirs = calculators
    frames = [structures()["ethanol"], structures()["Si8 tilted"]]
    per_atom = [results(ours, a)["energies"] for a in frames]
    chosen = [[0, 1], [0, 4], [1, 0], [1, 3], [1, 7]]
    selected = Labels(["system", "atom"], torch.tensor(chosen, dtype=torch.int32))
    out = theirs.run_model(frames, {"energy": ModelOutput(unit="eV", sample_kind="atom")}, selected_atoms=selected)
    block = out["energy"].block()
    assert block.samples.values.tolist() == chosen
    expected = [per_atom[s][i] for s, i in chosen]
    np.testing.assert_allclose(block.values.detach().numpy().ravel(), expected, rtol=1e-12)
    out = theirs.run_model(frames, {"energy": ModelOutput(unit="eV", sample_kind="system")}, selected_atoms=selected)
    sums = [sum(per_atom[s][i] for s, i in chosen if s == k) for k in range(2)]
    np.testing.assert_allclose(out["energy"].block().values.detach().numpy().ravel(), sums, rtol=1e-12)
    whole = theirs.run_model(frames, {"energy": ModelOutput(unit="eV", sample_kind="system")})
    np.testing.assert_allclose(whole["energy"].block().values.detach().numpy().ravel(),
                               [e.sum() for e in per_atom], rtol=1e-12)


def test_capabilities_and_metadata_read_back(model, files):
    ts, mta = files
    loaded = load_atomistic_model(mta)
    cap = loaded.capabilities()
    assert cap.interaction_range == pytest.approx(model.cutoff * model.num_interactions)
    assert list(cap.atomic_types) == [1, 6, 8, 14]
    assert cap.length_unit == "angstrom" and cap.dtype == "float64"
    assert cap.outputs["energy"].unit == "eV" and cap.outputs["energy"].sample_kind == "atom"
    options = loaded.requested_neighbor_lists()
    assert len(options) == 1 and options[0].cutoff == pytest.approx(model.cutoff) and options[0].full_list
    assert loaded.metadata().name == "hessdistill-painn"
    assert file_format(mta) == "metatomic" and file_format(ts) == "torchscript"
    assert read_metadata(mta) == read_metadata(ts)  # hessdistill's metadata rides along in ModelMetadata.extra
    with pytest.raises(ModelFileError, match="metatomic model"):
        load_student(mta)


def test_unsupported_element_is_named(calculators):
    _, theirs = calculators
    atoms = Atoms("COAu", positions=[[0, 0, 0], [1.2, 0, 0], [0, 2.5, 0]])
    atoms.calc = theirs
    with pytest.raises(ValueError, match="atomic type '79'"):
        atoms.get_potential_energy()


def test_cli_float32_export(model, calculators, tmp_path):
    """`hessdistill export RUN --format metatomic --dtype float32`: runs in float32, agrees to float32 precision."""
    from hessdistill.cli import main

    ours, _ = calculators
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint({"architecture": model.architecture, "hyperparameters": model.hyperparameters(),
                     "best_state": model.state_dict(), "teacher": "test"}, run / "checkpoint.pt")
    path = tmp_path / "s32.pt"
    main(["export", str(run), "-o", str(path), "--format", "metatomic", "--dtype", "float32"])
    assert load_atomistic_model(path).capabilities().dtype == "float32"
    assert read_metadata(path)["teacher"] == "test"
    calc = metatomic_ase.MetatomicCalculator(path, device="cpu")
    for name in ("ethanol", "Si8 tilted"):
        atoms = structures()[name]
        got, ref = results(calc, atoms), results(ours, atoms)
        assert_close(got, ref, 2e-5, f"float32 {name}")
        assert not np.array_equal(got["forces"], ref["forces"])  # really computed in float32
