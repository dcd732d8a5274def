"""``hessdistill distill``: train a student on the labels (:func:`hessdistill.distill.distill`; ``--compare``:
:func:`~hessdistill.distill.distill_compare`; ``--committee K``: :func:`~hessdistill.distill.distill_committee`),
then write its fidelity report."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    from ..distill.config import HELP, DistillConfig
    from .options import duration, nonnegative_float, student_sizes

    p = sub.add_parser("distill", help="train a student on the labels (Hessian-row loss) and export it")
    p.add_argument("labels", nargs="?", help="label store from `hessdistill label`")
    p.add_argument("--out", default="run", help="run folder (checkpoint, metrics, student.pt)")
    p.add_argument("--config", help="YAML file of settings (see --write-config)")
    p.add_argument("--write-config", metavar="FILE", help="write the documented defaults to FILE and exit")
    p.add_argument("--baseline", action="store_true", help="train the undistilled baseline (hessian_weight 0)")
    p.add_argument("--compare", action="store_true", help="train distilled and baseline students and compare")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in the run folder")
    p.add_argument("--no-report", action="store_true", help="skip the fidelity report (OUT/report/: errors on the "
                   "test split, and minima, frequencies, pressure against the teacher)")
    p.add_argument("--committee", type=int, default=None, metavar="K",
                   help="train K students that differ in seed (seed, seed+1, ...) into OUT/member{k}/, listed in "
                        "OUT/committee.json: their force deviation tells where the student is not to be trusted")
    p.add_argument("--size-ladder", type=student_sizes, default=None, metavar="SIZES",
                   help="train one student per size (comma list of FEATURESxLAYERS[bBASIS][@CUTOFF], e.g. "
                        "16x2,32x2,64x3@6) into OUT/sizes/SIZE/, compare their validation errors and TorchScript "
                        "cost per atom-step (OUT/sizes/ladder.json, ladder.png) and recommend the cheapest size "
                        "within --ladder-tolerance of the best")
    p.add_argument("--ladder-budget", type=duration, default=None, metavar="TIME",
                   help="training time of each ladder size, e.g. 5m (default: --time-budget, else each size "
                        "trains to its plateau)")
    p.add_argument("--ladder-tolerance", type=nonnegative_float, default=None, metavar="FRACTION",
                   help="recommend the cheapest size whose validation force MAE is within this fraction of the "
                        "best size's (default 0.1)")
    p.add_argument("--ladder-pt2", action="store_true",
                   help="also export each ladder size as .pt2 and time it (one compile per size: minutes)")
    for name, default in DistillConfig().to_dict().items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=type(default), default=None, help=HELP[name])
    p.set_defaults(func=run)


def run(a) -> None:
    from ..distill import DistillConfig, distill, distill_committee, distill_compare, load_config, write_config
    from ..errors import InputError
    from ..paths import check_input_file, check_output
    from ..provenance import RUN_FILES
    from .report import print_report

    if a.write_config:
        check_output(a.write_config, inputs=[a.labels, a.config], what="config file")
        write_config(a.write_config)
        print(f"wrote {a.write_config}")
        return
    if not a.labels:
        raise InputError("give the label store: hessdistill distill LABELS.h5")
    check_input_file(a.labels, "label store")
    written = RUN_FILES + ("student.pt", "learning_curve.png")
    if a.compare or a.committee is not None:
        check_output(a.out, inputs=[a.labels, a.config], kind="dir", what="run folder")
    for sub in _run_folders(a):
        check_output(sub, inputs=[a.labels, a.config], kind="dir", writes=written, what="run folder")
    if a.committee is not None and a.compare:
        raise InputError("--committee and --compare do not go together")
    if a.size_ladder is not None and (a.committee is not None or a.compare):
        raise InputError("--size-ladder does not go with --committee or --compare")
    if a.size_ladder is None and (a.ladder_budget or a.ladder_tolerance is not None or a.ladder_pt2):
        raise InputError("--ladder-budget, --ladder-tolerance and --ladder-pt2 go with --size-ladder SIZES")
    config = load_config(a.config, **{k: getattr(a, k) for k in DistillConfig().to_dict()})
    if a.baseline:
        config = config.replace(hessian_weight=0.0)
    resume = not a.no_resume
    if a.size_ladder is not None:
        _size_ladder(a, config, resume)
        return
    if a.committee is not None:
        result = distill_committee(config, a.labels, a.out, a.committee, resume=resume)
        for m in result["members"]:
            print(f"seed {m['seed']}: {m['student']}  test force MAE {m['test']['force_mae'] * 1000:.2f} meV/A")
        print(f"committee of {result['k']}: {Path(a.out) / 'committee.json'}")
        return
    if a.compare:
        results = distill_compare(config, a.labels, a.out, resume=resume)
        runs = {name: Path(a.out) / name for name in ("distilled", "baseline")}
    else:
        name = "baseline" if a.baseline else "distilled"
        results = {name: distill(config, a.labels, a.out, resume=resume)}
        runs = {name: Path(a.out)}
    for name, out in runs.items():
        summary = results[name]
        print(f"{name}: {summary['student']}  {_test_errors(summary['test'])}")
        if not a.no_report:
            print_report(summary["student"], a.labels, out / "report")
    if a.compare:
        print(f"force MAE distilled / baseline = {results['force_mae_ratio']:.3f}")


def _run_folders(a) -> list:
    if a.size_ladder is not None:
        from ..distill.sizes import ladder_dir

        return [ladder_dir(a.out) / size.spec for size in a.size_ladder]
    if a.committee is not None:
        from ..distill.committee import member_dir

        return [member_dir(a.out, m) for m in range(max(a.committee, 0))]
    return [Path(a.out) / n for n in ("distilled", "baseline")] if a.compare else [Path(a.out)]


def _test_errors(t: dict) -> str:
    from ..units import EV_PER_A3_TO_GPA

    text = (f"test force MAE {t['force_mae'] * 1000:.2f} meV/A, energy MAE {t['energy_mae_per_atom'] * 1000:.2f} "
            f"meV/atom, Hessian MAE {t['hessian_mae']:.4f} eV/A^2")
    if t["stress_mae"] >= 0:  # NaN (so not >= 0) without stress labels
        text += f", stress MAE {t['stress_mae'] * EV_PER_A3_TO_GPA:.3f} GPa"
    return text


def _size_ladder(a, config, resume: bool) -> None:
    from ..distill.sizes import LADDER_FILE, continue_command, ladder_dir, size_ladder

    ladder = size_ladder(config, a.labels, a.out, a.size_ladder, time_budget=a.ladder_budget or "",
                         tolerance=0.1 if a.ladder_tolerance is None else a.ladder_tolerance, pt2=a.ladder_pt2,
                         resume=resume)
    pt2 = a.ladder_pt2
    print(f"{'size':>12} {'params':>8} {'epochs':>6}  {'val force MAE':>14} {'% mean|F|':>9} {'E MAE':>11} "
          f"{'H MAE':>9}  {'TorchScript CPU':>15} {'per atom':>9}" + (f" {'pt2 per atom':>12}" if pt2 else ""))
    print(f"{'':>12} {'':>8} {'':>6}  {'meV/A':>14} {'':>9} {'meV/atom':>11} {'eV/A^2':>9}  {'ms/call':>15} "
          f"{'us':>9}" + (f" {'us':>12}" if pt2 else ""))
    for r in ladder["sizes"]:
        v, c = r["val"], r["cost"]
        mark = " <- recommended" if r["spec"] == ladder["recommended"] else ""
        print(f"{r['spec']:>12} {r['parameters']:>8} {r['epochs']:>6}  {v['force_mae'] * 1000:>14.2f} "
              f"{100 * v['force_mae_relative']:>9.1f} {v['energy_mae_per_atom'] * 1000:>11.2f} "
              f"{v['hessian_mae']:>9.4f}  {c['torchscript']['ms_per_call']:>15.3f} "
              f"{c['torchscript']['us_per_atom']:>9.2f}" + (f" {c['pt2']['us_per_atom']:>12.2f}" if pt2 else "")
              + mark)
    print(f"validation errors; cost of one energy + forces call on {ladder['cost_atoms']} atoms, "
          f"{ladder['cost_threads']} thread(s), neighbour list excluded; {ladder_dir(a.out) / LADDER_FILE}")
    if ladder["still_falling"]:
        print(f"the costliest size ({ladder['best']}) is the best: a larger one may be better still")
    print(f"to train {ladder['recommended']} further: {continue_command(ladder, a.labels)}")
