"""``distill()``: labels -> Trainer -> test evaluation -> exported student, the whole distill stage of a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import HessdistillError, first_line
from ..paths import atomic_write_text
from .config import DistillConfig
from .evaluation import evaluate
from .trainer import Trainer


def distill(config: DistillConfig, labels, run_dir, resume: bool = True, progress: bool = True) -> dict:
    """Train, evaluate on the test split, export ``student.pt``; returns a summary (also ``summary.json``).

    The test split is ``val`` when the store has no ``test`` structures (``summary["test_split"]`` says which).

    Example
    -------
    >>> summary = distill(DistillConfig(), "labels.h5", "run")
    >>> summary["student"], summary["test"]["force_mae"]
    """
    return train_student(config, labels, run_dir, resume=resume, progress=progress)[0]


def train_student(config: DistillConfig, labels, run_dir, resume: bool = True, progress: bool = True) -> tuple:
    """:func:`distill`'s work: (summary, the :class:`Trainer` (its graphs per split), the best student)."""
    from ..formats.torchscript import export_student
    trainer = Trainer(config, labels, run_dir, resume=resume, progress=progress)
    model = trainer.fit()
    test = trainer.graphs["test"] or trainer.graphs["val"]
    metrics = evaluate(model, test, config.val_hessian_rows)
    try:
        path = export_student(model, Path(run_dir) / "student.pt", dtype=config.export_dtype,
                              teacher=trainer.teacher_name)
    except Exception as exc:  # TorchScript raises many types; the trained weights must not look lost
        raise HessdistillError(
            f"exporting the trained student failed ({first_line(exc, named=True)}); the training is kept in "
            f"{trainer.checkpoint_path}: run the same command again to export it (TorchScript compiles the student "
            f"from hessdistill's source files, so an upgrade or edit of the package during training fails this "
            f"step)") from exc
    summary = {
        "student": str(path),
        "epochs": trainer.epoch,
        "resumed_from_epoch": trainer.resumed_from,
        "stop_reason": trainer.stop_reason,
        "train_seconds": trainer.elapsed,
        "compiled": trainer.compiled,
        "test_split": "test" if trainer.graphs["test"] else "val",
        "test": metrics,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict(),
    }
    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2))
    return summary, trainer, model


def distill_compare(config: DistillConfig, labels, run_dir, resume: bool = True, progress: bool = True) -> dict:
    """Train the distilled student (``config``) into ``run_dir/distilled`` and the undistilled baseline (the same
    with ``hessian_weight`` 0) into ``run_dir/baseline``; returns both summaries and the ratio of their test force
    MAEs (distilled / baseline)."""
    runs = {"distilled": config, "baseline": config.replace(hessian_weight=0.0)}
    out = {name: distill(cfg, labels, Path(run_dir) / name, resume=resume, progress=progress)
           for name, cfg in runs.items()}
    out["force_mae_ratio"] = out["distilled"]["test"]["force_mae"] / out["baseline"]["test"]["force_mae"]
    return out


def export_run(checkpoint, output, dtype: str = "float64", format: str | None = None, device: str = "cpu") -> Path:
    """Export the best student of a run (its folder or ``checkpoint.pt``) to ``output`` in ``format`` (see
    :func:`hessdistill.formats.save_student`); what ``hessdistill export`` runs."""
    from ..formats import save_student
    from ..paths import check_output
    from ..provenance import RUN_FILES
    from .checkpoint import model_from_checkpoint

    run = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    check_output(output, inputs=[checkpoint], protected=[run / name for name in RUN_FILES], what="student file")
    model, state = model_from_checkpoint(checkpoint)
    return save_student(model, output, dtype=dtype, teacher=state["teacher"], format=format, device=device)
