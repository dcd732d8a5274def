"""Label: the teacher's energy, forces and Hessian rows (or products along probes) for each structure, in a
resumable HDF5 store."""

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
from .probes import PROBE_KINDS, choose_probes  # noqa: F401

__all__ = ["PROBE_KINDS", "SPLITS", "LabeledStructure", "choose_probes", "choose_rows", "label_file",
           "label_structures", "load_labels", "merge", "parse_shard", "parts_dir", "write_store"]
