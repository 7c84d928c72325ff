"""What a model was trained on: moment lengths per type and the shortest distance per type pair.

A model knows nothing beyond its data. The trainer records the ranges of its training frames in the
model config (``ModelConfig.data_ranges``); :func:`outside_data` says, for a structure about to be
evaluated, where it leaves them, so that calculators can warn instead of extrapolating silently.
Tolerances: moments more than 10 % outside the trained range of their type, pairs more than 5 %
closer than the shortest of their types in the data.
"""

from __future__ import annotations

import torch

MOMENT_TOLERANCE = 0.10  # relative
DISTANCE_TOLERANCE = 0.05  # relative
# a type's moment lengths "vary" in its data when they spread over at least this fraction of the largest:
# NiO's DeltaSpin labels spread by 4e-5 relative (rigid), FCC Fe's by 0.98 (0.03-1.6 μB)
LENGTH_SPREAD = 0.10


class ExtrapolationWarning(UserWarning):
    """A structure lies outside what the model was trained on: its predictions there are guesses."""


def closest_pairs(positions, atom_types, centers, neighbors, offsets, pseudo, n_types: int) -> torch.Tensor:
    """Shortest real-atom distance (Å) per type pair [T, T] of one graph's edges (inf where a pair has none)."""
    real = ~pseudo
    centers, neighbors = centers[real], neighbors[real]
    vectors = positions.index_select(0, neighbors) - positions.index_select(0, centers) + offsets[real]
    r = torch.linalg.vector_norm(vectors.double(), dim=-1)
    pair = atom_types.index_select(0, centers) * n_types + atom_types.index_select(0, neighbors)
    closest = torch.full((n_types * n_types,), float("inf"), dtype=torch.float64).scatter_reduce(0, pair, r, "amin")
    closest = closest.view(n_types, n_types)
    return torch.minimum(closest, closest.T)


@torch.no_grad()
def shortest_distances(items: list[dict], n_types: int) -> torch.Tensor:
    """:func:`closest_pairs` over prepared frames (model inputs as ``ase_deepspin.train.PreparedFrames`` holds them)."""
    shortest = torch.full((n_types, n_types), float("inf"), dtype=torch.float64)
    for f in items:
        shortest = torch.minimum(shortest, closest_pairs(f["positions"], f["atom_types"], f["centers"],
                                                         f["neighbors"], f["offsets"], f["pseudo"], n_types))
    return shortest


@torch.no_grad()
def data_ranges(items: list[dict], magnetic: list[bool], shortest: torch.Tensor) -> dict:
    """``{"moment": [[lo, hi] μB or None per type], "shortest": [[Å or None] T×T]}`` of prepared frames,
    ``shortest`` being their :func:`shortest_distances`; None where never seen."""
    n_types = len(magnetic)
    lo = torch.full((n_types,), float("inf"), dtype=torch.float64)
    hi = torch.full((n_types,), -float("inf"), dtype=torch.float64)
    for f in items:
        lengths = torch.linalg.vector_norm(f["spins"].double(), dim=-1)
        lo = torch.minimum(lo, torch.full_like(lo, float("inf")).scatter_reduce(0, f["atom_types"], lengths, "amin"))
        hi = torch.maximum(hi, torch.full_like(hi, -float("inf")).scatter_reduce(0, f["atom_types"], lengths, "amax"))
    return {"moment": [[float(lo[t]), float(hi[t])] if magnetic[t] and bool(torch.isfinite(lo[t])) else None
                       for t in range(n_types)],
            "shortest": [[float(v) if bool(torch.isfinite(v)) else None for v in row] for row in shortest]}


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

    Kinds are ``"moment:<element>"`` and ``"distance:<a>-<b>"``, so that each is reported once.
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
