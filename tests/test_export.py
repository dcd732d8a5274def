"""The exported student file: loads with plain torch in a fresh process, same numbers as the in-memory student;
metadata readable; the ASE calculator's forces and stress agree with finite differences; bad files fail clearly."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

from conftest import make_student
from hessdistill.engines.ase import StudentCalculator
from hessdistill.errors import ConfigError, ModelFileError, StructureError, UnsupportedElementError
from hessdistill.formats import StudentFile, export_student, read_metadata
from hessdistill.neighbors import neighbor_list

FRESH = r"""
import json, sys, torch
keys = ["cutoff", "type_names", "num_interactions", "dtype", "energy_unit", "length_unit", "hessdistill_version"]
extra = dict.fromkeys(keys, "")
m = torch.jit.load(sys.argv[1], _extra_files=extra)
data = json.load(open(sys.argv[2]))
pos = torch.tensor(data["positions"], dtype=torch.float64)
e, f = m.energy_and_forces(pos, torch.tensor(data["species"]), torch.tensor(data["cell"], dtype=torch.float64),
                           torch.tensor(data["pbc"]))
assert "hessdistill" not in sys.modules
print(json.dumps({"energy": float(e), "forces": f.tolist(), "meta": {k: v.decode() for k, v in extra.items()}}))
"""


@pytest.mark.parametrize("arch", ["painn", "schnet", "tensornet"])
@pytest.mark.parametrize("system", ["ethanol", "silicon"])
def test_fresh_process_gives_in_memory_numbers(arch, system, request, tmp_path):
    atoms = request.getfixturevalue(system)
    model = make_student(arch)
    path = export_student(model, tmp_path / "s.pt", dtype="float64")
    ei, sh = neighbor_list(atoms, model.cutoff)
    index = {s: k for k, s in enumerate(model.type_names)}
    species = [index[s] for s in atoms.get_chemical_symbols()]
    x = torch.tensor(atoms.positions, requires_grad=True)
    e = model(x, torch.tensor(species), torch.tensor(ei), torch.tensor(sh)).sum()
    f = -torch.autograd.grad(e, x)[0]
    (tmp_path / "in.json").write_text(json.dumps({"positions": atoms.positions.tolist(), "species": species,
                                                  "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist()}))
    out = subprocess.run([sys.executable, "-c", FRESH, str(path), str(tmp_path / "in.json")], capture_output=True,
                         text=True, check=True)
    res = json.loads(out.stdout)
    assert abs(res["energy"] - float(e)) < 1e-10 * max(1, abs(float(e)))
    np.testing.assert_allclose(res["forces"], f.detach().numpy(), atol=1e-10)
    assert res["meta"]["type_names"] == "H C O Si"
    assert float(res["meta"]["cutoff"]) == model.cutoff
    assert res["meta"]["num_interactions"] == "2" and res["meta"]["dtype"] == "float64"
    assert res["meta"]["energy_unit"] == "eV" and res["meta"]["length_unit"] == "A"


def test_calculator_forces_and_stress_match_finite_differences(silicon, tmp_path):
    path = export_student(make_student("painn"), tmp_path / "s.pt")
    silicon.calc = StudentCalculator(path)
    np.testing.assert_allclose(silicon.get_forces(), calculate_numerical_forces(silicon, 1e-5), atol=1e-8)
    np.testing.assert_allclose(silicon.get_stress(), calculate_numerical_stress(silicon, 1e-5), atol=1e-8)
    assert abs(silicon.get_potential_energies().sum() - silicon.get_potential_energy()) < 1e-10
    e0 = silicon.get_potential_energy()
    moved = silicon.copy()
    moved.positions[2] += 2 * moved.cell[1]  # unwrapped position: same physics
    moved.calc = StudentCalculator(path)
    assert abs(moved.get_potential_energy() - e0) < 1e-10


def test_float32_export_and_metadata(ethanol, tmp_path):
    model = make_student("schnet")
    path = export_student(model, tmp_path / "s32.pt", dtype="float32", teacher="morse")
    meta = read_metadata(path)
    assert meta["dtype"] == "float32" and meta["teacher"] == "morse" and meta["architecture"] == "schnet"
    assert float(meta["interaction_range"]) == pytest.approx(2 * model.cutoff)
    ethanol.calc = StudentCalculator(path)
    e32 = ethanol.get_potential_energy()
    ethanol.calc = StudentCalculator(export_student(model, tmp_path / "s64.pt", dtype="float64"))
    assert abs(e32 - ethanol.get_potential_energy()) < 1e-4


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        StudentFile(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all" * 10)
    with pytest.raises(ModelFileError, match="not a TorchScript archive"):
        StudentFile(junk)
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(other))
    with pytest.raises(ModelFileError, match="not a hessdistill student"):
        StudentFile(other)
    good = export_student(make_student("schnet"), tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelFileError):
        StudentFile(truncated)
    with pytest.raises(ConfigError, match="export dtype must be float32 or float64, got 'float16'"):
        export_student(make_student("schnet"), tmp_path / "half.pt", dtype="float16")  # a bad option, not a bad file
    assert not (tmp_path / "half.pt").exists()
    assert StudentFile(export_student(make_student("schnet"), tmp_path / "t.pt", dtype=torch.float32)).metadata[
        "dtype"] == "float32"


def test_calculator_follows_changed_elements(ethanol, tmp_path):
    """The calculator keeps the species between calls (MD asks every step): a structure whose elements change,
    same length, in place or as another Atoms, gets the energy of a fresh calculator, and an element the student
    lacks is still refused after a call that succeeded."""
    path = export_student(make_student("painn", type_names=("H", "C", "O")), tmp_path / "s.pt", dtype="float64")
    calc = StudentCalculator(path)
    ethanol.calc = calc
    before = ethanol.get_potential_energy()
    ethanol.numbers[ethanol.numbers == 8] = 6  # O -> C
    changed = ethanol.get_potential_energy()
    fresh = ethanol.copy()
    fresh.calc = StudentCalculator(path)
    assert changed == pytest.approx(fresh.get_potential_energy(), abs=1e-12) and abs(changed - before) > 1e-6
    ethanol.numbers[0] = 14
    with pytest.raises(UnsupportedElementError, match="Si"):
        ethanol.get_potential_energy()


def test_calculator_rejects_bad_structures(ethanol, tmp_path):
    path = export_student(make_student("schnet", type_names=("H", "C")), tmp_path / "s.pt")
    ethanol.calc = StudentCalculator(path)
    with pytest.raises(UnsupportedElementError, match="O"):
        ethanol.get_potential_energy()
    from ase.build import molecule

    ch4 = molecule("CH4")
    ch4.positions[1] = ch4.positions[0] + 0.1
    ch4.calc = StudentCalculator(path)
    with pytest.raises(StructureError, match="overlap"):
        ch4.get_potential_energy()
    ch4 = molecule("CH4")
    ch4.positions[2, 1] = np.nan
    ch4.calc = StudentCalculator(path)
    with pytest.raises(StructureError, match="non-finite"):
        ch4.get_potential_energy()


def test_overlap_is_found_across_the_periodic_boundary():
    from ase import Atoms

    from hessdistill.structures import check_structure

    atoms = Atoms("Si2", positions=[[0.1, 1.0, 1.0], [5.2, 1.0, 1.0]], cell=[5.4, 5.4, 5.4], pbc=True)
    with pytest.raises(StructureError, match=r"atoms 0 and 1 overlap: distance 0\.300 A"):
        check_structure(atoms)
    atoms.pbc = False  # 5.1 A apart without the boundary
    check_structure(atoms)


def test_float64_export_keeps_every_bit_of_the_weights(tmp_path):
    """A float64 student exported as float64 is the same function: its weights are not rounded through float32."""
    from conftest import make_student

    model = make_student(seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-9 * torch.randn_like(p))  # digits float32 cannot hold
    module = torch.jit.load(str(export_student(model, tmp_path / "s.pt", dtype="float64")))
    exported = module.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(exported[name], value), name
