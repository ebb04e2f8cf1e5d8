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

cargo build --release --locked -q -p tdb
cargo build --release --locked -q -p tdb-testkit --example pg_floor
TDB=$PWD/target/release/tdb
FLOOR=$PWD/target/release/examples/pg_floor
PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

ROOT=$(mktemp -d /tmp/tdb-bench.XXXXXX)
chmod 755 "$ROOT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1; }
PG_PORT=$(free_port); API_PORT=$(free_port)
PW=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$ROOT/pg"; [ "$(id -u)" -eq 0 ] && chown postgres "$ROOT/pg"
echo "$PW" > "$ROOT/pw"; [ "$(id -u)" -eq 0 ] && chown postgres "$ROOT/pw"
cleanup() {
    [ -n "${TDB_PID:-}" ] && kill "$TDB_PID" 2>/dev/null && wait "$TDB_PID" 2>/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$ROOT"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$ROOT/pg/data" -U bench -A scram-sha-256 --pwfile="$ROOT/pw" -E UTF8 --no-locale >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -l "$ROOT/pg/log" -w -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300" start >/dev/null
ADMIN="postgresql://bench:$PW@127.0.0.1:$PG_PORT/postgres"

TDB_DEPLOY_PARALLELISM=$PARALLELISM "$TDB" serve --data-dir "$ROOT/tdb" --catalog-url "$ADMIN" \
    --api-listen "127.0.0.1:$API_PORT" >"$ROOT/serve.log" 2>&1 &
TDB_PID=$!
API=http://127.0.0.1:$API_PORT
for _ in $(seq 1 200); do curl -sf "$API/health" >/dev/null && break; sleep 0.1; done
KEY=$(curl -sf "$API/signup" -d '{"email":"bench@example.com","password":"bench-password"}' | jq -r .api_key)
H="Authorization: Bearer $KEY"
curl -sf "$API/workspaces" -H "$H" -d '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" \
    -d '{"query":"CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())"}' >/dev/null
wait_deployment() {
    local id=$1
    while true; do
        local d; d=$(curl -sf "$API/deployments/$id" -H "$H")
        case $(jq -r .status <<<"$d") in completed|completed_with_errors|failed) echo "$d"; return;; esac
        sleep 0.05
    done
}
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
