"""Order and moment length of FCC Fe versus temperature, from longitudinal spin-lattice dynamics.

Starts from double-layer antiferromagnetic (AFMD) FCC Fe (a = 3.5495 Å, the DeltaSpin cells' lattice)
and, at each temperature, runs `LongitudinalSpinLatticeDynamics` with the shipped Fe model: spins
precess and relax transversely (Gilbert α) and in length (α_∥), the lattice follows Langevin dynamics,
both coupled to one bath. Averages over the second half of each run: the AFMD order parameter
|L| = |Σ σ_i S_i|/N (σ_i the ↑↑↓↓ sign of the atom's (001) plane), the net magnetisation |M| = |Σ S_i|/N
and ⟨|S|⟩ with the spread of |S_i| over the atoms, all in μB per atom. Lengths are free, so ⟨|S|⟩ shows how the moments respond to disorder,
which fixed-length dynamics cannot.

α_∥ sets the longitudinal mobility λ = α_∥ γ/μ_B = 3.04 α_∥ μB²/(eV·fs); the Euler–Maruyama length step
is accurate while λ k Δt ≲ 0.01, with k ≈ 0.5 eV/μB² the stiffness of one moment's length in this
model (AFMD, 1.3 μB): α_∥ = 0.01 and Δt = 0.5 fs give λ k Δt ≈ 0.008 and a longitudinal relaxation
time 1/(λk) of about 65 fs.

    python examples/fe_magnetization_vs_T.py [--temperatures 50 300 600 1000] [--steps 800] [--repeat 3]
"""

import argparse
import json
import time

import numpy as np
from ase.md.velocitydistribution import thermalize_momenta

from ase_deepspin import DeepSpinCalculator
from ase_deepspin.figures import new_figure
from ase_deepspin.build import afmd_order, fcc_fe_afmd
from ase_deepspin.dynamics import LongitudinalSpinLatticeDynamics

A = 3.5495  # Å

parser = argparse.ArgumentParser()
parser.add_argument("--temperatures", type=float, nargs="+", default=[50.0, 300.0, 600.0, 1000.0])
parser.add_argument("--steps", type=int, default=800, help="steps of 0.5 fs per temperature")
parser.add_argument("--repeat", type=int, default=3, help="conventional cells along x and y (z: the next even)")
parser.add_argument("--alpha", type=float, default=0.1, help="Gilbert damping (transverse)")
parser.add_argument("--alpha-long", type=float, default=0.01, help="longitudinal damping α_∥")
parser.add_argument("--out", default="fe_magnetization_vs_T")
args = parser.parse_args()

calc = DeepSpinCalculator("fe", compress=True)
rows = []
for temperature in args.temperatures:
    atoms = fcc_fe_afmd(a=A, repeat=(args.repeat, args.repeat, args.repeat + args.repeat % 2))
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(1))
    md = LongitudinalSpinLatticeDynamics(atoms, dt_fs=0.5, alpha=args.alpha, longitudinal_damping=args.alpha_long,
                                         temperature_K=temperature, lattice_friction_per_fs=0.02,
                                         rng=np.random.default_rng(0))
    samples = []

    def record():
        if md.nsteps >= args.steps // 2:
            spins = atoms.get_initial_magnetic_moments()
            lengths = np.linalg.norm(spins, axis=1)
            samples.append([afmd_order(atoms, A), np.linalg.norm(spins.mean(axis=0)), lengths.mean(),
                            atoms.get_temperature(), lengths.std()])

    md.attach(record, interval=5)
    started = time.perf_counter()
    md.run(args.steps)
    order, net, length, lattice_t, length_spread = np.mean(samples, axis=0)
    spread = np.std(samples, axis=0)
    rows.append({"T_K": temperature, "afmd_order_muB": order, "afmd_order_std": spread[0], "net_M_muB": net,
                 "mean_length_muB": length, "mean_length_std": spread[2], "length_spread_muB": length_spread,
                 "lattice_T_K": lattice_t,
                 "atoms": len(atoms), "steps": args.steps, "minutes": (time.perf_counter() - started) / 60})
    print(f"T {temperature:6.0f} K: |L| {order:.3f} ± {spread[0]:.3f}, |M| {net:.3f}, <|S|> {length:.3f} "
          f"± {spread[2]:.3f} μB (atoms spread by {length_spread:.3f}); lattice {lattice_t:.0f} K; {rows[-1]['minutes']:.1f} min", flush=True)

with open(f"{args.out}.json", "w") as f:
    json.dump(rows, f, indent=1)
fig = new_figure(figsize=(5.5, 3.8))
ax = fig.subplots()
# the measured lattice temperature of each run, not the bath's: a short run may not reach its bath
t = [r["lattice_T_K"] for r in rows]
ax.errorbar(t, [r["afmd_order_muB"] for r in rows], [r["afmd_order_std"] for r in rows], marker="o",
            label="AFMD order |L|")
ax.plot(t, [r["net_M_muB"] for r in rows], marker="s", label="net |M|")
ax.errorbar(t, [r["mean_length_muB"] for r in rows], [r["mean_length_std"] for r in rows], marker="^",
            label="⟨|S|⟩")
for r in rows:
    ax.annotate(f"bath {r['T_K']:.0f} K", (r["lattice_T_K"], r["afmd_order_muB"]), textcoords="offset points",
                xytext=(4, 4), fontsize=6)
ax.set(xlabel="lattice temperature reached, averaged over the second half (K)", ylabel="μB per atom",
       ylim=(0, None))
ax.set_title(f"FCC Fe, {rows[0]['atoms']} atoms, longitudinal spin-lattice dynamics\n"
             f"({args.steps} steps of 0.5 fs per temperature, second half averaged)", fontsize=9)
ax.legend(fontsize=8)
fig.savefig(f"{args.out}.png", dpi=120)
print(f"written {args.out}.json and {args.out}.png")
