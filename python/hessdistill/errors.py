"""One error hierarchy for hessdistill.

Every error raised on purpose for bad input or a failed run derives from ``HessdistillError``, so the CLI can
print a one-line message instead of a traceback. Messages say what was expected and what was found.
"""


class HessdistillError(Exception):
    """Base class of all errors raised on purpose by hessdistill."""


class InputError(HessdistillError, ValueError):
    """Bad user input: a structure, a file, an option value."""


class UnsupportedElementError(InputError):
    """A structure holds an element the teacher or student does not cover."""


class StructureError(InputError):
    """A structure is unphysical or malformed (NaN coordinates, overlapping atoms, bad cell)."""


class ModelFileError(InputError):
    """A file that should hold an exported student (or a teacher model) is missing or unreadable."""


class LabelStoreError(InputError):
    """A label store is missing, corrupt, or inconsistent."""


class ConfigError(InputError):
    """A configuration file or option is invalid."""


class EnergyConservationError(HessdistillError, RuntimeError):
    """An MD run stopped because the energy monitor saw drift, a jump, or non-finite values."""


class ModelDeviationError(HessdistillError, RuntimeError):
    """An MD run stopped because the committee's force deviation passed its threshold (the student is outside
    its training data)."""


class EngineError(HessdistillError, RuntimeError):
    """An MD engine could not run the student (missing engine package, failed build, engine error)."""


class LammpsError(EngineError):
    """The LAMMPS plugin did not build, or LAMMPS stopped with an error."""


class OpenMMBackendError(EngineError, ImportError):
    """No way to put a student into OpenMM here: OpenMM, or both openmmtorch and openmm.PythonForce, missing."""


def first_line(exc: BaseException, *, named: bool = False) -> str:
    """The first line of an exception's message (its type's name when empty), for one-line errors built on
    library exceptions whose messages run to pages (TorchScript, AOTInductor, compilers); ``named`` puts the
    type's name in front. At most 300 characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return (f"{type(exc).__name__}: {line}" if named and text else line)[:300]
