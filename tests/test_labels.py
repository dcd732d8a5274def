"""The label store: round trip (stress of periodic cells included, none for free clusters), row subsets, shards +
merge, resume after a real SIGKILL, clear errors."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import cluster
from hessdistill.errors import InputError, LabelStoreError
from hessdistill.label import label_structures, load_labels, merge, parts_dir, write_store
from hessdistill.sample import rattled, read_structures, split, write_structures
from hessdistill.teachers.analytic import LennardJonesTeacher, MorseTeacher, pair_hessian


@pytest.fixture
def structures():
    return split(rattled(cluster(5, seed=2), 12, 0.05, seed=1))


def test_round_trip_against_teacher(structures, tmp_path):
    teacher = MorseTeacher()
    res = label_structures(structures, teacher, tmp_path / "l.h5", progress=False)
    assert res == {"labelled": 12, "skipped": 0, "total": 12, "merged": True}
    items = load_labels(tmp_path / "l.h5")
    assert [it.index for it in items] == list(range(12))
    for atoms, it in zip(structures, items, strict=True):
        e, f = teacher.energy_forces(atoms)
        assert it.energy == pytest.approx(e, abs=1e-12)
        np.testing.assert_allclose(it.forces, f, atol=1e-12)
        np.testing.assert_allclose(it.hessian, pair_hessian(teacher, atoms.positions), atol=1e-10)
        assert it.split == atoms.info["split"]


def test_stress_round_trip(tmp_path):
    """Periodic cells keep the teacher's stress through parts, merge and write_store; a free cluster in the same
    store has none."""
    from ase.build import bulk

    teacher = LennardJonesTeacher(cutoff=6.0)
    crystal = bulk("Ar", "fcc", a=5.3, cubic=True)
    structures = split(rattled(crystal, 4, 0.05, seed=0) + rattled(cluster(4, seed=0, spacing=3.7), 2, 0.05, 1))
    label_structures(structures, teacher, tmp_path / "l.h5", rows=2, progress=False)
    items = load_labels(tmp_path / "l.h5")
    for atoms, it in zip(structures, items, strict=True):
        if atoms.pbc.all():
            np.testing.assert_array_equal(it.stress, teacher.stress(atoms))
        else:
            assert it.stress is None
    write_store(items, tmp_path / "copy.h5")
    for a, b in zip(items, load_labels(tmp_path / "copy.h5"), strict=True):
        assert (a.stress is None and b.stress is None) or np.array_equal(a.stress, b.stress)


def test_row_subsets_are_rows_of_the_full_hessian(structures, tmp_path):
    teacher = MorseTeacher()
    label_structures(structures, teacher, tmp_path / "l.h5", rows=4, progress=False)
    for atoms, it in zip(structures, load_labels(tmp_path / "l.h5"), strict=True):
        assert len(it.hessian_rows) == 4 and len(set(it.hessian_rows)) == 4
        np.testing.assert_allclose(it.hessian, pair_hessian(teacher, atoms.positions)[it.hessian_rows], atol=1e-10)
    with pytest.raises(InputError, match="rows per structure"):
        label_structures(structures, teacher, tmp_path / "m.h5", rows=99, progress=False)


def test_cli_shards_then_merge_equal_one_process(structures, tmp_path):
    write_structures(structures, tmp_path / "s.extxyz")
    for shard in ("0/2", "1/2"):
        subprocess.run([sys.executable, "-m", "hessdistill", "label", str(tmp_path / "s.extxyz"), "--teacher",
                        "morse", "-o", str(tmp_path / "sharded.h5"), "--shard", shard], check=True,
                       capture_output=True)
    assert (tmp_path / "sharded.h5").exists()  # the last shard to finish merges
    os.remove(tmp_path / "sharded.h5")
    subprocess.run([sys.executable, "-m", "hessdistill", "merge", str(tmp_path / "sharded.h5")], check=True,
                   capture_output=True)
    label_structures(read_structures(tmp_path / "s.extxyz"), MorseTeacher(), tmp_path / "one.h5", progress=False)
    for a, b in zip(load_labels(tmp_path / "sharded.h5"), load_labels(tmp_path / "one.h5"), strict=True):
        assert a.index == b.index and a.energy == b.energy
        np.testing.assert_array_equal(a.hessian, b.hessian)


SLOW_LABEL = r"""
import sys, time
from hessdistill.label import label_structures
from hessdistill.sample import read_structures
from hessdistill.teachers.analytic import MorseTeacher

class Slow(MorseTeacher):
    def label(self, atoms, **kw):
        time.sleep(float(sys.argv[3]))
        return super().label(atoms, **kw)

label_structures(read_structures(sys.argv[1]), Slow(), sys.argv[2], progress=False)
"""


def test_resume_after_sigkill_redoes_nothing(structures, tmp_path):
    write_structures(structures, tmp_path / "s.extxyz")
    store = tmp_path / "l.h5"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LABEL, str(tmp_path / "s.extxyz"), str(store), "0.3"])
    pdir = parts_dir(store)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(pdir.glob("*.h5"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in pdir.glob("*.h5")}
    assert 3 <= len(done) < len(structures), "the kill must land mid-run"
    assert not store.exists()
    with pytest.raises(LabelStoreError, match="merge"):
        load_labels(store)
    subprocess.run([sys.executable, "-c", SLOW_LABEL, str(tmp_path / "s.extxyz"), str(store), "0"], check=True)
    for name, stamp in done.items():  # finished structures were not recomputed
        p = pdir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    items = load_labels(store)
    assert len(items) == len(structures)
    teacher = MorseTeacher()
    for atoms, it in zip(read_structures(tmp_path / "s.extxyz"), items, strict=True):
        assert it.energy == pytest.approx(teacher.energy_forces(atoms)[0], abs=1e-12)


def _concurrent_worker(tmp, shard, n_procs, rounds, barrier, results):
    """One of ``n_procs`` processes. Per round of phase "merge", all merge one shared set of parts at once; per
    round of phase "label", each labels its shard of a fresh store (equal work, started together: they finish
    together and several merge at once). After each round every process checks the store. Reports
    (phase, shard, round, error text or "")."""
    import traceback
    from pathlib import Path

    torch.set_num_threads(1)
    structures = split(rattled(cluster(5, seed=2), 12, 0.05, seed=1))
    for phase in ("merge", "label"):
        for r in range(rounds):
            store = Path(tmp) / (f"l{r}.h5" if phase == "label" else "shared.h5")
            error = ""
            barrier.wait()
            try:
                if phase == "label":
                    label_structures(structures, MorseTeacher(), store, shard=(shard, n_procs), progress=False)
                else:
                    merge(store, len(structures))
            except Exception:
                error = traceback.format_exc(limit=3)
            barrier.wait()
            try:
                items = load_labels(store)
                assert [it.index for it in items] == list(range(len(structures)))
            except Exception:
                error += traceback.format_exc(limit=3)
            results.put((phase, shard, r, error))
            barrier.wait()  # nobody starts the next round before everyone checked this one


def test_concurrent_merges_and_shards_leave_a_complete_store(structures, tmp_path):
    """Real processes: 4 merges of one store at once, then 4 shards finishing together, several rounds each."""
    import multiprocessing

    label_structures(structures, MorseTeacher(), tmp_path / "shared.h5", progress=False, merge_when_done=False)
    n_procs, rounds = 4, 5
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch threads
    barrier, results = ctx.Barrier(n_procs, timeout=180), ctx.Queue()
    procs = [ctx.Process(target=_concurrent_worker, args=(str(tmp_path), i, n_procs, rounds, barrier, results))
             for i in range(n_procs)]
    for p in procs:
        p.start()
    out = [results.get(timeout=600) for _ in range(2 * n_procs * rounds)]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * n_procs
    errors = [f"{phase} shard {i} round {r}:\n{e}" for phase, i, r, e in out if e]
    assert not errors, f"{len(errors)} failures; first:\n" + "\n".join(errors[:2])
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_store_errors(structures, tmp_path):
    with pytest.raises(InputError, match="empty"):
        label_structures([], MorseTeacher(), tmp_path / "e.h5")
    with pytest.raises(LabelStoreError, match="does not exist"):
        load_labels(tmp_path / "missing.h5")
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF garbage" * 100)
    with pytest.raises(LabelStoreError, match="cannot read"):
        load_labels(tmp_path / "corrupt.h5")
    label_structures(structures[:4], MorseTeacher(), tmp_path / "a.h5", progress=False)
    other = rattled(cluster(5, seed=9), 4, 0.05, seed=9)
    with pytest.raises(LabelStoreError, match="another structure set"):
        label_structures(other, MorseTeacher(), tmp_path / "a.h5", progress=False)
    label_structures(structures, MorseTeacher(), tmp_path / "b.h5", shard=(0, 3), progress=False)
    with pytest.raises(LabelStoreError, match="not labelled yet"):
        merge(tmp_path / "b.h5", len(structures))
