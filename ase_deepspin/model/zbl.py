"""Short-range wall: the Ziegler–Biersack–Littmark (ZBL) screened nuclear repulsion, switched off smoothly.

    E_wall = 1/2 sum_{i≠j} w(r_ij) φ(r_ij),     φ(r) = k_e Z_i Z_j / r · Φ(r / a)

with k_e = e²/(4π ε0) = 14.399645 eV·Å, the universal screening length a = 0.46850 Å /
(Z_i^0.23 + Z_j^0.23) and Φ(x) = 0.18175 e^{−3.19980 x} + 0.50986 e^{−0.94229 x} +
0.28022 e^{−0.40290 x} + 0.02817 e^{−0.20162 x} (the constants of LAMMPS ``pair_style zbl`` and of
the tables DeePMD-kit's ``zbl`` models use). The switch w is 1 below ``r_inner`` and 0 beyond
``r_outer`` (per element pair), with DeePMD-kit's quintic w = 1 − 10u³ + 15u⁴ − 6u⁵,
u = (r − r_inner)/(r_outer − r_inner), in between: E, F and their first derivatives are continuous.

Why a pair term added to the network rather than DeePMD-kit's per-atom mixing of the two energies:
the training data decide nothing about the network at distances they never visit, so the wall is
placed there only. With ``r_outer`` below the shortest distance of each pair in the training data
(:func:`ase_deepspin.model.ranges.shortest_distances`, ``ase_deepspin.training.train``), w is exactly 0 on every training frame and
fitted energies are unchanged; at shorter distances the wall's tens of eV dominate whatever the
network extrapolates to. Spins do not enter (the term is even in S).
"""

from __future__ import annotations

import torch
from torch import nn


def zbl_energy(r: torch.Tensor, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL pair energy φ(r) (eV) at distances r (Å) of nuclei with charges z_i, z_j.

    The constants (module docstring) are written out: TorchScript, which runs this in LAMMPS
    (:mod:`~ase_deepspin.io.torchscript`), cannot read module-level floats.
    """
    coulomb = 14.399645  # e²/(4π ε0), eV·Å
    x = r * (z_i**0.23 + z_j**0.23) / 0.46850  # r / a, a the universal screening length (Å)
    screen = 0.18175 * torch.exp(-3.19980 * x) + 0.50986 * torch.exp(-0.94229 * x) \
        + 0.28022 * torch.exp(-0.40290 * x) + 0.02817 * torch.exp(-0.20162 * x)
    return coulomb * z_i * z_j / r * screen


def wall_switch(r: torch.Tensor, r_inner: torch.Tensor, r_outer: torch.Tensor) -> torch.Tensor:
    """w(r): 1 for r <= r_inner, 0 for r >= r_outer, the C2 quintic 1 − 10u³ + 15u⁴ − 6u⁵ between."""
    u = ((r - r_inner) / (r_outer - r_inner)).clamp(0.0, 1.0)
    return 1.0 - u**3 * (10.0 - 15.0 * u + 6.0 * u * u)


def check_short_range(config: dict, n_types: int, rcut: float) -> dict:
    """The validated ``short_range`` entry of a model config.

    ``{"type": "zbl", "charges": [T] nuclear charges Z, "r_inner": [[T×T]], "r_outer": [[T×T]]}`` (Å);
    the trainer fills the charges from the type map's element names.
    """
    unknown = set(config) - {"type", "charges", "r_inner", "r_outer"}
    if unknown:
        raise ValueError(f"unknown short_range keys {sorted(unknown)} (known: type, charges, r_inner, r_outer)")
    if config.get("type", "zbl") != "zbl":
        raise ValueError(f"short_range type must be 'zbl', got {config.get('type')!r}")
    charges = config.get("charges")
    if not isinstance(charges, (list, tuple)) or len(charges) != n_types or not all(float(z) > 0 for z in charges):
        raise ValueError(f"short_range.charges needs one positive nuclear charge per type ({n_types}), got {charges}")
    out = {"type": "zbl", "charges": [float(z) for z in charges]}
    for key in ("r_inner", "r_outer"):
        values = torch.as_tensor(config.get(key, []), dtype=torch.float64)
        if values.shape != (n_types, n_types) or not torch.equal(values, values.T):
            raise ValueError(f"short_range.{key} must be a symmetric {n_types}×{n_types} table of distances (Å), "
                             f"got {config.get(key)}")
        out[key] = values.tolist()
    inner, outer = torch.tensor(out["r_inner"]), torch.tensor(out["r_outer"])
    if not (bool((inner > 0).all()) and bool((inner < outer).all()) and bool((outer <= rcut).all())):
        raise ValueError(f"short_range needs 0 < r_inner < r_outer <= rcut={rcut} Å for every pair, got "
                         f"r_inner={out['r_inner']}, r_outer={out['r_outer']}")
    return out


class ZBLWall(nn.Module):
    """The switched ZBL pair term of the module docstring: charges [T], r_inner and r_outer [T, T] (Å).

    Buffers follow the config (not saved with the weights)."""

    def __init__(self, charges, r_inner, r_outer, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("charges", torch.tensor(charges, dtype=dtype), persistent=False)
        self.register_buffer("r_inner", torch.tensor(r_inner, dtype=dtype), persistent=False)
        self.register_buffer("r_outer", torch.tensor(r_outer, dtype=dtype), persistent=False)

    def pair_energy(self, r: torch.Tensor, ti: torch.Tensor, tj: torch.Tensor) -> torch.Tensor:
        """w(r) φ(r) (eV) for distances r [E] (Å) between atoms of types ti, tj [E]."""
        return wall_switch(r, self.r_inner[ti, tj], self.r_outer[ti, tj]) * \
            zbl_energy(r, self.charges[ti], self.charges[tj])

    def atomic_energies(self, atom_types, centers, neighbors, lattice_vectors, first: int, n_centres: int):
        """Half of each pair's wall energy on each centre ``first .. first + n_centres − 1`` (eV).

        ``centers``/``neighbors`` [E] are real-atom edges (a full list: both directions) with vectors
        ``lattice_vectors`` [E, 3] Å. Only pairs closer than their ``r_outer`` are evaluated.
        """
        energies = lattice_vectors.new_zeros(n_centres)
        r = torch.linalg.vector_norm(lattice_vectors, dim=-1)
        ti, tj = atom_types.index_select(0, centers), atom_types.index_select(0, neighbors)
        close = (r < self.r_outer[ti, tj]).nonzero().squeeze(-1)
        if len(close) == 0:
            return energies
        pair = self.pair_energy(r[close], ti[close], tj[close])
        return energies.index_add(0, centers[close] - first, 0.5 * pair)
