// fix ID group sib/spin [alpha A] [temperature T] [friction G] [seed N] [field Bx By Bz]
//                       [lattice moving|frozen] [spins moving|frozen]
//
// Spin-lattice dynamics with the magnetic forces a pair style leaves in atom->fm (DeePMD-kit's
// pair_style deepspin, any SPIN pair style): the scheme of ase_deepspin.dynamics.SpinLatticeDynamics,
// V(dt/2) X(dt/2) [O(dt) S(dt)] X(dt/2) V(dt/2), with S one SIB step (Mentink et al., J. Phys.: Condens.
// Matter 22, 176001 (2010)) of the stochastic Landau-Lifshitz-Gilbert equation, |s| kept to round-off:
//   predictor  s' = cay(s, A(s, B0) dt/2),   B0 the field at the step's start (the last evaluation),
//   corrector  s1 = cay(s, A(m, B1) dt/2),   m = (s + s')/|s + s'|, B1 evaluated at m and the midpoint lattice,
// A(s, B) = -gamma/(1 + alpha^2) (B + alpha s x B), B = omega_perp/mu_B + B_ext (+ thermal field), and
// omega = hbar fm/|S| (eV/muB) the torque -dE/dS. Two force evaluations per step: one here at the midpoint,
// LAMMPS's own at the step's end. O is an Ornstein-Uhlenbeck update of the velocities (friction > 0).
// Units: metal (eV, Angstrom, ps), fields in Tesla, temperature in K, friction in 1/ps.
#include "fix_sib_spin.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include <cmath>
#include <cstring>
#include <string>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {
// the constants of ase_deepspin.units, so that the two integrators agree to round-off
constexpr double MU_B_EV_PER_T = 5.7883818060e-5;
constexpr double GAMMA_RAD_PER_PS_T = 1.76085963023e-1;
constexpr double HBAR_EV_PS = 6.5821191e-4;  // the value pair_style deepspin converts fm with

inline void cross(const double *a, const double *b, double *c) {
  c[0] = a[1] * b[2] - a[2] * b[1];
  c[1] = a[2] * b[0] - a[0] * b[2];
  c[2] = a[0] * b[1] - a[1] * b[0];
}

inline double dot(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// A of ds/dt = s x A for the Landau-Lifshitz form of LLG (rad/ps)
inline void precession(const double *s, const double *b, double alpha, double *a) {
  double sxb[3];
  cross(s, b, sxb);
  const double scale = -GAMMA_RAD_PER_PS_T / (1.0 + alpha * alpha);
  for (int d = 0; d < 3; d++) a[d] = scale * (b[d] + alpha * sxb[d]);
}

// implicit midpoint rotation: x = s + (s + x) x a, a = A dt/2, solved in closed form (|x| = |s|)
inline void cayley(const double *s, const double *a, double *x) {
  double sxa[3], sxaxa[3];
  cross(s, a, sxa);
  cross(sxa, a, sxaxa);
  const double scale = 2.0 / (1.0 + dot(a, a));
  for (int d = 0; d < 3; d++) x[d] = s[d] + scale * (sxa[d] + sxaxa[d]);
}
}  // namespace

FixSIBSpin::FixSIBSpin(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), alpha(0.0), temperature(0.0), friction(0.0), field{0.0, 0.0, 0.0},
    lattice_moving(true), spins_moving(true), seed(0)
{
  if (!atom->sp_flag) error->all(FLERR, "fix sib/spin needs atom_style spin");
  if (std::strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "fix sib/spin works in units metal (eV, Angstrom, ps), not units {}", update->unit_style);
  time_integrate = 1;
  scalar_flag = 1;   // the Zeeman energy -mu_B sum B_ext.S (eV); fix_modify energy yes adds it to pe
  global_freq = 1;
  extscalar = 1;
  energy_global_flag = 1;
  int iarg = 3;
  auto need = [&](int n) {
    if (iarg + n >= narg) error->all(FLERR, "fix sib/spin: keyword {} needs {} value(s)", arg[iarg], n);
  };
  auto number = [&](double &target) {
    need(1);
    target = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
    iarg += 2;
  };
  while (iarg < narg) {
    const std::string key = arg[iarg];
    if (key == "alpha") {
      number(alpha);
    } else if (key == "temperature") {
      number(temperature);
    } else if (key == "friction") {
      number(friction);
    } else if (key == "seed") {
      need(1);
      seed = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      iarg += 2;
    } else if (key == "field") {
      need(3);
      for (int d = 0; d < 3; d++) field[d] = utils::numeric(FLERR, arg[iarg + 1 + d], false, lmp);
      iarg += 4;
    } else if (key == "lattice" || key == "spins") {
      need(1);
      const std::string value = arg[iarg + 1];
      if (value != "moving" && value != "frozen")
        error->all(FLERR, "fix sib/spin: {} is moving or frozen, not {}", key, value);
      (key == "lattice" ? lattice_moving : spins_moving) = value == "moving";
      iarg += 2;
    } else {
      error->all(FLERR, "fix sib/spin: unknown keyword {} (alpha, temperature, friction, seed, field, lattice, "
                 "spins)", key);
    }
  }
  if (alpha < 0.0) error->all(FLERR, "fix sib/spin: alpha must be >= 0, got {}", alpha);
  if (temperature < 0.0) error->all(FLERR, "fix sib/spin: temperature must be >= 0 K, got {}", temperature);
  if (friction < 0.0) error->all(FLERR, "fix sib/spin: friction must be >= 0 (1/ps), got {}", friction);
  if (temperature > 0.0 && alpha == 0.0 && friction == 0.0)
    error->all(FLERR, "fix sib/spin: a temperature needs alpha > 0 or friction > 0 to couple to");
  if (temperature > 0.0 && seed <= 0) error->all(FLERR, "fix sib/spin: a temperature needs seed > 0");
  // one stream per rank: the noise of a run depends on the number of ranks, as LAMMPS's own baths do
  rng.seed(static_cast<unsigned long long>(seed) + 7919ULL * static_cast<unsigned long long>(comm->me));
}

int FixSIBSpin::setmask() { return INITIAL_INTEGRATE | FINAL_INTEGRATE; }

void FixSIBSpin::init()
{
  if (force->pair == nullptr) error->all(FLERR, "fix sib/spin needs a pair style that sets magnetic forces");
  if (utils::strmatch(update->integrate_style, "^respa")) error->all(FLERR, "fix sib/spin does not run with rRESPA");
}

// Forces and magnetic forces at the current positions and spins: ghosts refreshed, f and fm cleared,
// the pair style computed without energy or virial, ghost contributions summed back (newton on).
void FixSIBSpin::evaluate_forces()
{
  comm->forward_comm();
  const int nall = atom->nlocal + atom->nghost;
  double **f = atom->f, **fm = atom->fm, **fm_long = atom->fm_long;
  for (int i = 0; i < nall; i++)
    for (int d = 0; d < 3; d++) {
      f[i][d] = 0.0;
      fm[i][d] = 0.0;
      if (fm_long) fm_long[i][d] = 0.0;
    }
  force->pair->compute(0, 0);
  if (force->newton) comm->reverse_comm();
}

// B = omega_perp/mu_B + B_ext (Tesla) of owned atom i at unit spin `unit`, from the current atom->fm
void FixSIBSpin::effective_field(int i, const double *unit, double *b) const
{
  const double moment = atom->sp[i][3];
  double omega[3];
  for (int d = 0; d < 3; d++) omega[d] = atom->fm[i][d] * HBAR_EV_PS / moment;
  const double along = dot(omega, unit);
  for (int d = 0; d < 3; d++) b[d] = (omega[d] - along * unit[d]) / MU_B_EV_PER_T + field[d];
}

// One SIB step of dt (ps) for the owned spins of the group, with the lattice where it is now.
// start_field holds B0 (the field at the step's start); the corrector evaluates the forces once.
void FixSIBSpin::rotate_spins(double dt)
{
  const int nlocal = atom->nlocal;
  double **sp = atom->sp;
  const int *mask = atom->mask;
  std::vector<double> start(3 * nlocal);
  for (int i = 0; i < nlocal; i++) {
    for (int d = 0; d < 3; d++) start[3 * i + d] = sp[i][d];
    if (!(mask[i] & groupbit) || sp[i][3] <= 0.0) continue;
    double b[3], a[3], predicted[3];
    for (int d = 0; d < 3; d++) b[d] = start_field[3 * i + d] + noise[3 * i + d];
    precession(sp[i], b, alpha, a);
    for (int d = 0; d < 3; d++) a[d] *= 0.5 * dt;
    cayley(sp[i], a, predicted);
    double mid[3];
    for (int d = 0; d < 3; d++) mid[d] = sp[i][d] + predicted[d];
    const double norm = std::sqrt(dot(mid, mid));
    for (int d = 0; d < 3; d++) sp[i][d] = mid[d] / norm;
  }
  evaluate_forces();  // at the midpoint spins and lattice
  for (int i = 0; i < nlocal; i++) {
    if (!(mask[i] & groupbit) || sp[i][3] <= 0.0) continue;
    double b[3], a[3], mid[3] = {sp[i][0], sp[i][1], sp[i][2]};
    effective_field(i, mid, b);
    for (int d = 0; d < 3; d++) b[d] += noise[3 * i + d];
    precession(mid, b, alpha, a);
    for (int d = 0; d < 3; d++) a[d] *= 0.5 * dt;
    cayley(&start[3 * i], a, sp[i]);
  }
}

void FixSIBSpin::initial_integrate(int /*vflag*/)
{
  const double dt = update->dt;
  const int nlocal = atom->nlocal;
  double **x = atom->x, **v = atom->v, **f = atom->f, **sp = atom->sp;
  const double *rmass = atom->rmass, *mass = atom->mass;
  const int *type = atom->type, *mask = atom->mask;
  auto mass_of = [&](int i) { return rmass ? rmass[i] : mass[type[i]]; };

  // B0 and the thermal field of this step, before anything moves (forces at the step's start)
  start_field.assign(3 * nlocal, 0.0);
  noise.assign(3 * nlocal, 0.0);
  if (spins_moving) {
    for (int i = 0; i < nlocal; i++) {
      if (!(mask[i] & groupbit) || sp[i][3] <= 0.0) continue;
      effective_field(i, sp[i], &start_field[3 * i]);
    }
  }
  if (lattice_moving) {
    for (int i = 0; i < nlocal; i++) {
      if (!(mask[i] & groupbit)) continue;
      const double dtfm = 0.5 * dt * force->ftm2v / mass_of(i);
      for (int d = 0; d < 3; d++) {
        v[i][d] += dtfm * f[i][d];
        x[i][d] += 0.5 * dt * v[i][d];
      }
    }
    if (friction > 0.0) {
      const double c1 = std::exp(-friction * dt);
      for (int i = 0; i < nlocal; i++) {
        if (!(mask[i] & groupbit)) continue;
        const double sigma = std::sqrt((1.0 - c1 * c1) * force->boltz * temperature / (mass_of(i) * force->mvv2e));
        for (int d = 0; d < 3; d++) v[i][d] = c1 * v[i][d] + sigma * normal(rng);
      }
    }
  }
  if (spins_moving) {
    if (temperature > 0.0 && alpha > 0.0) {
      for (int i = 0; i < nlocal; i++) {
        if (!(mask[i] & groupbit) || sp[i][3] <= 0.0) continue;
        // fluctuation-dissipation for each moment: 2 alpha k_B T / (gamma mu dt), Tesla^2
        const double sigma = std::sqrt(2.0 * alpha * force->boltz * temperature /
                                       (GAMMA_RAD_PER_PS_T * sp[i][3] * MU_B_EV_PER_T * dt));
        for (int d = 0; d < 3; d++) noise[3 * i + d] = sigma * normal(rng);
      }
    }
    rotate_spins(dt);
  }
  if (lattice_moving) {
    for (int i = 0; i < nlocal; i++) {
      if (!(mask[i] & groupbit)) continue;
      for (int d = 0; d < 3; d++) x[i][d] += 0.5 * dt * v[i][d];
    }
  }
}

void FixSIBSpin::final_integrate()
{
  if (!lattice_moving) return;
  const double dt = update->dt;
  double **v = atom->v, **f = atom->f;
  const double *rmass = atom->rmass, *mass = atom->mass;
  const int *type = atom->type, *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    const double dtfm = 0.5 * dt * force->ftm2v / (rmass ? rmass[i] : mass[type[i]]);
    for (int d = 0; d < 3; d++) v[i][d] += dtfm * f[i][d];
  }
}

double FixSIBSpin::compute_scalar()
{
  double local = 0.0;
  double **sp = atom->sp;
  for (int i = 0; i < atom->nlocal; i++)
    if (atom->mask[i] & groupbit) local -= MU_B_EV_PER_T * sp[i][3] * dot(sp[i], field);
  double total = 0.0;
  MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, world);
  return total;
}
