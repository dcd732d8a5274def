"""Student file formats: export a trained student and load it back (the one loader every engine goes through)."""

from .torchscript import DTYPES, FORMAT, METADATA_KEYS, StudentFile, export_student, read_metadata  # noqa: F401

__all__ = ["DTYPES", "FORMAT", "METADATA_KEYS", "StudentFile", "export_student", "read_metadata"]
