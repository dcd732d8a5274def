"""The ``hessdistill`` command: one subcommand per pipeline stage, one module per subcommand.

sample -> label (-> merge) -> distill (-> report) -> export -> md (-> refine); ``example`` runs them all on the
built-in example. Each module parses its arguments and calls one library function, so every run can be repeated
from Python. Errors raised on purpose (bad input, failed runs) print one line and exit with status 2; ``--debug``
shows the traceback instead.

The command owns its process, so it sets two process-wide things that the library itself never touches: torch's
intra-op thread count (``--threads``, default 1) and glibc's malloc thresholds (:func:`hessdistill.heap.
keep_freed_memory`, on unless ``--no-heap-tuning``): small-system MD and Hessian-row training steps run up to 2x
slower without it.
"""

from __future__ import annotations

import sys

from ..errors import HessdistillError
from . import distill, example, export, label, lammps_plugin, md, merge, refine, report, sample

COMMANDS = (sample, label, merge, distill, report, export, md, refine, example, lammps_plugin)


def build_parser():
    from .. import __version__

    from .options import OneLineParser, positive_int

    parser = OneLineParser(prog="hessdistill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"hessdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch intra-op threads (default 1: fastest for small students on few cores)")
    parser.add_argument("--no-heap-tuning", action="store_true",
                        help="leave glibc's malloc thresholds as they are (by default this command keeps freed "
                             "memory for reuse: hessdistill.heap.keep_freed_memory)")
    parser.add_argument("--heap-large-blocks", action="store_true",
                        help="keep blocks over 32 MB for reuse too (no mmap): flat cost per atom-step for OpenMM "
                             "and ASE MD of tens of thousands of atoms, at the price of memory held by the process")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not args.no_heap_tuning:
        from ..heap import keep_freed_memory

        keep_freed_memory(large_blocks=args.heap_large_blocks)
    try:
        args.func(args)
    except HessdistillError as exc:
        if args.debug:
            raise
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"hessdistill: error: {message}", file=sys.stderr)
        raise SystemExit(2) from exc
