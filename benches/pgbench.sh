#!/usr/bin/env bash
# pgbench through tdb's PostgreSQL proxy, against PostgreSQL directly and against PgBouncer, in one
# run on one server. A tenant `bench` is made through the REST API from a blueprint holding
# pgbench's tables, filled at scale SCALE directly on its physical database, then each workload
# runs against the three targets back to back, round after round:
#   direct     the server's superuser on the tenant's physical database
#   proxy      the tenant's own connection from POST /tenants, at tdb's --pg-listen port
#   pgbouncer  PgBouncer in front of the same physical database, as the superuser, in the same
#              pooling mode as tdb (POOL_MODE)
#   proxy_nolog  the same connection through a second `tdb serve` on the same catalog with its
#              query log off (TDB_PG_QUERY_LOG=false): what logging every statement costs
#   proxy_log  the same through a third `tdb serve` started as the second is, but with the log on:
#              beside proxy_nolog, the log is the only difference between the two (`proxy` is
#              also the serve that made the tenant and answers the API)
# Workloads: -S -M simple, -S -M prepared, TPC-B -M simple; each at every CLIENTS count.
# Prints a Markdown table of mean tps and latency per target with the proxy's ratios, and writes
# it to RESULTS.
#
# Usage: benches/pgbench.sh
#   env: SCALE=10 DURATION=15 ROUNDS=2 CLIENTS="1 8" TARGETS="direct proxy pgbouncer"
#        (add proxy_nolog, and proxy_log, to measure the query log's cost)
#        PROXY_LOG=true (proxy_log's query log setting; false gives an A/A run of the two)
#        PROXY_SSLMODE=disable WARMUP=3 SHARED_BUFFERS=256MB RESULTS=/tmp/tdb-pgbench-<time>.md
#        ONLY=text (only the workloads whose name holds it: "select-only", "prepared", "tpcb")
#        RESET=1 (before every run, what pgbench does without -n, then a checkpoint; 0 to skip)
#        TDB_BIN=path (use this binary instead of building target/release/tdb)
#        POOL_MODE=session|transaction (tdb's pool_mode and PgBouncer's), POOL_SIZE=20 (transaction
#        pooling: the server connections tdb's max_connections and PgBouncer's pool allow)
# e.g.   TARGETS="direct pgbouncer" DURATION=5 ROUNDS=1 benches/pgbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-10}
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-"1 8"}
TARGETS=${TARGETS:-"direct proxy pgbouncer"}
PROXY_SSLMODE=${PROXY_SSLMODE:-disable}
WARMUP=${WARMUP:-3}
SHARED_BUFFERS=${SHARED_BUFFERS:-256MB}
RESULTS=${RESULTS:-/tmp/tdb-pgbench-$(date +%Y%m%d-%H%M%S).md}
ONLY=${ONLY:-}
RESET=${RESET:-1}
PROXY_LOG=${PROXY_LOG:-true}
POOL_MODE=${POOL_MODE:-session}
POOL_SIZE=${POOL_SIZE:-20}
case $POOL_MODE in session | transaction) ;; *) echo "pgbench.sh: POOL_MODE is session or transaction" >&2; exit 1 ;; esac
# name|pgbench options
WORKLOADS=("select-only simple|-S -M simple" "select-only prepared|-S -M prepared" "tpcb simple|-M simple")
if [ -n "$ONLY" ]; then
    kept=()
    for w in "${WORKLOADS[@]}"; do [[ ${w%%|*} == *"$ONLY"* ]] && kept+=("$w"); done
    [ ${#kept[@]} -gt 0 ] || { echo "pgbench.sh: no workload matches ONLY='$ONLY'" >&2; exit 1; }
    WORKLOADS=("${kept[@]}")
fi

die() { echo "pgbench.sh: $*" >&2; exit 1; }
for t in $TARGETS; do
    case $t in direct | proxy | proxy_nolog | proxy_log | pgbouncer) ;; *) die "unknown target '$t' in TARGETS (direct, proxy, proxy_nolog, proxy_log, pgbouncer)" ;; esac
done
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
[ -n "$TARGETS" ] || die "TARGETS is empty"

. scripts/lib/packages.sh
ensure_packages postgresql postgresql-client pgbouncer curl jq
. benches/lib.sh
bench_build
bench_setup
PGBENCH=$PGBIN/pgbench
PSQL=$PGBIN/psql
BOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

step() { echo "== $*"; }
serve_log_tail() { echo "--- tdb serve log (tail)"; tail -20 "$ROOT/serve.log" | sed 's/\x1b\[[0-9;]*m//g'; }

# --- PostgreSQL and tdb --------------------------------------------------------------------------
step "starting PostgreSQL and tdb serve"
# WAL room for a run after its checkpoint: runs start from the same state and none is cut by a
# checkpoint of its own (see reset_run).
start_postgres -c max_connections=300 -c shared_buffers="$SHARED_BUFFERS" -c max_wal_size=8GB \
    -c checkpoint_timeout=1h
PROXY_LISTEN=127.0.0.1:$(free_port)
start_tdb --pg-listen "$PROXY_LISTEN" --mysql-listen "127.0.0.1:$(free_port)" \
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

# --- the blueprint and the tenant ----------------------------------------------------------------
step "workspace pgbench with pgbench's tables, deployed, tenant bench"
api POST /workspaces '{"name":"pgbench","database":"postgresql","mode":"tenant"}' >/dev/null
# pgbench's own definitions (PostgreSQL 15's `pgbench -i -I dtp`).
DDL="create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22));
create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100);
create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84)) with (fillfactor=100);
create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100);
alter table pgbench_branches add primary key (bid);
alter table pgbench_tellers add primary key (tid);
alter table pgbench_accounts add primary key (aid)"
api POST /workspaces/pgbench/queries "$(jq -n --arg q "$DDL" '{query: $q}')" >/dev/null
DEP=$(api POST /deployments '{"blueprint_name":"pgbench"}' | jq -r .id)
D=$(wait_deployment "$DEP")
[ "$(jq -r .status <<<"$D")" = completed ] || die "deployment $DEP did not complete: $D"
# Room for three proxies' pools (proxy, proxy_nolog, proxy_log): each serve holds the tenant to
# max_connections on its own, and the most a tenant may be allowed on a 300-connection server
# (a quarter of what it keeps for tenants) is 49.
MAXC=$(tr ' ' '\n' <<<"$CLIENTS" | sort -n | tail -1)
if [ "$POOL_MODE" = transaction ]; then
    # Transaction pooling: max_connections counts server connections, as PgBouncer's pool size.
    api PATCH /workspaces/pgbench/settings "$(jq -n --argjson n "$POOL_SIZE" --argjson c "$((MAXC + 10))" \
        '{max_connections: $n, pool_mode: "transaction", max_client_connections: $c}')" >/dev/null
else
    api PATCH /workspaces/pgbench/settings '{"max_connections":45}' >/dev/null
fi
TENANT=$(api POST /tenants '{"tenant_id":"bench","databases":[{"blueprint":"pgbench"}]}')
CONN=$(jq -c '.databases[0].connection' <<<"$TENANT")
P_HOST=$(jq -r .host <<<"$CONN"); P_PORT=$(jq -r .port <<<"$CONN"); P_DB=$(jq -r .database <<<"$CONN")
P_USER=$(jq -r .username <<<"$CONN"); P_PASS=$(jq -r .password <<<"$CONN")
if [ "$P_HOST:$P_PORT" != "$PROXY_LISTEN" ]; then
    echo "note: the tenant's connection names $P_HOST:$P_PORT, the proxy listens on $PROXY_LISTEN" >&2
fi
PHYS=$("$PSQL" -XAtq "$ADMIN" -c "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'bench'")
[ -n "$PHYS" ] || die "no physical database for tenant bench in the catalog"
echo "tenant bench: proxy database $P_DB as $P_USER at $P_HOST:$P_PORT; physical database $PHYS"

step "filling at scale $SCALE (pgbench -i -I g, then VACUUM ANALYZE)"
DIRECT_URL="postgresql://bench:$PW@127.0.0.1:$PG_PORT/$PHYS"
"$PGBENCH" -i -I g -q -s "$SCALE" "$DIRECT_URL" >"$ROOT/init.log" 2>&1 \
    || { cat "$ROOT/init.log" >&2; die "pgbench -i failed on $PHYS"; }
"$PSQL" -XAtq "$DIRECT_URL" -c "VACUUM ANALYZE" >/dev/null

# --- more tdb serves on the same catalog: with the query log off, and with it on -------------------
# start_serve NAME LOG: a `tdb serve` with TDB_PG_QUERY_LOG=LOG; sets NAME_LISTEN and NAME_PID.
start_serve() {
    local name=$1 log=$2 listen api pid
    listen=127.0.0.1:$(free_port)
    api=127.0.0.1:$(free_port)
    # A data dir of its own (one serve holds a data dir), the first serve's master key.
    in_own_session env TDB_PG_QUERY_LOG="$log" TDB_MASTER_KEY="$(cat "$ROOT/tdb/master.key")" \
        "$TDB" serve --data-dir "$ROOT/tdb-$name" --catalog-url "$ADMIN" \
        --api-listen "$api" --pg-listen "$listen" \
        --mysql-listen "127.0.0.1:$(free_port)" --redis-listen "127.0.0.1:$(free_port)" \
        >"$ROOT/serve-$name.log" 2>&1 &
    pid=$!
    bench_on_exit "kill $pid; wait $pid"
    for _ in $(seq 1 300); do curl -sf "http://$api/health" >/dev/null && break; sleep 0.1; done
    curl -sf "http://$api/health" >/dev/null || { tail -20 "$ROOT/serve-$name.log" >&2; die "tdb serve ($name) did not start"; }
    printf -v "${name}_LISTEN" %s "$listen"
    printf -v "${name}_PID" %s "$pid"
}
if has_target proxy_nolog; then
    step "starting a second tdb serve with the query log off"
    start_serve NOLOG false
fi
if has_target proxy_log; then
    step "starting a third tdb serve with the query log set to $PROXY_LOG"
    start_serve LOG "$PROXY_LOG"
fi

# --- PgBouncer -----------------------------------------------------------------------------------
if has_target pgbouncer; then
    step "starting PgBouncer"
    BOUNCER_PORT=$(free_port)
    pg_dir "$ROOT/bouncer"
    if [ "$POOL_MODE" = transaction ]; then BOUNCER_POOL=$POOL_SIZE; else BOUNCER_POOL=$((MAXC > 18 ? MAXC + 2 : 20)); fi
    cat >"$ROOT/bouncer/pgbouncer.ini" <<EOF
[databases]
$PHYS = host=127.0.0.1 port=$PG_PORT dbname=$PHYS user=bench password=$PW

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $ROOT/bouncer/userlist.txt
pool_mode = $POOL_MODE
default_pool_size = $BOUNCER_POOL
max_client_conn = $((MAXC > 50 ? 2 * MAXC : 100))
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = $ROOT/bouncer/pgbouncer.log
pidfile = $ROOT/bouncer/pgbouncer.pid
EOF
    echo '"bench" ""' >"$ROOT/bouncer/userlist.txt"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$ROOT/bouncer/pgbouncer.ini" "$ROOT/bouncer/userlist.txt"; fi
    chmod 600 "$ROOT/bouncer/pgbouncer.ini"
    # shellcheck disable=SC2016 # expanded on exit
    bench_on_exit 'kill "$(cat "$ROOT/bouncer/pgbouncer.pid")"'
    as_pg "$BOUNCER" -d "$ROOT/bouncer/pgbouncer.ini" >"$ROOT/bouncer/start.log" 2>&1 \
        || { cat "$ROOT/bouncer/start.log" "$ROOT/bouncer/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
    for _ in $(seq 1 50); do [ -s "$ROOT/bouncer/pgbouncer.pid" ] && break; sleep 0.1; done
fi

# --- the targets ---------------------------------------------------------------------------------
# target_env NAME: exports libpq's variables for one target (in a subshell: passwords stay off
# command lines).
target_env() {
    unset PGSERVICE PGSSLMODE PGPASSFILE
    case $1 in
        direct) export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGDATABASE=$PHYS PGUSER=bench PGPASSWORD=$PW PGSSLMODE=disable ;;
        proxy) export PGHOST=$P_HOST PGPORT=$P_PORT PGDATABASE=$P_DB PGUSER=$P_USER PGPASSWORD=$P_PASS PGSSLMODE=$PROXY_SSLMODE ;;
        proxy_nolog) export PGHOST=${NOLOG_LISTEN%:*} PGPORT=${NOLOG_LISTEN##*:} PGDATABASE=$P_DB PGUSER=$P_USER PGPASSWORD=$P_PASS PGSSLMODE=$PROXY_SSLMODE ;;
        proxy_log) export PGHOST=${LOG_LISTEN%:*} PGPORT=${LOG_LISTEN##*:} PGDATABASE=$P_DB PGUSER=$P_USER PGPASSWORD=$P_PASS PGSSLMODE=$PROXY_SSLMODE ;;
        pgbouncer) export PGHOST=127.0.0.1 PGPORT=$BOUNCER_PORT PGDATABASE=$PHYS PGUSER=bench PGPASSWORD='' PGSSLMODE=disable ;;
    esac
}
describe() {
    case $1 in
        direct) echo "PostgreSQL at 127.0.0.1:$PG_PORT, database $PHYS, user bench" ;;
        proxy) echo "tdb proxy at $P_HOST:$P_PORT, database $P_DB, user $P_USER, sslmode=$PROXY_SSLMODE" ;;
        proxy_nolog) echo "tdb proxy with the query log off at $NOLOG_LISTEN, database $P_DB, user $P_USER" ;;
        proxy_log) echo "tdb proxy with the query log set to $PROXY_LOG at $LOG_LISTEN, database $P_DB, user $P_USER" ;;
        pgbouncer) echo "PgBouncer at 127.0.0.1:$BOUNCER_PORT, database $PHYS, user bench" ;;
    esac
}

# hop_pid TARGET: the process that carries the target's hop (tdb serve or PgBouncer); none for
# direct.
hop_pid() {
    case $1 in
        proxy) echo "$TDB_PID" ;;
        proxy_nolog) echo "$NOLOG_PID" ;;
        proxy_log) echo "$LOG_PID" ;;
        pgbouncer) cat "$ROOT/bouncer/pgbouncer.pid" ;;
        *) echo "" ;;
    esac
}
# cpu_ticks PID: user + system CPU of every thread of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# machine_ticks: the CPU every process on the machine has used so far (user, nice, system, irq,
# softirq), in clock ticks: pgbench, the server (the query log's writes included) and the hop.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
TICKS=$(getconf CLK_TCK)

# reset_run: puts the tables back as pgbench does before a run unless told -n (vacuums the
# branches and tellers, empties the history), then checkpoints. Every run starts from the same
# state: no run inherits the dead rows of the one before, and no run pays a checkpoint's
# full-page writes that the next one does not.
reset_run() {
    [ "$RESET" = 1 ] || return 0
    "$PSQL" -XAtq "$DIRECT_URL" -c "VACUUM pgbench_branches, pgbench_tellers" \
        -c "TRUNCATE pgbench_history" -c "CHECKPOINT" >/dev/null
}

# run_pgbench TARGET CLIENTS SECONDS OPTIONS...: prints "tps latency_ms hop_us machine_us",
# hop_us being the CPU the hop's process spent per transaction in microseconds ("-" for direct)
# and machine_us the whole machine's; on failure prints pgbench's output and exits.
run_pgbench() {
    local target=$1 clients=$2 secs=$3; shift 3
    local jobs=$((clients < 2 ? clients : 2)) rc=0 pid before="" machine_before
    pid=$(hop_pid "$target")
    reset_run
    if [ -n "$pid" ]; then before=$(cpu_ticks "$pid"); fi
    machine_before=$(machine_ticks)
    (target_env "$target"; exec "$PGBENCH" -n -T "$secs" -c "$clients" -j "$jobs" "$@") \
        >"$ROOT/run.out" 2>"$ROOT/run.err" || rc=$?
    local tps lat txs hop=- machine=- machine_after
    machine_after=$(machine_ticks)
    tps=$(awk '/^tps = / { print $3; exit }' "$ROOT/run.out")
    lat=$(awk '/^latency average = / { print $4; exit }' "$ROOT/run.out")
    txs=$(awk '/^number of transactions actually processed: / { print $6; exit }' "$ROOT/run.out")
    if [ -n "$before" ] && [ -n "$txs" ] && [ "$txs" -gt 0 ]; then
        hop=$(awk -v a="$before" -v b="$(cpu_ticks "$pid")" -v hz="$TICKS" -v n="$txs" \
            'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    fi
    if [ -n "$txs" ] && [ "$txs" -gt 0 ]; then
        machine=$(awk -v a="$machine_before" -v b="$machine_after" -v hz="$TICKS" -v n="$txs" \
            'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    fi
    if [ "$rc" -ne 0 ] || [ -z "$tps" ] || [ -z "$lat" ]; then
        {
            echo "pgbench failed (exit $rc) against $target: $(describe "$target")"
            echo "command: pgbench -n -T $secs -c $clients -j $jobs $*"
            echo "--- stderr"; cat "$ROOT/run.err"
            echo "--- stdout"; tail -20 "$ROOT/run.out"
        } >&2
        if [[ $target == proxy* ]]; then serve_log_tail >&2; fi
        exit 1
    fi
    echo "$tps $lat $hop $machine"
}

step "checking every target"
for t in $TARGETS; do
    if ! out=$( (target_env "$t"; exec "$PSQL" -XAtq -c "SELECT count(*) FROM pgbench_branches") 2>&1); then
        echo "$t does not answer: $(describe "$t")" >&2
        echo "$out" >&2
        if [ "$t" = proxy ]; then
            echo "(is tdb's PostgreSQL proxy built? it should listen on --pg-listen $PROXY_LISTEN)" >&2
            serve_log_tail >&2
        fi
        exit 1
    fi
    [ "$out" = "$SCALE" ] || die "$t: pgbench_branches has '$out' rows, expected $SCALE"
    echo "$t ok: $(describe "$t")"
    if [ "$WARMUP" -gt 0 ]; then run_pgbench "$t" 1 "$WARMUP" -S -M simple >/dev/null; fi
done

# --- the rounds ----------------------------------------------------------------------------------
n_clients=$(wc -w <<<"$CLIENTS"); n_targets=$(wc -w <<<"$TARGETS")
n_targets=${n_targets// /}
total=$((ROUNDS * ${#WORKLOADS[@]} * n_clients * n_targets))
step "$total runs of ${DURATION}s (about $((total * (DURATION + 1) / 60)) min)"
RAW=$ROOT/raw
: >"$RAW"
read -ra TARGET_LIST <<<"$TARGETS"
for round in $(seq 1 "$ROUNDS"); do
    # Each round starts one target later, so no target always runs first or last.
    order=()
    for i in "${!TARGET_LIST[@]}"; do order+=("${TARGET_LIST[(i + round - 1) % n_targets]}"); done
    for w in "${WORKLOADS[@]}"; do
        name=${w%%|*}; opts=${w#*|}
        for c in $CLIENTS; do
            for t in "${order[@]}"; do
                # shellcheck disable=SC2086
                r=$(run_pgbench "$t" "$c" "$DURATION" $opts)
                read -r tps lat hop machine <<<"$r"
                echo "$name|$c|$t|$round|$tps|$lat|$hop|$machine" >>"$RAW"
                printf '[round %s/%s] %-20s c=%-3s %-11s %10.1f tps %8.3f ms  hop %6s us/tx  machine %6s us/tx\n' \
                    "$round" "$ROUNDS" "$name" "$c" "$t" "$tps" "$lat" "$hop" "$machine"
            done
        done
    done
done

# --- the report ----------------------------------------------------------------------------------
# The query log's cost compares LOG_ON with proxy_nolog: proxy_log when it ran (the two serves
# then differ in the log alone), otherwise proxy.
if has_target proxy_log; then LOG_ON=proxy_log; else LOG_ON=proxy; fi
# Goals: proxy/direct >= 0.75 for select-only at 8 clients, >= 0.95 for TPC-B; proxy/pgbouncer
# >= 1.0 everywhere; the proxy with its query log at least 0.95 of the proxy without.
# report tps|cpu: a summary of the runs in RAW, means over the rounds.
#   tps: each target's tps and latency, the proxy's ratios and whether the goals are met;
#   cpu: the hop's own cost, the CPU of its process (all of tdb serve, query-log writer included;
#        PgBouncer's one process) per transaction, then the whole machine's CPU per transaction
#        for each target. CPU is steadier than tps on a noisy machine, and it is what a hop takes
#        from the cores it shares.
report() {
    awk -F'|' -v kind="$1" -v on="$LOG_ON" '
        { k = $1 "|" $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
          tps[k, $3] += $5; lat[k, $3] += $6; cnt[k, $3]++
          if ($7 != "-" && $7 != "") { hop[k, $3] += $7; hops[k, $3]++ }
          if ($8 != "-" && $8 != "") { mach[k, $3] += $8; machs[k, $3]++ } }
        function m(a, k, t) { return cnt[k, t] ? a[k, t] / cnt[k, t] : "" }
        function mh(k, t) { return hops[k, t] ? hop[k, t] / hops[k, t] : "" }
        function mm(k, t) { return machs[k, t] ? mach[k, t] / machs[k, t] : "" }
        function f(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
        function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "" : a / b }
        BEGIN {
            if (kind == "cpu") {
                print "| workload | clients | proxy us/tx | proxy, log off us/tx | proxy_log us/tx | pgbouncer us/tx | proxy/pgbouncer CPU | machine us/tx: direct | proxy | proxy, log off | proxy_log | pgbouncer |"
                print "|---|---|---|---|---|---|---|---|---|---|---|---|"
            } else {
                print "| workload | clients | direct tps | proxy tps | pgbouncer tps | proxy, log off tps | proxy_log tps | direct ms | proxy ms | pgbouncer ms | proxy/direct | proxy/pgbouncer | log on/off (" on ") | goals met |"
                print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            }
        }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, "|")
                if (kind == "cpu") {
                    x = mh(k, "proxy"); q = mh(k, "proxy_nolog"); l = mh(k, "proxy_log"); b = mh(k, "pgbouncer")
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2],
                        f(x, "%.1f"), f(q, "%.1f"), f(l, "%.1f"), f(b, "%.1f"), f(ratio(x, b), "%.2f"),
                        f(mm(k, "direct"), "%.1f"), f(mm(k, "proxy"), "%.1f"),
                        f(mm(k, "proxy_nolog"), "%.1f"), f(mm(k, "proxy_log"), "%.1f"), f(mm(k, "pgbouncer"), "%.1f")
                    continue
                }
                d = m(tps, k, "direct"); x = m(tps, k, "proxy"); b = m(tps, k, "pgbouncer")
                q = m(tps, k, "proxy_nolog"); l = m(tps, k, "proxy_log")
                rd = ratio(x, d); rb = ratio(x, b); rq = ratio(m(tps, k, on), q)
                goal = ""
                if (p[1] ~ /^select-only/ && p[2] == 8) goal = 0.75
                if (p[1] ~ /^tpcb/) goal = 0.95
                met = "-"
                if (rd != "" || rb != "" || rq != "") {
                    ok = 1
                    if (rd != "" && goal != "" && rd < goal) ok = 0
                    if (rb != "" && rb < 1.0) ok = 0
                    if (rq != "" && rq < 0.95) ok = 0
                    met = ok ? "yes" : "no"
                }
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2],
                    f(d, "%.0f"), f(x, "%.0f"), f(b, "%.0f"), f(q, "%.0f"), f(l, "%.0f"),
                    f(m(lat, k, "direct"), "%.3f"), f(m(lat, k, "proxy"), "%.3f"), f(m(lat, k, "pgbouncer"), "%.3f"),
                    f(rd, "%.2f"), f(rb, "%.2f"), f(rq, "%.2f"), met
            }
        }' "$RAW"
}
# log_report: with LOG_ON and proxy_nolog both measured, the query log's cost round by round.
# Each round runs the two back to back, so a round's ratio of their tps is paired against the
# machine's drift; the table gives the median of those ratios, their range, and the ratio of the
# means.
log_report() {
    has_target "$LOG_ON" && has_target proxy_nolog || return 0
    awk -F'|' -v on="$LOG_ON" '
        $3 == on || $3 == "proxy_nolog" {
            k = $1 "|" $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
            t[k, $4, $3] = $5; sum[k, $3] += $5; rounds[k, $4] = 1 }
        END {
            print "| workload | clients | log on/off (" on "/proxy_nolog), median of rounds | lowest | highest | of the means |"
            print "|---|---|---|---|---|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, "|"); c = 0
                for (kr in rounds) {
                    split(kr, q, SUBSEP)
                    if (q[1] != k || !((k, q[2], on) in t) || !((k, q[2], "proxy_nolog") in t)) continue
                    if (t[k, q[2], "proxy_nolog"] > 0) r[++c] = t[k, q[2], on] / t[k, q[2], "proxy_nolog"]
                }
                if (c == 0) continue
                for (a = 2; a <= c; a++) { v = r[a]; b = a - 1; while (b > 0 && r[b] > v) { r[b + 1] = r[b]; b-- } r[b + 1] = v }
                med = (c % 2) ? r[(c + 1) / 2] : (r[c / 2] + r[c / 2 + 1]) / 2
                printf "| %s | %s | %.3f | %.3f | %.3f | %.3f |\n", p[1], p[2], med, r[1], r[c],
                    sum[k, "proxy_nolog"] ? sum[k, on] / sum[k, "proxy_nolog"] : 0
            }
        }' "$RAW"
}
PGV=$("$PSQL" -XAtq "$ADMIN" -c "SHOW server_version")
BV=$("$BOUNCER" --version 2>/dev/null | head -1 || true)
if [ -n "${TDB_BIN:-}" ]; then
    REV="binary $TDB_BIN"
else
    REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain -- crates Cargo.lock 2>/dev/null)" ]; then REV="$REV+changes"; fi
fi
{
    echo "# pgbench: tdb proxy vs PostgreSQL vs PgBouncer"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), tdb $REV, PostgreSQL $PGV, ${BV:-PgBouncer ?}, $(nproc) cores," \
        "scale $SCALE, ${DURATION}s per run, $ROUNDS round(s), clients: $CLIENTS, targets: $TARGETS," \
        "proxy sslmode=$PROXY_SSLMODE, shared_buffers $SHARED_BUFFERS, reset before each run: $RESET."
    echo "Means over the rounds; ms is pgbench's latency average; ratios are of tps."
    echo
    report tps
    echo
    echo "CPU of the hop's process per transaction (microseconds; select-only is one round trip, TPC-B seven):"
    echo
    report cpu
    if has_target "$LOG_ON" && has_target proxy_nolog; then
        echo
        echo "The query log's cost, round by round (each round runs both proxies back to back):"
        echo
        log_report
    fi
    echo
    echo "## Runs"
    echo
    echo "| workload | clients | target | round | tps | latency ms | hop us/tx | machine us/tx |"
    echo "|---|---|---|---|---|---|---|---|"
    awk -F'|' '{ printf "| %s | %s | %s | %s | %.1f | %.3f | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }' "$RAW"
} >"$RESULTS"
echo
report tps
echo
report cpu
echo
log_report
echo
echo "written to $RESULTS"
