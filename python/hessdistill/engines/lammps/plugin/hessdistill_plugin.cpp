/* Registers pair_style hessdistill and fix hessdistill/monitor with LAMMPS when the plugin is loaded (plugin load /
   LAMMPS_PLUGIN_PATH). */

#include "lammpsplugin.h"
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
}
