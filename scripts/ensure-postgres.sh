#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 and that the shipscope_test database exists.
set -euo pipefail
PGHOST=127.0.0.1
PGPORT=5432
PGUSER=${PGUSER:-postgres}
START="pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"

answers() { pg_isready -q -h "$PGHOST" -p "$PGPORT"; }

if ! command -v pg_isready >/dev/null; then
  echo "PostgreSQL client tools are missing: install postgresql (apt-get install postgresql)." >&2
  exit 1
fi
if ! answers; then
  if [ "$(id -u)" = 0 ] && ls /etc/postgresql >/dev/null 2>&1; then
    echo "PostgreSQL is not answering on $PGHOST:$PGPORT; starting it" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do answers && break; sleep 1; done
  fi
fi
if ! answers; then
  echo "PostgreSQL is not answering on $PGHOST:$PGPORT, and the tests need it." >&2
  echo "Start it with: $START" >&2
  exit 1
fi
exists=$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'shipscope_test'")
if [ "$exists" != 1 ]; then
  psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qc "CREATE DATABASE shipscope_test"
fi
echo "PostgreSQL is up at $PGHOST:$PGPORT with database shipscope_test" >&2
