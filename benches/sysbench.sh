#!/usr/bin/env bash
# sysbench through tdb's MySQL proxy against MariaDB directly, beside pgbench through tdb's
# PostgreSQL proxy, in one run of one `tdb serve`. Through the REST API it makes a MySQL blueprint
# with sysbench's tables and a PostgreSQL blueprint with pgbench's, deploys both, and creates the
# tenants `bench` (MySQL) and `pgbench` (PostgreSQL). Each tenant's physical database is filled
# directly, as its server's administrator. Then, round after round, every workload runs against
# its two targets back to back:
#   direct  MySQL: the managed MariaDB itself, over its private Unix socket, as its administrator
#           (password unsealed from state.json with the master key), on the tenant's physical
#           database. PostgreSQL: the server's superuser on the tenant's physical database.
#   proxy   the tenant's own connection from POST /tenants at tdb's --mysql-listen (or
#           --pg-listen) port, TCP loopback, plaintext.
#   socket  MySQL only (SOCKET=1, the default): the same tenant's credentials on the MySQL
#           proxy's Unix socket (--mysql-socket), plaintext: a hop of the same kind as direct's.
# Workloads: sysbench oltp_point_select and oltp_read_only with server-side prepared statements
# (--db-ps-mode=auto), oltp_point_select over the text protocol (--db-ps-mode=disable), and
# pgbench -S with the prepared and the simple protocol; each at every THREADS count. pgbench runs
# a thread per connection (-j = -c), as sysbench does: the CPU a proxy spends sending an answer
# includes waking the client's thread, which costs more when that thread sleeps on its one
# connection than when it is awake serving others (with -j 2 for 8 connections, the PostgreSQL
# proxy's CPU per transaction was 2-3 µs lower), so the two proxies are measured against clients
# that wait alike.
# Around every run it reads the CPU time of `tdb serve` (the hop), of mariadbd and of the whole
# machine from /proc, and divides by the queries and transactions the client completed.
# Prints Markdown tables (figures, goals, every run) and writes them to RESULTS.
#
# Usage: benches/sysbench.sh
#   env: DURATION=15 ROUNDS=2 THREADS="1 8" WARMUP=3 TABLES=4 TABLE_SIZE=10000 SCALE=10
#        ONLY=text (only the workloads whose name holds it: "point_select", "read_only", "ps",
#        "text", "pgbench", ...) SHARED_BUFFERS=256MB RESULTS=/tmp/tdb-sysbench-<time>.md
#        SYSCALLS=1 (count tdb's system calls in every proxy run with `perf stat`: it costs the
#        proxy a little, so it is off by default)
#        TDB_BIN=path (use this binary instead of building target/release/tdb)
#        SOCKET=1 (0: no `socket` target, for binaries older than --mysql-socket)
#        PGBENCH_JOBS=<threads> (pgbench's -j; the runs before 2026-12-07's last used 2)
#        PROFILE=0 (1: after the rounds, `perf record -g` of tdb serve for PROFILE_SECS=5 during one
#        extra proxy run of each workload at the last THREADS count; the reports go to RESULTS and
#        the data to <RESULTS without .md>-<workload>.perf.data)
# e.g.   TDB_BIN=target/release/tdb DURATION=5 ROUNDS=1 benches/sysbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-"1 8"}
WARMUP=${WARMUP:-3}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-10000}
SCALE=${SCALE:-10}
SHARED_BUFFERS=${SHARED_BUFFERS:-256MB}
ONLY=${ONLY:-}
SYSCALLS=${SYSCALLS:-0}
PROFILE=${PROFILE:-0}
PROFILE_SECS=${PROFILE_SECS:-5}
SOCKET=${SOCKET:-1}
RESULTS=${RESULTS:-/tmp/tdb-sysbench-$(date +%Y%m%d-%H%M%S).md}
# name|client|options: sysbench's test and ps mode, or pgbench's options.
WORKLOADS=(
    "point_select ps|sysbench|oltp_point_select --db-ps-mode=auto"
    "read_only ps|sysbench|oltp_read_only --db-ps-mode=auto"
    "point_select text|sysbench|oltp_point_select --db-ps-mode=disable"
    "pgbench -S prepared|pgbench|-S -M prepared"
    "pgbench -S simple|pgbench|-S -M simple"
)
if [ -n "$ONLY" ]; then
    kept=()
    for w in "${WORKLOADS[@]}"; do [[ ${w%%|*} == *"$ONLY"* ]] && kept+=("$w"); done
    [ ${#kept[@]} -gt 0 ] || { echo "sysbench.sh: no workload matches ONLY='$ONLY'" >&2; exit 1; }
    WORKLOADS=("${kept[@]}")
fi

die() { echo "sysbench.sh: $*" >&2; exit 1; }

. scripts/lib/packages.sh
ensure_packages sysbench mariadb-server mariadb-client postgresql postgresql-client \
    python3 python3-cryptography curl jq
if [ "$SYSCALLS" = 1 ] || [ "$PROFILE" = 1 ]; then
    command -v perf >/dev/null || ensure_packages linux-perf
fi
. benches/lib.sh
bench_build
bench_setup
PGBENCH=$PGBIN/pgbench
PSQL=$PGBIN/psql

step() { echo "== $*"; }
serve_log_tail() { echo "--- tdb serve log (tail)"; tail -20 "$ROOT/serve.log" | sed 's/\x1b\[[0-9;]*m//g'; }

# --- PostgreSQL and tdb --------------------------------------------------------------------------
step "starting PostgreSQL and tdb serve"
start_postgres -c max_connections=300 -c shared_buffers="$SHARED_BUFFERS"
PG_LISTEN=127.0.0.1:$(free_port)
MY_LISTEN=127.0.0.1:$(free_port)
MY_SOCKET=$ROOT/tdb-mysql.sock
SOCKET_FLAG=()
if [ "$SOCKET" = 1 ]; then SOCKET_FLAG=(--mysql-socket "$MY_SOCKET"); fi
start_tdb --pg-listen "$PG_LISTEN" --mysql-listen "$MY_LISTEN" --redis-listen "127.0.0.1:$(free_port)" \
    "${SOCKET_FLAG[@]}"
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
# deploy BLUEPRINT: deploys its pending DDL and waits for the deployment to complete.
deploy() {
    local dep d
    dep=$(api POST /deployments "$(jq -n --arg b "$1" '{blueprint_name: $b}')" | jq -r .id)
    d=$(wait_deployment "$dep")
    [ "$(jq -r .status <<<"$d")" = completed ] || die "deployment of $1 did not complete: $d"
}
# physical_db TENANT: the tenant's database on its server, from the catalog.
physical_db() {
    "$PSQL" -XAtq "$ADMIN" -v t="$1" <<<"SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = :'t'"
}

# --- MySQL: the blueprint, the tenant, the data ----------------------------------------------------
step "workspace sysbench (MySQL) with $TABLES sysbench tables, deployed, tenant bench"
api POST /workspaces '{"name":"sysbench","database":"MySQL","mode":"tenant"}' >/dev/null
# sysbench's own definitions (oltp_common.lua, MySQL driver, InnoDB).
DDL=""
for i in $(seq 1 "$TABLES"); do
    DDL+="CREATE TABLE sbtest$i (id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) ENGINE = InnoDB; CREATE INDEX k_$i ON sbtest$i(k); "
done
api POST /workspaces/sysbench/queries "$(jq -n --arg q "$DDL" '{query: $q}')" >/dev/null
deploy sysbench
api PATCH /workspaces/sysbench/settings '{"max_connections":20}' >/dev/null
TENANT=$(api POST /tenants '{"tenant_id":"bench","databases":[{"blueprint":"sysbench"}]}')
CONN=$(jq -c '.databases[0].connection' <<<"$TENANT")
M_HOST=$(jq -r .host <<<"$CONN"); M_PORT=$(jq -r .port <<<"$CONN"); M_DB=$(jq -r .database <<<"$CONN")
M_USER=$(jq -r .username <<<"$CONN"); M_PASS=$(jq -r .password <<<"$CONN")
if [ "$M_HOST:$M_PORT" != "$MY_LISTEN" ]; then
    echo "note: the tenant's connection names $M_HOST:$M_PORT, the MySQL proxy listens on $MY_LISTEN" >&2
fi
M_PHYS=$(physical_db bench)
[ -n "$M_PHYS" ] || die "no physical database for tenant bench in the catalog"

# The managed MariaDB: its directory, socket, pid, and its administrator (the password unsealed
# from state.json with the data dir's master key: AES-256-GCM, a version byte, a 12-byte nonce,
# the ciphertext; associated data `managed-mariadb-admin`).
MARIA_DIR=$ROOT/tdb/servers/mysql-shared
[ -f "$MARIA_DIR/state.json" ] || die "no $MARIA_DIR/state.json: did tdb start its managed MariaDB?"
MARIA_SOCKET=$(sed -n 's/^socket=//p' "$MARIA_DIR/my.cnf")
MARIA_PID=$(cat "$MARIA_DIR/data/mariadbd.pid")
{ [ -S "$MARIA_SOCKET" ] && kill -0 "$MARIA_PID"; } || die "MariaDB's socket $MARIA_SOCKET or pid $MARIA_PID is not there"
CREDS=$(unseal_admin "$MARIA_DIR" managed-mariadb-admin) || die "could not unseal MariaDB's admin password"
MARIA_ADMIN=$(sed -n 1p <<<"$CREDS"); MARIA_ADMIN_PW=$(sed -n 2p <<<"$CREDS")
# maria_admin ARGS...: the mariadb client as the administrator over the socket (the password in
# the environment, off the command line).
maria_admin() { MYSQL_PWD=$MARIA_ADMIN_PW mariadb --socket="$MARIA_SOCKET" --user="$MARIA_ADMIN" -N -B "$@"; }
echo "tenant bench: proxy database $M_DB as $M_USER at $M_HOST:$M_PORT; physical database $M_PHYS"
echo "MariaDB: socket $MARIA_SOCKET, pid $MARIA_PID, administrator $MARIA_ADMIN"

# sysbench's own rows: `sysbench prepare` into a scratch database as the administrator, copied
# into the tenant's tables with INSERT ... SELECT (prepare does DDL, which a tenant may not).
step "filling $TABLES tables of $TABLE_SIZE rows (sysbench prepare into a scratch database, then INSERT ... SELECT)"
SCRATCH=tdb_sysbench_fill
maria_admin -e "DROP DATABASE IF EXISTS $SCRATCH; CREATE DATABASE $SCRATCH"
# A config file keeps the passwords off command lines.
sb_config() { install -m 600 /dev/null "$1"; cat >"$1"; }
sb_config "$ROOT/fill.cnf" <<EOF
mysql-socket=$MARIA_SOCKET
mysql-user=$MARIA_ADMIN
mysql-password=$MARIA_ADMIN_PW
mysql-db=$SCRATCH
EOF
sysbench --config-file="$ROOT/fill.cnf" --db-driver=mysql --tables="$TABLES" --table-size="$TABLE_SIZE" \
    oltp_read_only prepare >"$ROOT/prepare.log" 2>&1 || { cat "$ROOT/prepare.log" >&2; die "sysbench prepare failed"; }
for i in $(seq 1 "$TABLES"); do
    maria_admin -e "INSERT INTO \`$M_PHYS\`.sbtest$i (id, k, c, pad) SELECT id, k, c, pad FROM $SCRATCH.sbtest$i; ANALYZE TABLE \`$M_PHYS\`.sbtest$i" >/dev/null
done
maria_admin -e "DROP DATABASE $SCRATCH"
MARIA_VERSION=$(maria_admin -e "SELECT VERSION()")

# --- PostgreSQL: the blueprint, the tenant, the data -----------------------------------------------
if [[ " ${WORKLOADS[*]} " == *"|pgbench|"* ]]; then
    step "workspace pgbench (PostgreSQL) with pgbench's tables, deployed, tenant pgbench"
    api POST /workspaces '{"name":"pgbench","database":"postgresql","mode":"tenant"}' >/dev/null
    # pgbench's own definitions (PostgreSQL 15's `pgbench -i -I dtp`), as in pgbench.sh.
    DDL="create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22));
create table pgbench_tellers(tid int not null,bid int,tbalance int,filler char(84)) with (fillfactor=100);
create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84)) with (fillfactor=100);
create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100);
alter table pgbench_branches add primary key (bid);
alter table pgbench_tellers add primary key (tid);
alter table pgbench_accounts add primary key (aid)"
    api POST /workspaces/pgbench/queries "$(jq -n --arg q "$DDL" '{query: $q}')" >/dev/null
    deploy pgbench
    api PATCH /workspaces/pgbench/settings '{"max_connections":20}' >/dev/null
    TENANT=$(api POST /tenants '{"tenant_id":"pgbench","databases":[{"blueprint":"pgbench"}]}')
    CONN=$(jq -c '.databases[0].connection' <<<"$TENANT")
    P_HOST=$(jq -r .host <<<"$CONN"); P_PORT=$(jq -r .port <<<"$CONN"); P_DB=$(jq -r .database <<<"$CONN")
    P_USER=$(jq -r .username <<<"$CONN"); P_PASS=$(jq -r .password <<<"$CONN")
    P_PHYS=$(physical_db pgbench)
    [ -n "$P_PHYS" ] || die "no physical database for tenant pgbench in the catalog"
    echo "tenant pgbench: proxy database $P_DB as $P_USER at $P_HOST:$P_PORT; physical database $P_PHYS"
    step "filling at scale $SCALE (pgbench -i -I g as the superuser, then VACUUM ANALYZE)"
    PG_DIRECT_URL="postgresql://bench:$PW@127.0.0.1:$PG_PORT/$P_PHYS"
    "$PGBENCH" -i -I g -q -s "$SCALE" "$PG_DIRECT_URL" >"$ROOT/init.log" 2>&1 \
        || { cat "$ROOT/init.log" >&2; die "pgbench -i failed on $P_PHYS"; }
    "$PSQL" -XAtq "$PG_DIRECT_URL" -c "VACUUM ANALYZE" >/dev/null
fi

# --- the targets ---------------------------------------------------------------------------------
sb_config "$ROOT/direct.cnf" <<EOF
mysql-socket=$MARIA_SOCKET
mysql-user=$MARIA_ADMIN
mysql-password=$MARIA_ADMIN_PW
mysql-db=$M_PHYS
EOF
sb_config "$ROOT/proxy.cnf" <<EOF
mysql-host=$M_HOST
mysql-port=$M_PORT
mysql-user=$M_USER
mysql-password=$M_PASS
mysql-db=$M_DB
EOF
sb_config "$ROOT/socket.cnf" <<EOF
mysql-socket=$MY_SOCKET
mysql-user=$M_USER
mysql-password=$M_PASS
mysql-db=$M_DB
EOF
# targets CLIENT: the targets a client's workloads run against, in the odd rounds' order.
targets() {
    if [ "$1" = sysbench ] && [ "$SOCKET" = 1 ]; then echo direct proxy socket; else echo direct proxy; fi
}
# pg_env TARGET: libpq's variables for one target (in a subshell: passwords stay off command lines).
pg_env() {
    unset PGSERVICE PGSSLMODE PGPASSFILE
    case $1 in
        direct) export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGDATABASE=$P_PHYS PGUSER=bench PGPASSWORD=$PW PGSSLMODE=disable ;;
        proxy) export PGHOST=$P_HOST PGPORT=$P_PORT PGDATABASE=$P_DB PGUSER=$P_USER PGPASSWORD=$P_PASS PGSSLMODE=disable ;;
    esac
}
describe() {
    case $1/$2 in
        sysbench/direct) echo "MariaDB at $MARIA_SOCKET, database $M_PHYS, user $MARIA_ADMIN" ;;
        sysbench/proxy) echo "tdb MySQL proxy at $M_HOST:$M_PORT, database $M_DB, user $M_USER, ssl off" ;;
        sysbench/socket) echo "tdb MySQL proxy at $MY_SOCKET, database $M_DB, user $M_USER, ssl off" ;;
        pgbench/direct) echo "PostgreSQL at 127.0.0.1:$PG_PORT, database $P_PHYS, user bench" ;;
        pgbench/proxy) echo "tdb PostgreSQL proxy at $P_HOST:$P_PORT, database $P_DB, user $P_USER, sslmode=disable" ;;
    esac
}

# cpu_ticks PID: user + system CPU of every thread of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# machine_ticks: the CPU every process on the machine has used so far (user, nice, system, irq,
# softirq), in clock ticks.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
TICKS=$(getconf CLK_TCK)
# children_secs FILE...: from each FILE, the output of `times`, the CPU seconds (user + system)
# of the shell's waited-for children, in order. `times` must run in the measuring shell itself
# (in a pipe or $(...) it would report a fresh subshell's).
children_secs() {
    awk 'FNR == 2 { t = 0; for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, ms, "m"); t += ms[1] * 60 + ms[2] }
        printf "%s%.3f", (n++ ? " " : ""), t } END { print "" }' "$@"
}

# run_client CLIENT TARGET THREADS SECONDS OPTIONS...: one sysbench or pgbench run; prints
# "tps qps lat_avg lat_p95 txs queries tdb_ticks maria_ticks machine_ticks client_secs
# syscalls" (tdb's system calls, "-" unless SYSCALLS=1 and the target is the proxy); on failure
# prints the client's output and exits. Run it in a subshell of its own ($(...)), so
# client_secs counts the client alone.
run_client() {
    local client=$1 target=$2 threads=$3 secs=$4; shift 4
    local rc=0 t0 m0 h0 t1 m1 h1 c0 c1 perf_pid="" syscalls=-
    if [ "$SYSCALLS" = 1 ] && [ "$target" != direct ]; then
        perf stat -x, -e raw_syscalls:sys_enter -p "$TDB_PID" -o "$ROOT/perf.out" 2>/dev/null &
        perf_pid=$!
        sleep 0.2
    fi
    t0=$(cpu_ticks "$TDB_PID"); m0=$(cpu_ticks "$MARIA_PID"); h0=$(machine_ticks); times >"$ROOT/times0"
    if [ "$client" = sysbench ]; then
        local test=$1; shift
        sysbench --config-file="$ROOT/$target.cnf" --db-driver=mysql --tables="$TABLES" \
            --table-size="$TABLE_SIZE" --threads="$threads" --time="$secs" --report-interval=0 \
            --percentile=95 --mysql-ssl=off "$@" "$test" run >"$ROOT/run.out" 2>"$ROOT/run.err" || rc=$?
    else
        local jobs=${PGBENCH_JOBS:-$threads}
        (pg_env "$target"; exec "$PGBENCH" -n -T "$secs" -c "$threads" -j "$jobs" "$@") \
            >"$ROOT/run.out" 2>"$ROOT/run.err" || rc=$?
    fi
    times >"$ROOT/times1"; t1=$(cpu_ticks "$TDB_PID"); m1=$(cpu_ticks "$MARIA_PID"); h1=$(machine_ticks)
    read -r c0 c1 < <(children_secs "$ROOT/times0" "$ROOT/times1")
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"; wait "$perf_pid" || true
        syscalls=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 }' "$ROOT/perf.out")
    fi
    local r
    if [ "$client" = sysbench ]; then
        # transactions: N (tps per sec.) / queries: N (qps per sec.) / avg: / 95th percentile:
        r=$(awk '
            /^ *transactions:/ { txs = $2; tps = substr($3, 2) }
            /^ *queries:/ { q = $2; qps = substr($3, 2) }
            /^ *avg:/ { avg = $2 }
            /^ *95th percentile:/ { p95 = $3 }
            /^ *ignored errors:/ { errs = $3 }
            END { if (txs != "" && avg != "" && errs == 0) print tps, qps, avg, p95, txs, q }' "$ROOT/run.out")
    else
        r=$(awk '
            /^tps = / { tps = $3 }
            /^latency average = / { avg = $4 }
            /^number of transactions actually processed: / { txs = $6 }
            /^number of failed transactions: / { failed = $5 }
            END { if (txs != "" && avg != "" && failed + 0 == 0) print tps, tps, avg, "-", txs, txs }' "$ROOT/run.out")
    fi
    if [ "$rc" -ne 0 ] || [ -z "$r" ]; then
        {
            echo "$client failed (exit $rc) against $target: $(describe "$client" "$target")"
            echo "options: $*"
            echo "--- stderr"; cat "$ROOT/run.err"
            echo "--- stdout"; tail -30 "$ROOT/run.out"
        } >&2
        if [ "$target" != direct ]; then serve_log_tail >&2; fi
        exit 1
    fi
    echo "$r $((t1 - t0)) $((m1 - m0)) $((h1 - h0)) $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }') ${syscalls:--}"
}

step "checking every target"
check() {
    local client=$1 target=$2 out
    if [ "$client" = sysbench ]; then
        case $target in
            direct) out=$(maria_admin "$M_PHYS" -e "SELECT COUNT(*) FROM sbtest1" 2>&1) || out="error: $out" ;;
            proxy) out=$(MYSQL_PWD=$M_PASS mariadb --host="$M_HOST" --port="$M_PORT" --user="$M_USER" \
                --skip-ssl -N -B "$M_DB" -e "SELECT COUNT(*) FROM sbtest1" 2>&1) || out="error: $out" ;;
            socket) out=$(MYSQL_PWD=$M_PASS mariadb --socket="$MY_SOCKET" --user="$M_USER" \
                --skip-ssl -N -B "$M_DB" -e "SELECT COUNT(*) FROM sbtest1" 2>&1) || out="error: $out" ;;
        esac
        [ "$out" = "$TABLE_SIZE" ] || { [ "$target" != direct ] && serve_log_tail >&2; die "$target (MySQL): sbtest1 answered '$out', expected $TABLE_SIZE rows: $(describe "$client" "$target")"; }
    else
        out=$( (pg_env "$target"; exec "$PSQL" -XAtq -c "SELECT count(*) FROM pgbench_branches") 2>&1) || out="error: $out"
        [ "$out" = "$SCALE" ] || { [ "$target" = proxy ] && serve_log_tail >&2; die "$target (PostgreSQL): pgbench_branches answered '$out', expected $SCALE rows: $(describe "$client" "$target")"; }
    fi
    echo "$client $target ok: $(describe "$client" "$target")"
}
CLIENTS_USED=$(printf '%s\n' "${WORKLOADS[@]}" | cut -d'|' -f2 | sort -u)
for client in $CLIENTS_USED; do
    for target in $(targets "$client"); do
        check "$client" "$target"
        if [ "$WARMUP" -gt 0 ]; then
            if [ "$client" = sysbench ]; then
                run_client sysbench "$target" 1 "$WARMUP" oltp_read_only >/dev/null
            else
                run_client pgbench "$target" 1 "$WARMUP" -S -M prepared >/dev/null
            fi
        fi
    done
done

# tdb's own CPU with nothing to relay (the API, the jobs, the query log's writer idle).
step "tdb serve's CPU while idle, 5 s"
t0=$(cpu_ticks "$TDB_PID"); sleep 5; t1=$(cpu_ticks "$TDB_PID")
IDLE_MS=$(awk -v d="$((t1 - t0))" -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz * 1000 / 5 }')
echo "tdb serve idle: $IDLE_MS ms of CPU per second"

# --- the rounds ----------------------------------------------------------------------------------
n_threads=$(wc -w <<<"$THREADS")
runs_per_round=0
for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r _ client _ <<<"$w"
    runs_per_round=$((runs_per_round + $(targets "$client" | wc -w) * n_threads))
done
total=$((ROUNDS * runs_per_round))
step "$total runs of ${DURATION}s (about $((total * (DURATION + 2) / 60)) min)"
RAW=$ROOT/raw
: >"$RAW"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name client opts <<<"$w"
        # Odd rounds run the targets in order, even rounds in reverse: none is always first.
        read -r -a order <<<"$(targets "$client")"
        if ! ((round % 2)); then
            for ((a = 0, b = ${#order[@]} - 1; a < b; a++, b--)); do
                tmp=${order[a]}; order[a]=${order[b]}; order[b]=$tmp
            done
        fi
        for th in $THREADS; do
            for target in "${order[@]}"; do
                # shellcheck disable=SC2086
                r=$(run_client "$client" "$target" "$th" "$DURATION" $opts)
                read -r tps qps avg p95 txs q tdb maria machine csecs sys <<<"$r"
                echo "$name|$th|$target|$round|$tps|$qps|$avg|$p95|$txs|$q|$tdb|$maria|$machine|$csecs|$sys" >>"$RAW"
                awk -v n="$name" -v th="$th" -v t="$target" -v r="$round" -v R="$ROUNDS" -v tps="$tps" \
                    -v qps="$qps" -v avg="$avg" -v q="$q" -v tdb="$tdb" -v hz="$TICKS" 'BEGIN {
                    printf "[round %s/%s] %-20s t=%-2s %-6s %9.1f tps %9.1f qps %7.3f ms  tdb %6.1f us/query\n",
                        r, R, n, th, t, tps, qps, avg, (q > 0 ? tdb / hz * 1e6 / q : 0) }'
            done
        done
    done
done

# --- a profile of tdb ----------------------------------------------------------------------------
PROFILES=$ROOT/profiles
: >"$PROFILES"
if [ "$PROFILE" = 1 ]; then
    th=${THREADS##* }
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name client opts <<<"$w"
        step "perf record -g of tdb serve for ${PROFILE_SECS}s during $name through the proxy, $th threads"
        perf record -q -g -p "$TDB_PID" -o "$ROOT/perf.data" -- sleep "$PROFILE_SECS" >/dev/null 2>&1 &
        perf_pid=$!
        # shellcheck disable=SC2086
        run_client "$client" proxy "$th" "$((PROFILE_SECS + 1))" $opts >/dev/null
        wait "$perf_pid" || true
        cp "$ROOT/perf.data" "${RESULTS%.md}-${name// /-}.perf.data"
        perf_section "$ROOT/perf.data" "$name through the proxy, $th threads" dso,sym 0.5 60 >>"$PROFILES"
    done
fi

# --- the report ----------------------------------------------------------------------------------
# Means over the rounds; CPU per query is each run's CPU over its queries, averaged over rounds.
# shellcheck disable=SC2016 # awk's own $fields
AWK_LIB='
    function f(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
    function per(ticks, n) { return n > 0 ? ticks / hz * 1e6 / n : "" }
    {
        k = $1 "|" $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
        kt = k "|" $3; cnt[kt]++
        tps[kt] += $5; qps[kt] += $6; avg[kt] += $7
        if ($8 != "-") { p95[kt] += $8; p95n[kt]++ }
        tdbq[kt] += per($11, $10); tdbt[kt] += per($11, $9)
        mariaq[kt] += per($12, $10); machq[kt] += per($13, $10); clientq[kt] += per($14 * hz, $10)
        if ($15 != "-" && $15 != "" && $10 > 0) { sysq[kt] += $15 / $10; sysn[kt]++ }
    }
    function m(a, kt) { return cnt[kt] ? a[kt] / cnt[kt] : "" }
    function pg(name) { return name ~ /^pgbench/ }
'
report() {
    awk -F'|' -v hz="$TICKS" "$AWK_LIB"'
        BEGIN {
            print "| workload | threads | target | tps | qps | latency avg ms | p95 ms | proxy/direct qps | tdb CPU µs/query | tdb CPU µs/tx | MariaDB CPU µs/query | client CPU µs/query | machine CPU µs/query | tdb syscalls/query |"
            print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        }
        END {
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, "|")
                for (j = 1; j <= 3; j++) {
                    t = j == 1 ? "direct" : (j == 2 ? "proxy" : "socket"); kt = k "|" t
                    if (!cnt[kt]) continue
                    d = m(qps, k "|direct"); x = m(qps, kt)
                    ratio = (t != "direct" && d != "" && d > 0 && x != "") ? x / d : ""
                    printf "| %s | %s | %s | %.1f | %.1f | %.3f | %s | %s | %s | %s | %s | %.1f | %.1f | %s |\n", p[1], p[2], t,
                        m(tps, kt), m(qps, kt), m(avg, kt), p95n[kt] ? sprintf("%.2f", p95[kt] / p95n[kt]) : "-",
                        f(ratio, "%.2f"), t != "direct" ? sprintf("%.1f", m(tdbq, kt)) : "-",
                        t != "direct" && !(p[1] ~ /point_select|^pgbench/) ? sprintf("%.1f", m(tdbt, kt)) : "-",
                        pg(p[1]) ? "-" : sprintf("%.1f", m(mariaq, kt)), m(clientq, kt), m(machq, kt),
                        sysn[kt] ? sprintf("%.2f", sysq[kt] / sysn[kt]) : "-"
                }
            }
        }' "$RAW"
}
# goals: the hop's CPU per MySQL query against the PostgreSQL proxy's per select-only transaction
# at the same thread count (prepared statements against -M prepared, text against -M simple);
# MySQL proxy/direct throughput at 8 threads at least 0.6.
goals() {
    awk -F'|' -v hz="$TICKS" "$AWK_LIB"'
        END {
            print "| MySQL workload | threads | tdb CPU µs/query | PostgreSQL yardstick | tdb CPU µs/tx | MySQL / PostgreSQL | CPU goal met | proxy/direct qps | throughput goal (8 threads: ≥ 0.6) met | on the socket: tdb CPU µs/query | socket/direct qps | goal met on the socket |"
            print "|---|---|---|---|---|---|---|---|---|---|---|---|"
            for (i = 1; i <= n; i++) {
                k = order[i]; split(k, p, "|")
                if (pg(p[1]) || !cnt[k "|proxy"]) continue
                y = p[1] ~ /text/ ? "pgbench -S simple" : "pgbench -S prepared"
                x = m(tdbq, k "|proxy"); yk = y "|" p[2] "|proxy"
                yv = cnt[yk] ? m(tdbq, yk) : ""
                r = (yv != "" && yv > 0) ? x / yv : ""
                d = m(qps, k "|direct"); q = m(qps, k "|proxy")
                rt = (d != "" && d > 0) ? q / d : ""
                tg = p[2] == 8 ? (rt == "" ? "-" : (rt >= 0.6 ? "yes" : "no")) : "-"
                sk = k "|socket"; sq = cnt[sk] ? m(qps, sk) : ""
                st = (sq != "" && d != "" && d > 0) ? sq / d : ""
                sg = p[2] == 8 ? (st == "" ? "-" : (st >= 0.6 ? "yes" : "no")) : "-"
                printf "| %s | %s | %.1f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], x, y, f(yv, "%.1f"),
                    f(r, "%.2f"), r == "" ? "-" : (r <= 1 ? "yes" : "no"), f(rt, "%.2f"), tg,
                    cnt[sk] ? sprintf("%.1f", m(tdbq, sk)) : "-", f(st, "%.2f"), sg
            }
        }' "$RAW"
}
if [ -n "${TDB_BIN:-}" ]; then
    REV="binary $TDB_BIN"
else
    REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain -- crates Cargo.lock 2>/dev/null)" ]; then REV="$REV+changes"; fi
fi
PGV=$("$PSQL" -XAtq "$ADMIN" -c "SHOW server_version")
SBV=$(sysbench --version)
{
    echo "# sysbench: tdb's MySQL proxy vs MariaDB directly, beside pgbench through tdb's PostgreSQL proxy"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), tdb $REV, MariaDB $MARIA_VERSION (managed by tdb), PostgreSQL $PGV," \
        "$SBV, $(nproc) cores, $TABLES tables of $TABLE_SIZE rows, pgbench scale $SCALE, ${DURATION}s per run," \
        "$ROUNDS round(s), threads/clients: $THREADS, proxies over plaintext TCP loopback, MariaDB direct over its Unix socket," \
        "$([ "$SOCKET" = 1 ] && echo "the MySQL proxy also over its Unix socket (target socket)." || echo "no socket target.")"
    echo "Means over the rounds. Latency is the client's average per transaction (sysbench: per event);"
    echo "p95 is sysbench's. CPU: utime + stime from /proc of \`tdb serve\` (the hop, all its threads,"
    echo "query log included), of mariadbd, and of the whole machine, per query the client completed."
    echo "Client: sysbench's or pgbench's own CPU. In the runs, the rest of the machine is everything else"
    echo "(PostgreSQL: the catalog storing the query log, and for pgbench the server itself; anything else"
    echo "running on the machine). tdb serve used $IDLE_MS ms of CPU per second while idle; load average"
    echo "at the start of the rounds: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    report
    echo
    echo "Goals: tdb's CPU per MySQL query at most its PostgreSQL proxy's per select-only transaction"
    echo "(same session, same thread count), and MySQL throughput through the proxy at least 0.6 of direct at 8 threads:"
    echo
    goals
    echo
    echo "## Runs"
    echo
    echo "| workload | threads | target | round | tps | qps | latency avg ms | p95 ms | transactions | queries | tdb CPU µs/query | MariaDB CPU µs/query | client CPU µs/query | machine CPU µs/query | rest of the machine µs/query | tdb syscalls/query |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'|' -v hz="$TICKS" '
        function per(ticks, n) { return n > 0 ? sprintf("%.1f", ticks / hz * 1e6 / n) : "-" }
        { printf "| %s | %s | %s | %s | %.1f | %.1f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4,
            $5, $6, $7, $8, $9, $10, per($11, $10), $1 ~ /^pgbench/ ? "-" : per($12, $10), per($14 * hz, $10),
            per($13, $10), per($13 - $11 - $12 - $14 * hz, $10),
            ($15 != "-" && $15 != "" && $10 > 0) ? sprintf("%.2f", $15 / $10) : "-" }' "$RAW"
    if [ -s "$PROFILES" ]; then
        echo
        echo "## Profiles of tdb serve"
        echo
        cat "$PROFILES"
    fi
} >"$RESULTS"
echo
report
echo
goals
echo
echo "written to $RESULTS"
