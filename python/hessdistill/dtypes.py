"""The floating-point dtypes hessdistill computes in, by the names configs, CLI flags and student files use."""

from __future__ import annotations

import torch

from .errors import ConfigError

#: dtype name -> torch dtype
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(dtype: str | torch.dtype, who: str = "dtype", allowed: tuple[str, ...] = tuple(DTYPES)) -> torch.dtype:
    """The torch dtype named ``dtype`` (``"float32"``, ``"float64"`` or a torch dtype); ConfigError naming ``who``
    when it is not one of ``allowed``.

    Example
    -------
    >>> parse_dtype("float64")
    torch.float64
    """
    name = str(dtype).replace("torch.", "")
    if name not in allowed:
        raise ConfigError(f"{who} must be {' or '.join(allowed)}, got {dtype!r}")
    return DTYPES[name]
