#!/usr/bin/env bash
# Create (or update) the project venv with the one checked stack of requirements.txt and the package itself.
# Used by examples/run.sh and .ci/run, so a fresh machine needs nothing installed by hand.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HESSDISTILL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "== installing the stack of requirements.txt into $VENV (first time: several GB, a few minutes)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
