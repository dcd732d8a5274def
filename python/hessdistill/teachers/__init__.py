"""Teachers, looked up by name. Heavy back ends are imported only when their teacher is asked for.

Names: ``ani1x``, ``sevennet0``, ``chgnet``, ``morse`` / ``lj`` (analytic pair potentials),
``torchscript:PATH`` (a user TorchScript energy model), ``mace:PATH`` (a MACE model file such as MACE-OFF or
MACE-MP-0; needs ``mace-torch``, the ``mace`` extra), ``ase:MODULE:CLASS`` (any ASE calculator; Hessians by
finite differences).
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import AutogradTeacher, Label, Teacher

_REGISTRY = {
    "ani1x": ("ani", "ANI1xTeacher", "pip install torchani==2.2.4 'setuptools<81'"),
    "sevennet0": ("sevennet", "SevenNetTeacher", "pip install sevenn==0.13.0"),
    "chgnet": ("chgnet", "CHGNetTeacher", "pip install chgnet==0.4.2"),
    "morse": ("analytic", "MorseTeacher", ""),
    "lj": ("analytic", "LennardJonesTeacher", ""),
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
    try:
        module, name, hint = _REGISTRY[spec]
    except KeyError as exc:
        raise ConfigError(
            f"unknown teacher {spec!r}; choose one of {', '.join(_REGISTRY)}, torchscript:PATH, mace:PATH or "
            "ase:MODULE:CLASS"
        ) from exc
    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ImportError as exc:
        raise ConfigError(f"teacher {spec} needs a package that is not installed ({exc}); {hint}") from exc
    return getattr(mod, name)(**kwargs)


__all__ = ["AutogradTeacher", "Label", "Teacher", "load_teacher"]
