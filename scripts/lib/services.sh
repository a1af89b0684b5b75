# shellcheck shell=bash
# Private Redis and PostgreSQL for tests, the demo and benchmarks.
#
# Source this file, then call services_start DIR.  It exports
#   HIVE_TEST_REDIS_HOST HIVE_TEST_REDIS_PORT HIVE_TEST_REDIS_SOCK
#   HIVE_TEST_REDIS_HOST6 (::1, only when the machine has an IPv6
#   loopback and Redis listens on it too; tests that need it skip else)
#   HIVE_TEST_PG (a libpq connection string) HIVE_TEST_PG_DIR
# services_stop stops exactly the processes it started, by PID.  Callers
# install `trap services_stop EXIT INT TERM`.
#
# PostgreSQL refuses to run as root: as root, it runs as the unprivileged
# "postgres" user that Debian's package creates.

SVC_REDIS_PID=
SVC_PG_PID=
SVC_DIR=

svc_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

svc_pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || { echo "services: no PostgreSQL server found (run scripts/setup)" >&2; return 1; }
  echo "$d"
}

# Wait up to $2 tenths of a second for command $1 to succeed.
svc_wait() {
  local i=0
  while ! eval "$1" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -ge "$2" ] && return 1
    sleep 0.1
  done
}

services_start_redis() {
  local dir=$1 port
  port=$(svc_free_port)
  mkdir -p "$dir/redis"
  # ::1 too where the machine has it ('-': optional, Redis starts
  # without it elsewhere).
  redis-server --bind 127.0.0.1 -::1 --port "$port" --unixsocket "$dir/redis/redis.sock" \
    --unixsocketperm 700 --dir "$dir/redis" --save '' --appendonly no \
    --maxmemory-policy noeviction --daemonize no --logfile "$dir/redis/redis.log" &
  SVC_REDIS_PID=$!
  export HIVE_TEST_REDIS_HOST=127.0.0.1 HIVE_TEST_REDIS_PORT=$port
  export HIVE_TEST_REDIS_SOCK=$dir/redis/redis.sock HIVE_TEST_REDIS_PID=$SVC_REDIS_PID
  svc_wait "redis-cli -h 127.0.0.1 -p $port ping | grep -q PONG" 100 || {
    echo "services: redis-server did not start (log: $dir/redis/redis.log)" >&2; return 1; }
  unset HIVE_TEST_REDIS_HOST6
  if redis-cli -h ::1 -p "$port" ping 2>/dev/null | grep -q PONG; then
    export HIVE_TEST_REDIS_HOST6=::1
  fi
}

services_start_pg() {
  local dir=$1 port bindir run=()
  bindir=$(svc_pg_bindir) || return 1
  port=$(svc_free_port)
  mkdir -p "$dir/pg"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "services: user postgres missing (run scripts/setup)" >&2; return 1; }
    chown postgres: "$dir/pg"
    chmod 755 "$dir"
    run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  "${run[@]}" "$bindir/initdb" -D "$dir/pg/data" -U hive --auth=trust -E UTF8 \
    --no-sync >"$dir/pg/initdb.log" 2>&1 || {
    cat "$dir/pg/initdb.log" >&2; echo "services: initdb failed" >&2; return 1; }
  "${run[@]}" "$bindir/postgres" -D "$dir/pg/data" -p "$port" -k "$dir/pg" \
    -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=200 \
    >"$dir/pg/postgres.log" 2>&1 &
  SVC_PG_PID=$!
  export HIVE_TEST_PG_DIR=$dir/pg HIVE_TEST_PG_PORT=$port HIVE_TEST_PG_PID=$SVC_PG_PID
  export HIVE_TEST_PG="host=$dir/pg port=$port user=hive dbname=postgres"
  svc_wait "$bindir/pg_isready -q -h $dir/pg -p $port" 300 || {
    tail -20 "$dir/pg/postgres.log" >&2; echo "services: postgres did not start" >&2; return 1; }
}

services_start() {
  SVC_DIR=$1
  services_start_redis "$SVC_DIR" && services_start_pg "$SVC_DIR"
}

# Stop what we started, by PID: TERM, wait up to 10 s, then KILL.
svc_kill() {
  local pid=$1 i=0
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then kill -KILL "$pid" 2>/dev/null; break; fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

services_stop() {
  # postgres: SIGINT is "fast shutdown"; TERM waits for clients.
  if [ -n "$SVC_PG_PID" ] && kill -0 "$SVC_PG_PID" 2>/dev/null; then
    kill -INT "$SVC_PG_PID" 2>/dev/null
  fi
  svc_kill "$SVC_PG_PID"; SVC_PG_PID=
  svc_kill "$SVC_REDIS_PID"; SVC_REDIS_PID=
}
