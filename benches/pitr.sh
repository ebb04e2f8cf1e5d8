#!/usr/bin/env bash
# Point-in-time recovery, measured. tdb serve runs on its embedded default (a managed shared
# server, archiving its WAL with pgBackRest). Through the REST API: a blueprint with pgbench's
# tables, NEIGHBOURS tenants on the shared server, each filled at scale 1 and kept under a light
# write load (pgbench TPC-B at NEIGHBOUR_TPS through the proxy), one of them also probed by a
# read-only pgbench at full speed; tenant `acme` (L1) filled at SCALE directly on its database,
# and written to at ACME_TPS through the proxy. After a base backup of the shared server, the
# load runs BACK+HISTORY seconds; then acme is recovered to the moment BACK seconds ago
# (POST /tenants/acme/recover) while everything keeps running. The same for `dedi` (L2: a server
# of its own, filled and loaded the same way).
# Reported, per level: the recovery's total time (created_at to finished_at) and its phases from
# its history (restore, replay, dump and load, the switch's hold), the floor `pg_dump -Fc |
# pg_restore` of the same database into a fresh one as the server's superuser, the probe
# neighbour's throughput before and during the recovery, and the longest latency acme's writer
# saw around the switch. Checks: the recovered tenant holds the pgbench_history rows stamped up
# to the moment (all of them, but for one whose transaction straddled it) and none stamped
# between the moment and the request, and a neighbour lost no rows.
#
# Usage: benches/pitr.sh
#   env: SCALE=10 NEIGHBOURS=20 NEIGHBOUR_TPS=2 ACME_TPS=20 BACK=120 HISTORY=20 LEVELS="1 2"
#        RESULTS=/tmp/tdb-pitr-<time>.md TDB_BIN=path (else target/release/tdb is built)
# e.g.   TDB_BIN=target/debug/tdb SCALE=1 NEIGHBOURS=3 BACK=20 benches/pitr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-10}
NEIGHBOURS=${NEIGHBOURS:-20}
NEIGHBOUR_TPS=${NEIGHBOUR_TPS:-2}
ACME_TPS=${ACME_TPS:-20}
BACK=${BACK:-120}
HISTORY=${HISTORY:-20}
LEVELS=${LEVELS:-"1 2"}
RESULTS=${RESULTS:-/tmp/tdb-pitr-$(date +%Y%m%d-%H%M%S).md}
TIMEOUT=${TIMEOUT:-1800}

die() { echo "pitr.sh: $*" >&2; exit 1; }
for v in SCALE NEIGHBOURS NEIGHBOUR_TPS ACME_TPS BACK HISTORY; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done

. scripts/lib/packages.sh
ensure_packages postgresql postgresql-client pgbackrest curl jq python3 python3-cryptography
. benches/lib.sh
bench_build
bench_setup
PGBENCH=$PGBIN/pgbench
PSQL=$PGBIN/psql
step() { echo "== $(date +%T) $*"; }
serve_log_tail() { echo "--- tdb serve log (tail)"; tail -30 "$ROOT/serve.log" | sed 's/\x1b\[[0-9;]*m//g'; }

# --- tdb on its managed server -------------------------------------------------------------------
step "starting tdb serve on its embedded default (managed shared server, WAL archived)"
if [ "$(id -u)" -eq 0 ]; then mkdir -m 711 "$ROOT/tdb"; else mkdir -m 700 "$ROOT/tdb"; fi
MASTER_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
printf 'operators = ["bench@example.com"]\ndefault_tier = "paid"\n' >"$ROOT/tdb/tdb.toml"
chmod 600 "$ROOT/tdb/tdb.toml"
API_PORT=$(free_port)
PROXY_LISTEN=127.0.0.1:$(free_port)
TDB_MASTER_KEY=$MASTER_KEY in_own_session "$TDB" serve --data-dir "$ROOT/tdb" \
    --api-listen "127.0.0.1:$API_PORT" --pg-listen "$PROXY_LISTEN" \
    --mysql-listen "127.0.0.1:$(free_port)" --redis-listen "127.0.0.1:$(free_port)" \
    >"$ROOT/serve.log" 2>&1 &
TDB_PID=$!
API=http://127.0.0.1:$API_PORT
for _ in $(seq 1 600); do curl -sf "$API/health" >/dev/null && break; sleep 0.1; done
curl -sf "$API/health" >/dev/null || { serve_log_tail >&2; die "tdb serve did not start"; }
signup
[ -n "$KEY" ] && [ "$KEY" != null ] || die "sign-up failed"

api() {
    local method=$1 path=$2 body=${3:-} out
    out=$(curl -s -X "$method" "$API$path" -H "$H" ${body:+-d "$body"}) || die "$method $path: no answer"
    [ "$(jq -r .success <<<"$out" 2>/dev/null)" = true ] || die "$method $path failed: $out"
    echo "$out"
}

# admin_url SERVER_DIR DATABASE: the superuser URL of a managed server, its password unsealed
# from its state.json with the master key (AES-256-GCM: version byte, 12-byte nonce, ciphertext).
admin_url() {
    python3 - "$1" "$2" "$MASTER_KEY" <<'EOF'
import json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
server, database, key = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
state = json.load(open(f"{server}/state.json"))
sealed = bytes.fromhex(state["admin_password_sealed"])
password = AESGCM(key).decrypt(sealed[1:13], sealed[13:], b"managed-postgresql-admin").decode()
import os
socket = f"{server}/socket"
if not os.path.isdir(socket):
    sys.exit(f"{socket} is missing (a long path puts it under the temp dir)")
print(f"postgresql://{state['admin_user']}:{password}@localhost:{state['port']}/{database}?host={socket}")
EOF
}
SHARED_DIR=$ROOT/tdb/servers/postgresql-shared
CATALOG=$(admin_url "$SHARED_DIR" tdb_catalog)

step "workspace app: pgbench's tables, deployed"
api POST /workspaces '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
DDL="create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22));
create table pgbench_tellers(tid int not null primary key,bid int,tbalance int,filler char(84)) with (fillfactor=100);
create table pgbench_accounts(aid int not null primary key,bid int,abalance int,filler char(84)) with (fillfactor=100);
create table pgbench_branches(bid int not null primary key,bbalance int,filler char(88)) with (fillfactor=100)"
api POST /workspaces/app/queries "$(jq -n --arg q "$DDL" '{query: $q}')" >/dev/null
D=$(wait_deployment "$(api POST /deployments '{"blueprint_name":"app"}' | jq -r .id)")
[ "$(jq -r .status <<<"$D")" = completed ] || die "deployment failed: $D"
# Transaction pooling: a client's next transaction goes wherever the route points after the
# switch, so the clients keep their connections through it (as in move.sh).
api PATCH /workspaces/app/settings \
    '{"max_connections": 20, "pool_mode": "transaction", "max_client_connections": 40}' >/dev/null

# tenant NAME LEVEL: creates it; sets CONN_<NAME> (a write login through the proxy) and
# DB_<NAME> (its superuser URL on its server).
tenant() {
    local name=$1 level=$2 t server phys dir
    api POST /tenants "{\"tenant_id\":\"$name\",\"databases\":[{\"blueprint\":\"app\",\"isolation_level\":$level}]}" >/dev/null
    for _ in $(seq 1 1200); do
        [ "$(curl -sf "$API/tenants/$name" -H "$H" | jq -r .status)" = ready ] && break
        sleep 0.25
    done
    t=$(api POST "/tenants/$name/credentials" '{"role":"write"}')
    printf -v "CONN_$name" '%s' "$(jq -r .connection.connection_string <<<"$t" | sed 's/sslmode=require/sslmode=disable/')"
    read -r server phys < <("$PSQL" -XAtq -F' ' "$CATALOG" -c "SELECT s.name, d.physical_db
        FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id JOIN servers s ON s.id = d.server_id
        WHERE t.name = '$name'")
    if [ "$level" = 2 ]; then dir=$ROOT/tdb/dedicated/$server; else dir=$SHARED_DIR; fi
    printf -v "DB_$name" '%s' "$(admin_url "$dir" "$phys")"
    printf -v "SERVER_$name" '%s' "$server"
}

# fill URL SCALE: pgbench's data at SCALE, directly.
fill() { "$PGBENCH" -i -I gv -q -s "$2" "$1" >/dev/null 2>&1 || die "pgbench -i failed"; }

# base_backup SERVER: asks for a full base backup and waits until it is in the archive (the
# server's first one, which tdb takes when it starts archiving, is awaited first).
base_backup() {
    local before="" after
    for _ in $(seq 1 2400); do
        before=$(curl -sf "$API/servers" -H "$H" | jq -r --arg s "$1" '.servers[] | select(.name == $s) | .archive.last_backup_at // ""')
        [ -n "$before" ] && break
        sleep 0.25
    done
    api POST "/servers/$1/backup" >/dev/null
    for _ in $(seq 1 2400); do
        after=$(curl -sf "$API/servers" -H "$H" | jq -r --arg s "$1" '.servers[] | select(.name == $s) | .archive.last_backup_at // ""')
        [ -n "$after" ] && [ "$after" != "$before" ] && return 0
        sleep 0.25
    done
    die "no base backup of $1"
}

# load NAME TPS FILE: pgbench TPC-B at TPS through the proxy (latencies logged), in the background.
load() {
    local url=$1 tps=$2 prefix=$3
    (cd "$ROOT" && exec "$PGBENCH" -n -M simple -c 1 -R "$tps" -T 86400 -l --log-prefix="lat_$prefix" \
        "$url") >"$ROOT/out_$prefix" 2>&1 &
    LOADS+=("$!")
    bench_on_exit "kill $!"
}
LOADS=()

step "$NEIGHBOURS neighbours at scale 1, each written at $NEIGHBOUR_TPS tps through the proxy"
for i in $(seq 1 "$NEIGHBOURS"); do
    tenant "n$i" 1
    v=DB_n$i; fill "${!v}" 1
done
for i in $(seq 1 "$NEIGHBOURS"); do v=CONN_n$i; load "${!v}" "$NEIGHBOUR_TPS" "n$i"; done

summary=()
for LEVEL in $LEVELS; do
    T=acme_l$LEVEL
    step "L$LEVEL: tenant $T at scale $SCALE"
    tenant "$T" "$LEVEL"
    URL_V=DB_$T; CONN_V=CONN_$T; SERVER_V=SERVER_$T
    fill "${!URL_V}" "$SCALE"
    SIZE_MB=$("$PSQL" -XAtq "${!URL_V}" -c "SELECT round(pg_database_size(current_database()) / 1048576.0)")

    step "L$LEVEL: the floor, pg_dump -Fc | pg_restore of $T ($SIZE_MB MB)"
    FLOOR_URL=$(sed "s#/[^/?]*?#/floor_l$LEVEL?#" <<<"${!URL_V}")
    "$PSQL" -XAtq "${!URL_V}" -c "CREATE DATABASE floor_l$LEVEL" >/dev/null
    t0=$(date +%s.%N)
    "$PGBIN/pg_dump" -Fc --no-owner --no-privileges "${!URL_V}" \
        | "$PGBIN/pg_restore" --no-owner --no-privileges -d "$FLOOR_URL" || die "the floor failed"
    FLOOR=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    "$PSQL" -XAtq "${!URL_V}" -c "DROP DATABASE floor_l$LEVEL" >/dev/null

    base_backup "${!SERVER_V}"
    load "${!CONN_V}" "$ACME_TPS" "$T"
    step "L$LEVEL: $((BACK + HISTORY)) s of load after the base backup"
    sleep "$((BACK + HISTORY))"
    MOMENT=$(date -u -d "-$BACK seconds" +%Y-%m-%dT%H:%M:%S.%6NZ)
    EXPECTED=$("$PSQL" -XAtq "${!URL_V}" -c "SELECT count(*) FROM pgbench_history WHERE mtime <= '$MOMENT'::timestamptz AT TIME ZONE current_setting('TimeZone')")
    NEIGHBOUR_ROWS=$("$PSQL" -XAtq "$DB_n1" -c "SELECT count(*) FROM pgbench_history")
    for _ in $(seq 1 1200); do
        to=$(curl -sf "$API/tenants/$T" -H "$H" | jq -r '.pitr.to // ""')
        [ -n "$to" ] && awk -v a="$(date -d "$to" +%s.%N)" -v b="$(date -d "$MOMENT" +%s.%N)" \
            'BEGIN { exit !(a > b) }' && break
        sleep 0.25
    done

    step "L$LEVEL: the probe (pgbench -S on n2) before"
    PROBE_URL=$CONN_n2
    BEFORE=$("$PGBENCH" -n -S -M simple -c 2 -T 10 "$PROBE_URL" 2>/dev/null | awk '/^tps/ { printf "%.0f", $3 }')
    (cd "$ROOT" && exec "$PGBENCH" -n -S -M simple -c 2 -T 86400 "$PROBE_URL") >"$ROOT/probe_l$LEVEL.out" 2>&1 &
    PROBE=$!

    step "L$LEVEL: recovering $T to $MOMENT"
    SWITCH_FROM=$(date +%s)
    api POST "/tenants/$T/recover" "{\"timestamp\":\"$MOMENT\"}" >/dev/null
    started=$(date +%s)
    while true; do
        R=$(curl -sf "$API/tenants/$T" -H "$H")
        step_now=$(jq -r '.last_recovery.step' <<<"$R")
        [ "$step_now" = completed ] && [ "$(jq -r .status <<<"$R")" = ready ] && break
        [ "$step_now" = failed ] && { serve_log_tail >&2; die "the recovery failed: $(jq -c .last_recovery <<<"$R")"; }
        [ $(($(date +%s) - started)) -gt "$TIMEOUT" ] && die "the recovery did not end: $R"
        sleep 0.2
    done
    SWITCH_TO=$(date +%s)
    kill -ALRM "$PROBE"; wait "$PROBE" || true
    DURING=$(awk '/^tps/ { printf "%.0f", $3 }' "$ROOT/probe_l$LEVEL.out")
    REC=$(jq -c .last_recovery <<<"$R")
    TOTAL=$(awk -v a="$(date -d "$(jq -r .created_at <<<"$REC")" +%s.%N)" -v b="$(date -d "$(jq -r .finished_at <<<"$REC")" +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    HISTORY_LINES=$(jq -r '.history[]' <<<"$REC")
    GOT=$("$PSQL" -XAtq "${!CONN_V}" -c "SELECT count(*) FROM pgbench_history WHERE mtime <= '$MOMENT'::timestamptz AT TIME ZONE current_setting('TimeZone')")
    LATER=$("$PSQL" -XAtq "${!CONN_V}" -c "SELECT count(*) FROM pgbench_history WHERE mtime > '$MOMENT'::timestamptz AT TIME ZONE current_setting('TimeZone') AND mtime < to_timestamp($SWITCH_FROM) AT TIME ZONE current_setting('TimeZone')")
    # The longest latency acme's writer saw from the request to the end (its log: epoch in
    # column 5, latency in µs in column 3).
    STALL=$(cat "$ROOT/lat_$T".* 2>/dev/null | awk -v a="$SWITCH_FROM" -v b="$SWITCH_TO" \
        '$5 >= a && $5 <= b + 1 && $3 > m { m = $3 } END { printf "%.0f", m / 1000 }')
    NEIGHBOUR_NOW=$("$PSQL" -XAtq "$DB_n1" -c "SELECT count(*) FROM pgbench_history")
    echo "$HISTORY_LINES" | sed 's/^/   /'
    echo "   total ${TOTAL}s, floor ${FLOOR}s; rows up to the moment: expected $EXPECTED, got $GOT; rows after the moment and before the request: $LATER"
    echo "   probe: $BEFORE tps before, $DURING tps during; acme's longest latency ${STALL} ms; n1 history $NEIGHBOUR_ROWS -> $NEIGHBOUR_NOW"
    # pgbench stamps a row with its transaction's start: one that started before the moment and
    # committed after it is counted by EXPECTED and rightly not recovered.
    [ "$GOT" -le "$EXPECTED" ] && [ "$GOT" -ge $((EXPECTED - 1)) ] \
        || die "L$LEVEL: the recovered tenant holds $GOT rows up to the moment, not $EXPECTED"
    [ "$LATER" = 0 ] || die "L$LEVEL: the recovered tenant holds $LATER rows committed after the moment"
    [ "$NEIGHBOUR_NOW" -ge "$NEIGHBOUR_ROWS" ] || die "a neighbour lost rows"
    summary+=("| L$LEVEL | $SIZE_MB MB | ${TOTAL} s | $(tr '\n' ' ' <<<"$HISTORY_LINES" | sed 's/|/\\|/g') | ${FLOOR} s | $BEFORE / $DURING | ${STALL} ms | $EXPECTED = $GOT |")
done

{
    echo "# benches/pitr.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
    echo
    echo "SCALE=$SCALE NEIGHBOURS=$NEIGHBOURS NEIGHBOUR_TPS=$NEIGHBOUR_TPS ACME_TPS=$ACME_TPS BACK=$BACK"
    echo
    echo "| level | size | total | phases (history) | pg_dump \\| pg_restore | probe tps before / during | longest latency of the tenant's writer | rows up to the moment (expected = recovered) |"
    echo "|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${summary[@]}"
} | tee "$RESULTS"
echo "results in $RESULTS"
