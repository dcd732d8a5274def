"""Student architectures, looked up by name."""

from __future__ import annotations

from ..errors import ConfigError
from .common import StudentBase
from .painn import PaiNN
from .schnet import SchNetLite

ARCHITECTURES = {"painn": PaiNN, "schnet": SchNetLite}


def build_student(architecture: str, **hyperparameters) -> StudentBase:
    """Make a student by architecture name (``painn`` or ``schnet``)."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ConfigError(
            f"unknown student architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None
    return cls(**hyperparameters)


__all__ = ["ARCHITECTURES", "PaiNN", "SchNetLite", "StudentBase", "build_student"]
