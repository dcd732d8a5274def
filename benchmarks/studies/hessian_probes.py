"""A first look at Hessian probes on a floppy molecule: Cartesian rows vs random probes vs the teacher's softest
normal modes at the minimum (rotated onto each structure), each with and without the curvature weighting, at equal labels (K products per structure) and epochs; ANI-1x, methyl ethyl ether (ase g2
"CH3CH2OCH3": one mode below 200 cm^-1 and three more below 400 at the teacher's minimum), a few seeds (each its
own MD sample, split, probes and student). Reports the test force and H v errors (the latter on each store's own
rows or probes, so not comparable between kinds) and the frequency errors at the teacher's minimum, soft modes
(< 200 cm^-1) and the lowest modes (< 400 cm^-1) separately.

    python benchmarks/studies/hessian_probes.py      # writes results/hessian_probes.json (~6 min per seed, 1 core)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
KINDS = ("rows", "random", "modes")
RUNS = tuple((kind, weighting) for kind in KINDS for weighting in ("none", "curvature"))


def one_seed(seed: int, n_structures: int, probes_per_structure: int, epochs: int) -> dict:
    from hessdistill.distill import DistillConfig, distill
    from hessdistill.engines.ase.calculator import StudentCalculator
    from hessdistill.label.store import label_structures
    from hessdistill.report.physics import molecule_physics
    from hessdistill.sample import split, starting_structure, teacher_md
    from hessdistill.sample.modes import relax
    from hessdistill.teachers import load_teacher

    teacher = load_teacher("ani1x")
    start = starting_structure("CH3CH2OCH3")
    structures = split(teacher_md(start, teacher.as_calculator(), n_structures, 500.0, interval=10, seed=seed,
                                  progress=False), (0.7, 0.1, 0.2), seed)
    minimum = relax(start, teacher.as_calculator())
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            label_structures(structures, teacher, Path(tmp) / f"{kind}.h5", rows=probes_per_structure, seed=seed,
                             probes=kind, minimum=minimum if kind == "modes" else None, progress=False)
        for kind, weighting in RUNS:
            config = DistillConfig(architecture="painn", features=32, num_interactions=2, cutoff=4.0, epochs=epochs,
                                   lr_schedule="cosine", batch_size=4, hessian_rows=2, seed=seed, compile="off",
                                   hessian_probe_weighting=weighting, dtype="float32", export_dtype="float64")
            summary = distill(config, Path(tmp) / f"{kind}.h5", Path(tmp) / f"{kind}-{weighting}", progress=False)
            physics = molecule_physics(start, teacher, StudentCalculator(summary["student"]))
            low = [(t, s) for t, s in zip(physics["teacher_frequencies_cm"], physics["student_frequencies_cm"])
                   if 50 < t < 400]
            runs[f"{kind}/{weighting}"] = {
                "test_force_mae_eV_per_A": summary["test"]["force_mae"],
                "test_hvp_mae_eV_per_A2": summary["test"]["hessian_mae"],
                **{k: physics[k] for k in ("frequency_mae_cm", "soft_modes", "soft_frequency_mae_cm",
                                           "stiff_frequency_rms_relative", "minimum_rmsd")},
                "low_mode_mae_cm": float(np.mean([abs(s - t) for t, s in low])),
                "low_modes_cm": [(round(t, 1), round(s, 1)) for t, s in low],  # (teacher, student)
            }
            print(seed, kind, weighting, json.dumps(runs[f"{kind}/{weighting}"]), flush=True)
    return runs


def main(seeds=(0, 1, 2), n_structures: int = 60, probes_per_structure: int = 6, epochs: int = 60) -> dict:
    import torch

    torch.set_num_threads(1)
    out = {"molecule": "CH3CH2OCH3", "teacher": "ani1x", "structures": n_structures, "md_temperature_K": 500.0,
           "probes_per_structure": probes_per_structure, "rows_per_step": 2, "epochs": epochs,
           "student": "painn 32x2, float32", "seeds": {}}
    for seed in seeds:
        out["seeds"][seed] = one_seed(seed, n_structures, probes_per_structure, epochs)
    keys = ("test_force_mae_eV_per_A", "frequency_mae_cm", "soft_frequency_mae_cm", "low_mode_mae_cm",
            "stiff_frequency_rms_relative")
    out["mean_over_seeds"] = {f"{kind}/{w}": {k: float(np.mean([out["seeds"][s][f"{kind}/{w}"][k] for s in seeds]))
                                              for k in keys} for kind, w in RUNS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hessian_probes.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["mean_over_seeds"], indent=1))
    return out


if __name__ == "__main__":
    main()
