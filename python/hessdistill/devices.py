"""Where models run: the one rule for the default device and for checking a requested one.

Teachers, student files, training, OpenMM's PythonForce and the OpenMM platform all ask here, so "auto" means the
same everywhere: CUDA when torch sees a GPU, else the CPU. Whether a GPU is there is a parameter of each rule
(``cuda``; None asks torch), so the rules are tested on machines without one.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .errors import ConfigError


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(name: str | torch.device | None = None, cuda: Optional[bool] = None) -> torch.device:
    """The device for ``name``: None or "auto" -> cuda when a GPU is there, else cpu; "cpu", "cuda", "cuda:N"
    (or a torch.device) as given, where a CUDA device without a GPU is a ConfigError."""
    cuda = cuda_available() if cuda is None else cuda
    if name is None or name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not cuda:
        raise ConfigError(f"device {device} requested but torch sees no CUDA device here; use cpu")
    return device


def openmm_platform_name(available: Sequence[str], students_only: bool, cuda: Optional[bool] = None) -> str:
    """The OpenMM platform to use when none is named: CUDA when OpenMM has it and torch sees a GPU (the student
    then runs on the GPU too), else CPU, or Reference when the System holds students only (without an MM force to
    speed up, CPU's own work per step costs more than Reference's; see docs/design/performance.md)."""
    cuda = cuda_available() if cuda is None else cuda
    if "CUDA" in available and cuda:
        return "CUDA"
    if "CPU" in available and not students_only:
        return "CPU"
    return "Reference"
