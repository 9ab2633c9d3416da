#!/usr/bin/env bash
# Run the test suite (a local Ray + Serve is started once for the whole session).
source "$(dirname "$0")/_venv.sh" dev
source "$(dirname "$0")/_chatui.sh"
# The browser tests drive Debian's chromium (a browser build cannot be downloaded by Playwright
# here); as root we install it, otherwise those tests skip and say why.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser tests (apt)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
    || echo "warning: chromium could not be installed; the browser tests will skip" >&2
fi
# The PostgreSQL store's tests start a throw-away local cluster from Debian's server binaries.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing postgresql for the store tests (apt)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 \
    || echo "warning: postgresql could not be installed; the PostgreSQL store tests will skip" >&2
fi
# The head-node fault tolerance test keeps Ray's GCS in a throw-away local Redis.
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server for the GCS fault tolerance test (apt)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2 \
    || echo "warning: redis-server could not be installed; the GCS fault tolerance test will skip" >&2
fi
exec python -m pytest "$@"
