"""``label_file()``: a structure file -> checked structures -> the teacher's labels in a store; what
``hessdistill label`` runs."""

from __future__ import annotations

from ..errors import HessdistillError
from .store import label_structures, parse_shard


def label_file(structures, teacher, output, rows="full", shard="0/1", seed: int = 0, relabel: bool = False,
               probes: str = "rows") -> dict:
    """Label every structure of the file ``structures`` (split where the file has no split) with ``teacher`` (a
    name or a teacher object) into the store ``output``; ``rows`` Hessian rows per structure, or with
    ``probes="random"`` as many Hessian-vector products along random probes; ``shard`` ``"i/n"`` labels every
    n-th structure only; ``relabel`` discards finished parts (of another teacher, structure set or probe kind)
    instead of refusing them.

    Example
    -------
    >>> label_file("structures.extxyz", "ani1x", "labels.h5", rows=8, probes="random")
    """
    from ..paths import check_output
    from ..sample import read_structures, split
    from ..teachers import load_teacher
    from .probes import check_probe_kind
    from .store import parts_dir

    check_probe_kind(probes)
    atoms_list = read_structures(structures)
    check_output(output, inputs=[structures], what="label store")
    check_output(parts_dir(output), inputs=[structures], kind="dir", what="parts folder")
    shard = parse_shard(shard)
    teacher = load_teacher(teacher) if isinstance(teacher, str) else teacher
    for k, atoms in enumerate(atoms_list):  # fail before any work, naming the first bad structure
        try:
            teacher.check(atoms)
        except HessdistillError as exc:
            raise type(exc)(f"structure #{k}: {exc}") from exc
    if not all("split" in s.info for s in atoms_list):
        atoms_list = split(atoms_list, seed=seed)
    return label_structures(atoms_list, teacher, output, rows=rows, shard=shard, seed=seed, relabel=relabel,
                            probes=probes)
