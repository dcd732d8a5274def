"""Teachers, looked up by name. Heavy back ends are imported only when their teacher is asked for.

Names: ``ani1x``, ``sevennet0``, ``chgnet``, ``morse`` / ``lj`` (analytic pair potentials), any name another
package registers in the entry-point group ``hessdistill.teachers`` (``name = "pkg.module:TeacherClass"``, a
:class:`Teacher` subclass), ``torchscript:PATH`` (a user TorchScript energy model), ``mace:PATH`` (a MACE model
file such as MACE-OFF or MACE-MP-0; needs ``mace-torch``, the ``mace`` extra), ``ase:MODULE:CLASS`` (any ASE
calculator; Hessians by finite differences).
"""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points

from ..errors import ConfigError
from .base import AutogradTeacher, Label, Teacher

ENTRY_POINT_GROUP = "hessdistill.teachers"
#: hessdistill's own teachers (pyproject.toml registers the same entry points); listed here as well so that a
#: checkout whose installed metadata predates the group still finds them
BUILTIN_TEACHERS = {
    "ani1x": "hessdistill.teachers.ani:ANI1xTeacher",
    "sevennet0": "hessdistill.teachers.sevennet:SevenNetTeacher",
    "chgnet": "hessdistill.teachers.chgnet:CHGNetTeacher",
    "morse": "hessdistill.teachers.analytic:MorseTeacher",
    "lj": "hessdistill.teachers.analytic:LennardJonesTeacher",
}
#: what to install when a built-in teacher's back end is missing (its module cannot be imported without it)
INSTALL_HINTS = {
    "ani1x": "pip install torchani==2.2.4 'setuptools<81'",
    "sevennet0": "pip install sevenn==0.13.0",
    "chgnet": "pip install chgnet==0.4.2",
}
_MACE_HINT = "pip install 'hessdistill[mace]' (mace-torch==0.3.16; not in the same environment as sevenn)"


def load_teacher(spec: str, **kwargs) -> Teacher:
    """Make a teacher from its name (see module docstring); ``kwargs`` go to its constructor."""
    if spec.startswith("torchscript:"):
        from .torchscript import TorchScriptTeacher

        return TorchScriptTeacher(spec.split(":", 1)[1], **kwargs)
    if spec.startswith("mace:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise ConfigError("MACE teacher spec must be mace:PATH (a model file), got 'mace:'")
        try:
            from .mace import MACETeacher
        except ImportError as exc:
            raise ConfigError(f"teacher {spec} needs a package that is not installed ({exc}); {_MACE_HINT}") from exc
        return MACETeacher(path, **kwargs)
    if spec.startswith("ase:"):
        from .ase_fd import ASECalculatorTeacher

        parts = spec.split(":")
        if len(parts) != 3:
            raise ConfigError(f"ASE teacher spec must be ase:MODULE:CLASS, got {spec!r}")
        try:
            cls = getattr(importlib.import_module(parts[1]), parts[2])
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"teacher {spec}: cannot import {parts[2]} from {parts[1]} ({exc})") from exc
        return ASECalculatorTeacher(cls(), **kwargs)
    teachers = registered_teachers()
    if spec not in teachers:
        raise ConfigError(
            f"unknown teacher {spec!r}; choose one of {', '.join(teachers)}, torchscript:PATH, mace:PATH or "
            "ase:MODULE:CLASS"
        )
    module, _, name = teachers[spec].partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(spec, f"install the package that provides {module}")
        raise ConfigError(f"teacher {spec} needs a package that is not installed ({exc}); {hint}") from exc
    if not hasattr(mod, name):
        raise ConfigError(f"teacher {spec} is registered as {teachers[spec]}, but {module} has no {name}")
    return getattr(mod, name)(**kwargs)


def registered_teachers() -> dict[str, str]:
    """Teacher name -> ``"module:Class"``: the built-in teachers and those of the entry-point group
    ``hessdistill.teachers``. An entry point naming a built-in teacher with another class is ignored with a
    warning (a built-in name always means the built-in teacher); of two packages registering one name, the first
    found is kept, with a warning."""
    teachers = dict(BUILTIN_TEACHERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if teachers.get(ep.name, ep.value) != ep.value:
            what = "the built-in teacher" if ep.name in BUILTIN_TEACHERS else teachers[ep.name]
            warnings.warn(f"teacher entry point {ep.name} = {ep.value} ignored: {ep.name} is {what}", stacklevel=2)
            continue
        teachers[ep.name] = ep.value
    return teachers


__all__ = ["AutogradTeacher", "Label", "Teacher", "load_teacher", "registered_teachers"]
