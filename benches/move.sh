#!/usr/bin/env bash
# Moving a tenant database between servers while clients write, in one run on one server. For
# each scale in SCALES, a tenant `acme_s<scale>` is made through the REST API from a blueprint
# holding pgbench's tables (each with a primary key, so logical replication can carry them) and
# a table `seq_writes`, filled at that scale directly on its physical database. Then, through
# tdb's proxy in transaction pooling:
#   pgbench   TPC-B (-M simple, CLIENTS clients, -P 1, every transaction's latency logged)
#   writer    one connection inserting n = 1, 2, 3 ... into seq_writes every WRITE_MS ms,
#             reconnecting after an error (the next n, never the same one again), recording
#             each n whose INSERT was acknowledged and how long it took
# and while both run, PATCH /tenants/{id}/isolation moves the database L1 -> L2 (a dedicated
# PostgreSQL that tdb makes under its data dir), waits SETTLE seconds, and moves it back
# L2 -> L1. pgbench is then ended as -T would end it (SIGALRM) and the writer stopped.
# Checks, through the proxy:
#   writes      every acknowledged n is in seq_writes (lost), and no n is there twice
#               (duplicated); rows never acknowledged are counted but are not errors
#   pgbench     pgbench_history holds at least the transactions pgbench counted as committed,
#               and sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta) (TPC-B)
# Reported per scale: each move's method (replication or dump), its time from created_at to
# finished_at, held_ms (how long the cutover held new queries), the longest latency pgbench and
# the writer saw, the writer's longest gap between two acknowledged writes, the clients' errors,
# and as a floor `pg_dump -Fc | pg_restore` of the same database into a fresh one, as the
# server's superuser. Exits non-zero when a write was lost or duplicated, the balances differ, or
# a move failed.
#
# Usage: benches/move.sh
#   env: SCALES="10 50" CLIENTS=8 SETTLE=5 WRITE_MS=5 POOL_SIZE=20 HISTORY_KEY=1
#        MOVE_TIMEOUT=900 (seconds a move may take) PROXY_SSLMODE=disable SHARED_BUFFERS=256MB
#        RESULTS=/tmp/tdb-move-<time>.md KEEP_LOGS=dir (keep tdb's and PostgreSQL's logs and
#        each scale's client files there) TDB_BIN=path (use this binary instead of building
#        target/release/tdb); TDB_* settings of tdb serve pass through (e.g. TDB_MOVE_DRAIN_MS)
#        HISTORY_KEY=0 leaves pgbench_history without a key: the move then goes by dump and
#        restore behind the hold
# e.g.   TDB_BIN=target/debug/tdb SCALES=1 SETTLE=2 benches/move.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=${SCALES:-"10 50"}
CLIENTS=${CLIENTS:-8}
SETTLE=${SETTLE:-5}
WRITE_MS=${WRITE_MS:-5}
POOL_SIZE=${POOL_SIZE:-20}
HISTORY_KEY=${HISTORY_KEY:-1}
MOVE_TIMEOUT=${MOVE_TIMEOUT:-900}
PROXY_SSLMODE=${PROXY_SSLMODE:-disable}
SHARED_BUFFERS=${SHARED_BUFFERS:-256MB}
RESULTS=${RESULTS:-/tmp/tdb-move-$(date +%Y%m%d-%H%M%S).md}
KEEP_LOGS=${KEEP_LOGS:-}
PY_CLIENTS=${TDB_TEST_CLIENTS:-$PWD/target/test-clients}/python

die() { echo "move.sh: $*" >&2; exit 1; }
[ -n "$SCALES" ] || die "SCALES is empty"
for s in $SCALES; do [[ $s =~ ^[1-9][0-9]*$ ]] || die "SCALES holds '$s', not a positive integer"; done
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || die "CLIENTS must be a positive integer"

. scripts/lib/packages.sh
ensure_packages postgresql postgresql-client curl jq python3
# The writer's driver: psycopg 3, where scripts/test-clients.sh puts it.
if ! PYTHONPATH="$PY_CLIENTS" python3 -c 'import psycopg' >/dev/null 2>&1; then
    python3 -m pip --version >/dev/null 2>&1 || ensure_packages python3-pip
    echo "installing psycopg into $PY_CLIENTS"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --upgrade --target "$PY_CLIENTS" 'psycopg[binary]>=3.1,<4'
fi
. benches/lib.sh
bench_build
bench_setup
if [ -n "$KEEP_LOGS" ]; then
    mkdir -p "$KEEP_LOGS"
    KEEP_LOGS=$(realpath "$KEEP_LOGS")
    # Registered first, so it runs last: after the clients are stopped.
    # shellcheck disable=SC2016 # expanded on exit
    bench_on_exit 'cp -r "$ROOT"/serve.log "$ROOT"/pg/log "$ROOT"/s[0-9]* "$KEEP_LOGS"/'
fi
PGBENCH=$PGBIN/pgbench
PSQL=$PGBIN/psql

step() { echo "== $*"; }
serve_log_tail() { echo "--- tdb serve log (tail)"; tail -30 "$ROOT/serve.log" | sed 's/\x1b\[[0-9;]*m//g'; }

# --- PostgreSQL and tdb --------------------------------------------------------------------------
step "starting PostgreSQL (wal_level=logical) and tdb serve (paid tier)"
# The shared server is this PostgreSQL (attached mode): it is the source of the move to L2, by
# logical replication.
start_postgres -c wal_level=logical -c max_connections=300 -c shared_buffers="$SHARED_BUFFERS" \
    -c max_wal_size=8GB
PROXY_LISTEN=127.0.0.1:$(free_port)
# The dedicated servers live under the data dir and run as `postgres` when we are root, so it
# must be 0711 (enter, not list); attached to a catalog, tdb would make it 0700.
if [ "$(id -u)" -eq 0 ]; then mkdir -m 711 "$ROOT/tdb"; fi
# L2 (a dedicated server) needs a paid plan.
TDB_DEFAULT_TIER=paid start_tdb --pg-listen "$PROXY_LISTEN" --mysql-listen "127.0.0.1:$(free_port)" \
    --redis-listen "127.0.0.1:$(free_port)"
signup
if [ -z "$KEY" ] || [ "$KEY" = null ]; then die "sign-up failed"; fi

# api METHOD PATH [BODY]: the answer's JSON; dies with the API's error when it is not a success.
api() {
    local method=$1 path=$2 body=${3:-} out
    out=$(curl -s -X "$method" "$API$path" -H "$H" ${body:+-d "$body"}) || die "$method $path: no answer from the API"
    if [ "$(jq -r .success <<<"$out" 2>/dev/null)" != true ]; then
        die "$method $path failed: $out"
    fi
    echo "$out"
}

# --- the blueprint -------------------------------------------------------------------------------
step "workspace app (tenant mode): pgbench's tables with keys and seq_writes, deployed"
api POST /workspaces '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
# pgbench's own definitions (PostgreSQL 15's `pgbench -i -I dtp`); pgbench_history has no key of
# its own, so it gets one (its inserts name their columns).
DDL="create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22));
create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100);
create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84)) with (fillfactor=100);
create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100);
alter table pgbench_branches add primary key (bid);
alter table pgbench_tellers add primary key (tid);
alter table pgbench_accounts add primary key (aid);
create table seq_writes (id bigserial PRIMARY KEY, n bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
if [ "$HISTORY_KEY" = 1 ]; then
    DDL="$DDL;
alter table pgbench_history add column hid bigserial primary key"
fi
api POST /workspaces/app/queries "$(jq -n --arg q "$DDL" '{query: $q}')" >/dev/null
DEP=$(api POST /deployments '{"blueprint_name":"app"}' | jq -r .id)
D=$(wait_deployment "$DEP")
[ "$(jq -r .status <<<"$D")" = completed ] || die "deployment $DEP did not complete: $D"
# Transaction pooling: a client's next transaction goes wherever the route points after a
# cutover, so the clients keep their connections through both moves.
api PATCH /workspaces/app/settings "$(jq -n --argjson n "$POOL_SIZE" --argjson c "$((CLIENTS + 10))" \
    '{max_connections: $n, pool_mode: "transaction", max_client_connections: $c}')" >/dev/null

# --- the clients ---------------------------------------------------------------------------------
# The writer: argv interval_ms acks_file errors_file. One line per acknowledged INSERT:
# "n start_epoch latency_ms"; one per error: "epoch n=... what". SIGTERM ends it after the
# INSERT in flight.
cat >"$ROOT/writer.py" <<'EOF'
import signal, sys, time
import psycopg

interval = float(sys.argv[1]) / 1000
acks = open(sys.argv[2], "w", buffering=1)
errors = open(sys.argv[3], "w", buffering=1)
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def say(what, e):
    msg = " ".join(str(e).split())
    errors.write(f"{time.time():.3f} {what} {type(e).__name__}: {msg}\n")


n, conn = 0, None
while not stop:
    if conn is None:
        try:
            # libpq's PG* variables say where; no server-side prepared statements.
            conn = psycopg.connect("", autocommit=True, prepare_threshold=None, connect_timeout=10)
        except Exception as e:
            say("connect", e)
            time.sleep(0.05)
            continue
    n += 1
    wall, t0 = time.time(), time.monotonic()
    try:
        conn.execute("INSERT INTO seq_writes (n) VALUES (%s)", (n,))
    except Exception as e:
        say(f"n={n}", e)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
        continue
    acks.write(f"{n} {wall:.6f} {(time.monotonic() - t0) * 1000:.3f}\n")
    time.sleep(interval)
EOF

# proxy_env: libpq's variables for the current tenant's connection through the proxy (in a
# subshell: the password stays off command lines).
proxy_env() {
    unset PGSERVICE PGSSLMODE PGPASSFILE
    export PGHOST=$P_HOST PGPORT=$P_PORT PGDATABASE=$P_DB PGUSER=$P_USER PGPASSWORD=$P_PASS \
        PGSSLMODE=$PROXY_SSLMODE PGAPPNAME=move-bench
}
tenant_psql() { (proxy_env; exec "$PSQL" -XAtq -v ON_ERROR_STOP=1 "$@"); }

# epoch TIMESTAMP: seconds since the epoch, with fractions.
epoch() { date -d "$1" +%s.%N; }

# move_to LEVEL: starts the move; prints its id.
move_to() {
    api PATCH "/tenants/$T/isolation" "$(jq -n --argjson l "$1" '{isolation_level: $l, blueprint: "app"}')" \
        | jq -r .move_id
}

# wait_move ID LOG: polls the tenant until the move ends; prints last_move, appends every
# status/step seen to LOG.
wait_move() {
    local id=$1 log=$2 t seen="" now started
    started=$(date +%s)
    while true; do
        t=$(curl -sf "$API/tenants/$T" -H "$H") || die "GET /tenants/$T failed"
        now="$(jq -r .status <<<"$t")/$(jq -r '.last_move.step // "-"' <<<"$t")"
        if [ "$now" != "$seen" ]; then echo "$(date +%s.%N) $now" >>"$log"; seen=$now; fi
        if [ "$(jq -r .last_move.move_id <<<"$t")" = "$id" ]; then
            case $(jq -r .last_move.step <<<"$t") in
                completed | failed) jq -c .last_move <<<"$t"; return ;;
            esac
        fi
        if [ $(($(date +%s) - started)) -gt "$MOVE_TIMEOUT" ]; then
            serve_log_tail >&2
            die "move $id did not end in ${MOVE_TIMEOUT}s: $t"
        fi
        sleep 0.2
    done
}

# clients_alive: dies when pgbench or the writer ended before they were told to.
clients_alive() {
    if ! kill -0 "$PGB_PID" 2>/dev/null; then
        { echo "pgbench ended early; its stderr:"; tail -20 "$DIR/pgbench.err"; } >&2
        die "pgbench stopped during the run (scale $SCALE)"
    fi
    kill -0 "$WRITER_PID" 2>/dev/null || { tail -5 "$DIR/writer.errors" >&2; die "the writer stopped (scale $SCALE)"; }
}

# one_move LEVEL NAME: moves, waits, and sets NAME_{JSON,METHOD,HELD,SECS,STEPS,OK}.
one_move() {
    local level=$1 name=$2 id m secs steps
    id=$(move_to "$level")
    echo "   move $id to L$level started"
    m=$(wait_move "$id" "$DIR/$name.steps")
    secs=$(awk -v a="$(epoch "$(jq -r .created_at <<<"$m")")" -v b="$(epoch "$(jq -r .finished_at <<<"$m")")" \
        'BEGIN { printf "%.1f", b - a }')
    steps=$(awk '{ print $2 }' "$DIR/$name.steps" | paste -sd' ' | sed 's/ / -> /g')
    printf -v "${name}_JSON" %s "$m"
    printf -v "${name}_METHOD" %s "$(jq -r '.method // "-"' <<<"$m")"
    printf -v "${name}_HELD" %s "$(jq -r '.held_ms // "-"' <<<"$m")"
    printf -v "${name}_SECS" %s "$secs"
    printf -v "${name}_STEPS" %s "$steps"
    if [ "$(jq -r .step <<<"$m")" = completed ]; then
        printf -v "${name}_OK" %s 1
        echo "   $(jq -r '"\(.step) by \(.method), held \(.held_ms) ms"' <<<"$m"), ${secs}s; seen: $steps"
    else
        printf -v "${name}_OK" %s 0
        echo "   FAILED: $(jq -r .error <<<"$m") (seen: $steps)" >&2
    fi
}

# --- one scale -----------------------------------------------------------------------------------
SUMMARY=$ROOT/summary
DETAILS=$ROOT/details
: >"$SUMMARY"; : >"$DETAILS"
FAILED=0
for SCALE in $SCALES; do
    DIR=$ROOT/s$SCALE
    mkdir -p "$DIR"
    T=acme_s$SCALE
    step "scale $SCALE: tenant $T"
    TENANT=$(api POST /tenants "{\"tenant_id\":\"$T\",\"databases\":[{\"blueprint\":\"app\"}]}")
    CONN=$(jq -c '.databases[0].connection' <<<"$TENANT")
    P_HOST=$(jq -r .host <<<"$CONN"); P_PORT=$(jq -r .port <<<"$CONN"); P_DB=$(jq -r .database <<<"$CONN")
    P_USER=$(jq -r .username <<<"$CONN"); P_PASS=$(jq -r .password <<<"$CONN")
    PHYS=$("$PSQL" -XAtq "$ADMIN" -c "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = '$T'")
    [ -n "$PHYS" ] || die "no physical database for tenant $T in the catalog"
    DIRECT_URL="postgresql://bench:$PW@127.0.0.1:$PG_PORT/$PHYS"

    step "scale $SCALE: filling $PHYS (pgbench -i -I g, then VACUUM ANALYZE)"
    "$PGBENCH" -i -I g -q -s "$SCALE" "$DIRECT_URL" >"$DIR/init.log" 2>&1 \
        || { cat "$DIR/init.log" >&2; die "pgbench -i failed on $PHYS"; }
    "$PSQL" -XAtq "$DIRECT_URL" -c "VACUUM ANALYZE" >/dev/null
    SIZE_MB=$("$PSQL" -XAtq "$ADMIN" -c "SELECT round(pg_database_size('$PHYS') / 1048576.0)")
    [ "$(tenant_psql -c "SELECT count(*) FROM pgbench_branches")" = "$SCALE" ] \
        || { serve_log_tail >&2; die "the tenant's pgbench_branches does not hold $SCALE rows through the proxy"; }

    step "scale $SCALE: the floor, pg_dump -Fc | pg_restore into a fresh database ($SIZE_MB MB)"
    FLOOR_DB=floor_s$SCALE
    "$PSQL" -XAtq "$ADMIN" -c "CREATE DATABASE $FLOOR_DB" >/dev/null
    t0=$(date +%s.%N)
    "$PGBIN/pg_dump" -Fc --no-owner --no-privileges "$DIRECT_URL" 2>"$DIR/dump.err" \
        | "$PGBIN/pg_restore" --no-owner --no-privileges -d "postgresql://bench:$PW@127.0.0.1:$PG_PORT/$FLOOR_DB" \
            2>"$DIR/restore.err" \
        || { cat "$DIR/dump.err" "$DIR/restore.err" >&2; die "pg_dump | pg_restore failed"; }
    FLOOR_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    "$PSQL" -XAtq "$ADMIN" -c "DROP DATABASE $FLOOR_DB" -c "CHECKPOINT" >/dev/null
    echo "   ${FLOOR_SECS}s"

    step "scale $SCALE: pgbench TPC-B ($CLIENTS clients) and the writer through the proxy"
    # A day at most: pgbench is ended with SIGALRM, as its own -T would end it (its summary and
    # logs are written).
    (proxy_env; cd "$DIR"; exec "$PGBENCH" -n -M simple -c "$CLIENTS" -j $((CLIENTS < 2 ? CLIENTS : 2)) \
        -T 86400 -P 1 -l --log-prefix=pgbench_log) >"$DIR/pgbench.out" 2>"$DIR/pgbench.err" &
    PGB_PID=$!
    bench_on_exit "kill $PGB_PID"
    (proxy_env; PYTHONPATH=$PY_CLIENTS exec python3 "$ROOT/writer.py" "$WRITE_MS" "$DIR/writer.acks" \
        "$DIR/writer.errors") &
    WRITER_PID=$!
    bench_on_exit "kill $WRITER_PID"
    sleep "$SETTLE"
    clients_alive
    [ -s "$DIR/writer.acks" ] || { cat "$DIR/writer.errors" >&2; die "the writer has no acknowledged write after ${SETTLE}s"; }

    step "scale $SCALE: L1 -> L2"
    one_move 2 UP
    sleep "$SETTLE"
    clients_alive
    DOWN_OK=0; DOWN_METHOD=-; DOWN_HELD=-; DOWN_SECS=-; DOWN_STEPS=-; DOWN_JSON='{}'
    if [ "$UP_OK" = 1 ]; then
        step "scale $SCALE: L2 -> L1"
        one_move 1 DOWN
        sleep "$SETTLE"
    fi
    clients_alive

    step "scale $SCALE: stopping the clients"
    kill -ALRM "$PGB_PID"
    kill -TERM "$WRITER_PID"
    PGB_RC=0; wait "$PGB_PID" || PGB_RC=$?
    wait "$WRITER_PID" || true
    LEVEL=$(curl -sf "$API/tenants/$T" -H "$H" | jq -r '.databases[0].isolation_level')

    # --- the checks ------------------------------------------------------------------------------
    tenant_psql -c "COPY (SELECT n FROM seq_writes) TO STDOUT" >"$DIR/table.n"
    # writer: acked, lost (acked, not in the table), duplicated (n twice or more), present but
    # never acknowledged.
    read -r ACKED LOST DUP UNACKED < <(awk '
        FILENAME == ARGV[1] { c[$1]++; next }
        { acked++; a[$1] = 1; if (!($1 in c)) lost++ }
        END { for (n in c) { if (c[n] > 1) dup += c[n] - 1; if (!(n in a)) un++ }
              printf "%d %d %d %d\n", acked, lost, dup, un }' "$DIR/table.n" "$DIR/writer.acks")
    W_MAX=$(awk '$3 > m { m = $3 } END { printf "%.1f", m }' "$DIR/writer.acks")
    W_GAP=$(awk '{ e = $2 + $3 / 1000; if (NR > 1 && e - p > g) g = e - p; p = e } END { printf "%.1f", g * 1000 }' "$DIR/writer.acks")
    W_ERRORS=$(wc -l <"$DIR/writer.errors")
    # pgbench: committed (its summary), failed and aborted clients, the longest latency of its log.
    PROCESSED=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$DIR/pgbench.out")
    PGB_FAILED=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' "$DIR/pgbench.out")
    ABORTED=$(grep -c 'aborted in command' "$DIR/pgbench.err" || true)
    [ -n "$PROCESSED" ] || { tail -20 "$DIR/pgbench.err" >&2; die "pgbench printed no summary (exit $PGB_RC)"; }
    P_MAX=$(cat "$DIR"/pgbench_log.* | awk '$3 ~ /^[0-9]+$/ && $3 > m { m = $3 } END { printf "%.1f", m / 1000 }')
    P_MIN_TPS=$(awk '/^progress: / { v = $4 + 0; if (n == 0 || v < m) m = v; n++ } END { printf "%.0f", m }' "$DIR/pgbench.err")
    read -r HISTORY ABAL TBAL BBAL DELTA < <(tenant_psql -F ' ' -c "SELECT (SELECT count(*) FROM pgbench_history),
        (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),
        (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
    BALANCED=yes
    if [ "$ABAL" != "$DELTA" ] || [ "$TBAL" != "$DELTA" ] || [ "$BBAL" != "$DELTA" ]; then BALANCED=no; fi
    HIST_LOST=$((HISTORY < PROCESSED ? PROCESSED - HISTORY : 0))
    OK=yes
    if [ "$LOST" -gt 0 ] || [ "$DUP" -gt 0 ] || [ "$HIST_LOST" -gt 0 ] || [ "$BALANCED" = no ] \
        || [ "$UP_OK" != 1 ] || [ "$DOWN_OK" != 1 ]; then
        OK=no; FAILED=1
    fi
    echo "   writer: $ACKED acknowledged, $LOST lost, $DUP duplicated, $UNACKED present unacknowledged," \
        "$W_ERRORS errors; longest INSERT ${W_MAX} ms, longest gap ${W_GAP} ms"
    echo "   pgbench (exit $PGB_RC): $PROCESSED committed, ${PGB_FAILED:-?} failed, $ABORTED aborted clients," \
        "history $HISTORY rows; balances a/t/b/delta $ABAL/$TBAL/$BBAL/$DELTA; longest ${P_MAX} ms; lowest tps/s $P_MIN_TPS"
    echo "   now at $LEVEL"

    echo "| $SCALE | $SIZE_MB | $UP_METHOD / $DOWN_METHOD | $UP_SECS | $UP_HELD | $DOWN_SECS | $DOWN_HELD | $FLOOR_SECS" \
        "| $ACKED | $LOST | $DUP | $W_MAX | $W_GAP | $W_ERRORS | $PROCESSED | $HISTORY | $BALANCED | $P_MAX" \
        "| ${PGB_FAILED:-?} / $ABORTED | $OK |" >>"$SUMMARY"
    {
        echo "### Scale $SCALE ($SIZE_MB MB, tenant $T, physical database $PHYS)"
        echo
        echo "- L1 -> L2: $UP_STEPS"
        echo "  \`$UP_JSON\`"
        echo "- L2 -> L1: $DOWN_STEPS"
        echo "  \`$DOWN_JSON\`"
        echo "- ends at $LEVEL; pgbench exit $PGB_RC; lowest tps in a second of pgbench's progress: $P_MIN_TPS"
        echo "- writer: $ACKED acknowledged, $UNACKED rows present but never acknowledged, $W_ERRORS errors"
        if [ -s "$DIR/writer.errors" ]; then
            echo "- the writer's errors (first 10, epoch seconds):"
            echo; echo '```'; head -10 "$DIR/writer.errors"; echo '```'; echo
        fi
        if grep -qv '^progress: ' "$DIR/pgbench.err"; then
            echo "- pgbench's stderr besides progress (first 10 lines):"
            echo; echo '```'; grep -v '^progress: ' "$DIR/pgbench.err" | head -10; echo '```'; echo
        fi
        echo
    } >>"$DETAILS"
done

# --- the report ----------------------------------------------------------------------------------
if [ -n "${TDB_BIN:-}" ]; then
    REV="binary $TDB_BIN"
else
    REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain -- crates Cargo.lock 2>/dev/null)" ]; then REV="$REV+changes"; fi
fi
PGV=$("$PSQL" -XAtq "$ADMIN" -c "SHOW server_version")
table() {
    echo "| scale | MB | method up / down | L1->L2 s | held ms | L2->L1 s | held ms | pg_dump\|pg_restore s" \
        "| writes acked | lost | duplicated | writer max ms | writer gap ms | writer errors" \
        "| pgbench committed | history rows | balances equal | pgbench max ms | failed / aborted | ok |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    cat "$SUMMARY"
}
{
    echo "# move.sh: moving a tenant while it writes"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), tdb $REV, PostgreSQL $PGV, $(nproc) cores, scales $SCALES," \
        "$CLIENTS pgbench clients (TPC-B, transaction pooling, $POOL_SIZE server connections)," \
        "writer every ${WRITE_MS} ms, ${SETTLE}s before, between and after the moves," \
        "pgbench_history key: $HISTORY_KEY, proxy sslmode=$PROXY_SSLMODE."
    echo
    table
    echo
    cat "$DETAILS"
} >"$RESULTS"
echo
table
echo
echo "written to $RESULTS"
if [ "$FAILED" != 0 ]; then
    echo "move.sh: a write was lost or duplicated, the balances differ, or a move failed (see above)" >&2
    exit 1
fi
