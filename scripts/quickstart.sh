#!/usr/bin/env bash
# Quickstart: installs dependencies, starts Redis and Postgres when absent, starts the Offtake
# API on :8080 (or $OFFTAKE_PORT), submits the example DataProduct and shows it.
# The API keeps running in the background; its log is in .offtake/api.log, stop it with
#   kill "$(cat .offtake/api.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
[ -x node_modules/.bin/node ] || npm ci
export PATH="$PWD/node_modules/.bin:$PATH"
bash scripts/services.sh
port="${OFFTAKE_PORT:-8080}"
mkdir -p .offtake
if ! curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
  nohup node cli/main.ts api --port "$port" > .offtake/api.log 2>&1 &
  echo $! > .offtake/api.pid
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
fi
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "the API did not start; see .offtake/api.log" >&2; exit 1; }
echo "Offtake API on http://127.0.0.1:$port (pid $(cat .offtake/api.pid 2>/dev/null || echo '?'))"
offtake() { node cli/main.ts --server "http://127.0.0.1:$port" "$@"; }
offtake -n checkout apply -f examples/eu-big-orders.yaml
offtake -n checkout get
offtake -n checkout describe eu-big-orders
