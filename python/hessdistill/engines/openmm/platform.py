"""The OpenMM platform for a System holding students."""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from ...devices import openmm_platform_name
from ...errors import InputError
from .backend import import_openmm
from .force import STUDENT_FORCE_PREFIX

log = logging.getLogger("hessdistill.engines.openmm")
# Forces that cost nothing next to a student: with only these and students, the Reference platform is the faster one
_LIGHT_FORCES = ("CMMotionRemover",)


def only_students(system) -> bool:
    """Whether every force of ``system`` is a hessdistill student (or a center-of-mass motion remover)."""
    forces = system.getForces()
    return bool(forces) and all(
        f.getName().startswith(STUDENT_FORCE_PREFIX) or type(f).__name__ in _LIGHT_FORCES for f in forces
    )


def select_platform(name: Optional[str] = None, precision: Optional[str] = None,
                    system=None) -> Tuple[object, dict]:
    """(Platform, properties): ``name`` if given, else CUDA when both OpenMM and torch see a GPU, else CPU, or
    Reference when ``system`` is given and holds only students (:func:`only_students`). Without an MM force to
    speed up, the CPU platform's own work per step costs more than Reference's (measured with a trivial
    TorchForce: 0.14-0.18 against 0.06 ms at 54 atoms), and Reference integrates in double precision.
    ``precision`` (single/mixed/double) applies to CUDA/OpenCL; Reference is always double, CPU mixed."""
    openmm = import_openmm()
    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    if name is None:
        name = openmm_platform_name(names, students_only=system is not None and only_students(system))
        log.info("OpenMM platform: %s", name)
    if name not in names:
        raise InputError(f"OpenMM platform {name!r} is not available here; available: {', '.join(names)}")
    platform = openmm.Platform.getPlatformByName(name)
    properties = {}
    if precision is not None:
        if precision not in ("single", "mixed", "double"):
            raise InputError(f"precision must be single, mixed or double, got {precision!r}")
        if "Precision" in platform.getPropertyNames():
            properties["Precision"] = precision
        else:
            log.warning("platform %s has no precision setting; ignoring precision=%s", name, precision)
    return platform, properties
