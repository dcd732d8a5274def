"""``hessdistill export``: a run's best student as a file (:func:`hessdistill.distill.export_run`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from .options import device

    p = sub.add_parser("export", help="export a run's best student as TorchScript, a compiled .pt2 package or a "
                                      "metatomic model")
    p.add_argument("checkpoint", help="run folder or its checkpoint.pt")
    p.add_argument("-o", "--output", required=True, help="student file; a .pt2 suffix means --format pt2")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--format", choices=["torchscript", "pt2", "metatomic"], default=None,
                   help="torchscript (portable, default), pt2 (AOTInductor package, several times faster; "
                        "compiled for this machine, device and torch: run the export where it will run) or "
                        "metatomic (an AtomisticModel for metatomic's engines: ASE, i-PI, PLUMED, LAMMPS-metatomic)")
    p.add_argument("--device", type=device, default="cpu", help="device a pt2 package runs on (cpu, cuda)")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..distill import export_run

    print(export_run(a.checkpoint, a.output, dtype=a.dtype, format=a.format, device=a.device))
