"""Progress output: a tqdm bar on a terminal, exactly one line per stage when stderr is a pipe or a log file."""

import io
import subprocess
import sys

from hessdistill.progress import StageLine, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_a_stage_prints_one_line():
    stream = io.StringIO()
    with progress_bar(5, "label [morse]", unit="struct", file=stream) as bar:
        assert isinstance(bar, StageLine)
        for _ in range(5):
            bar.update(1)
        bar.set_postfix(loss="0.1")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("label [morse]: 5/5 struct in ") and "loss=0.1" in lines[0]
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_a_tqdm_bar_and_nested_bars_are_silent_off_it():
    from tqdm import tqdm

    tty = _Terminal()
    bar = progress_bar(3, "distill", file=tty)
    assert isinstance(bar, tqdm) and not bar.disable
    bar.update(3)
    bar.close()
    assert "\r" in tty.getvalue() and "distill" in tty.getvalue()
    pipe = io.StringIO()
    nested = progress_bar(3, "FD Hessian", nested=True, file=pipe)
    nested.update(3)
    nested.close()
    assert pipe.getvalue() == ""


def test_cli_stage_prints_one_line_into_a_pipe(tmp_path):
    out = tmp_path / "s.extxyz"
    proc = subprocess.run([sys.executable, "-m", "hessdistill", "sample", "--start", "CH3CH2OH", "--teacher", "morse",
                           "--md", "3", "--interval", "2", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stage = [line for line in proc.stderr.splitlines() if line.startswith("teacher MD:")]
    assert len(stage) == 1 and stage[0].startswith("teacher MD: 106/106 step")  # 100 equilibration + 3 x 2
    assert "\r" not in proc.stderr


def test_cli_labelling_prints_one_line_into_a_pipe(tmp_path):
    from ase.build import molecule

    from hessdistill.sample import rattled, split, write_structures

    structures = tmp_path / "s.extxyz"
    write_structures(split(rattled(molecule("H2O"), 4, 0.05, seed=0), seed=0), structures)
    proc = subprocess.run([sys.executable, "-m", "hessdistill", "label", str(structures), "--teacher", "morse",
                           "-o", str(tmp_path / "labels.h5")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stage = [line for line in proc.stderr.splitlines() if line.startswith("label [morse]:")]
    assert len(stage) == 1 and stage[0].startswith("label [morse]: 4/4 struct")
    assert "\r" not in proc.stderr
