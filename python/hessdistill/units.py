"""Unit constants. Internally hessdistill works in eV, Angstrom, ps and amu; engines convert at their boundary."""

# CODATA 2018 values, as used by ASE.
HARTREE_TO_EV = 27.211386245988
EV_TO_KJ_PER_MOL = 96.48533212331002
KCAL_TO_KJ = 4.184
EV_TO_KCAL_PER_MOL = EV_TO_KJ_PER_MOL / KCAL_TO_KJ
NM_TO_ANGSTROM = 10.0
ANGSTROM_TO_NM = 0.1
EV_PER_A3_TO_GPA = 160.21766208  # stress
