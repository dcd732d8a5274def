"""The report's one PNG: parity plots, frequencies and the pressure curve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np



def plot_report(report: dict, values: dict, png) -> None:
    """Parity plots (energy, forces, Hessian entries, stress), frequencies and the pressure curve, one PNG."""
    from matplotlib.figure import Figure  # not pyplot: no backend switch or global figure state for the caller

    panels = [("energy_per_atom", "energy per atom (eV)"), ("forces", "force components (eV/A)"),
              ("hessian", "Hessian entries (eV/A$^2$)"), ("stress", "stress (eV/A$^3$)"),
              ("net_force", "molecules' net force (eV/A)"), ("net_torque", "molecules' net torque (eV)")]
    panels = [(k, label) for k, label in panels if len(values[k][0])]
    physics = report.get("physics") or {}
    extra = [] if "skipped" in physics or not physics else (["frequencies"] +
                                                             (["pressure"] if physics["kind"] == "crystal" else []))
    n = len(panels) + len(extra)
    fig = Figure(figsize=(4.0 * n, 4.0))
    axes = [fig.add_subplot(1, n, k + 1) for k in range(n)]
    for ax, (key, label) in zip(axes, panels):
        t, s = values[key]
        lo, hi = float(min(t.min(), s.min())), float(max(t.max(), s.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.plot(t, s, ".", ms=2 if len(t) > 2000 else 4, alpha=0.6)
        ax.set_xlabel(f"teacher {label}")
        ax.set_ylabel("student")
        err = report["label_errors"]
        name = {"energy_per_atom": "energy", "forces": "force"}.get(key, key)
        mae = err.get(f"{name}_mae_per_atom" if key == "energy_per_atom" else f"{name}_mae")
        rel = err.get(f"{name}_mae_relative")
        ax.set_title(f"MAE {mae:.3g}" + (f" ({100 * rel:.1f}% of mean |teacher|)" if rel is not None else ""),
                     fontsize=9)
    rest = axes[len(panels):]
    if "frequencies" in extra:
        ax = rest[0]
        t, s = np.array(physics["teacher_frequencies_cm"]), np.array(physics["student_frequencies_cm"])
        ax.axhline(0.0, color="0.6", lw=1)
        ax.plot(t, 100 * (s - t) / np.where(np.abs(t) > 1e-9, t, np.nan), "o", ms=4)
        ax.set_xlabel("teacher frequency (cm$^{-1}$)")
        ax.set_ylabel("student - teacher (%)")
        title = f"frequencies: rms {100 * physics['frequency_rms_relative']:.2f}%"
        if physics.get("soft_modes") and physics.get("stiff_frequency_rms_relative") is not None:
            ax.axvline(physics["soft_mode_cm"], color="0.6", lw=1, ls="--")
            stiff = physics["stiff_frequency_rms_relative"]
            title += f" (above {physics['soft_mode_cm']:.0f} cm$^{{-1}}$: {100 * stiff:.2f}%)"
        ax.set_title(title, fontsize=9)
    if "pressure" in extra:
        ax = rest[1]
        strain = 100 * np.array(physics["strains"])
        ax.plot(strain, physics["teacher_pressure_GPa"], "o-", label="teacher")
        ax.plot(strain, physics["student_pressure_GPa"], "s--", label="student")
        ax.set_xlabel("volumetric strain (%)")
        ax.set_ylabel("pressure (GPa)")
        ax.legend(fontsize=8)
        ax.set_title(f"pressure: max error {100 * physics['pressure_error_relative']:.1f}%", fontsize=9)
    fig.suptitle(f"{Path(report['student']).name} vs teacher, {report['split']} split", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
