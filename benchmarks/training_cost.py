"""Figure 3 (training cost): time per epoch with s = 1, 4 and 3N Hessian rows against energy + forces only."""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import size_label
from timing import interleaved

TARGET_S1_RATIO = 2.0


def measure(dataset, size) -> dict:
    import accuracy
    from hessdistill.label import load_labels
    from hessdistill.distill import Trainer

    arch, features, layers = size.students[0]
    n_atoms = len(load_labels(dataset.labels)[0].numbers)
    n3 = 3 * n_atoms
    stored = n3 if dataset.rows == "full" else int(dataset.rows)
    s_values = sorted({s for s in (1, 4, n3) if s <= stored})
    configs = {"E+F": accuracy.config(size, dataset, arch, features, layers, 0, 0.0, 1)}
    for s in s_values:
        name = f"s={s}" + (" (3N)" if s == n3 else "")
        configs[name] = accuracy.config(size, dataset, arch, features, layers, 0, accuracy.HESSIAN_WEIGHT, s)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {k: Trainer(c, dataset.labels, Path(tmp) / k.replace(" ", "_"), resume=False, progress=False)
                    for k, c in configs.items()}
        t = interleaved({k: tr.train_epoch for k, tr in trainers.items()}, size.epoch_rounds,
                        desc=f"epochs [{dataset.system}]")
        n_train = len(next(iter(trainers.values())).graphs["train"])
    out = {"student": size_label(arch, features, layers), "train_structures": n_train,
           "batch_size": size.batch_size, "atoms_per_structure": n_atoms, "hessian_rows_stored": stored,
           "rounds": size.epoch_rounds, "seconds_per_epoch": {k: t.median(k) for k in configs},
           "ratio_to_EF": {k: t.ratio(k, "E+F") for k in configs if k != "E+F"}, "timing": t.summary()}
    s1 = out["ratio_to_EF"].get("s=1", {}).get("median", float("nan"))
    out["s1_ratio"] = s1
    out["target_s1_ratio"] = TARGET_S1_RATIO
    out["target_met"] = bool(s1 <= TARGET_S1_RATIO)
    return out
