#!/usr/bin/env bash
# Second test environment, for what the main stack cannot hold: the MACE teacher (mace-torch 0.3.16 pins e3nn 0.4.4;
# sevenn 0.13 in the main stack needs e3nn >= 0.5) and the newest OpenMM and openmm-ml (8.6.1 and 1.8: the
# TorchForce wheel of the main stack crashes deserializing on OpenMM 8.6, so there the student runs through
# openmm.PythonForce alone, the path these OpenMM tests then take), on torch 2.13 (the CPU wheel from /opt/wheels).
# The MACE tests run in their own pytest process: importing mace-torch's ASE calculator turns torch.load's
# weights-only default off for the rest of the process.
#
#   bash .ci/newer_env.sh            # build the venv if missing, then test
#   NEWER_VENV=dir REBUILD=1 bash .ci/newer_env.sh
#
# The venv lives outside the work tree by default (it is ~1 GB); it is reused when its versions already match.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NEWER_VENV:-/tmp/hessdistill-newer-venv}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION=2.13.0
OPENMM_VERSION=8.6.1
MACE_VERSION=0.3.16
OPENMMML_VERSION=1.8
start=$(date +%s)

have_stack() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<PY 2>/dev/null
import torch, openmm, mdtraj, hessdistill, vesin_torch, sys
from importlib.metadata import version
ok = torch.__version__.split("+")[0] == "$TORCH_VERSION" and openmm.__version__ == "$OPENMM_VERSION"
ok = ok and version("mace-torch") == "$MACE_VERSION" and version("openmmml") == "$OPENMMML_VERSION"
sys.exit(0 if ok else 1)
PY
}

if [ "${REBUILD:-0}" = 1 ] || ! have_stack; then
    echo "== newer env: building $VENV (torch $TORCH_VERSION, openmm $OPENMM_VERSION, mace-torch $MACE_VERSION)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # torch==2.13.0 resolves to the local CPU wheel in /opt/wheels (pip's find-links); pip's torch cap is kept.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "torch==$TORCH_VERSION" "openmm==$OPENMM_VERSION" "mdtraj==1.11.1.post2" "mace-torch==$MACE_VERSION" \
        "openmmml==$OPENMMML_VERSION" \
        "ase>=3.29,<3.30" h5py "vesin<0.7" "vesin-torch==0.6.2" tqdm matplotlib pyyaml pytest pytest-timeout
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
else
    echo "== newer env: reusing $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
fi
built=$(date +%s)

"$VENV/bin/python" - <<'PY'
import importlib.util, torch, openmm, numpy
from importlib.metadata import version
print(f"== newer env: torch {torch.__version__}, openmm {openmm.__version__}, numpy {numpy.__version__}, "
      f"mace-torch {version('mace-torch')}, e3nn {version('e3nn')}, openmmml {version('openmmml')}, "
      f"PythonForce {'yes' if hasattr(openmm, 'PythonForce') else 'NO'}, "
      f"openmmtorch {'present' if importlib.util.find_spec('openmmtorch') else 'absent'}")
PY

cd "$ROOT"
status=0
"$VENV/bin/python" -m pytest -q -rs tests/test_openmm.py tests/test_openmmml.py || status=$?
"$VENV/bin/python" -m pytest -q -rs tests/test_teachers_mace.py || status=$?
end=$(date +%s)
echo "== newer env: setup $((built - start)) s, tests $((end - built)) s, exit $status"
exit "$status"
