#!/usr/bin/env bash
# Run the test suite (a local Ray + Serve is started once for the whole session).
source "$(dirname "$0")/_venv.sh" dev
exec python -m pytest "$@"
