#!/usr/bin/env bash
# The README's "Cluster" section followed on this one machine (docs/cluster.md explains each step).
#
# Two "machines" are two network namespaces joined by a veth pair, each with its own address:
#   head 10.10.0.1   ray start --head, then serve deploy deploy/serve_config.yaml
#   node 10.10.0.2   ray start --address 10.10.0.1:6379 --resources '{"generator": 2}'
# and both share one PostgreSQL server, a throw-away one listening on the head's address (password
# auth over the network, as a database machine would be reached); then `hello` chats run end to end
# (scripts/cluster_smoke.py), the second machine counts them in the database, and everything is
# stopped again. Needs root (for `ip netns`), Debian's postgresql (scripts/test.sh installs it) and
# PYTHON set to the interpreter of an environment with the project's dependencies (default:
# python3). Prints the smoke test's JSON summary, then the stored chats' count; non-zero exit on
# failure.
#
# What differs from real machines, and why: each "machine" gets its own RAY_TMPDIR (they share this
# disk); the database runs on the head rather than on a machine of its own; and the end is not
# `ray stop`, which stops every Ray instance on the machine, but ending exactly the processes in our
# two namespaces (the database's among them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(command -v "${PYTHON:-python3}")"
export PATH="$(dirname "$PY"):$PATH"  # the ray and serve commands of the same environment
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the project, as `pip install -e .` provides it

HEAD_NS="mozaiks-head-$$" NODE_NS="mozaiks-node-$$"
HEAD_IF="mzh$$" NODE_IF="mzn$$"  # interface names have at most 15 characters
HEAD_IP=10.10.0.1 NODE_IP=10.10.0.2
WORK="$(mktemp -d /tmp/mzk-demo-XXXXXX)"  # short: Ray's socket paths live under it
# Debian keeps the server binaries with their client tools in one versioned directory.
PG_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")"
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/psql" ] \
  || { echo "needs PostgreSQL's server binaries: apt-get install postgresql"; exit 1; }
PG_DIR="$WORK/pg"  # PostgreSQL refuses to run as root: its files belong to the postgres user
as_postgres() { runuser -u postgres -- "$@"; }

step() { printf "\n== [%ss] %s\n" "$SECONDS" "$*"; }
on_head() { ip netns exec "$HEAD_NS" env RAY_TMPDIR="$WORK/head" "$@"; }
on_node() { ip netns exec "$NODE_NS" env RAY_TMPDIR="$WORK/node" "$@"; }

stop_namespace_processes() {
  local signal=$1 ns pids
  for ns in "$NODE_NS" "$HEAD_NS"; do
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    [ -z "$pids" ] || kill "-$signal" $pids 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  set +e
  step "stopping the cluster"
  stop_namespace_processes TERM
  for _ in $(seq 20); do
    [ -z "$(ip netns pids "$HEAD_NS" 2>/dev/null)$(ip netns pids "$NODE_NS" 2>/dev/null)" ] && break
    sleep 0.5
  done
  stop_namespace_processes KILL
  ip netns del "$HEAD_NS" 2>/dev/null
  ip netns del "$NODE_NS" 2>/dev/null
  [ "$status" -eq 0 ] || tail -n 40 "$WORK"/*.log "$PG_DIR/log" 2>/dev/null
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

step "two machines: $HEAD_NS ($HEAD_IP) and $NODE_NS ($NODE_IP)"
ip netns add "$HEAD_NS"
ip netns add "$NODE_NS"
ip link add "$HEAD_IF" type veth peer name "$NODE_IF"
ip link set "$HEAD_IF" netns "$HEAD_NS"
ip link set "$NODE_IF" netns "$NODE_NS"
for side in "$HEAD_NS $HEAD_IF $HEAD_IP" "$NODE_NS $NODE_IF $NODE_IP"; do
  read -r ns dev ip <<<"$side"
  ip -n "$ns" addr add "$ip/24" dev "$dev"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "$dev" up
  ip -n "$ns" route add default dev "$dev"  # Ray finds its own address through the default route
done

secret() { "$PY" -c 'import secrets; print(secrets.token_hex(32))'; }

step "the shared store: PostgreSQL on $HEAD_IP:5432"
DB_PASSWORD="$(secret)"
chmod 711 "$WORK"
mkdir -m 700 "$PG_DIR" && chown postgres "$PG_DIR"
as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 >"$WORK/initdb.log" 2>&1
echo "host mozaiks mozaiks 10.10.0.0/24 scram-sha-256" >>"$PG_DIR/data/pg_hba.conf"
ip netns exec "$HEAD_NS" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -l "$PG_DIR/log" \
  -o "-p 5432 -h $HEAD_IP -k $PG_DIR" start >"$WORK/pg_ctl.log" 2>&1
# The runtime's own role owns its database and nothing else; the schema is its first start's work.
# (SQL on stdin: a password in a command line would show in the process list.)
printf "CREATE ROLE mozaiks LOGIN PASSWORD '%s';\nCREATE DATABASE mozaiks OWNER mozaiks;\n" "$DB_PASSWORD" \
  | as_postgres "$PG_BIN/psql" -h "$PG_DIR" -p 5432 -U postgres -q -v ON_ERROR_STOP=1

# The settings every node starts with (on real machines: ~/mozaiks.env, see deploy/cluster.env.example).
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(secret)"
export MOZAIKS_STORE_URL="postgresql://mozaiks:$DB_PASSWORD@$HEAD_IP:5432/mozaiks" MOZAIKS_DATA_DIR="$WORK/data"
export MOZAIKS_USER_JWT_SECRET="$(secret)" MOZAIKS_RUNTIME_TOKEN_SECRET="$(secret)"
export MOZAIKS_PUBLIC_WS_BASE="ws://$HEAD_IP:8000"
cd "$ROOT"

step "head: ray start --head"
on_head ray start --head --port=6379 --num-cpus=2 --disable-usage-stats >"$WORK/head.log" 2>&1

step "second machine: ray start --address=$HEAD_IP:6379 (offering the generator resource)"
on_node ray start --address="$HEAD_IP:6379" --num-cpus=1 --resources='{"generator": 2}' \
  --disable-usage-stats >"$WORK/node.log" 2>&1
for attempt in $(seq 60); do  # `ray status` shows a node once the autoscaler's monitor has seen it
  { on_head ray status --address="$HEAD_IP:6379" 2>&1 || true; } | sed -n '/^Active:/,/^Pending:/p' >"$WORK/nodes.log"
  [ "$(grep -c ' node_' "$WORK/nodes.log")" -ge 2 ] && break
  [ "$attempt" -lt 60 ] || { echo "the second machine did not join"; exit 1; }
  sleep 1
done
cat "$WORK/nodes.log"

step "head: serve deploy deploy/serve_config.yaml"
for attempt in $(seq 30); do  # the dashboard, which takes the config, may still be starting
  on_head serve deploy deploy/serve_config.yaml >>"$WORK/deploy.log" 2>&1 && break
  [ "$attempt" -lt 30 ] || { echo "serve deploy failed"; exit 1; }
  sleep 2
done
for attempt in $(seq 90); do
  on_head serve status >"$WORK/status.log" 2>&1 || true
  grep -q "status: RUNNING" "$WORK/status.log" && break
  if grep -q "DEPLOY_FAILED" "$WORK/status.log" || [ "$attempt" -eq 90 ]; then
    cat "$WORK/status.log"; echo "the application did not start"; exit 1
  fi
  sleep 1
done
echo "application mozaiks RUNNING"

step "chats end to end: python scripts/cluster_smoke.py http://$HEAD_IP:8000 --chats 4"
on_head "$PY" scripts/cluster_smoke.py "http://$HEAD_IP:8000" --chats 4

step "the second machine reads the chats from the shared store"
CHATS_STORED="$(on_node env PGPASSWORD="$DB_PASSWORD" "$PG_BIN/psql" -h "$HEAD_IP" -p 5432 -U mozaiks -d mozaiks \
  -At -c "SELECT count(*) FROM chats")"
echo "store: $CHATS_STORED chats in PostgreSQL at $HEAD_IP:5432"
