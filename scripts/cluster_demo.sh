#!/usr/bin/env bash
# The README's "Cluster" section followed on this one machine (docs/cluster.md explains each step).
#
# Two "machines" are two network namespaces joined by a veth pair, each with its own address:
#   head 10.10.0.1   ray start --head, then serve deploy deploy/serve_config.yaml
#   node 10.10.0.2   ray start --address 10.10.0.1:6379 --resources '{"generator": 2}'
# then `hello` chats run end to end (scripts/cluster_smoke.py), and everything is stopped again.
# Needs root (for `ip netns`) and PYTHON set to the interpreter of an environment with the project's
# dependencies (default: python3). Prints the smoke test's JSON summary last; non-zero exit on failure.
#
# What differs from real machines, and why: each "machine" gets its own RAY_TMPDIR (they share this
# disk); the store is SQLite (fine on one disk; a real cluster uses MongoDB); and the end is not
# `ray stop`, which stops every Ray instance on the machine, but ending exactly the processes in our
# two namespaces.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(command -v "${PYTHON:-python3}")"
export PATH="$(dirname "$PY"):$PATH"  # the ray and serve commands of the same environment
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the project, as `pip install -e .` provides it

HEAD_NS="mozaiks-head-$$" NODE_NS="mozaiks-node-$$"
HEAD_IF="mzh$$" NODE_IF="mzn$$"  # interface names have at most 15 characters
HEAD_IP=10.10.0.1 NODE_IP=10.10.0.2
WORK="$(mktemp -d /tmp/mzk-demo-XXXXXX)"  # short: Ray's socket paths live under it

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
  [ "$status" -eq 0 ] || tail -n 40 "$WORK"/*.log 2>/dev/null
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

# The settings every node starts with (on real machines: ~/mozaiks.env, see deploy/cluster.env.example).
secret() { "$PY" -c 'import secrets; print(secrets.token_hex(32))'; }
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(secret)"
export MOZAIKS_STORE_URL="sqlite:///$WORK/mozaiks.db" MOZAIKS_DATA_DIR="$WORK/data"
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
