"""What a model was trained on: moment lengths per type, the shortest distance per type pair, and
the first-shell spin alignment per type.

A model knows nothing beyond its data. The trainer records the ranges of its training frames in the
model config (``ModelConfig.data_ranges``); :func:`outside_data` says, for a structure about to be
evaluated, where it leaves them, so that calculators can warn instead of extrapolating silently.
Tolerances: moments more than 10 % outside the trained range of their type, pairs more than 5 %
closer than the shortest of their types in the data, alignments more than 0.1 outside the trained
range.

The alignment of a magnetic atom i (:func:`spin_alignment`) is the mean of ŝ_i·ŝ_j over its first
shell of magnetic neighbours (those within 1.2 times the data's median nearest magnetic-neighbour
distance of its type, a radius recorded with the range, :func:`shell_radii`): +1
ferromagnetic, −1/3 for single-layer and +1/3 for double-layer antiferromagnetic FCC, 0 for random
directions or NiO's type-II order. It is invariant under time reversal and any rotation of the spins, and
tells a spin order the data never held (DFT data sampled around one ordered state) apart from the
orders they did, which moment lengths and distances cannot.
"""

from __future__ import annotations

import torch

MOMENT_TOLERANCE = 0.10  # relative
DISTANCE_TOLERANCE = 0.05  # relative
ALIGNMENT_TOLERANCE = 0.10  # absolute, in units of ŝ_i·ŝ_j
FIRST_SHELL = 1.2  # × the data's median nearest magnetic-neighbour distance
# a type's moment lengths "vary" in its data when they spread over at least this fraction of the largest:
# NiO's DeltaSpin labels spread by 4e-5 relative (rigid), FCC Fe's by 0.98 (0.03-1.6 μB)
LENGTH_SPREAD = 0.10


class ExtrapolationWarning(UserWarning):
    """A structure lies outside what the model was trained on: its predictions there are guesses."""


def _real_edges(positions, centers, neighbors, offsets, pseudo):
    """(centre, neighbour, distance Å) of a graph's edges between real atoms."""
    real = ~pseudo
    centers, neighbors = centers[real], neighbors[real]
    vectors = positions.index_select(0, neighbors) - positions.index_select(0, centers) + offsets[real]
    return centers, neighbors, torch.linalg.vector_norm(vectors.double(), dim=-1)


def closest_pairs(positions, atom_types, centers, neighbors, offsets, pseudo, n_types: int) -> torch.Tensor:
    """Shortest real-atom distance (Å) per type pair [T, T] of one graph's edges (inf where a pair has none)."""
    centers, neighbors, r = _real_edges(positions, centers, neighbors, offsets, pseudo)
    pair = atom_types.index_select(0, centers) * n_types + atom_types.index_select(0, neighbors)
    closest = torch.full((n_types * n_types,), float("inf"), dtype=torch.float64).scatter_reduce(0, pair, r, "amin")
    closest = closest.view(n_types, n_types)
    return torch.minimum(closest, closest.T)


@torch.no_grad()
def shortest_distances(items: list[dict], n_types: int) -> torch.Tensor:
    """:func:`closest_pairs` over prepared frames (model inputs as ``ase_deepspin.training.train.PreparedFrames`` holds them)."""
    shortest = torch.full((n_types, n_types), float("inf"), dtype=torch.float64)
    for f in items:
        shortest = torch.minimum(shortest, closest_pairs(f["positions"], f["atom_types"], f["centers"],
                                                         f["neighbors"], f["offsets"], f["pseudo"], n_types))
    return shortest


def _magnetic_pairs(positions, spins, centers, neighbors, offsets, pseudo):
    """(centre, neighbour, distance Å) of the real edges between two magnetic atoms."""
    magnetic = torch.linalg.vector_norm(spins.double(), dim=-1) > 0
    c, n, r = _real_edges(positions, centers, neighbors, offsets, pseudo)
    keep = magnetic[c] & magnetic[n]
    return c[keep], n[keep], r[keep]


@torch.no_grad()
def spin_alignment(positions, spins, atom_types, centers, neighbors, offsets, pseudo, radius) -> torch.Tensor:
    """Per atom [N]: mean ŝ_i·ŝ_j over the magnetic neighbours j within ``radius[type of i]`` (Å) among the
    graph's real edges; NaN for non-magnetic atoms and magnetic ones with no such neighbour."""
    spins = spins.double()
    lengths = torch.linalg.vector_norm(spins, dim=-1)
    c, n, r = _magnetic_pairs(positions, spins, centers, neighbors, offsets, pseudo)
    shell = r <= torch.as_tensor(radius, dtype=torch.float64).index_select(0, atom_types.index_select(0, c))
    c, n = c[shell], n[shell]
    unit = spins / lengths.clamp(min=1e-300)[:, None]
    cosines = (unit.index_select(0, c) * unit.index_select(0, n)).sum(-1)
    total = torch.zeros_like(lengths).index_add_(0, c, cosines)
    count = torch.zeros_like(lengths).index_add_(0, c, torch.ones_like(cosines))
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


@torch.no_grad()
def shell_radii(items: list[dict], n_types: int) -> torch.Tensor:
    """Per type [T]: ``FIRST_SHELL`` times the median distance (Å) from its magnetic atoms to their nearest
    magnetic neighbour in prepared frames (NaN where a type has none)."""
    nearest, types = [], []
    for f in items:
        c, _, r = _magnetic_pairs(f["positions"], f["spins"], f["centers"], f["neighbors"], f["offsets"], f["pseudo"])
        closest = torch.full((len(f["positions"]),), float("inf"), dtype=torch.float64).scatter_reduce(0, c, r, "amin")
        found = torch.isfinite(closest)
        nearest.append(closest[found])
        types.append(f["atom_types"][found])
    nearest, types = torch.cat(nearest), torch.cat(types)
    return torch.tensor([FIRST_SHELL * float(nearest[types == t].median()) if bool((types == t).any())
                         else float("nan") for t in range(n_types)], dtype=torch.float64)


def _type_bounds(values: torch.Tensor, types: torch.Tensor, n_types: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-type min and max [T] of ``values`` [N] (inf / −inf where a type has no finite value)."""
    finite = torch.isfinite(values)
    values, types = values[finite], types[finite]
    lo = torch.full((n_types,), float("inf"), dtype=torch.float64).scatter_reduce(0, types, values, "amin")
    hi = torch.full((n_types,), -float("inf"), dtype=torch.float64).scatter_reduce(0, types, values, "amax")
    return lo, hi


def _type_means(values: torch.Tensor, types: torch.Tensor, n_types: int) -> torch.Tensor:
    """Per-type mean [T] of the finite ``values`` [N] (NaN where a type has none)."""
    finite = torch.isfinite(values)
    total = torch.zeros(n_types, dtype=torch.float64).index_add_(0, types[finite], values[finite])
    count = torch.zeros(n_types, dtype=torch.float64).index_add_(0, types[finite], torch.ones_like(values[finite]))
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


@torch.no_grad()
def data_ranges(items: list[dict], magnetic: list[bool], shortest: torch.Tensor) -> dict:
    """``{"moment": [[lo, hi] μB or None per type], "shortest": [[Å or None] T×T], "alignment": [{"atoms":
    [lo, hi], "frames": [lo, hi], "radius": Å} or None per type]}`` of prepared frames, ``shortest`` being their
    :func:`shortest_distances`; None where never seen. The alignment ranges are those of single atoms and of
    each frame's mean over the atoms of the type (:func:`spin_alignment` within ``radius``)."""
    n_types = len(magnetic)
    radius = shell_radii(items, n_types)
    lowest, highest = (torch.full((3, n_types), value, dtype=torch.float64) for value in (float("inf"), -float("inf")))
    for f in items:  # rows: moment length, alignment per atom, alignment per frame (its mean over the type)
        alignment = spin_alignment(f["positions"], f["spins"], f["atom_types"], f["centers"], f["neighbors"],
                                   f["offsets"], f["pseudo"], radius.nan_to_num(0.0))
        means = _type_means(alignment, f["atom_types"], n_types)
        for row, (lo, hi) in enumerate([_type_bounds(torch.linalg.vector_norm(f["spins"].double(), dim=-1),
                                                     f["atom_types"], n_types),
                                        _type_bounds(alignment, f["atom_types"], n_types), (means, means)]):
            lowest[row], highest[row] = torch.fmin(lowest[row], lo), torch.fmax(highest[row], hi)
    seen = [magnetic[t] and bool(torch.isfinite(lowest[0, t])) for t in range(n_types)]
    bounds = lambda row, t: [float(lowest[row, t]), float(highest[row, t])]  # noqa: E731
    ranges = {"moment": [bounds(0, t) if seen[t] else None for t in range(n_types)],
              "alignment": [{"atoms": bounds(1, t), "frames": bounds(2, t), "radius": float(radius[t])}
                            if seen[t] and bool(torch.isfinite(lowest[1, t])) else None for t in range(n_types)]}
    ranges["shortest"] = [[float(v) if bool(torch.isfinite(v)) else None for v in row] for row in shortest]
    return ranges


def fixed_length_types(ranges: dict | None, type_map: list[str], elements) -> list[str]:
    """The magnetic ``elements`` whose moment lengths the data recorded in ``ranges`` do not determine.

    Moment lengths are determined for a type when its training moments spread over at least
    ``LENGTH_SPREAD`` (10 %) of the largest; otherwise the model saw one length and its gradient
    along S (longitudinal torque) is a guess. With no ranges recorded every element is returned.
    """
    bounds = (ranges or {}).get("moment") or [None] * len(type_map)
    fixed = []
    for element in elements:
        b = bounds[type_map.index(element)]
        if b is None or b[1] - b[0] < LENGTH_SPREAD * b[1]:
            fixed.append(element)
    return fixed


@torch.no_grad()
def outside_data(ranges: dict, type_map: list[str], graph) -> dict[str, str]:
    """Where ``graph`` (a :class:`ase_deepspin.system.Graph`) leaves ``ranges``: {kind: message}.

    Kinds are ``"moment:<element>"``, ``"alignment:<element>"`` and ``"distance:<a>-<b>"``, so that each is
    reported once. Models whose ranges predate the alignment record are checked on the other two.
    """
    found = {}
    types, spins = graph.atom_types, graph.spins.double()
    lengths = torch.linalg.vector_norm(spins, dim=-1)
    for t, bounds in enumerate(ranges.get("moment", [])):
        if bounds is None or not bool((types == t).any()):
            continue
        values = lengths[types == t]
        low, high = float(values.min()), float(values.max())
        outside = (values < (1 - MOMENT_TOLERANCE) * bounds[0]) | (values > (1 + MOMENT_TOLERANCE) * bounds[1])
        if bool(outside.any()):
            found[f"moment:{type_map[t]}"] = (f"{int(outside.sum())} of {len(values)} {type_map[t]} moments are "
                                              f"outside the training range (these span {low:.4g}–{high:.4g} μB; the "
                                              f"model was trained on {bounds[0]:.4g}–{bounds[1]:.4g} μB)")
    alignment_bounds = ranges.get("alignment") or []
    if any(b is not None for b in alignment_bounds):
        radius = [b["radius"] if b is not None else 0.0 for b in alignment_bounds]
        alignment = spin_alignment(graph.positions, spins, types, graph.centers, graph.neighbors, graph.offsets,
                                   graph.pseudo, radius)
    for t, bounds in enumerate(alignment_bounds):
        values = alignment[(types == t) & torch.isfinite(alignment)] if bounds is not None else []
        if not len(values):
            continue
        (lo, hi), (mean_lo, mean_hi), mean = bounds["atoms"], bounds["frames"], float(values.mean())
        outside = (values < lo - ALIGNMENT_TOLERANCE) | (values > hi + ALIGNMENT_TOLERANCE)
        if bool(outside.any()) or not mean_lo - ALIGNMENT_TOLERANCE <= mean <= mean_hi + ALIGNMENT_TOLERANCE:
            found[f"alignment:{type_map[t]}"] = (
                f"the {type_map[t]} spins' first-shell alignment <ŝ_i·ŝ_j> averages {mean:.2f} (training frames "
                f"{mean_lo:.2f} to {mean_hi:.2f}) and {int(outside.sum())} of {len(values)} atoms lie outside the "
                f"training atoms' {lo:.2f} to {hi:.2f}: a spin order the model never saw")
    n = len(type_map)
    closest = closest_pairs(graph.positions, types, graph.centers, graph.neighbors, graph.offsets, graph.pseudo, n)
    for a in range(n):
        for b in range(a, n):
            shortest = ranges.get("shortest", [[None] * n] * n)[a][b]
            if shortest is not None and float(closest[a, b]) < (1 - DISTANCE_TOLERANCE) * shortest:
                found[f"distance:{type_map[a]}-{type_map[b]}"] = (
                    f"a {type_map[a]}–{type_map[b]} pair is {float(closest[a, b]):.3f} Å apart; the closest in the "
                    f"training data was {shortest:.3f} Å")
    return found
