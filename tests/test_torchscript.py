"""The TorchScript export for LAMMPS (model.torchscript): forward_lower on LAMMPS-like inputs equals the calculator.

LAMMPS hands the module local atoms, then ghost atoms (periodic images within rcut + skin), a full
neighbour list of real atoms in arbitrary order padded with −1, and sums the ghosts' forces and
magnetic forces back onto their owners; these tests build exactly that from ASE structures.
"""

import warnings

import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list
from conftest import needs_nio_data, small_model, with_random_baseline
from test_deepmd_convert import nio_frames

from ase_deepspin import DeepSpinCalculator, compress_model
from ase_deepspin.io.torchscript import read_export_record, scripted_model, write_lammps_model


SCRIPT_ERROR = (RuntimeError, torch.jit.Error)  # what a scripted module's raise becomes


def lammps_inputs(atoms, reach: float, seed: int = 0, padding: int = 3):
    """(extended coord, atype, spin, nlist, owner) as LAMMPS builds them: ghosts are the periodic images
    within ``reach`` (Å) of a local atom, each local atom's neighbours are shuffled and padded with −1.
    ``owner`` [nall] maps every extended atom to its local original."""
    rng = np.random.default_rng(seed)
    i, j, shifts = neighbor_list("ijS", atoms, reach)
    n = len(atoms)
    ghost_key = {}
    index = np.empty(len(i), dtype=np.int64)
    for k, (jj, s) in enumerate(zip(j, map(tuple, shifts))):
        if s == (0, 0, 0):
            index[k] = jj
        else:
            index[k] = ghost_key.setdefault((jj, s), n + len(ghost_key))
    ghosts = sorted(ghost_key.items(), key=lambda item: item[1])
    owner = np.concatenate([np.arange(n), [jj for (jj, _), _ in ghosts]]).astype(np.int64)
    shift = np.concatenate([np.zeros((n, 3)), [s for (_, s), _ in ghosts]]) if ghosts else np.zeros((n, 3))
    coord = atoms.positions[owner] + shift @ atoms.cell.array
    rows = [rng.permutation(index[i == c]) for c in range(n)]
    width = max(len(r) for r in rows) + padding
    nlist = np.full((n, width), -1, dtype=np.int64)
    for c, r in enumerate(rows):
        slots = rng.permutation(width)[: len(r)]  # padding anywhere, as after LAMMPS' own reshuffles
        nlist[c, np.sort(slots)] = r
    types = np.array([["Ni", "O"].index(s) for s in atoms.get_chemical_symbols()])[owner]
    spins = atoms.get_initial_magnetic_moments()[owner]
    as_tensor = lambda a, dt: torch.as_tensor(a, dtype=dt).unsqueeze(0)  # noqa: E731
    return (as_tensor(coord, torch.float64), as_tensor(types, torch.int64), as_tensor(spins, torch.float64),
            as_tensor(nlist, torch.int64), owner)


def summed_to_owners(extended: torch.Tensor, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, 3))
    np.add.at(out, owner, extended[0].detach().numpy())
    return out


def compare(module, model, atoms, reach, seed=0):
    """Largest relative differences of E, F, ω (module vs DeepSpinCalculator)."""
    coord, atype, spin, nlist, owner = lammps_inputs(atoms, reach, seed)
    out = module.forward_lower(coord, atype, spin, nlist)
    calc = DeepSpinCalculator(model)
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    torques = calc.get_property("magnetic_torques", atoms)
    n = len(atoms)
    rel = lambda a, b: float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))  # noqa: E731
    return {"energy": abs(float(out["energy"]) - energy) / abs(energy),
            "forces": rel(summed_to_owners(out["extended_force"], owner, n), forces),
            "torques": rel(summed_to_owners(out["extended_force_mag"], owner, n), torques),
            "out": out, "owner": owner, "stress": atoms.get_stress(voigt=False), "volume": atoms.get_volume()}


def full_model(**overrides):
    """A small symmetrised model with baseline and wall, so that every term is exercised."""
    wall = {"type": "zbl", "charges": [28.0, 8.0], "r_inner": [[1.6, 1.2], [1.2, 1.6]],
            "r_outer": [[2.4, 1.9], [1.9, 2.4]]}
    params = dict(virtual_scale=[0.6, 0.0], spin_baseline={"n_basis": 4, "onsite_order": 2}, short_range=wall)
    params.update(overrides)
    return with_random_baseline(small_model(**params))


@needs_nio_data
@pytest.mark.parametrize("variant", ["symmetric", "one-pass", "compressed"])
def test_forward_lower_matches_calculator_on_nio_frames(variant):
    """Real 32-atom NiO frames: E, F, ω to 1e-10 relative (fp64), with shuffled rows and −1 padding."""
    model = full_model(time_reversal=variant != "one-pass")
    if variant == "compressed":
        model = compress_model(model, min_distance=1.0)
    module = scripted_model(model)
    for seed, atoms in enumerate(nio_frames(2)):
        atoms.rattle(0.05, seed=seed)  # closer pairs than the data's, so the wall acts on some
        result = compare(module, model, atoms, model.config.rcut + 1.2, seed)
        for key in ("energy", "forces", "torques"):
            assert result[key] < 1e-10, (variant, key, result[key])


@pytest.mark.parametrize("baseline", [{"n_basis": 4, "onsite_order": 2},
                                      {"n_basis": 4, "onsite_order": 2, "form": "landau", "biquadratic": True}])
def test_triclinic_cell_small_chunks_and_virial(nio, baseline):
    """A triclinic 16-atom cell (many images of each atom), centres in chunks of a few rows: E, F, ω as the
    calculator, and the virial (Σ x ⊗ F, symmetrised) equals −V σ of the calculator's stress; for both
    baseline forms (the landau one with biquadratic exchange, as the Fe model has)."""
    model = full_model(spin_baseline=baseline)
    module = scripted_model(model, max_edges_per_chunk=500)
    result = compare(module, model, nio, model.config.rcut + 1.5, seed=3)
    for key in ("energy", "forces", "torques"):
        assert result[key] < 1e-10, (key, result[key])
    virial = result["out"]["virial"].view(3, 3).numpy()
    expected = -result["volume"] * result["stress"]
    assert np.abs(virial - expected).max() < 1e-9 * np.abs(expected).max()


def test_float32_export_is_float32_accurate(nio):
    model = full_model()
    module = scripted_model(model.to(torch.float32))
    coord, atype, spin, nlist, owner = lammps_inputs(nio, model.config.rcut + 1.5)
    out = module.forward_lower(coord, atype, spin, nlist)
    assert out["energy"].dtype == torch.float64  # what the plugin reads
    reference = compare(scripted_model(model.double()), model.double(), nio, model.config.rcut + 1.5)
    assert abs(float(out["energy"] - reference["out"]["energy"])) < 1e-5 * abs(float(reference["out"]["energy"]))
    assert torch.allclose(out["extended_force"], reference["out"]["extended_force"], atol=1e-3)


def test_atom_energies_and_virials_when_asked(nio):
    model = full_model()
    module = scripted_model(model)
    coord, atype, spin, nlist, owner = lammps_inputs(nio, model.config.rcut + 1.5)
    out = module.forward_lower(coord, atype, spin, nlist, do_atom_virial=True)
    nall = coord.shape[1]
    assert out["atom_energy"].shape == (1, nall, 1) and out["extended_virial"].shape == (1, nall, 9)
    assert torch.allclose(out["atom_energy"].sum(), out["energy"].sum(), rtol=1e-12, atol=0)
    nio.calc = DeepSpinCalculator(model)
    assert np.allclose(out["atom_energy"][0, : len(nio), 0].numpy(), nio.get_potential_energies(), rtol=0, atol=1e-10)
    assert torch.allclose(out["extended_virial"].sum(1).view(-1), out["virial"].view(-1), rtol=1e-12, atol=1e-12)


def test_refuses_what_it_cannot_handle(nio):
    model = full_model()
    module = scripted_model(model)
    reach = model.config.rcut + 1.5
    coord, atype, spin, nlist, _ = lammps_inputs(nio, reach)
    with pytest.raises(SCRIPT_ERROR, match="fparam/aparam"):
        module.forward_lower(coord, atype, spin, nlist, None, torch.zeros(1, 1, dtype=torch.float64))
    with pytest.raises(SCRIPT_ERROR, match="type index"):
        module.forward_lower(coord, torch.full_like(atype, 2), spin, nlist)
    bad = spin.clone()
    bad[0, int((atype[0] == 0).nonzero()[0])] = 0.0
    with pytest.raises(SCRIPT_ERROR, match="zero spin"):
        module.forward_lower(coord, atype, bad, nlist)
    bad = spin.clone()
    bad[0, int((atype[0] == 1).nonzero()[0])] = 1.0
    with pytest.raises(SCRIPT_ERROR, match="non-magnetic"):
        module.forward_lower(coord, atype, bad, nlist)
    bad = coord.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(SCRIPT_ERROR, match="non-finite"):
        module.forward_lower(bad, atype, spin, nlist)
    # a list built with a skin smaller than η|S| (here 0.6 Å/μB × ~1.3 μB) cannot hold every pseudo-atom
    short = lammps_inputs(nio, model.config.rcut + 0.2)
    with pytest.raises(SCRIPT_ERROR, match="neighbor SKIN"):
        module.forward_lower(*short[:4])


def test_sel_overflow_is_an_error(nio):
    model = full_model(sel=[4, 4])
    module = scripted_model(model)
    with pytest.raises(SCRIPT_ERROR, match="sel allows"):
        module.forward_lower(*lammps_inputs(nio, model.config.rcut + 1.5)[:4])


def test_written_file_loads_and_records_its_origin(tmp_path, nio):
    model = full_model()
    path = write_lammps_model(model, tmp_path / "model.pth", dtype=torch.float32)
    record = read_export_record(path)
    assert record["dtype"] == "float32" and record["config"]["type_map"] == ["Ni", "O"]
    assert read_export_record(tmp_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 marks torch.jit deprecated
        loaded = torch.jit.load(str(path))
    assert loaded.get_type_map() == ["Ni", "O"] and loaded.get_rcut() == model.config.rcut
    assert loaded.get_ntypes() == 2 and not loaded.has_message_passing()
    assert loaded.get_dim_fparam() == 0 and loaded.get_dim_aparam() == 0 and not loaded.is_aparam_nall()
    out = loaded.forward_lower(*lammps_inputs(nio, model.config.rcut + 1.5)[:4])
    assert torch.isfinite(out["extended_force"]).all()


def test_exported_file_gives_back_its_model(tmp_path, nio):
    """load_model (and so DeepSpinCalculator) reads an exported .pth back: same energy, forces, torques."""
    from ase_deepspin.io import load_model

    model = compress_model(full_model(), min_distance=1.0)
    path = write_lammps_model(model, tmp_path / "model.pth")
    nio.calc = DeepSpinCalculator(model)
    expected = nio.get_potential_energy(), nio.get_forces(), nio.calc.get_magnetic_torques(nio)
    nio.calc = DeepSpinCalculator(load_model(path))
    got = nio.get_potential_energy(), nio.get_forces(), nio.calc.get_magnetic_torques(nio)
    assert got[0] == pytest.approx(expected[0], rel=1e-14, abs=0)
    assert np.allclose(got[1], expected[1], rtol=0, atol=1e-12)
    assert np.allclose(got[2], expected[2], rtol=0, atol=1e-12)


def test_cli_convert_and_info(tmp_path, capsys):
    from ase_deepspin.cli import main
    from ase_deepspin.io import save_model

    save_model(full_model(), tmp_path / "m.pt")
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.pth"), "--dtype", "float32"]) == 0
    assert "pair_style deepspin" in capsys.readouterr().out
    assert read_export_record(tmp_path / "m.pth")["dtype"] == "float32"
    assert main(["info", str(tmp_path / "m.pth")]) == 0
    out = capsys.readouterr().out
    assert "TorchScript module for DeePMD-kit's LAMMPS pair_style deepspin, float32" in out and "time reversal" in out
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.dp"), "--dtype", "float32"]) == 2
    assert "--dtype" in capsys.readouterr().err
