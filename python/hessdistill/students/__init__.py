"""Student architectures, looked up by name."""

from __future__ import annotations

from ..errors import ConfigError
from .common import StudentBase
from .painn import PaiNN
from .schnet import SchNetLite
from .tensornet import TensorNet

ARCHITECTURES = {"painn": PaiNN, "schnet": SchNetLite, "tensornet": TensorNet}


def build_student(architecture: str, **hyperparameters) -> StudentBase:
    """Make a student by architecture name (a key of ``ARCHITECTURES``)."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError as exc:
        raise ConfigError(
            f"unknown student architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from exc
    return cls(**hyperparameters)


__all__ = ["ARCHITECTURES", "PaiNN", "SchNetLite", "StudentBase", "TensorNet", "build_student"]
