#!/usr/bin/env bash
# Tenant benchmarks against the plain PostgreSQL floor, in one run on one server:
#   1. L1 tenant creation latency (p50/p99 over N_CREATE tenants) through POST /tenants, vs a bare
#      CREATE DATABASE ... TEMPLATE loop; interleaved in blocks of 20 so both see the same machine.
#   2. Deployment fan-out of ALTER TABLE ... ADD COLUMN to N_FANOUT tenants (tenants/s), vs
#      connect + the same DDL in a transaction on as many databases with the same parallelism.
# Usage: benches/tenants.sh   (env: N_CREATE=200 N_FANOUT=1000 PARALLELISM=8)
set -euo pipefail
cd "$(dirname "$0")/.."
N_CREATE=${N_CREATE:-200}
N_FANOUT=${N_FANOUT:-1000}
PARALLELISM=${PARALLELISM:-8}
BLOCK=20

. benches/lib.sh
bench_build
cargo build --release --locked -q -p tdb-testkit --example pg_floor
FLOOR=$PWD/target/release/examples/pg_floor
bench_setup
start_postgres -c max_connections=300
TDB_DEPLOY_PARALLELISM=$PARALLELISM start_tdb
signup
curl -sf "$API/workspaces" -H "$H" -d '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" \
    -d '{"query":"CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())"}' >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
wait_deployment "$DEP" >/dev/null

create_tenant() { curl -sf -o /dev/null -w '%{time_total}\n' "$API/tenants" -H "$H" \
    -d "{\"tenant_id\":\"$1\",\"databases\":[{\"blueprint\":\"app\"}]}"; }
physical_of() { psql -Atq "postgresql://bench:$PW@127.0.0.1:$PG_PORT/postgres" -c \
    "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = '$1'"; }

# 1. Creation latency, interleaved blocks.
: >"$ROOT/tdb_ms"; : >"$ROOT/floor_ms"
create_tenant warmup >/dev/null
TEMPLATE=$(physical_of warmup)
done_n=0; block=0
while [ "$done_n" -lt "$N_CREATE" ]; do
    for i in $(seq 1 $BLOCK); do
        t=$(create_tenant "c${block}_$i"); awk -v t="$t" 'BEGIN { printf "%.3f\n", t * 1000 }' >>"$ROOT/tdb_ms"
    done
    "$FLOOR" create "$ADMIN" "$TEMPLATE" $BLOCK "floor_c${block}_" >>"$ROOT/floor_ms"
    done_n=$((done_n + BLOCK)); block=$((block + 1))
done
pct() { sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END { i = int((NR * p / 100) + 0.999); if (i < 1) i = 1; printf "%.1f", a[i] }'; }
T50=$(pct "$ROOT/tdb_ms" 50); T99=$(pct "$ROOT/tdb_ms" 99); F50=$(pct "$ROOT/floor_ms" 50); F99=$(pct "$ROOT/floor_ms" 99)

# 2. Fan-out: N_FANOUT tenants (those above count too), the same count of floor databases.
have=$((N_CREATE + 1))
i=0
while [ "$have" -lt "$N_FANOUT" ]; do create_tenant "f$i" >/dev/null; have=$((have + 1)); i=$((i + 1)); done
"$FLOOR" create "$ADMIN" "$TEMPLATE" "$N_FANOUT" "floor_f_" >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" -d '{"query":"ALTER TABLE events ADD COLUMN kind text"}' >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
D=$(wait_deployment "$DEP")
TOTAL=$(jq -r .tenants_total <<<"$D"); FAILED=$(jq -r .tenants_failed <<<"$D")
SECS=$(psql -Atq "$ADMIN" -c "SELECT extract(epoch FROM finished_at - created_at) FROM deployments WHERE id = '$DEP'")
FLOOR_OUT=$(seq 0 $((N_FANOUT - 1)) | sed 's/^/floor_f_/' | "$FLOOR" fanout "$ADMIN" "$PARALLELISM" "ALTER TABLE events ADD COLUMN kind text")
FSECS=${FLOOR_OUT% *}
TDB_RATE=$(awk -v n="$TOTAL" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')
FLOOR_RATE=$(awk -v n="$N_FANOUT" -v s="$FSECS" 'BEGIN { printf "%.0f", n / s }')

echo
echo "| measure | tdb | PostgreSQL floor | tdb / floor |"
echo "|---|---|---|---|"
awk -v a="$T50" -v b="$F50" -v n="$N_CREATE" 'BEGIN { printf "| L1 tenant creation p50 (ms, n=%s) | %s | %s | %.1fx |\n", n, a, b, a / b }'
awk -v a="$T99" -v b="$F99" -v n="$N_CREATE" 'BEGIN { printf "| L1 tenant creation p99 (ms, n=%s) | %s | %s | %.1fx |\n", n, a, b, a / b }'
awk -v a="$TDB_RATE" -v b="$FLOOR_RATE" -v n="$TOTAL" -v p="$PARALLELISM" -v f="$FAILED" \
    'BEGIN { printf "| ADD COLUMN fan-out (tenants/s, %s tenants, parallelism %s, %s failed) | %s | %s | %.2f |\n", n, p, f, a, b, a / b }'
