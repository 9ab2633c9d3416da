#!/usr/bin/env bash
# Start the runtime locally: Ray, Serve on 127.0.0.1, SQLite under .data/, the example workflows.
source "$(dirname "$0")/_venv.sh" run
source "$(dirname "$0")/_chatui.sh"
# The local dev run can use workflow_generator: it may install workflows, and what it installs is
# ungated, so the ChatUI's dev user (who has no plan) can start it. Only in local mode, and only
# unless set already; production keeps the defaults (no generator, installs gated).
if [ "${MOZAIKS_MODE:-local}" = "local" ]; then
  export MOZAIKS_GENERATOR_WORKFLOWS="${MOZAIKS_GENERATOR_WORKFLOWS:-[\"workflow_generator\"]}"
  export MOZAIKS_INSTALLED_WORKFLOWS_GATED="${MOZAIKS_INSTALLED_WORKFLOWS_GATED:-false}"
fi
exec mozaiks run "$@"
