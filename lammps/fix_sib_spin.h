// fix sib/spin: spin-lattice dynamics driven by the magnetic forces any pair style leaves in atom->fm.
// The scheme of ase_deepspin.dynamics.SpinLatticeDynamics; see fix_sib_spin.cpp.
#ifndef ASE_DEEPSPIN_FIX_SIB_SPIN_H
#define ASE_DEEPSPIN_FIX_SIB_SPIN_H

#include "fix.h"

#include <random>
#include <vector>

namespace LAMMPS_NS {

class FixSIBSpin : public Fix {
 public:
  FixSIBSpin(class LAMMPS *, int, char **);
  int setmask() override;
  void init() override;
  void initial_integrate(int) override;
  void final_integrate() override;
  double compute_scalar() override;

 private:
  double alpha;           // Gilbert damping
  double temperature;     // K, spin bath (and lattice bath with friction)
  double friction;        // 1/ps, Langevin friction of the lattice bath (0: NVE lattice)
  double field[3];        // external field, Tesla
  bool lattice_moving, spins_moving;
  int seed;
  std::mt19937_64 rng;
  std::normal_distribution<double> normal;
  std::vector<double> start_field, noise;  // per owned atom, 3 each

  void evaluate_forces();
  void effective_field(int i, const double *unit, double *b) const;
  void rotate_spins(double dt);
};

}  // namespace LAMMPS_NS

#endif
