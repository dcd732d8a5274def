"""Which back end runs a student in OpenMM here, and the imports that decide it.

* ``torchforce``: ``openmmtorch.TorchForce`` around the scripted module (runs inside the OpenMM kernels; CUDA
  platform with the model on the GPU when present, Reference/CPU otherwise).
* ``pythonforce``: ``openmm.PythonForce`` (OpenMM >= 8.5) calling the same module from Python; used when
  openmmtorch is missing or its plugin does not load (a warning says so), and always for a compiled .pt2 student.
"""

from __future__ import annotations

import logging
import os

from ...errors import InputError, OpenMMBackendError, first_line
from ...formats import file_format

log = logging.getLogger("hessdistill.engines.openmm")
BACKENDS = ("auto", "torchforce", "pythonforce")
_warned_fallback = False  # the fallback warning is given once per process, then logged at INFO


def import_openmm():
    """The ``openmm`` module, imported after torch, or a one-line error with the install hint."""
    import torch  # noqa: F401  (first: openmmtorch's plugin needs libtorch's libraries already loaded)

    try:
        import openmm
    except ImportError as exc:
        raise OpenMMBackendError(f"OpenMM is not installed ({exc}); pip install openmm") from exc
    return openmm


def load_openmmtorch():
    """(openmmtorch module or None, reason). Repairs the plugin when openmm was imported before torch."""
    openmm = import_openmm()
    try:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # openmmtorch imports simtk.openmm, which warns through the root logger
        try:
            import openmmtorch
        finally:
            root.setLevel(level)
    except Exception as exc:  # ImportError, or an undefined symbol from a libtorch/ABI mismatch
        return None, f"openmmtorch cannot be imported ({first_line(exc)})"
    if any("OpenMMTorchReference" in f for f in openmm.Platform.getPluginLoadFailures()):
        lib = os.path.join(openmm.version.openmm_library_path, "plugins", "libOpenMMTorchReference.so")
        try:
            openmm.Platform.loadPluginLibrary(lib)
        except Exception as exc:
            return None, f"openmmtorch's plugin does not load ({first_line(exc)})"
        log.info("reloaded %s (openmm was imported before torch)", lib)
    return openmmtorch, ""


def available_backend(backend: str = "auto") -> str:
    """The back end that ``backend`` resolves to here (``torchforce`` or ``pythonforce``); raises if none works."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    openmm = import_openmm()
    has_python_force = hasattr(openmm, "PythonForce")
    if backend in ("auto", "torchforce"):
        module, reason = load_openmmtorch()
        if module is not None:
            return "torchforce"
        if backend == "torchforce":
            raise OpenMMBackendError(f"backend 'torchforce' requested but {reason}")
        if not has_python_force:
            raise OpenMMBackendError(
                f"cannot add a student to OpenMM {openmm.__version__}: {reason}, and openmm.PythonForce needs "
                "OpenMM >= 8.5. Install openmmtorch matching your torch, or OpenMM >= 8.5"
            )
        global _warned_fallback
        level = logging.INFO if _warned_fallback else logging.WARNING
        _warned_fallback = True
        log.log(level, "%s; using the openmm.PythonForce fallback (model called from Python each step)", reason)
        return "pythonforce"
    if not has_python_force:
        raise OpenMMBackendError(f"openmm.PythonForce needs OpenMM >= 8.5; this is OpenMM {openmm.__version__}")
    return "pythonforce"


def backend_for(model_path, backend: str = "auto") -> str:
    """The back end that runs the student file ``model_path`` here: ``available_backend(backend)`` for TorchScript;
    ``pythonforce`` for a .pt2 package (TorchForce takes only TorchScript), or a one-line error why it cannot run."""
    return _pt2_backend(model_path, backend) if file_format(model_path) == "pt2" else available_backend(backend)


def _pt2_backend(model_path, backend: str) -> str:
    """``pythonforce`` for a .pt2 student, or a one-line error saying why it cannot run here."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    openmm = import_openmm()
    if backend == "torchforce":
        raise OpenMMBackendError(f"{model_path} is a compiled .pt2 student; openmmtorch.TorchForce takes only "
                                 "TorchScript: use the TorchScript file, or backend 'pythonforce'")
    if not hasattr(openmm, "PythonForce"):
        raise OpenMMBackendError(f"{model_path} is a compiled .pt2 student, which OpenMM runs through "
                                 f"openmm.PythonForce (OpenMM >= 8.5); this is OpenMM {openmm.__version__}: use the "
                                 "TorchScript file here")
    return "pythonforce"
