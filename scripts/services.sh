#!/usr/bin/env bash
# Makes sure the services the tests need are installed and running on this machine:
# Redis on 127.0.0.1:6379 (AOF on) and PostgreSQL on 127.0.0.1:5432 (superuser "postgres",
# trusted on the unix socket in $OFFTAKE_SERVICES_DIR, password "postgres" over TCP).
# Idempotent: anything already answering is left alone. Needs root on a fresh Debian machine.
set -euo pipefail

dir="${OFFTAKE_SERVICES_DIR:-/var/tmp/offtake-services}"
redis_port="${OFFTAKE_TEST_REDIS_PORT:-6379}"
pg_port="${OFFTAKE_TEST_POSTGRES_PORT:-5432}"
mkdir -p "$dir"

log() { echo "services: $*"; }

apt_updated=0
need_pkg() {
  if ! dpkg -s "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then echo "services: $1 is missing and this is not root; install it" >&2; exit 1; fi
    if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
    log "installing $1"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  fi
}

need_pkg redis-server
need_pkg postgresql

# Redis
if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  log "redis already answering on $redis_port"
else
  mkdir -p "$dir/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes \
    --appendfsync everysec --save '' --daemonize yes --logfile "$dir/redis/redis.log" \
    --pidfile "$dir/redis/redis.pid"
  for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$redis_port" ping >/dev/null
  log "redis started on $redis_port (data in $dir/redis)"
fi

# PostgreSQL
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if "$pgbin/pg_isready" -h 127.0.0.1 -p "$pg_port" >/dev/null 2>&1; then
  log "postgres already answering on $pg_port"
else
  pgdata="$dir/postgres"
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  mkdir -p "$pgdata"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata" "$dir"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    pwfile=$(mktemp); echo postgres > "$pwfile"; chmod 644 "$pwfile"
    run_pg "$pgbin/initdb" -D "$pgdata" -U postgres --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
  fi
  run_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -o \
    "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=300 -c fsync=on" start >/dev/null
  log "postgres started on $pg_port (socket in $dir)"
fi
