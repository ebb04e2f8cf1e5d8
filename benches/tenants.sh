#!/usr/bin/env bash
# Tenant benchmarks against the plain PostgreSQL floor, in one run, with the tenants spread by
# tdb's placement over SERVERS shared PostgreSQL servers (SERVERS=1: the catalog's server alone):
#   1. L1 tenant creation latency (p50/p99 over N_CREATE tenants) through POST /tenants, vs a bare
#      CREATE DATABASE ... TEMPLATE loop, each block split evenly over the servers; interleaved in
#      blocks of 20 so both see the same machine.
#   2. Deployment fan-out of ALTER TABLE ... ADD COLUMN to N_FANOUT tenants (tenants/s), vs
#      connect + the same DDL in a transaction on as many databases on each server as tdb put
#      there, PARALLELISM at a time on each server, all servers at once.
# Usage: benches/tenants.sh   (env: N_CREATE=200 N_FANOUT=1000 PARALLELISM=8 SERVERS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
N_CREATE=${N_CREATE:-200}
N_FANOUT=${N_FANOUT:-1000}
PARALLELISM=${PARALLELISM:-8}
SERVERS=${SERVERS:-2}
BLOCK=20
DDL="ALTER TABLE events ADD COLUMN kind text"
case $SERVERS in '' | *[!0-9]* | 0) echo "SERVERS must be a whole number of at least 1" >&2; exit 2 ;; esac

. benches/lib.sh
bench_build
cargo build --release --locked -q -p tdb-testkit --example pg_floor
FLOOR=$PWD/target/release/examples/pg_floor
bench_setup
start_postgres -c max_connections=300
# SERVER_NAMES[i] and SERVER_URLS[i]: each shared server as tdb's catalog names it, and its
# superuser URL. With one server nothing is configured: tdb attaches the catalog's own server.
if [ "$SERVERS" -eq 1 ]; then
    SERVER_NAMES=(postgresql-catalog); SERVER_URLS=("$ADMIN")
else
    SERVER_NAMES=(pg-1); SERVER_URLS=("$ADMIN")
    for n in $(seq 2 "$SERVERS"); do
        start_extra_postgres "$n" -c max_connections=300
        v=EXTRA_ADMIN_$n
        SERVER_NAMES+=("pg-$n"); SERVER_URLS+=("${!v}")
    done
    # `[[servers]]` replaces the catalog's server as a shared server, so it is listed too, with
    # the catalog's very URL (tdb then knows it holds the catalog). tdb reads the file from its
    # data dir, which start_tdb points at $ROOT/tdb; both must be writable by us alone.
    mkdir -m 700 "$ROOT/tdb"
    (
        umask 077
        for i in "${!SERVER_NAMES[@]}"; do
            printf '[[servers]]\nname = "%s"\nurl = "%s"\n\n' "${SERVER_NAMES[i]}" "${SERVER_URLS[i]}"
        done >"$ROOT/tdb/tdb.toml"
    )
    chmod 600 "$ROOT/tdb/tdb.toml"
fi
TDB_DEPLOY_PARALLELISM=$PARALLELISM start_tdb

catalog() { psql -Atq "$ADMIN" -c "$1"; }
active=$(catalog "SELECT count(*) FROM servers WHERE role = 'shared' AND status = 'active'")
if [ "$active" -ne "$SERVERS" ]; then
    echo "tdb has $active active shared servers, not $SERVERS:" >&2
    catalog "SELECT name, host, port, status FROM servers" >&2
    exit 1
fi

signup
curl -sf "$API/workspaces" -H "$H" -d '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" \
    -d '{"query":"CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())"}' >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
wait_deployment "$DEP" >/dev/null

create_tenant() { curl -sf -o /dev/null -w '%{time_total}\n' "$API/tenants" -H "$H" \
    -d "{\"tenant_id\":\"$1\",\"databases\":[{\"blueprint\":\"app\"}]}"; }
# on_server NAME: the physical names of the tenant databases tdb placed on server NAME, oldest first.
on_server() { catalog "SELECT d.physical_db FROM tenant_databases d JOIN servers s ON s.id = d.server_id
                        WHERE s.name = '$1' ORDER BY d.created_at, d.id"; }
per_server() { catalog "SELECT s.name, count(d.id) FROM servers s LEFT JOIN tenant_databases d ON d.server_id = s.id
                         WHERE s.role = 'shared' GROUP BY s.name ORDER BY s.name" | tr '|' ' '; }

# Warm-up tenants until every server holds one: each server's floor copies its own.
create_tenant warmup >/dev/null
w=1
while [ "$(catalog "SELECT count(DISTINCT server_id) FROM tenant_databases")" -lt "$SERVERS" ]; do
    if [ "$w" -ge $((SERVERS * 2)) ]; then
        echo "placement did not spread $w tenants over the $SERVERS servers:" >&2; per_server >&2; exit 1
    fi
    create_tenant "warmup$w" >/dev/null; w=$((w + 1))
done
TEMPLATES=()
for i in "${!SERVER_NAMES[@]}"; do TEMPLATES+=("$(on_server "${SERVER_NAMES[i]}" | head -1)"); done

# 1. Creation latency, interleaved blocks; the floor's block is split evenly over the servers.
: >"$ROOT/tdb_ms"; : >"$ROOT/floor_ms"
done_n=0; block=0
while [ "$done_n" -lt "$N_CREATE" ]; do
    for i in $(seq 1 $BLOCK); do
        t=$(create_tenant "c${block}_$i"); awk -v t="$t" 'BEGIN { printf "%.3f\n", t * 1000 }' >>"$ROOT/tdb_ms"
    done
    for i in "${!SERVER_NAMES[@]}"; do
        n=$((BLOCK / SERVERS + (i < BLOCK % SERVERS ? 1 : 0)))
        if [ "$n" -gt 0 ]; then
            "$FLOOR" create "${SERVER_URLS[i]}" "${TEMPLATES[i]}" "$n" "floor_c${block}_" >>"$ROOT/floor_ms"
        fi
    done
    done_n=$((done_n + BLOCK)); block=$((block + 1))
done
pct() { sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END { i = int((NR * p / 100) + 0.999); if (i < 1) i = 1; printf "%.1f", a[i] }'; }
T50=$(pct "$ROOT/tdb_ms" 50); T99=$(pct "$ROOT/tdb_ms" 99); F50=$(pct "$ROOT/floor_ms" 50); F99=$(pct "$ROOT/floor_ms" 99)

# 2. Fan-out: N_FANOUT tenants (those above count too); on each server, as many floor databases
# as tdb placed tenants there.
have=$(catalog "SELECT count(*) FROM tenant_databases")
i=0
while [ "$have" -lt "$N_FANOUT" ]; do create_tenant "f$i" >/dev/null; have=$((have + 1)); i=$((i + 1)); done
echo "tenant databases per server (placement):"
per_server | sed 's/^/  /'
COUNTS=(); FLOOR_N=0
for i in "${!SERVER_NAMES[@]}"; do
    c=$(on_server "${SERVER_NAMES[i]}" | wc -l)
    COUNTS+=("$c"); FLOOR_N=$((FLOOR_N + c))
    if [ "$c" -gt 0 ]; then
        "$FLOOR" create "${SERVER_URLS[i]}" "${TEMPLATES[i]}" "$c" "floor_f_" >/dev/null
    fi
    seq 0 $((c - 1)) | sed 's/^/floor_f_/' >"$ROOT/fanout_names_$i"
done
curl -sf "$API/workspaces/app/queries" -H "$H" -d "{\"query\":\"$DDL\"}" >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
D=$(wait_deployment "$DEP")
TOTAL=$(jq -r .tenants_total <<<"$D"); FAILED=$(jq -r .tenants_failed <<<"$D")
SECS=$(catalog "SELECT extract(epoch FROM finished_at - created_at) FROM deployments WHERE id = '$DEP'")
# The floor: one pg_floor per server, all at once; the time is the wall time around them all.
pids=()
started=$(date +%s.%N)
for i in "${!SERVER_NAMES[@]}"; do
    "$FLOOR" fanout "${SERVER_URLS[i]}" "$PARALLELISM" "$DDL" <"$ROOT/fanout_names_$i" >"$ROOT/fanout_out_$i" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
ended=$(date +%s.%N)
FSECS=$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.3f", b - a }')
for i in "${!SERVER_NAMES[@]}"; do
    read -r s n <"$ROOT/fanout_out_$i"
    echo "floor on ${SERVER_NAMES[i]}: $n databases in $s s (of ${FSECS} s for all servers)"
done
echo "tdb deployment: $TOTAL tenants in $SECS s"
# Per server, from the results: when its first migration began and its last ended (seconds after
# the deployment's created_at), and the migrations' summed time; overlapping spans mean the
# servers worked side by side.
catalog "SELECT s.name, count(*),
                round(extract(epoch FROM min(r.updated_at - r.duration_ms * interval '1 ms') - d.created_at)::numeric, 3),
                round(extract(epoch FROM max(r.updated_at) - d.created_at)::numeric, 3),
                round(sum(r.duration_ms) / 1000.0, 3)
           FROM deployment_results r JOIN deployments d ON d.id = r.deployment_id
           JOIN tenant_databases t ON t.id = r.tenant_database_id JOIN servers s ON s.id = t.server_id
          WHERE r.deployment_id = '$DEP' GROUP BY s.name, d.created_at ORDER BY s.name" |
    awk -F'|' '{ span = $4 - $3; printf "tdb on %s: %s tenants, from +%s s to +%s s, %s s of migrations summed (%.1f at once on average)\n", $1, $2, $3, $4, $5, (span > 0 ? $5 / span : 0) }'
TDB_RATE=$(awk -v n="$TOTAL" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
FLOOR_RATE=$(awk -v n="$FLOOR_N" -v s="$FSECS" 'BEGIN { printf "%.0f", n / s }')

echo
echo "| measure | tdb | PostgreSQL floor | tdb / floor |"
echo "|---|---|---|---|"
ON=$([ "$SERVERS" -eq 1 ] && echo "1 server" || echo "$SERVERS servers")
awk -v a="$T50" -v b="$F50" -v n="$N_CREATE" -v s="$ON" 'BEGIN { printf "| L1 tenant creation p50 (ms, n=%s, %s) | %s | %s | %.1fx |\n", n, s, a, b, a / b }'
awk -v a="$T99" -v b="$F99" -v n="$N_CREATE" -v s="$ON" 'BEGIN { printf "| L1 tenant creation p99 (ms, n=%s, %s) | %s | %s | %.1fx |\n", n, s, a, b, a / b }'
awk -v a="$TDB_RATE" -v b="$FLOOR_RATE" -v n="$TOTAL" -v p="$PARALLELISM" -v f="$FAILED" -v s="$ON" -v c="${COUNTS[*]}" \
    'BEGIN { gsub(" ", "+", c); printf "| ADD COLUMN fan-out (tenants/s, %s tenants on %s (%s), parallelism %s per server, %s failed) | %s | %s | %.2f |\n", n, s, c, p, f, a, b, a / b }'
if [ "$TOTAL" -ne "$FLOOR_N" ]; then
    echo "warning: the deployment covered $TOTAL tenants, the floor $FLOOR_N databases" >&2
fi
