#!/usr/bin/env bash
# Backup and restore throughput of a large tenant, tdb against the tools it is built on, in one
# run on one server:
#   dump:    POST /tenants/{id}/backup (pg_dump as the owner role, gzip, the object store, size
#            and SHA-256) vs `pg_dump | gzip > file` as the superuser;
#   restore: the restore step of POST /tenants/{id}/rollback (the store, SHA-256, gunzip, psql
#            as the owner role in one transaction, then the switch) vs `gunzip | psql
#            --single-transaction` into a fresh database.
# Throughput is the tenant's database size (pg_database_size) over the time taken.
# Usage: benches/backup.sh   (env: SIZE_MB=512 ROUNDS=2 RESULTS=path TDB_BIN=path)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-512}
ROUNDS=${ROUNDS:-2}
RESULTS=${RESULTS:-/tmp/tdb-backup-$(date +%Y%m%d-%H%M%S).md}

. benches/lib.sh
bench_build
bench_setup
start_postgres -c shared_buffers=256MB -c max_wal_size=4GB
start_tdb
signup
curl -sf "$API/workspaces" -H "$H" -d '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" -d '{"query":"CREATE TABLE events (id bigserial PRIMARY KEY, account integer NOT NULL, kind text NOT NULL, body text, payload jsonb, at timestamptz NOT NULL DEFAULT now()); CREATE INDEX events_account_idx ON events (account, at)"}' >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
wait_deployment "$DEP" >/dev/null
curl -sf "$API/tenants" -H "$H" -d '{"tenant_id":"big","databases":[{"blueprint":"app"}]}' >/dev/null

catalog() { psql -Atq "$ADMIN" -c "$1"; }
physical() { catalog "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'big'"; }
db_url() { echo "postgresql://bench:$PW@127.0.0.1:$PG_PORT/$1"; }

# Fill to SIZE_MB with rows that compress about as well as real application data.
DB=$(physical)
echo "filling tenant 'big' ($DB) to ${SIZE_MB} MB"
while true; do
    size=$(psql -Atq "$(db_url "$DB")" -c "SELECT pg_database_size(current_database()) / 1048576")
    [ "$size" -ge "$SIZE_MB" ] && break
    psql -Atq "$(db_url "$DB")" -c "INSERT INTO events (account, kind, body, payload, at)
        SELECT (random() * 10000)::int, (ARRAY['signup','order','refund','login'])[1 + (g % 4)],
               md5(random()::text) || ' ' || md5(g::text) || ' customer note ' || g,
               jsonb_build_object('amount', round((random() * 1000)::numeric, 2), 'sku', 'SKU-' || (g % 5000), 'tags', jsonb_build_array('a', g % 17)),
               now() - (g || ' seconds')::interval
          FROM generate_series(1, 500000) g" >/dev/null
done
psql -Atq "$(db_url "$DB")" -c "VACUUM ANALYZE" >/dev/null
MB=$(psql -Atq "$(db_url "$DB")" -c "SELECT round(pg_database_size(current_database()) / 1048576.0, 1)")
ROWS=$(psql -Atq "$(db_url "$DB")" -c "SELECT count(*) FROM events")
echo "tenant database: $MB MB, $ROWS rows"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
: >"$ROOT/runs"

tdb_dump() {
    local path id t
    path=$(curl -sf -X POST "$API/tenants/big/backup" -H "$H" | jq -r '.paths[0]')
    while [ "$(catalog "SELECT status FROM backups WHERE storage_path = '$path'")" = pending ]; do sleep 0.2; done
    [ "$(catalog "SELECT status FROM backups WHERE storage_path = '$path'")" = completed ] \
        || { echo "tdb backup failed: $(catalog "SELECT error FROM backups WHERE storage_path = '$path'")" >&2; exit 1; }
    t=$(catalog "SELECT extract(epoch FROM finished_at - created_at) FROM backups WHERE storage_path = '$path'")
    echo "$path $t"
}

floor_dump() {
    local t0
    # A rollback gives the tenant a new physical database; dump the current one.
    DB=$(physical)
    t0=$(now)
    PGPASSWORD=$PW "$PGBIN/pg_dump" -h 127.0.0.1 -p "$PG_PORT" -U bench --no-owner --no-privileges "$DB" \
        | gzip -6 >"$ROOT/floor.sql.gz"
    secs "$t0" "$(now)"
    [ "$(stat -c %s "$ROOT/floor.sql.gz")" -gt 1048576 ] || { echo "pg_dump of $DB failed" >&2; exit 1; }
}

# The restore part of a rollback: from the end of its safety backup to the end of the rollback.
tdb_restore() {
    local path=$1 id step t
    id=$(curl -sf "$API/tenants/big/rollback" -H "$H" -d "{\"storage_path\":\"$path\"}" | jq -r .rollback_id)
    while true; do
        step=$(catalog "SELECT step FROM rollbacks WHERE id = '$id'")
        case $step in completed) break ;; failed) echo "rollback failed: $(catalog "SELECT error FROM rollbacks WHERE id = '$id'")" >&2; exit 1 ;; esac
        sleep 0.2
    done
    t=$(catalog "SELECT extract(epoch FROM r.finished_at - s.finished_at) FROM rollbacks r JOIN backups s ON s.id = r.safety_backup_id WHERE r.id = '$id'")
    echo "$t"
}

floor_restore() {
    local target=floor_restore_$1 t0
    psql -Atq "$ADMIN" -c "DROP DATABASE IF EXISTS $target" -c "CREATE DATABASE $target" >/dev/null
    t0=$(now)
    gunzip -c "$ROOT/floor.sql.gz" | PGPASSWORD=$PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 --single-transaction \
        -h 127.0.0.1 -p "$PG_PORT" -U bench -d "$target" -f - >/dev/null
    secs "$t0" "$(now)"
    psql -Atq "$ADMIN" -c "DROP DATABASE $target" >/dev/null
}

for round in $(seq 1 "$ROUNDS"); do
    # Alternate which side goes first, so neither always meets a cold or a warm cache.
    if [ $((round % 2)) -eq 1 ]; then
        read -r path td <<<"$(tdb_dump)"; fd=$(floor_dump)
    else
        fd=$(floor_dump); read -r path td <<<"$(tdb_dump)"
    fi
    if [ $((round % 2)) -eq 1 ]; then
        tr=$(tdb_restore "$path"); fr=$(floor_restore "$round")
    else
        fr=$(floor_restore "$round"); tr=$(tdb_restore "$path")
    fi
    tsize=$(catalog "SELECT size_bytes FROM backups WHERE storage_path = '$path'")
    fsize=$(stat -c %s "$ROOT/floor.sql.gz")
    echo "round $round: dump tdb ${td}s floor ${fd}s; restore tdb ${tr}s floor ${fr}s; gz tdb $tsize floor $fsize" | tee -a "$ROOT/runs"
    echo "$td $fd $tr $fr $tsize $fsize" >>"$ROOT/figures"
done
ROWS_AFTER=$(psql -Atq "$(db_url "$(physical)")" -c "SELECT count(*) FROM events")
[ "$ROWS_AFTER" = "$ROWS" ] || { echo "row count changed: $ROWS -> $ROWS_AFTER" >&2; exit 1; }

{
    echo "Tenant database: $MB MB ($ROWS rows), $ROUNDS rounds, PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}')"
    echo
    echo "| measure | tdb | pg_dump / psql directly | tdb / direct |"
    echo "|---|---|---|---|"
    awk -v mb="$MB" '{ td += $1; fd += $2; tr += $3; fr += $4; ts += $5; fs += $6; n++ }
        END {
            printf "| dump: MB/s (mean s) | %.1f (%.1f s) | %.1f (%.1f s) | %.2f |\n", mb / (td / n), td / n, mb / (fd / n), fd / n, (fd / n) / (td / n)
            printf "| restore: MB/s (mean s) | %.1f (%.1f s) | %.1f (%.1f s) | %.2f |\n", mb / (tr / n), tr / n, mb / (fr / n), fr / n, (fr / n) / (tr / n)
            printf "| compressed size (MB) | %.1f | %.1f | |\n", ts / n / 1048576, fs / n / 1048576
        }' "$ROOT/figures"
    echo
    cat "$ROOT/runs"
} | tee "$RESULTS"
echo "written to $RESULTS"
