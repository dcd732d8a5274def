"""The energy monitor (one implementation for every engine) and the ASE MD runner that uses it."""

import numpy as np
import pytest

from conftest import make_student
from hessdistill.engines import MDOptions
from hessdistill.engines.ase import run_md
from hessdistill.errors import EnergyConservationError
from hessdistill.formats import export_student
from hessdistill.monitor import EnergyMonitor, drift_slope, read_monitor_csv


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


@pytest.mark.parametrize(
    "energies,match",
    [
        ([0.0] * 5 + [float("nan")], "non-finite energy"),
        ([0.0] * 5 + [5.0], "max_deviation"),
        ([0.02 * k for k in range(40)], "drift"),
    ],
)
def test_monitor_stops_with_intact_csv(tmp_path, energies, match):
    m = EnergyMonitor(2, tmp_path / "m.csv", max_drift=0.01, max_deviation=1.0, min_points=20)
    with pytest.raises(EnergyConservationError, match=match):
        for k, e in enumerate(energies):
            m.record(k, k * 0.01, e, 0.0)
    data = read_monitor_csv(tmp_path / "m.csv")
    assert len(data["step"]) >= 6  # every row up to and including the bad one was flushed
    assert np.isnan(data["potential_eV"][-1]) or data["potential_eV"][-1] == energies[len(data["step"]) - 1]


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
