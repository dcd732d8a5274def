"""An ASE calculator view of any teacher, so ASE dynamics can drive teacher MD when sampling."""

from ase.calculators.calculator import Calculator, all_changes


class TeacherCalculator(Calculator):
    """Energy and forces of a ``Teacher`` for ASE (no stress: sampling runs at fixed cell)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.teacher.energy_forces(self.atoms)
        self.results = {"energy": energy, "forces": forces}
