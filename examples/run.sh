#!/usr/bin/env bash
# Set up the venv (first time only) and run the built-in example: ANI-1x -> PaiNN student for ethanol.
# Extra arguments go to `hessdistill example` (e.g. --quick, --out DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/.ci/setup.sh"
VENV="${HESSDISTILL_VENV:-$ROOT/.venv}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$VENV/bin/hessdistill" example "$@"
