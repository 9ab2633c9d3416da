#!/usr/bin/env bash
# The installed wheel, not the checkout: build it, install it into a fresh virtual environment,
# import the runtime, then run the hello chat from a host folder that has a settings.py and a
# store/ of its own (generic names a host app may well have; they must not shadow ours, nor ours
# theirs). Dependencies come from pip's cache after the first run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The tracked files only, copied: building in the checkout would leave build/ behind in it.
mkdir -p "$WORK/src"
git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null -T - -c | tar -C "$WORK/src" -x
"$PY" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip --quiet --disable-pip-version-check --no-input)
"${PIP[@]}" wheel --no-deps --wheel-dir "$WORK/dist" "$WORK/src"
"${PIP[@]}" install --no-compile "$WORK"/dist/mozaiks-*.whl  # no .pyc for all of Ray: most of the time
HOST="$WORK/host"
mkdir -p "$HOST/store"
echo 'raise ImportError("the host app'"'"'s own settings.py was imported by the runtime")' > "$HOST/settings.py"
echo 'raise ImportError("the host app'"'"'s own store/ was imported by the runtime")' > "$HOST/store/__init__.py"
cp "$ROOT/scripts/wheel_smoke_app.py" "$HOST/app.py"
cd "$HOST"
env -u PYTHONPATH "$WORK/venv/bin/python" -c "
import sys
import actors.chat_session, actors.directory, broker.service, capabilities, serve_app.ingress, workflows.catalog
import mozaiks.cli.main, mozaiks.store, mozaiks.settings
site = '$WORK/venv'
for module in (actors.chat_session, serve_app.ingress, mozaiks.store, mozaiks.settings):
    assert module.__file__.startswith(site), f'{module.__name__} comes from {module.__file__}, not the wheel'
print('runtime imports from the wheel')"
PORT="$("$WORK/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
env -u PYTHONPATH -u RAY_ADDRESS "$WORK/venv/bin/python" app.py "$WORK/data" "$PORT"
