#!/usr/bin/env bash
# Create (or update) the project venv with the one checked stack of requirements.txt and the package itself.
# Used by examples/run.sh and .ci/run, so a fresh machine needs nothing installed by hand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HESSDISTILL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
    # a new venv takes ~8 GB (torch's CUDA wheels); say so before pip fails with a bare "No space left on device"
    free_gb=$(df -Pk "$(dirname "$VENV")" 2>/dev/null | awk 'NR == 2 {print int($4 / 1048576)}' || true)
    if [ "${free_gb:-100}" -lt 10 ]; then
        echo "== warning: only ${free_gb} GB free under $(dirname "$VENV"); a new venv needs about 8 GB" >&2
    fi
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
requirements="$ROOT/requirements.txt"
if [ -n "${HESSDISTILL_CUDA:-}" ]; then
    # the one CPU/CUDA switch: the same versions, the CUDA TorchForce plugin and CUDA OpenMM platform
    [ "$HESSDISTILL_CUDA" = 12 ] || { echo "== HESSDISTILL_CUDA must be 12 (OpenMM's CUDA wheels are CUDA 12)" >&2; exit 2; }
    openmm_version=$(sed -n 's/^openmm==//p' "$requirements")
    requirements="$(mktemp)"
    sed 's/^acellera-openmmtorch-cpu==/acellera-openmmtorch-cu12==/' "$ROOT/requirements.txt" > "$requirements"
    echo "openmm-cuda-12==$openmm_version" >> "$requirements"
fi
# the CPU and CUDA TorchForce wheels both ship the module openmmtorch: switching, the other one goes first
other=acellera-openmmtorch-cu12
[ -n "${HESSDISTILL_CUDA:-}" ] && other=acellera-openmmtorch-cpu
if "$VENV/bin/pip" show --quiet "$other" >/dev/null 2>&1; then
    "$VENV/bin/pip" uninstall --quiet --yes "$other"
fi
echo "== installing the stack of requirements.txt into $VENV (first time: several GB, a few minutes)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
