# Sourced by scripts/run.sh and scripts/test.sh: create or reuse .venv and install the project.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MOZAIKS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.mozaiks-installed"
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
WANT="$HASH-${1:-run}"
# A dev install serves the run command too.
if [ ! -f "$STAMP" ] || ! grep -qxE "$WANT|$HASH-dev" "$STAMP"; then
  echo "installing mozaiks and its dependencies (first run only)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  if [ "${1:-run}" = "dev" ]; then
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" >&2
  else
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT" >&2
  fi
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
