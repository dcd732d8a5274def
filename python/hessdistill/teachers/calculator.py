"""An ASE calculator view of any teacher, so ASE dynamics can drive teacher MD when sampling."""

from ase.calculators.calculator import Calculator, all_changes


class TeacherCalculator(Calculator):
    """Energy, forces and, for teachers with ``has_stress`` (periodic cells), stress of a ``Teacher`` for ASE
    (the stress lets ASE's NPT dynamics and cell filters drive the teacher)."""

    def __init__(self, teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher
        self.implemented_properties = ["energy", "forces"] + (["stress"] if teacher.has_stress else [])

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.teacher.energy_forces(self.atoms)
        self.results = {"energy": energy, "forces": forces}
        if "stress" in properties:
            self.results["stress"] = self.teacher.stress(self.atoms)
