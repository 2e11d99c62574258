#!/usr/bin/env bash
# The Offtake demo, one command (`npm run demo`): starts Offtake (`offtake up`, API + operator +
# workers) on a free port, publishes a sample order history, applies a Redis product
# (examples/orders-cache.yaml) and a Postgres product (examples/eu-big-orders.yaml), shows their
# seed progress until they are Ready, reads both stores with the credentials Offtake delivered
# (redis-cli, psql), deletes the products, asks the servers that nothing is left, and stops.
#
# On a fresh Debian machine run it as root: scripts/services.sh installs and starts Redis and
# PostgreSQL when nothing answers on their ports. Offtake keeps the demo's state under a Redis
# prefix of its own (offtake-demo-<pid>), removed at the end, also when the demo fails.
# Settings: OFFTAKE_REDIS_URL, OFFTAKE_POSTGRES_URL (default: the servers services.sh starts),
# DEMO_EVENTS (generated orders published after the sample, default 100000: enough to watch a
# seed progress; 0 for the 200 sample orders only).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -t 1 ]; then bold=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' off=$'\e[0m'; else bold='' dim='' red='' off=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
# Prints a command as written here (variables unexpanded, so it reads like what a user types), then runs it.
show() { printf '%s$ %s%s\n' "$dim" "$1" "$off"; eval "$1"; }
fail() { printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2; exit 1; }

step "Dependencies and services"
# npm ci also builds dist/ (the `prepare` script); the demo runs the TypeScript sources directly.
[ -x node_modules/.bin/node ] || npm ci
export PATH="$PWD/node_modules/.bin:$PATH"
bash scripts/services.sh

export OFFTAKE_REDIS_URL="${OFFTAKE_REDIS_URL:-redis://127.0.0.1:6379}"
export OFFTAKE_POSTGRES_URL="${OFFTAKE_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export OFFTAKE_REDIS_PREFIX="offtake-demo-$$"
namespace=checkout
products=(orders-cache eu-big-orders)
demo_events="${DEMO_EVENTS:-100000}"
work=$(mktemp -d)
log="$work/offtake.log"
pid=''
server=''

offtake() { node cli/main.ts --server "$server" -n "$namespace" "$@"; }
admin_redis() { redis-cli -u "$OFFTAKE_REDIS_URL" --no-auth-warning "$@"; }
admin_psql() { psql "$OFFTAKE_POSTGRES_URL" -X -q -t -A "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    if [ "$status" != 0 ]; then
      # Products left by a failed run are torn down by the operator before it stops.
      for product in "${products[@]}"; do
        offtake get "$product" >/dev/null 2>&1 && offtake delete "$product" --wait --timeout 60 >/dev/null 2>&1 || true
      done
      printf '%sdemo failed; the last lines of the Offtake log:%s\n' "$red" "$off" >&2
      tail -n 20 "$log" >&2 || true
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  # The demo's own prefix: its resource store, event log and pipeline queues.
  admin_redis --scan --pattern "$OFFTAKE_REDIS_PREFIX:*" 2>/dev/null | xargs -r -n 500 redis-cli -u "$OFFTAKE_REDIS_URL" --no-auth-warning unlink >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Store names are per namespace and product, not per prefix: another Offtake's products of the
# same names would share them, and the demo's deletion would remove them.
if admin_redis ACL USERS | grep -qx "dp:$namespace:orders-cache" ||
  [ "$(admin_psql -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'dp\_${namespace}\_eu\_big\_orders\_%'")" != 0 ]; then
  fail "another Offtake on these servers has a product $namespace/orders-cache or $namespace/eu-big-orders; delete it first"
fi

step "Starting Offtake (offtake up) on a free port"
OFFTAKE_LOG_LEVEL=info node cli/main.ts up --port 0 --host 127.0.0.1 >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  port=$(grep '"msg":"offtake up' "$log" 2>/dev/null | grep -o '"port":[0-9]*' | head -n 1 | cut -d: -f2 || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "offtake up exited: $(tail -n 5 "$log")"
  sleep 0.1
done
[ -n "$port" ] || fail "offtake up did not start within 30 s"
server="http://127.0.0.1:$port"
echo "Offtake is up at $server (pid $pid, Redis prefix $OFFTAKE_REDIS_PREFIX, log $log)"

step "Publishing the order history to the event log"
show 'offtake publish orders examples/orders.ndjson'
if [ "$demo_events" -gt 0 ]; then
  echo "and $demo_events generated orders of the same shape, in batches of 1000:"
  # Ids make a retried batch a no-op.
  node --input-type=module -e '
    const [server, total] = [process.argv[1], Number(process.argv[2])];
    const regions = ["EU", "US", "APAC"];
    for (let i = 0; i < total; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(total, i + 1000); j++) {
        const customerId = `c${String(j % 997).padStart(3, "0")}`;
        const data = { orderId: `g${j}`, customerId, region: regions[j % 3], amount: ((j * 7919) % 50000) / 100 };
        const type = j % 9 === 0 ? "OrderCancelled" : "OrderPlaced";
        batch.push({ id: `generated-${j}`, source: "shop/checkout", type, subject: customerId, data });
      }
      const res = await fetch(`${server}/v1/streams/orders/events`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(batch),
      });
      if (!res.ok) throw new Error(`publish failed: ${res.status} ${await res.text()}`);
    }
    console.log(`orders: ${total} generated orders appended`);
  ' "$server" "$demo_events"
fi

step "Applying a Redis product and a Postgres product"
show 'offtake apply -f examples/orders-cache.yaml'
show 'offtake apply -f examples/eu-big-orders.yaml'

step "Waiting for Ready, with the seed progress"
show 'offtake status orders-cache eu-big-orders --watch --timeout 300'
show 'offtake get'

step "Reading the Redis product with the credentials Offtake delivered"
show 'offtake connection orders-cache'
show 'redis_uri=$(offtake connection orders-cache uri); key_prefix=$(offtake connection orders-cache keyPrefix)'
show 'redis-cli -u "$redis_uri" --no-auth-warning HGETALL "${key_prefix}o3"'
echo "Its credentials read its own keys and nothing else:"
show 'redis-cli -u "$redis_uri" --no-auth-warning KEYS "*"' || true
redis_user=$(offtake connection orders-cache user)

step "Reading the Postgres product with the credentials Offtake delivered"
show 'pg_uri=$(offtake connection eu-big-orders uri)'
show 'psql "$pg_uri" -X -c "SELECT customer, amount, status FROM eu_big_orders ORDER BY amount DESC LIMIT 5"'
show 'psql "$pg_uri" -X -tA -c "SELECT count(*) FROM eu_big_orders"'
echo "Its credentials read its own schema and change nothing:"
show 'psql "$pg_uri" -X -c "DELETE FROM eu_big_orders"' || true
schema=$(offtake connection eu-big-orders schema)
pg_role=$(offtake connection eu-big-orders user)

step "Deleting both products (--wait: until their stores are torn down)"
show 'offtake delete orders-cache --wait --timeout 120'
show 'offtake delete eu-big-orders --wait --timeout 120'

step "Nothing is left (asking Redis and Postgres directly, as their admin)"
left=0
check() {
  local what=$1 count=$2
  if [ "$count" = 0 ]; then echo "  gone: $what"; else echo "  ${red}LEFT${off}: $what ($count)"; left=1; fi
}
check "Postgres schema $schema" "$(admin_psql -c "SELECT count(*) FROM pg_namespace WHERE nspname = '$schema'")"
check "Postgres role $pg_role" "$(admin_psql -c "SELECT count(*) FROM pg_roles WHERE rolname = '$pg_role'")"
check "Redis ACL user $redis_user" "$(admin_redis ACL USERS | grep -cx "$redis_user" || true)"
check "Redis keys of the products ($OFFTAKE_REDIS_PREFIX:dp:*)" "$(admin_redis --scan --pattern "$OFFTAKE_REDIS_PREFIX:dp:*" | wc -l)"
check "pipeline state ($OFFTAKE_REDIS_PREFIX:pipeline:*)" "$(admin_redis --scan --pattern "$OFFTAKE_REDIS_PREFIX:pipeline:*" | wc -l)"
check "DataProducts in $namespace" "$(offtake get -o json | grep -c '"uid"' || true)"
echo "and the delivered credentials are refused now:"
# redis-cli goes on as the default user when AUTH fails: ask it who it is.
show 'redis-cli -u "$redis_uri" --no-auth-warning ACL WHOAMI' 2>&1 | sed 's/^/  /'
[ "$(redis-cli -u "$redis_uri" --no-auth-warning ACL WHOAMI 2>/dev/null)" != "$redis_user" ] || check "login as $redis_user" 1
show 'psql "$pg_uri" -X -tA -c "SELECT 1"' 2>&1 | sed 's/^/  /' && check "login as $pg_role" 1 || true
[ "$left" = 0 ] || fail "something was left behind"

step "Stopping Offtake"
kill "$pid"
wait "$pid" || true
pid=''
echo "Done. Everything else of this demo (its event log, resource store, queues) was under"
echo "$OFFTAKE_REDIS_PREFIX:* in Redis and is removed now."
