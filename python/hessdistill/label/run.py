"""``label_file()``: a structure file -> checked structures -> the teacher's labels in a store; what
``hessdistill label`` runs."""

from __future__ import annotations

from ..errors import HessdistillError, InputError
from .store import label_structures, parse_shard


def label_file(structures, teacher, output, rows="full", shard="0/1", seed: int = 0, relabel: bool = False,
               probes: str = "rows", minimum=None) -> dict:
    """Label every structure of the file ``structures`` (split where the file has no split) with ``teacher`` (a
    name or a teacher object) into the store ``output``; ``rows`` Hessian rows per structure, or with
    ``probes="random"`` as many Hessian-vector products along random probes, or with ``probes="modes"`` along
    the softest normal modes of the teacher at ``minimum`` (a structure, file or g2 name, relaxed by the teacher
    first as ``sample --normal-modes`` does); ``shard`` ``"i/n"`` labels every
    n-th structure only; ``relabel`` discards finished parts (of another teacher, structure set or probe kind)
    instead of refusing them.

    Example
    -------
    >>> label_file("structures.extxyz", "ani1x", "labels.h5", rows=8, probes="random")
    """
    from ..paths import check_output
    from ..sample import read_structures, split, starting_structure
    from ..sample.modes import relax
    from ..teachers import load_teacher
    from .probes import check_probe_kind
    from .store import parts_dir

    check_probe_kind(probes)
    if (minimum is not None) != (probes == "modes"):
        raise InputError("Hessian probes 'modes' need the minimum whose modes they are (--minimum), and only they "
                         f"use one; got probes {probes!r} and {'a' if minimum is not None else 'no'} minimum")
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
    if probes == "modes":
        minimum = starting_structure(minimum) if isinstance(minimum, str) else minimum
        teacher.check(minimum)
        minimum = relax(minimum, teacher.as_calculator())
    if not all("split" in s.info for s in atoms_list):
        atoms_list = split(atoms_list, seed=seed)
    return label_structures(atoms_list, teacher, output, rows=rows, shard=shard, seed=seed, relabel=relabel,
                            probes=probes, minimum=minimum)
