#!/usr/bin/env bash
# Start a throw-away local PostgreSQL (Debian package) for the storage tests and print the URL.
# Installs the package when missing (apt-get update + install, retried), creates a cluster owned
# by the postgres user in $PGROOT, listens on 127.0.0.1:$PGPORT and a socket there, creates the
# database `bms_test`. Idempotent: a cluster already running is reused. Prints on stdout:
#   BMS_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:<port>/bms_test
set -euo pipefail
PGROOT="${PGROOT:-/tmp/bms-ci-postgres}"
PGPORT="${PGPORT:-55432}"
log() { echo "[postgres] $*" >&2; }

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN="$(find_bin || true)"
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  log "installing the Debian postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  for attempt in 1 2 3; do
    if timeout 900 apt-get update -qq >&2 && timeout 1200 apt-get install -y -qq --no-install-recommends postgresql >&2; then
      break
    fi
    log "apt attempt $attempt failed; retrying in 10 s"
    sleep 10
  done
  BIN="$(find_bin || true)"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
  log "PostgreSQL could not be installed"
  exit 1
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir "$PGROOT" --shell /bin/bash postgres
as_pg() { if [ "$(id -u)" = "0" ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

mkdir -p "$PGROOT"
chown postgres "$PGROOT" 2>/dev/null || true
DATA="$PGROOT/data"
if ! as_pg "'$BIN/pg_ctl' -D '$DATA' status" >/dev/null 2>&1; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initdb in $DATA"
    as_pg "'$BIN/initdb' -D '$DATA' -U postgres --auth=trust --encoding=UTF8 --no-instructions" >&2
  fi
  log "starting on 127.0.0.1:$PGPORT"
  as_pg "'$BIN/pg_ctl' -D '$DATA' -l '$PGROOT/server.log' -w -t 60 -o \"-p $PGPORT -k '$PGROOT' -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off\" start" >&2
fi
as_pg "'$BIN/psql' -h 127.0.0.1 -p $PGPORT -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='bms_test'\"" | grep -q 1 \
  || as_pg "'$BIN/createdb' -h 127.0.0.1 -p $PGPORT -U postgres bms_test" >&2
echo "BMS_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/bms_test"
