/* Registers pair_style hessdistill, fix hessdistill/monitor, compute and fix hessdistill/deviation with LAMMPS when the plugin is loaded (plugin load /
   LAMMPS_PLUGIN_PATH). */

#include "lammpsplugin.h"
#include "compute_hessdistill_deviation.h"
#include "fix_hessdistill_deviation.h"
#include "fix_hessdistill_monitor.h"
#include "pair_hessdistill.h"

#ifndef HESSDISTILL_LAMMPS_VERSION
#define HESSDISTILL_LAMMPS_VERSION "22 Jul 2025"
#endif

using namespace LAMMPS_NS;

static Pair *hessdistill_creator(LAMMPS *lmp)
{
  return new PairHessdistill(lmp);
}

static Fix *hessdistill_deviation_fix_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new FixHessdistillDeviation(lmp, narg, arg);
}

static Compute *hessdistill_deviation_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new ComputeHessdistillDeviation(lmp, narg, arg);
}

static Fix *hessdistill_monitor_creator(LAMMPS *lmp, int narg, char **arg)
{
  return new FixHessdistillMonitor(lmp, narg, arg);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = HESSDISTILL_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "hessdistill";
  plugin.info = "hessdistill student (TorchScript message-passing potential) pair style";
  plugin.author = "hessdistill developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &hessdistill_creator;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);

  plugin.style = "fix";
  plugin.name = "hessdistill/monitor";
  plugin.info = "hessdistill energy-conservation monitor (drift, |E - E0|, non-finite checks, CSV, stop)";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &hessdistill_monitor_creator;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);

  plugin.name = "hessdistill/deviation";
  plugin.info = "hessdistill committee deviation monitor (max_devi_f rows, stop or flag frames)";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &hessdistill_deviation_fix_creator;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);

  plugin.style = "compute";
  plugin.info = "hessdistill committee force deviation (max, min, mean devi_f; per-atom devi_f)";
  plugin.creator.v2 = (lammpsplugin_factory2 *) &hessdistill_deviation_creator;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
