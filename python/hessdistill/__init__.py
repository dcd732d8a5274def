"""hessdistill: distil machine-learning force-field foundation models into small, fast, conservative students
trained on energies, forces and rows of the teacher's energy Hessian."""

__version__ = "0.1.0"

from .errors import (  # noqa: F401  (re-exported: the public error hierarchy)
    ConfigError,
    EnergyConservationError,
    EngineError,
    HessdistillError,
    InputError,
    LabelStoreError,
    LammpsError,
    ModelFileError,
    OpenMMBackendError,
    StructureError,
    UnsupportedElementError,
)
