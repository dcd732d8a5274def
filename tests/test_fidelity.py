"""The fidelity report (hessdistill.report, ``hessdistill report``, written by ``distill``).

References: the trainer's own evaluation of the same student (autograd Hessian rows, training graphs) for the
held-out errors; the teacher standing in for the student (its own forces; ASE's FiniteDifferenceCalculator for
the stress), which must show zero error, for the physics part; a rigid motion for the RMSD.
"""

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import FiniteDifferenceCalculator
from scipy.spatial.transform import Rotation

from conftest import cluster
from hessdistill.distill import distill
from hessdistill.distill.config import DistillConfig
from hessdistill.report import (crystal_physics, fidelity_report, frequency_errors, kabsch_rmsd,
                                  molecule_physics, student_hessian, summary_lines)
from hessdistill.errors import HessdistillError, InputError, StructureError
from hessdistill.label import label_structures
from hessdistill.sample import rattled, split
from hessdistill.teachers import load_teacher
from hessdistill.teachers.analytic import MorseTeacher


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny SchNet student of a Morse cluster, and its labels (full Hessians)."""
    tmp = tmp_path_factory.mktemp("fidelity")
    labels = tmp / "morse.h5"
    structures = split(rattled(cluster(5, seed=0), 16, 0.1, seed=0), (0.5, 0.25, 0.25))
    label_structures(structures, MorseTeacher(), labels, progress=False)
    config = DistillConfig(architecture="schnet", features=16, num_interactions=1, cutoff=4.0, batch_size=4,
                           lr=3e-3, dtype="float64", epochs=15, lr_schedule="cosine", compile="off")
    summary = distill(config, labels, tmp / "run", progress=False)
    return summary, labels, tmp


def test_kabsch_rmsd_ignores_rigid_motion():
    x = cluster(6, seed=1).positions
    moved = x @ Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix().T + np.array([1.0, -2.0, 0.5])
    assert kabsch_rmsd(x, moved) < 1e-12
    bent = x.copy()
    bent[0] += [0.0, 0.0, 0.3]
    assert kabsch_rmsd(x, bent) > 0.05


def test_label_errors_equal_the_trainers_evaluation(trained):
    summary, labels, tmp = trained
    report = fidelity_report(summary["student"], labels, tmp / "report", physics=False, progress=False)
    e, t = report["label_errors"], summary["test"]
    # exported file + ASE calculator + finite-difference Hessian against training graphs + autograd rows
    assert e["force_mae"] == pytest.approx(t["force_mae"], rel=1e-9)
    assert e["hessian_mae"] == pytest.approx(t["hessian_mae"], rel=1e-4)
    assert e["energy_mae_per_atom_raw"] == pytest.approx(t["energy_mae_per_atom"], rel=1e-7)  # of ~10 eV totals
    assert e["force_mae_relative"] == pytest.approx(e["force_mae"] / e["teacher_mean_abs_force"])
    assert (tmp / "report" / "report.png").stat().st_size > 10_000
    assert json.loads((tmp / "report" / "report.json").read_text())["label_errors"] == e


def test_student_hessian_by_differences_equals_the_teachers_autograd():
    morse = MorseTeacher()
    atoms = cluster(4, seed=2)
    np.testing.assert_allclose(student_hessian(atoms, morse.as_calculator()), morse.hessian(atoms), atol=1e-6)


def test_molecule_physics_of_the_teacher_itself_is_exact():
    morse = MorseTeacher()
    p = molecule_physics(cluster(5, seed=3), morse, morse.as_calculator(), fmax=1e-5)
    assert p["minimum_rmsd"] < 1e-4
    assert p["frequency_rms_relative"] < 1e-5
    assert len(p["teacher_frequencies_cm"]) == 3 * 5 - 6


def test_frequency_errors_split_soft_and_stiff_modes():
    # a near-zero mode (below the floor), a torsion-like soft mode and two stiff ones, each error by hand
    teacher = np.array([10.0, 52.0, 434.0, 1000.0])
    student = np.array([30.0, 68.0, 440.0, 990.0])
    p = frequency_errors(teacher, student, floor_cm=50.0, soft_cm=200.0)
    assert p["frequency_rms_relative"] == pytest.approx(np.sqrt(((16 / 52) ** 2 + (6 / 434) ** 2 + 0.01 ** 2) / 3))
    assert p["frequency_mae_cm"] == pytest.approx((16 + 6 + 10) / 3)
    assert p["stiff_frequency_rms_relative"] == pytest.approx(np.sqrt(((6 / 434) ** 2 + 0.01 ** 2) / 2))
    assert p["soft_modes"] == 1 and p["soft_frequency_mae_cm"] == pytest.approx(16.0)
    report = {"split": "test", "physics": {"kind": "molecule", "minimum_rmsd": 0.0, **p},
              "label_errors": {"structures": 1, "force_mae": 0.0, "force_mae_relative": 0.0,
                               "energy_mae_per_atom": 0.0, "energy_offset_per_atom": 0.0}}
    assert "modes above 200 cm^-1: rms relative error 1.21%; 1 softer mode(s): MAE 16.0 cm^-1" in \
        "\n".join(summary_lines(report))
    none_soft = frequency_errors(teacher[2:], student[2:])
    assert none_soft["soft_modes"] == 0 and none_soft["soft_frequency_mae_cm"] is None
    assert none_soft["stiff_frequency_rms_relative"] == pytest.approx(none_soft["frequency_rms_relative"])


def test_crystal_physics_of_the_teacher_itself_is_exact():
    lj = load_teacher("lj", cutoff=6.0)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True)
    atoms.rattle(0.05, seed=0)
    # the teacher as its own "student": forces from the teacher, stress by ASE's strain differences
    student = FiniteDifferenceCalculator(lj.as_calculator(), eps_disp=None, eps_strain=1e-6,
                                         force_consistent=False)
    p = crystal_physics(atoms, lj, student, strain=0.02, points=5, fmax=1e-5)
    assert np.max(np.abs(p["teacher_pressure_GPa"])) > 0.05  # the strain range does change the pressure
    assert p["pressure_max_error_GPa"] < 1e-4
    assert abs(p["lattice_constant_error_relative"]) < 1e-8
    assert abs(p["bulk_modulus_error_relative"]) < 1e-6
    assert p["frequency_rms_relative"] < 1e-5
    assert len(p["teacher_frequencies_cm"]) == 3 * 4 - 3


def test_report_command_and_distill_write_reports(trained, tmp_path, capsys):
    from hessdistill.cli import main

    summary, labels, _ = trained
    main(["report", summary["student"], str(labels), "-o", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert "% of the teacher's mean |F| component" in out and "RMSD" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["physics"]["kind"] == "molecule" and report["physics"]["minimum_rmsd"] >= 0
    main(["distill", str(labels), "--out", str(tmp_path / "run"), "--architecture", "schnet", "--features", "8",
          "--num-interactions", "1", "--epochs", "2", "--lr-schedule", "cosine", "--compile", "off"])
    assert (tmp_path / "run" / "report" / "report.json").is_file()
    assert "fidelity report" in capsys.readouterr().out


def test_report_needs_the_split(trained, tmp_path):
    summary, labels, _ = trained
    with pytest.raises(InputError, match="no 'holdout' structures"):
        fidelity_report(summary["student"], labels, tmp_path, split="holdout")


@pytest.mark.parametrize("teacher, reason", [("no-such-teacher", "unknown teacher"),
                                             ("torchscript:{tmp}/missing.pt", "does not exist")])
def test_a_teacher_that_cannot_be_loaded(trained, tmp_path, caplog, teacher, reason):
    """Asked for by the caller: an error. Named in the label store: the physics part is skipped, with the reason."""
    import shutil

    import h5py

    summary, labels, _ = trained
    teacher = teacher.format(tmp=tmp_path)
    with pytest.raises(HessdistillError, match=reason):
        fidelity_report(summary["student"], labels, tmp_path / "asked", teacher=teacher, progress=False)
    renamed = tmp_path / "renamed.h5"
    shutil.copy(labels, renamed)
    with h5py.File(renamed, "a") as f:
        f.attrs["teacher"] = teacher
    with caplog.at_level("WARNING", logger="hessdistill.report"):
        report = fidelity_report(summary["student"], renamed, tmp_path / "stored", progress=False)
    assert reason in report["physics"]["skipped"]
    assert "physics part skipped" in caplog.text


class _FailingMorse(MorseTeacher):
    """A Morse teacher whose Hessian raises ``error``: a user-caused condition or a bug inside the physics part."""

    def __init__(self, error):
        super().__init__()
        self.error = error

    def hessian(self, atoms, rows=None):
        raise self.error


def test_physics_part_skips_user_errors_but_not_bugs(trained, tmp_path):
    summary, labels, _ = trained
    report = fidelity_report(summary["student"], labels, tmp_path,
                             teacher=_FailingMorse(StructureError("atoms overlap")), progress=False)
    assert report["physics"] == {"skipped": "StructureError: atoms overlap"}
    assert "label_errors" in report
    with pytest.raises(TypeError, match="a bug"):
        fidelity_report(summary["student"], labels, tmp_path, teacher=_FailingMorse(TypeError("a bug")),
                        progress=False)


