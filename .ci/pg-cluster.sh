#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and CI, the way .ci/run would provide one.
#
#   pg-cluster.sh start [DIR]   start a cluster (in DIR, or a new temporary folder) and print its URL
#   pg-cluster.sh stop  [DIR]   stop it and remove its folder
#   pg-cluster.sh url   [DIR]   print the URL of a running cluster
#
# DIR may also come from $PG_CLUSTER_DIR. When $DAYDREAM_TEST_PG is already set, `start` prints it
# and does nothing else, and `stop` without a DIR does nothing: the server is someone else's.
#
# What `start` does: find PostgreSQL's binaries (/usr/lib/postgresql/*/bin, newest first, or
# $PG_BINDIR); when there are none, install Debian's `postgresql` package with apt-get (root only);
# initdb into DIR/data as an unprivileged user (initdb and postgres refuse to run as root: as root
# we use the `postgres` system user through runuser), trust authentication, UTF8, C locale; listen
# on 127.0.0.1 only, on a free port, with the socket in DIR/sock (not /var/run/postgresql, which
# needs the Debian service's permissions); create the database `daydream`; print
#   postgresql://postgres@127.0.0.1:PORT/daydream
# on stdout (everything else goes to stderr), so `URL=$(pg-cluster.sh start)` works.
#
# Durability: a test cluster does not need fsync; PG_CLUSTER_DURABLE=1 keeps the server defaults
# (fsync, synchronous_commit, full_page_writes on), which is what benchmarks should use.
# Extra server settings: PG_CLUSTER_OPTS="-c name=value ..." is appended to the postgres options.
#
# In .ci/run (which does this):
#   if [ -z "${DAYDREAM_TEST_PG:-}" ]; then
#     export PG_CLUSTER_DIR="$(mktemp -d /tmp/daydream-pg.XXXXXX)"
#     DAYDREAM_TEST_PG="$(bash .ci/pg-cluster.sh start)"; export DAYDREAM_TEST_PG
#     trap 'bash .ci/pg-cluster.sh stop' EXIT
#   fi
set -euo pipefail

DB_NAME="daydream"
SUPERUSER="postgres"

say() { echo "pg-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

find_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then
    [ -x "$PG_BINDIR/initdb" ] || die "PG_BINDIR=$PG_BINDIR has no initdb"
    echo "$PG_BINDIR"; return 0
  fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

install_postgres() {
  [ "$(id -u)" = "0" ] || die "PostgreSQL is not installed and only root can install it: install Debian's postgresql package, or set DAYDREAM_TEST_PG to a server's URL"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get to install it with; set DAYDREAM_TEST_PG to a server's URL"
  say "installing Debian's postgresql package"
  # The package's own cluster is not used; policy-rc.d stops the postinst from starting it.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
  local status=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2 || status=$?
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || die "apt-get could not install postgresql (exit $status)"
  return 0
}

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Run a PostgreSQL binary as the cluster's owner (never root).
as_owner() {
  if [ "$(id -u)" = "0" ]; then runuser -u "$OWNER" -- "$@"; else "$@"; fi
}

resolve_dir() {
  local dir="${1:-${PG_CLUSTER_DIR:-}}"
  echo "$dir"
}

cmd_start() {
  if [ -n "${DAYDREAM_TEST_PG:-}" ]; then
    say "DAYDREAM_TEST_PG is set; using that server"
    echo "$DAYDREAM_TEST_PG"; return 0
  fi
  local bindir
  bindir="$(find_bindir)" || { install_postgres; bindir="$(find_bindir)" || die "postgresql installed but initdb not found"; }

  local dir; dir="$(resolve_dir "${1:-}")"
  if [ -z "$dir" ]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/daydream-pg.XXXXXX")"; fi
  mkdir -p "$dir"
  [ ! -e "$dir/data/PG_VERSION" ] || die "$dir already holds a cluster (stop it first: $0 stop $dir)"

  OWNER="$(id -un)"
  if [ "$(id -u)" = "0" ]; then
    OWNER="postgres"
    id -u "$OWNER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
  fi
  mkdir -p "$dir/data" "$dir/sock"
  chmod 700 "$dir/data"
  [ "$(id -u)" = "0" ] && chown -R "$OWNER" "$dir"
  # runuser keeps the caller's working directory; the owner may not be allowed in there.
  cd "$dir"

  as_owner "$bindir/initdb" -D "$dir/data" -U "$SUPERUSER" --auth=trust --encoding=UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed (log above)"; }

  local opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir/sock"
  if [ "${PG_CLUSTER_DURABLE:-0}" != "1" ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  opts="$opts ${PG_CLUSTER_OPTS:-}"

  local port attempt
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port $opts" start >/dev/null 2>>"$dir/pg_ctl.log"; then
      break
    fi
    say "start on port $port failed (attempt $attempt); retrying on another port"
    port=""
  done
  [ -n "$port" ] || { tail -n 20 "$dir/server.log" >&2 || true; die "the server did not start (log above)"; }

  "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U "$SUPERUSER" -d postgres \
    -c "CREATE DATABASE $DB_NAME" >&2 || die "could not create database $DB_NAME"
  local url="postgresql://$SUPERUSER@127.0.0.1:$port/$DB_NAME"
  printf '%s\n' "$bindir" > "$dir/bindir"
  printf '%s\n' "$url" > "$dir/url"
  say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') in $dir, port $port (stop: $0 stop $dir)"
  echo "$url"
}

cmd_stop() {
  local dir; dir="$(resolve_dir "${1:-}")"
  if [ -z "$dir" ]; then
    [ -n "${DAYDREAM_TEST_PG:-}" ] && { say "no cluster folder given; DAYDREAM_TEST_PG is not ours to stop"; return 0; }
    die "which cluster? give its folder (or set PG_CLUSTER_DIR)"
  fi
  [ -d "$dir" ] || { say "$dir does not exist: nothing to stop"; return 0; }
  if [ -f "$dir/data/postmaster.pid" ]; then
    local bindir; bindir="$(cat "$dir/bindir" 2>/dev/null || find_bindir)"
    OWNER="$(stat -c %U "$dir/data")"
    cd "$dir"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
      || say "pg_ctl stop failed; removing the folder anyway"
    cd /
  fi
  rm -rf "$dir"
  say "stopped and removed $dir"
}

cmd_url() {
  local dir; dir="$(resolve_dir "${1:-}")"
  if [ -z "$dir" ] && [ -n "${DAYDREAM_TEST_PG:-}" ]; then echo "$DAYDREAM_TEST_PG"; return 0; fi
  [ -f "$dir/url" ] || die "no cluster in ${dir:-?}"
  cat "$dir/url"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop)  shift; cmd_stop "$@" ;;
  url)   shift; cmd_url "$@" ;;
  *) echo "usage: $0 start|stop|url [DIR]" >&2; exit 2 ;;
esac
