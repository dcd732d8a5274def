"""MACE teacher (``mace:PATH``) on a small MACE with random weights built with mace-torch's own constructors and
saved as a model file: energies, forces and stress equal mace-torch's MACECalculator; the Hessian is symmetric,
obeys the translational sum rule and agrees with central finite differences (float64); elements, heads and bad
files give one-line errors; sample -> label -> distill -> export runs end to end through the CLI.

Skipped where mace-torch is absent (it pins e3nn 0.4.4 and cannot share an environment with sevenn; CI runs this
file in the second environment of ``.ci/newer_env.sh``)."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

pytest.importorskip("mace")

from conftest import fd_rows, sum_rule  # noqa: E402
from hessdistill.errors import ConfigError, ModelFileError, StructureError, UnsupportedElementError  # noqa: E402

ELEMENTS = (1, 6, 8, 14)  # H C O Si


def build_tiny_mace(r_max=3.5, channels=8, interactions=2, seed=0, heads=None):
    """A small ScaleShiftMACE (L=1 features, correlation 2) with random weights, through mace-torch's constructors."""
    from hessdistill.teachers import mace as _  # noqa: F401  (imports e3nn the way the teacher does)
    from e3nn import o3
    from mace import modules
    from mace.tools import utils

    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        e0 = np.linspace(-5.0, -1.0, len(ELEMENTS))  # per-element reference energies, eV
        if heads:  # one row of reference energies, one scale and one shift per head
            e0 = np.stack([e0 + 0.5 * k for k in range(len(heads))])
        model = modules.ScaleShiftMACE(
            r_max=r_max, num_bessel=4, num_polynomial_cutoff=5, max_ell=2, interaction_cls=block,
            interaction_cls_first=block, num_interactions=interactions, num_elements=len(ELEMENTS),
            hidden_irreps=o3.Irreps(f"{channels}x0e + {channels}x1o"), MLP_irreps=o3.Irreps("8x0e"),
            gate=torch.nn.functional.silu, atomic_energies=e0, avg_num_neighbors=6.0,
            atomic_numbers=utils.AtomicNumberTable(list(ELEMENTS)).zs, correlation=2, radial_type="bessel",
            atomic_inter_scale=[1.0, 0.8][: len(heads)] if heads else 1.0,
            atomic_inter_shift=[0.1, -0.1][: len(heads)] if heads else 0.1, heads=heads)
    finally:
        torch.set_default_dtype(old)
    return model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "tiny.model"
    torch.save(build_tiny_mace(), path)  # what mace-torch's training writes: the whole module
    return path


@pytest.fixture(scope="module")
def teacher(model_path):
    from hessdistill.teachers import load_teacher

    return load_teacher(f"mace:{model_path}", device="cpu")  # float64 by default


def mace_calculator(model_path, dtype="float64", **kwargs):
    from mace.calculators import MACECalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MACECalculator(model_paths=str(model_path), device="cpu", default_dtype=dtype, **kwargs)


def ethanol():
    a = molecule("CH3CH2OH")
    a.rattle(0.02, seed=3)
    return a


def silica_cell():
    """Eight atoms in a rattled, sheared periodic cell: diamond Si with two atoms made O."""
    a = bulk("Si", cubic=True)
    a.symbols[[0, 5]] = "O"
    a.set_cell(a.cell.array @ np.array([[1.0, 0.03, 0.0], [0.0, 0.98, 0.02], [0.01, 0.0, 1.02]]), scale_atoms=True)
    a.rattle(0.05, seed=2)
    return a


@pytest.mark.parametrize("make", [ethanol, silica_cell], ids=["ethanol", "periodic"])
def test_energy_forces_match_mace_calculator(teacher, model_path, make):
    atoms = make()
    energy, forces = teacher.energy_forces(atoms)
    ref = atoms.copy()
    ref.calc = mace_calculator(model_path)
    np.testing.assert_allclose(energy, ref.get_potential_energy(), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-10)
    assert np.abs(forces).max() > 1e-3  # a real test: the random model gives non-trivial forces


def test_stress_matches_mace_calculator_and_strain_differences(teacher, model_path):
    atoms = silica_cell()
    stress = teacher.stress(atoms)
    ref = atoms.copy()
    ref.calc = mace_calculator(model_path)
    np.testing.assert_allclose(stress, ref.get_stress(), atol=1e-10)
    assert np.abs(stress).max() > 1e-5
    # Independent of MACE's strain code: sigma_ij = (1/V) dE/d(eps_ij) for a symmetric strain of cell and atoms.
    full = teacher.stress(atoms, voigt=False)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    eps, volume = 1e-5, atoms.get_volume()
    for i, j in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        e = []
        for s in (1, -1):
            strain = np.eye(3)
            strain[i, j] += s * eps / (2 if i != j else 1)
            strain[j, i] += s * eps / 2 if i != j else 0.0
            a = atoms.copy()
            a.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            e.append(teacher.energy_forces(a)[0])
        assert abs((e[0] - e[1]) / (2 * eps) / volume - full[i, j]) < 1e-8


def test_stress_needs_a_periodic_cell(teacher):
    with pytest.raises(StructureError, match="periodic"):
        teacher.stress(ethanol())


def test_hessian_symmetric_sum_rule_and_finite_differences(teacher):
    atoms = ethanol()
    n = len(atoms)
    h = teacher.hessian(atoms)
    assert h.shape == (3 * n, 3 * n)
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    assert sum_rule(h, n) < 1e-10
    fd = fd_rows(teacher, atoms, range(3 * n), 1e-4)
    np.testing.assert_allclose(h, fd, atol=1e-6 * np.abs(h).max())


def test_periodic_hessian_and_modes_agree(teacher):
    atoms = silica_cell()
    n = len(atoms)
    try:
        teacher.hessian_mode = "batched"
        h = teacher.hessian(atoms)
        teacher.hessian_mode = "loop"
        rows = [20, 0, 7, 7]
        loop = teacher.hessian(atoms, rows)
    finally:
        teacher.hessian_mode = "auto"
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    assert sum_rule(h, n) < 1e-10
    np.testing.assert_allclose(loop, h[rows], atol=1e-11)
    np.testing.assert_allclose(h[[0, 4, 23]], fd_rows(teacher, atoms, [0, 4, 23], 1e-4), atol=1e-6 * np.abs(h).max())
    label = teacher.label(atoms, rows=rows)
    np.testing.assert_array_equal(label.hessian_rows, rows)
    np.testing.assert_allclose(label.hessian, h[rows], atol=1e-11)
    np.testing.assert_array_equal(label.stress, teacher.stress(atoms))  # periodic cells are labelled with stress


def test_float32(model_path, teacher):
    from hessdistill.teachers import load_teacher

    t32 = load_teacher(f"mace:{model_path}", dtype="float32", device="cpu")
    atoms = ethanol()
    e64, f64 = teacher.energy_forces(atoms)
    e32, f32 = t32.energy_forces(atoms)
    assert abs(e32 - e64) < 1e-4
    np.testing.assert_allclose(f32, f64, atol=1e-4)
    ref = atoms.copy()
    ref.calc = mace_calculator(model_path, "float32")
    np.testing.assert_allclose(f32, ref.get_forces(), atol=1e-6)
    h = t32.hessian(atoms, [0, 5])
    np.testing.assert_allclose(h, teacher.hessian(atoms, [0, 5]), atol=1e-3 * np.abs(h).max())


def test_elements_come_from_the_model(teacher):
    assert teacher.elements == {"H", "C", "O", "Si"}
    atoms = molecule("CH3CN")  # N is not in the model
    with pytest.raises(UnsupportedElementError, match="N") as info:
        teacher.label(atoms)
    assert "\n" not in str(info.value) and "mace:tiny.model" in str(info.value)
    with pytest.raises(UnsupportedElementError, match="N"):
        teacher.energy_forces(atoms)


def test_bad_files_and_options(model_path, tmp_path):
    from hessdistill.teachers import load_teacher

    with pytest.raises(ModelFileError, match="does not exist"):
        load_teacher(f"mace:{tmp_path / 'missing.model'}")
    (tmp_path / "junk.model").write_text("not a model")
    with pytest.raises(ModelFileError, match="cannot load"):
        load_teacher(f"mace:{tmp_path / 'junk.model'}")
    torch.save(build_tiny_mace().state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelFileError, match="state dict"):
        load_teacher(f"mace:{tmp_path / 'weights.pt'}")
    with pytest.raises(ConfigError, match="mace:PATH"):
        load_teacher("mace:")
    with pytest.raises(ConfigError, match="dtype"):
        load_teacher(f"mace:{model_path}", dtype="float16")


def test_multi_head_model_needs_a_head(tmp_path):
    from hessdistill.teachers import load_teacher

    path = tmp_path / "two_heads.model"
    torch.save(build_tiny_mace(heads=["omat", "spice"]), path)
    with pytest.raises(ConfigError, match="omat, spice"):
        load_teacher(f"mace:{path}")
    atoms = ethanol()
    energies = {}
    for head in ("omat", "spice"):
        t = load_teacher(f"mace:{path}", head=head, device="cpu")
        energies[head], forces = t.energy_forces(atoms)
        ref = atoms.copy()
        ref.calc = mace_calculator(path, head=head)
        np.testing.assert_allclose(energies[head], ref.get_potential_energy(), rtol=1e-12)
        np.testing.assert_allclose(forces, ref.get_forces(), atol=1e-10)
    assert energies["omat"] != energies["spice"]


def test_import_keeps_torch_load_weights_only():
    """mace-torch turns torch.load's weights-only default off on import; the teacher module puts it back."""
    import subprocess
    import sys

    code = ("import io, os, pickle, torch, hessdistill.teachers.mace\n"
            "f = io.BytesIO(); torch.save(torch.nn.Linear(1, 1), f); f.seek(0)\n"
            "try:\n    torch.load(f); print('loaded')\nexcept pickle.UnpicklingError:\n    print('refused')\n"
            "print(os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'))")
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["refused", "None"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_equals_cpu(model_path, teacher):
    from hessdistill.teachers import load_teacher

    gpu = load_teacher(f"mace:{model_path}", device="cuda")
    atoms = silica_cell()
    e0, f0 = teacher.energy_forces(atoms)
    e1, f1 = gpu.energy_forces(atoms)
    assert abs(e1 - e0) < 1e-9
    np.testing.assert_allclose(f1, f0, atol=1e-9)
    np.testing.assert_allclose(gpu.hessian(atoms), teacher.hessian(atoms), atol=1e-8)
    np.testing.assert_allclose(gpu.stress(atoms), teacher.stress(atoms), atol=1e-10)


def test_sample_label_distill_export_end_to_end(model_path, tmp_path, capsys):
    """The user's path through the CLI: teacher MD and rattling with the MACE teacher, full-Hessian labels, a few
    epochs of distillation, export; the exported student names its teacher."""
    from hessdistill.cli import main

    spec = f"mace:{model_path}"
    structures, labels, run = tmp_path / "s.extxyz", tmp_path / "labels.h5", tmp_path / "run"
    main(["sample", "--start", "CH3CH2OH", "--teacher", spec, "--md", "3", "--interval", "2", "--temperature", "300",
          "--rattle", "5", "--split", "0.5,0.25,0.25", "-o", str(structures)])
    main(["label", str(structures), "--teacher", spec, "-o", str(labels)])
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["labelled"] == 8
    main(["distill", str(labels), "--out", str(run), "--architecture", "schnet", "--features", "8",
          "--num-interactions", "1", "--cutoff", "3.5", "--epochs", "3", "--batch-size", "2", "--dtype", "float64"])
    student = tmp_path / "student_f32.pt"
    main(["export", str(run), "-o", str(student), "--dtype", "float32"])
    extra = {"teacher": "", "type_names": ""}
    torch.jit.load(str(student), _extra_files=extra)
    # the store names the teacher by what loads it again, so distill's report found it without --teacher
    assert extra["teacher"].decode() == f"mace:{Path(model_path).resolve()}"
    # (its physics part may still stop: this random-weight MACE's minimum search collapses the molecule)
    physics = json.loads((run / "report" / "report.json").read_text())["physics"]
    assert not physics.get("skipped", "").startswith(("ModelFileError", "ConfigError", "InputError")), physics
    assert set(extra["type_names"].decode().split()) == {"H", "C", "O"}
