#!/usr/bin/env bash
# Start the runtime locally: Ray, Serve on 127.0.0.1, SQLite under .data/, the example workflows.
source "$(dirname "$0")/_venv.sh" run
source "$(dirname "$0")/_chatui.sh"
exec mozaiks run "$@"
