"""A run's ``checkpoint.pt``: written atomically, read back only into a run of the same settings, and the student
it holds.

What a checkpoint holds is ``Trainer.state_dict()``'s business; this module adds the file format tag, writes the
file so that a kill never leaves half of one, and checks on reading that the format and the settings (the
``"config"`` entry) match. ``model_from_checkpoint`` rebuilds the best student from the ``"architecture"``,
``"hyperparameters"`` and ``"best_state"`` (else ``"model"``) entries.

Example
-------
>>> model, state = model_from_checkpoint("run")  # the run folder or its checkpoint.pt
>>> state["epoch"], state["teacher"]
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..errors import ConfigError, InputError, LabelStoreError, first_line
from .config import DistillConfig
from ..students import StudentBase, build_student

#: the ``"format"`` entry of every checkpoint this version writes and reads
FORMAT = "hessdistill-checkpoint-1"
#: Options that may differ between a checkpoint and the config of the run that resumes it.
RESUMABLE_CHANGES = {"epochs", "max_steps", "time_budget", "patience", "val_every", "device", "compile"}


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` (a dict of tensors and plain values) and the format tag to ``path``, under a temporary name
    and then renamed: a kill never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The dict saved in ``path``, after checking its format tag."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file fails in many ways inside torch.load
        raise InputError(f"cannot read checkpoint {path}: {first_line(exc)}; delete it to start over") from exc
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found != FORMAT:
        raise InputError(f"{path} is not a hessdistill checkpoint (format {found!r}, expected {FORMAT!r})")
    return state


def load_checkpoint(path: str | os.PathLike, settings: dict, labels_fingerprint: str, map_location="cpu") -> dict:
    """The state saved in ``path`` for a run with ``settings`` (a config's ``to_dict()``) on labels with this
    fingerprint (:func:`hessdistill.provenance.labels_fingerprint`): refused when it was trained on other labels,
    or when options other than ``RESUMABLE_CHANGES`` differ from the settings it was written with."""
    state = read_checkpoint(path, map_location)
    if state["labels_fingerprint"] != labels_fingerprint:
        raise LabelStoreError(
            f"run folder {Path(path).parent} was trained on other labels (fingerprint {state['labels_fingerprint']}, "
            f"these are {labels_fingerprint}); use another --out, or --no-resume to train afresh on these (the old "
            "checkpoint is replaced at the first validation)")
    # an option newer than the checkpoint had its default value there
    saved = dataclasses.asdict(DistillConfig()) | state["config"]
    diff = sorted(k for k, v in settings.items() if saved.get(k) != v and k not in RESUMABLE_CHANGES)
    if diff:
        raise ConfigError(
            f"{path} was written with other settings ({', '.join(diff)}); use another run folder or --no-resume"
        )
    return state


def model_from_checkpoint(path) -> tuple[StudentBase, dict]:
    """The best-EMA student stored in a run's checkpoint (in eval mode, on the CPU), and the checkpoint dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise InputError(f"checkpoint {p} does not exist" + (" or is not a file" if p.exists() else ""))
    state = read_checkpoint(p)
    model = build_student(state["architecture"], **state["hyperparameters"])
    weights = state["best_state"] or state["model"]
    model = model.to(next(iter(weights.values())).dtype)
    model.load_state_dict(weights)
    return model.eval(), state
