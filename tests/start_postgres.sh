#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the tests (the 4-worker study, password
# masking). Idempotent: a server left running by an earlier run is reused, role and database are
# created only when missing. Run as root on Debian/Ubuntu (the server itself runs as `postgres`).
#
#   bash tests/start_postgres.sh      # prints the URL the tests use
#
# Settings (environment): EXPLORE_PG_PORT (55432), EXPLORE_PG_DATA (/var/tmp/explore-pg),
# EXPLORE_PG_USER (explore), EXPLORE_PG_PASSWORD (explore-test-pw), EXPLORE_PG_DB (explore_test).
# The tests read the same defaults, or the full URL from EXPLORE_TEST_POSTGRES_URL.
set -euo pipefail

port="${EXPLORE_PG_PORT:-55432}"
data="${EXPLORE_PG_DATA:-/var/tmp/explore-pg}"
user="${EXPLORE_PG_USER:-explore}"
password="${EXPLORE_PG_PASSWORD:-explore-test-pw}"
db="${EXPLORE_PG_DB:-explore_test}"

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y postgresql >/dev/null || { apt-get update >/dev/null && apt-get install -y postgresql >/dev/null; }
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as_pg() { runuser -u postgres -- "$@"; }

if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  chown postgres:postgres "$data"
  chmod 700 "$data"
  # local socket: trust (only root/postgres reach it inside $data); TCP: password (scram) only
  as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
fi

if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=100" start >/dev/null
fi

psql_bin="$bin/psql"
psql_pg() { as_pg "$psql_bin" -h "$data" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != "1" ]; then
  psql_pg -c "CREATE ROLE \"$user\" LOGIN PASSWORD '$password'"
else
  psql_pg -c "ALTER ROLE \"$user\" LOGIN PASSWORD '$password'"
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
  psql_pg -c "CREATE DATABASE \"$db\" OWNER \"$user\""
fi
echo "postgresql://$user:***@127.0.0.1:$port/$db (server log: $data/server.log)"
