"""Label: the teacher's energy, forces and Hessian rows for each structure, in a resumable HDF5 store."""

from .store import (  # noqa: F401
    SPLITS,
    LabeledStructure,
    choose_rows,
    label_structures,
    load_labels,
    merge,
    parse_shard,
    parts_dir,
    write_store,
)
from .run import label_file  # noqa: F401

__all__ = ["SPLITS", "LabeledStructure", "choose_rows", "label_file", "label_structures", "load_labels", "merge", "parse_shard",
           "parts_dir", "write_store"]
