/* The LAMMPS unit styles the plugin supports and their factors to the units of hessdistill (eV, Angstrom, ps).
   Students and the Python monitors work in eV, Angstrom and ps; LAMMPS inputs use units metal (eV, Angstrom, ps)
   or real (kcal/mol, Angstrom, fs). Lengths agree in both, so only energy and time need factors. The constants are
   those of hessdistill.units (CODATA 2018 eV in kJ/mol, thermochemical kcal): change them together. */

#ifndef LMP_HESSDISTILL_UNITS_H
#define LMP_HESSDISTILL_UNITS_H

#include <string>

namespace hessdistill {

constexpr double EV_TO_KJ_PER_MOL = 96.48533212331002;
constexpr double KCAL_TO_KJ = 4.184;
constexpr double EV_TO_KCAL_PER_MOL = EV_TO_KJ_PER_MOL / KCAL_TO_KJ;

struct LammpsUnits {
  double energy_per_ev;    // LAMMPS energy unit per eV: 1 (metal), EV_TO_KCAL_PER_MOL (real)
  double ps_per_time;      // ps per LAMMPS time unit: 1 (metal), 1e-3 (real: fs)
};

// The factors of LAMMPS unit style `style` (update->unit_style); false for a style the plugin does not support.
inline bool lammps_units(const std::string &style, LammpsUnits &out)
{
  if (style == "metal") {
    out = {1.0, 1.0};
    return true;
  }
  if (style == "real") {
    out = {EV_TO_KCAL_PER_MOL, 1e-3};
    return true;
  }
  return false;
}

}    // namespace hessdistill

#endif
