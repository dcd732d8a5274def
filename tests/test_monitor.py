"""The energy monitor (one definition for every engine) and the ASE MD runner that uses it. The LAMMPS mirror,
fix hessdistill/monitor, is checked against it in test_lammps_monitor.py."""

import numpy as np
import pytest

from conftest import make_student
from hessdistill.engines import MDOptions
from hessdistill.engines.ase import run_md
from hessdistill.errors import EnergyConservationError
from hessdistill.formats import export_student
from hessdistill.monitor import EnergyMonitor, drift_slope, read_monitor_csv
from hessdistill.monitor.energy import summary_from_rows


def test_drift_is_least_squares_slope_per_atom(tmp_path):
    t = np.linspace(0, 2, 50)
    e = 10 * (-3.0 + 0.004 * t) + 1e-4 * np.sin(40 * t)  # 10 atoms, 0.004 eV/atom/ps
    m = EnergyMonitor(10, tmp_path / "m.csv", max_drift=None, max_deviation=None)
    for k, (ti, ei) in enumerate(zip(t, e)):
        m.record(k, ti, ei - 1.0, 1.0, 300.0)
    m.close()
    assert m.drift == pytest.approx(np.polyfit(t, e / 10, 1)[0], rel=1e-12)
    assert m.drift == pytest.approx(0.004, rel=0.05)
    data = read_monitor_csv(tmp_path / "m.csv")
    assert len(data["step"]) == 50 and data["drift_eV_per_atom_ps"][-1] == pytest.approx(m.drift)
    assert drift_slope(t, e / 10, discard_fraction=0.2) == pytest.approx(0.004, rel=0.05)


def synthetic_series(n=300, seed=0):
    """Times (ps) and total energies (eV, 4 atoms): linear drift + noise + a late jump, far from zero on purpose
    (t0 = 5000 ps, E/atom ~ -7300 eV), where sums of unshifted t^2 and t*E would cancel to nothing."""
    rng = np.random.default_rng(seed)
    t = 5000.0 + 0.002 * np.arange(n)
    e = 4 * (-7300.0 + 0.003 * (t - t[0]) + 2e-4 * rng.normal(size=n) + 0.02 * (np.arange(n) >= 0.8 * n))
    return t, e


def test_running_drift_equals_polyfit_of_every_prefix(tmp_path):
    t, e = synthetic_series()
    m = EnergyMonitor(4, tmp_path / "m.csv", max_drift=None, max_deviation=None)
    for k, (ti, ei) in enumerate(zip(t, e)):
        m.record(k, ti, ei - 2.0, 2.0)
        ref = np.polyfit(t[: k + 1] - t[0], e[: k + 1] / 4 - e[0] / 4, 1)[0] if k else 0.0
        assert m.drift == pytest.approx(ref, rel=1e-9, abs=1e-12), k
    m.close()
    rows = read_monitor_csv(tmp_path / "m.csv")
    np.testing.assert_allclose(rows["deviation_per_atom_eV"], np.abs(e - e[0]) / 4, rtol=0, atol=1e-10)
    assert m.summary()["max_deviation_eV_per_atom"] == pytest.approx(np.abs(e - e[0]).max() / 4, abs=1e-10)
    assert m.summary()["n_samples"] == len(t)
    assert drift_slope(t, e / 4) == pytest.approx(m.drift, rel=1e-12)


def test_summary_from_the_csv_rows_is_the_monitors_summary(tmp_path):
    """The LAMMPS engine summarises the rows its fix wrote: the same numbers as the monitor that wrote them,
    with the non-finite row that stopped the run left out of the samples."""
    t, e = synthetic_series(60)
    m = EnergyMonitor(4, tmp_path / "m.csv", max_drift=None, max_deviation=None)
    for k, (ti, ei) in enumerate(zip(t, e)):
        m.record(k, ti, ei - 2.0, 2.0)
    with pytest.raises(EnergyConservationError, match="non-finite energy"):
        m.record(60, t[-1] + 0.002, float("nan"), 2.0)
    got = summary_from_rows(read_monitor_csv(tmp_path / "m.csv"), 4)
    assert got == pytest.approx(m.summary(), rel=1e-12) and got["n_samples"] == 60
    assert summary_from_rows({}, 4) == EnergyMonitor(4).summary()


def test_windowed_drift_equals_polyfit_of_the_window():
    t, e = synthetic_series(600, seed=1)
    window = 0.3  # ps: 151 samples
    m = EnergyMonitor(4, None, max_drift=None, max_deviation=None, window_ps=window)
    for k, (ti, ei) in enumerate(zip(t, e)):
        m.record(k, ti, ei, 0.0)
        keep = t[: k + 1] >= ti - window
        ref = np.polyfit(t[: k + 1][keep] - ti, e[: k + 1][keep] / 4 - e[0] / 4, 1)[0] if keep.sum() > 1 else 0.0
        assert m.drift == pytest.approx(ref, rel=1e-8, abs=1e-12), k
        assert len(m._fit._samples) == keep.sum()  # memory: the window only


@pytest.mark.parametrize(
    "energies,stop,match",
    [
        ([0.0] * 5 + [float("nan")] + [0.0] * 5, 5, "non-finite energy"),
        ([0.0] * 5 + [5.0] + [0.0] * 5, 5, "max_deviation"),
        ([0.02 * k for k in range(40)], 19, "drift"),  # 1 eV/atom/ps from the start, checked at the 20th sample
    ],
)
def test_monitor_stops_with_intact_csv(tmp_path, energies, stop, match):
    m = EnergyMonitor(2, tmp_path / "m.csv", max_drift=0.01, max_deviation=1.0, min_points=20)
    with pytest.raises(EnergyConservationError, match=match):
        for k, e in enumerate(energies):
            m.record(k, k * 0.01, e, 0.0)
            # flushed at once: the file holds this row while the monitor is still open
            assert len(read_monitor_csv(tmp_path / "m.csv")["step"]) == k + 1
    assert k == stop
    data = read_monitor_csv(tmp_path / "m.csv")  # every row up to and including the bad one, nothing after
    np.testing.assert_array_equal(data["step"], np.arange(stop + 1))
    np.testing.assert_array_equal(data["potential_eV"], energies[: stop + 1])


def test_ase_nve_conserves_energy_and_reports_independently_checked_drift(silicon, tmp_path):
    path = export_student(make_student("painn", cutoff=3.0), tmp_path / "s.pt", dtype="float64")
    res = run_md(path, silicon, tmp_path / "md", MDOptions(steps=200, timestep_fs=0.5, temperature_K=300,
                                                          report_interval=2))
    assert not res.stopped
    from ase.io import read

    frames = read(res.files["trajectory"], index=":")
    t = np.arange(len(frames)) * 2 * 0.5e-3
    e = np.array([f.get_total_energy() for f in frames]) / len(silicon)
    assert res.drift_eV_per_atom_ps == pytest.approx(np.polyfit(t, e, 1)[0], rel=1e-6, abs=1e-9)
    assert abs(res.drift_eV_per_atom_ps) < 1e-3
    assert res.max_deviation_eV_per_atom < 1e-3


def test_ase_run_with_too_large_timestep_is_stopped(silicon, tmp_path):
    path = export_student(make_student("painn", cutoff=3.0), tmp_path / "s.pt", dtype="float64")
    res = run_md(path, silicon, tmp_path / "md", MDOptions(steps=300, timestep_fs=30.0, temperature_K=3000,
                                                          report_interval=1, max_deviation=0.01))
    assert res.stopped and "MD stopped" in res.reason
    rows = read_monitor_csv(res.files["monitor_csv"])
    assert len(rows["step"]) >= 1 and rows["step"][-1] == res.steps_done < 300
