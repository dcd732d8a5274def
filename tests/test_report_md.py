"""The fidelity report's MD comparison (hessdistill.report.md, ``hessdistill report --md``).

References: g(r) curves whose difference and first peak are known by hand; the teacher standing in for the
student, which runs the identical trajectory (same start, seed and noise) and so must show no difference; a
softer Morse potential, whose first RDF peak must come out lower than the teacher's.
"""

import json
import math

import numpy as np
import pytest
from ase.build import bulk
from scipy.special import erf

from conftest import cluster
from hessdistill.distill import distill
from hessdistill.distill.config import DistillConfig
from hessdistill.errors import InputError
from hessdistill.label import label_structures
from hessdistill.report import fidelity_report, summary_lines
from hessdistill.report.md import first_peak, md_comparison, rdf_difference
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher

CUTOFF = 3.0


def box():
    """32 atoms of fcc with the Morse minimum (1.5 A) as nearest-neighbour distance, slightly rattled."""
    atoms = bulk("C", "fcc", a=1.5 * np.sqrt(2), cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.fixture(scope="module")
def periodic_student(tmp_path_factory):
    """A tiny SchNet student of the periodic Morse box, and its labels."""
    tmp = tmp_path_factory.mktemp("report_md")
    labels = tmp / "morse_box.h5"
    structures = split(rattled(box(), 8, 0.08, seed=0), (0.5, 0.25, 0.25))
    label_structures(structures, MorseTeacher(cutoff=CUTOFF), labels, rows=3, progress=False)
    config = DistillConfig(architecture="schnet", features=8, num_interactions=1, cutoff=CUTOFF, batch_size=4,
                           lr=3e-3, dtype="float64", epochs=3, lr_schedule="cosine", compile="off")
    summary = distill(config, labels, tmp / "run", progress=False)
    return summary["student"], labels, tmp


def gaussian(r, centre, height, width=0.1):
    return height * np.exp(-0.5 * ((r - centre) / width) ** 2)


def test_rdf_difference_of_known_curves():
    r = np.linspace(0.0, 6.0, 601)
    teacher = gaussian(r, 1.5, 3.0) + gaussian(r, 3.0, 2.0)
    same = rdf_difference(r, teacher, teacher)
    assert same["rdf_difference"] == 0.0 and same["first_peak_shift_A"] == 0.0
    assert same["teacher_first_peak_A"] == pytest.approx(1.5)
    assert same["teacher_first_peak_height"] == pytest.approx(3.0)
    # twice the curve: |2g - g| integrates to the integral of g
    assert rdf_difference(r, 2 * teacher, teacher)["rdf_difference"] == pytest.approx(1.0)
    shifted = rdf_difference(r, gaussian(r, 1.7, 3.0) + gaussian(r, 3.0, 2.0), teacher)
    assert shifted["first_peak_shift_A"] == pytest.approx(0.2)
    assert shifted["student_first_peak_height"] == pytest.approx(3.0)
    # two Gaussians of area A and width s, d apart: the integral of |f - g| is 2 A erf(d / (2 sqrt(2) s))
    first, second = 3.0 * 0.1 * np.sqrt(2 * np.pi), 2.0 * 0.1 * np.sqrt(2 * np.pi)
    expected = 2 * first * erf(0.4 / (2 * np.sqrt(2) * 0.1)) / (first + second)
    assert rdf_difference(r, gaussian(r, 1.9, 3.0) + gaussian(r, 3.0, 2.0), teacher)["rdf_difference"] == \
        pytest.approx(expected, rel=1e-3)


def test_first_peak_is_the_first_to_reach_half_the_maximum():
    r = np.linspace(0.0, 6.0, 601)
    # a shoulder below half the maximum is no peak; a later, higher peak does not hide the first
    assert first_peak(r, gaussian(r, 1.0, 1.0) + gaussian(r, 2.0, 3.0))[0] == pytest.approx(2.0)
    assert first_peak(r, gaussian(r, 1.5, 2.0) + gaussian(r, 3.0, 3.0))[0] == pytest.approx(1.5)
    assert all(math.isnan(x) for x in first_peak(r, np.zeros_like(r)))


def test_teacher_against_itself_and_against_a_softer_potential():
    teacher = MorseTeacher(cutoff=CUTOFF)
    itself, curves = md_comparison(box(), teacher, teacher.as_calculator(), ps=0.05)
    assert list(itself["pairs"]) == ["C-C"] and itself["steps"] == 100 and not itself["runs"]["student"]["stopped"]
    assert itself["max_rdf_difference"] == 0.0  # the same start, seed and noise: the same trajectory
    r, gs, gt = curves["C-C"]
    assert r.max() <= 0.5 * box().cell.lengths().min() and gt.max() > 1.0
    softer, _ = md_comparison(box(), teacher, MorseTeacher(D=0.1, cutoff=CUTOFF).as_calculator(), ps=0.05)
    pair = softer["pairs"]["C-C"]
    assert softer["max_rdf_difference"] > 0.1 and softer["worst_pair"] == "C-C"
    assert pair["student_first_peak_height"] < pair["teacher_first_peak_height"]  # a broader first shell


def test_report_with_md_writes_the_comparison(periodic_student, tmp_path):
    student, labels, _ = periodic_student
    out = tmp_path / "report"
    # the store names teacher "morse" without its cutoff: the object is passed
    report = fidelity_report(student, labels, out, teacher=MorseTeacher(cutoff=CUTOFF), physics=False,
                             progress=False, md_ps=0.02, md_temperature_K=200.0)
    md = json.loads((out / "report.json").read_text())["md"]
    assert md == json.loads(json.dumps(report["md"]))
    assert md["temperature_K"] == 200.0 and md["steps"] == 40 and md["timestep_fs"] == 0.5
    assert md["frames"]["student"] > 2 and md["frames"]["teacher"] > 2
    values = [md["max_rdf_difference"], *md["pairs"]["C-C"].values()]
    assert all(math.isfinite(v) for v in values)
    assert (out / "rdf.png").stat().st_size > 5_000
    text = "\n".join(summary_lines(report))
    assert f"max {md['max_rdf_difference']:.3f} (C-C)" in text and "C-C: difference" in text


def test_report_command_says_why_the_md_part_is_missing(periodic_student, tmp_path, capsys):
    from hessdistill.cli import main

    student, labels, _ = periodic_student
    main(["report", student, str(labels), "-o", str(tmp_path / "r"), "--no-physics", "--md", "0.02"])
    printed = capsys.readouterr().out
    assert "MD comparison skipped: ConfigError: teacher morse needs a cutoff" in printed
    assert "rdf.png" not in printed and not (tmp_path / "r" / "rdf.png").exists()
    assert "skipped" in json.loads((tmp_path / "r" / "report.json").read_text())["md"]


def test_md_refuses_non_periodic_structures_before_any_work(tmp_path, capsys):
    from hessdistill.cli import main

    labels = tmp_path / "molecule.h5"
    label_structures(split(rattled(cluster(4, seed=0), 3, 0.05, seed=0)), MorseTeacher(), labels, rows=1,
                     progress=False)
    # the student file is never opened: the structure is checked first
    with pytest.raises(InputError, match=r"periodic in all three directions.*pbc=\[False, False, False\]"):
        fidelity_report(tmp_path / "no_student.pt", labels, tmp_path / "r", md_ps=0.1)
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(labels), str(labels), "--md", "0"])
    assert exit_.value.code == 2 and "expected a number > 0, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
