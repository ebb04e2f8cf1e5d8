#!/usr/bin/env bash
# redis-benchmark GET and SET, 50 clients, without and with pipelining (-P 16), against Redis
# directly, through twemproxy (nutcracker) and through tdb's Redis proxy, interleaved in one run
# of one `tdb serve`. Through the REST API it makes a Redis workspace, deploys it and creates the
# tenant `bench`; the first Redis workspace makes tdb start its managed redis-server. Every
# target reaches that same redis-server:
#   unix       redis-server itself over its private Unix socket, as tdb's administrator
#              (password unsealed from state.json with the master key)
#   tcp        redis-server itself over TCP loopback: the script gives it a port of its own at run
#              time (CONFIG SET port), so the direct leg crosses the same kind of socket as the
#              proxies' clients do
#   twemproxy  nutcracker on a TCP loopback port, one pool whose one server is redis-server's Unix
#              socket (as tdb's proxy reaches it); twemproxy can only send `AUTH <password>`,
#              so the script turns redis-server's `default` user on, in memory, with a random
#              password and every permission, for this run only
#   tdb        the tenant's connection from POST /tenants at tdb's --redis-listen port, TCP
#              loopback, plaintext (allowed from loopback)
# Around every run it reads the CPU time of the hop (`tdb serve`, or nutcracker), of
# redis-server, of the catalog's PostgreSQL (which stores tdb's query log) and of the whole
# machine from /proc, and divides by the requests completed.
# Prints Markdown tables (figures, goals, every run) and writes them to RESULTS.
#
# Usage: benches/redis.sh
#   env: DURATION=10 (seconds a run should last: each workload's -n is sized from its warm-up)
#        REQUESTS= PIPELINED_REQUESTS= (fixed -n instead, without / with pipelining)
#        ROUNDS=2 CLIENTS=50 PIPELINE=16 KEYSPACE=100000 VALUE_SIZE=3 ONLY=get (workloads whose
#        name holds it: "set", "get", "P16", ...) TARGETS="unix tcp twemproxy tdb"
#        QUERY_LOG=true (false: tdb serve runs with its query log off, TDB_PG_QUERY_LOG=false)
#        PROFILE=0 (1: after the rounds, `perf record -g` of tdb serve during one extra run of each
#        workload through tdb; the top symbols go to RESULTS, the data beside it as
#        <RESULTS without .md>-<test>-P<depth>.perf.data) PROFILE_SECS=5
#        RESULTS=/tmp/tdb-redis-<time>.md TDB_BIN=path (use this binary instead of building)
# e.g.   TDB_BIN=target/release/tdb DURATION=3 ROUNDS=1 benches/redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
REQUESTS=${REQUESTS:-}
PIPELINED_REQUESTS=${PIPELINED_REQUESTS:-}
ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-50}
PIPELINE=${PIPELINE:-16}
KEYSPACE=${KEYSPACE:-100000}
VALUE_SIZE=${VALUE_SIZE:-3}
ONLY=${ONLY:-}
TARGETS=${TARGETS:-"unix tcp twemproxy tdb"}
PROFILE=${PROFILE:-0}
PROFILE_SECS=${PROFILE_SECS:-5}
QUERY_LOG=${QUERY_LOG:-true}
RESULTS=${RESULTS:-/tmp/tdb-redis-$(date +%Y%m%d-%H%M%S).md}
# name|redis-benchmark test|pipeline depth
WORKLOADS=(
    "SET|set|1"
    "GET|get|1"
    "SET -P $PIPELINE|set|$PIPELINE"
    "GET -P $PIPELINE|get|$PIPELINE"
)
if [ -n "$ONLY" ]; then
    kept=()
    for w in "${WORKLOADS[@]}"; do [[ ${w%%|*} == *"$ONLY"* ]] && kept+=("$w"); done
    [ ${#kept[@]} -gt 0 ] || { echo "redis.sh: no workload matches ONLY='$ONLY'" >&2; exit 1; }
    WORKLOADS=("${kept[@]}")
fi
read -r -a TARGET_LIST <<<"$TARGETS"
for t in "${TARGET_LIST[@]}"; do
    case $t in unix | tcp | twemproxy | tdb) ;; *) echo "redis.sh: unknown target '$t'" >&2; exit 1 ;; esac
done

die() { echo "redis.sh: $*" >&2; exit 1; }

. scripts/lib/packages.sh
ensure_packages redis-server redis-tools nutcracker postgresql postgresql-client \
    python3 python3-cryptography curl jq
if [ "$PROFILE" = 1 ]; then
    command -v perf >/dev/null || ensure_packages linux-perf
fi
. benches/lib.sh
bench_build
bench_setup

step() { echo "== $*"; }
serve_log_tail() { echo "--- tdb serve log (tail)"; tail -20 "$ROOT/serve.log" | sed 's/\x1b\[[0-9;]*m//g'; }

# --- PostgreSQL and tdb --------------------------------------------------------------------------
step "starting PostgreSQL and tdb serve"
start_postgres -c max_connections=100
R_LISTEN=127.0.0.1:$(free_port)
# The admission gate lets 32 connections from one address authenticate at once by default;
# redis-benchmark opens all its clients at once, from one address.
export TDB_PG_MAX_UNAUTHENTICATED_PER_ADDRESS=$((CLIENTS + 16))
# The query log (on by default), for every proxy of this tdb serve.
export TDB_PG_QUERY_LOG=$QUERY_LOG
start_tdb --pg-listen "127.0.0.1:$(free_port)" --mysql-listen "127.0.0.1:$(free_port)" --redis-listen "$R_LISTEN"
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

step "workspace bench (Redis), deployed, tenant bench"
api POST /workspaces '{"name":"bench","database":"Redis","mode":"tenant"}' >/dev/null
dep=$(api POST /deployments '{"blueprint_name":"bench"}' | jq -r .id)
d=$(wait_deployment "$dep")
[ "$(jq -r .status <<<"$d")" = completed ] || die "deployment of bench did not complete: $d"
# The clients, the probes and redis-benchmark's CONFIG GET connection, with room to spare.
api PATCH /workspaces/bench/settings "$(jq -n --argjson n $((CLIENTS + 10)) '{max_connections: $n}')" >/dev/null
TENANT=$(api POST /tenants '{"tenant_id":"bench","databases":[{"blueprint":"bench"}]}')
CONN_STR=$(jq -r '[.. | .connection_string? | strings][0] // empty' <<<"$TENANT")
# rediss://USER:KEY@HOST:PORT/0
[[ $CONN_STR =~ ^rediss?://([^:@/]+):([^@/]+)@([^:/]+):([0-9]+)/0$ ]] \
    || die "unexpected connection string in POST /tenants: '$CONN_STR'"
R_USER=${BASH_REMATCH[1]} R_KEY=${BASH_REMATCH[2]} R_HOST=${BASH_REMATCH[3]} R_PORT=${BASH_REMATCH[4]}
[[ $R_KEY =~ ^[A-Za-z0-9._~-]+$ ]] || die "the tenant's key holds characters that need URL decoding"
if [ "$R_HOST:$R_PORT" != "$R_LISTEN" ]; then
    echo "note: the tenant's connection names $R_HOST:$R_PORT, the Redis proxy listens on $R_LISTEN" >&2
fi

# The managed redis-server: its socket, pid, and its administrator (the password unsealed from
# state.json with the data dir's master key: AES-256-GCM, a version byte, a 12-byte nonce, the
# ciphertext; associated data `managed-redis-admin`).
REDIS_DIR=$ROOT/tdb/servers/redis-shared
[ -f "$REDIS_DIR/state.json" ] || die "no $REDIS_DIR/state.json: did tdb start its managed Redis?"
SOCK=$(sed -n 's/^unixsocket "\(.*\)"$/\1/p' "$REDIS_DIR/redis.conf")
REDIS_PID=$(cat "$REDIS_DIR/data/redis.pid")
{ [ -S "$SOCK" ] && kill -0 "$REDIS_PID"; } || die "redis-server's socket '$SOCK' or pid $REDIS_PID is not there"
CREDS=$(unseal_admin "$REDIS_DIR" managed-redis-admin) || die "could not unseal Redis's admin password"
ADMIN_USER=$(sed -n 1p <<<"$CREDS"); ADMIN_PW=$(sed -n 2p <<<"$CREDS")
# admin ARGS...: redis-cli as the administrator over the socket (the password in the environment).
admin() { REDISCLI_AUTH=$ADMIN_PW redis-cli -s "$SOCK" --user "$ADMIN_USER" "$@"; }
[ "$(admin PING)" = PONG ] || die "redis-server does not answer its administrator on $SOCK"
REDIS_VERSION=$(admin INFO server | sed -n 's/^redis_version:\([^\r]*\).*/\1/p')
echo "redis-server $REDIS_VERSION: socket $SOCK, pid $REDIS_PID, administrator $ADMIN_USER"

# The direct TCP leg: a loopback port on the same server (its configuration binds 127.0.0.1).
TCP_PORT=$(free_port)
[ "$(admin CONFIG SET port "$TCP_PORT")" = OK ] || die "CONFIG SET port $TCP_PORT failed"

# twemproxy: `redis_auth` makes it send `AUTH <password>` (the `default` user) to the server and
# ask its own clients for that password. tdb keeps `default` off; it is turned on in memory only
# (no ACL SAVE) and the whole data dir goes at exit.
TW_PW=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
[ "$(admin ACL SETUSER default on ">$TW_PW" '~*' '&*' +@all)" = OK ] || die "could not open redis-server's default user"
TW_PORT=$(free_port)
cat >"$ROOT/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$TW_PORT
  redis: true
  redis_auth: $TW_PW
  hash: fnv1a_64
  distribution: ketama
  preconnect: true
  servers:
   - $SOCK:1
EOF
chmod 600 "$ROOT/nutcracker.yml"
nutcracker -t -c "$ROOT/nutcracker.yml" >"$ROOT/nutcracker.test" 2>&1 \
    || { cat "$ROOT/nutcracker.test" >&2; die "nutcracker refused its configuration"; }
# In a session of its own, as tdb serve (see start_tdb): each session is one scheduling group.
in_own_session nutcracker -c "$ROOT/nutcracker.yml" -o "$ROOT/nutcracker.log" -s "$(free_port)" \
    -a 127.0.0.1 -p "$ROOT/nutcracker.pid" &
TW_PID=$!
bench_on_exit "kill $TW_PID; wait $TW_PID"
for _ in $(seq 1 50); do
    if redis-cli -h 127.0.0.1 -p "$TW_PORT" --no-auth-warning -a "$TW_PW" PING 2>/dev/null | grep -qx PONG; then break; fi
    kill -0 "$TW_PID" 2>/dev/null || { cat "$ROOT/nutcracker.log" >&2; die "nutcracker exited"; }
    sleep 0.1
done
TW_VERSION=$(nutcracker -V 2>&1 | sed -n 's/^This is nutcracker-//p')

# Each target's connection options for redis-cli and redis-benchmark (a password given with -a
# is on the command line: these are a throw-away server's).
target_args() {
    case $1 in
        unix) echo "-s $SOCK --user $ADMIN_USER -a $ADMIN_PW" ;;
        tcp) echo "-h 127.0.0.1 -p $TCP_PORT --user $ADMIN_USER -a $ADMIN_PW" ;;
        twemproxy) echo "-h 127.0.0.1 -p $TW_PORT -a $TW_PW" ;;
        tdb) echo "-h $R_HOST -p $R_PORT --user $R_USER -a $R_KEY" ;;
    esac
}
describe() {
    case $1 in
        unix) echo "redis-server at $SOCK as $ADMIN_USER" ;;
        tcp) echo "redis-server at 127.0.0.1:$TCP_PORT as $ADMIN_USER" ;;
        twemproxy) echo "nutcracker $TW_VERSION at 127.0.0.1:$TW_PORT (pid $TW_PID), server $SOCK as default" ;;
        tdb) echo "tdb Redis proxy at $R_HOST:$R_PORT as tenant $R_USER, plaintext" ;;
    esac
}
hop_pid() {
    case $1 in twemproxy) echo "$TW_PID" ;; tdb) echo "$TDB_PID" ;; *) echo "" ;; esac
}
# cli TARGET ARGS...: redis-cli against one target.
cli() {
    local target=$1; shift
    # shellcheck disable=SC2046 # the target's options are words
    redis-cli $(target_args "$target") --no-auth-warning "$@"
}

# --- checks and the keyspaces ----------------------------------------------------------------------
# Every target must store and read back a key; a proxy answering errors fails the script here,
# and redis-benchmark 7 exits non-zero on any error reply during a run.
step "checking every target (SET then GET of a probe key)"
for target in "${TARGET_LIST[@]}"; do
    v=probe-$target-$RANDOM
    out=$(cli "$target" SET "probe:$target" "$v" 2>&1) || true
    [ "$out" = OK ] || { [ "$target" = tdb ] && serve_log_tail >&2; die "$target: SET answered '$out': $(describe "$target")"; }
    out=$(cli "$target" GET "probe:$target" 2>&1) || true
    [ "$out" = "$v" ] || { [ "$target" = tdb ] && serve_log_tail >&2; die "$target: GET answered '$out', expected '$v': $(describe "$target")"; }
    echo "$target ok: $(describe "$target")"
done
# tdb's keys are the tenant's, prefixed on the server; the others share the unprefixed ones.
if [[ " $TARGETS " == *" tdb "* ]]; then
    PREFIXED=$(admin --scan --pattern '*probe:tdb' | head -1)
    { [ -n "$PREFIXED" ] && [ "$PREFIXED" != probe:tdb ]; } || die "the tenant's probe key is not prefixed on the server ('$PREFIXED')"
    echo "the tenant's keys on the server: ${PREFIXED%probe:tdb}…"
fi

# Every key GET may ask for exists (redis-benchmark's keys are key:<12 digits> below KEYSPACE),
# in both keyspaces: written through the direct socket and through tdb's proxy.
step "filling $KEYSPACE keys of $VALUE_SIZE bytes, unprefixed and the tenant's"
VALUE=$(head -c "$VALUE_SIZE" /dev/zero | tr '\0' x)
fill() {
    awk -v n="$KEYSPACE" -v v="$VALUE" 'BEGIN { for (i = 0; i < n; i++) printf "SET key:%012d %s\n", i, v }' \
        | cli "$1" --pipe >"$ROOT/fill.out" 2>&1 || { cat "$ROOT/fill.out" >&2; die "filling through $1 failed"; }
    grep -q 'errors: 0, replies: '"$KEYSPACE" "$ROOT/fill.out" || { cat "$ROOT/fill.out" >&2; die "filling through $1 had errors"; }
}
fill unix
if [[ " $TARGETS " == *" tdb "* ]]; then fill tdb; fi
echo "keys on the server: $(admin DBSIZE)"

# --- measuring ----------------------------------------------------------------------------------
# cpu_ticks PID: user + system CPU of every thread of PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# machine_ticks: the CPU every process on the machine has used so far (user, nice, system, irq,
# softirq), in clock ticks.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
TICKS=$(getconf CLK_TCK)
PG_PID=$(head -1 "$ROOT/pg/data/postmaster.pid")
# pg_ticks: the CPU of the catalog's PostgreSQL so far: the postmaster's own and its waited-for
# children's (fields 14-17), and its live children's.
pg_ticks() {
    local total c
    total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$PG_PID/stat")
    for c in $(pgrep -P "$PG_PID"); do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
# children_secs FILE...: from each FILE, the output of `times`, the CPU seconds (user + system)
# of the shell's waited-for children. `times` must run in the measuring shell itself.
children_secs() {
    awk 'FNR == 2 { t = 0; for (i = 1; i <= 2; i++) { v = $i; sub(/s$/, "", v); split(v, ms, "m"); t += ms[1] * 60 + ms[2] }
        printf "%s%.3f", (n++ ? " " : ""), t } END { print "" }' "$@"
}

# run_bench TARGET TEST PIPELINE REQUESTS: one redis-benchmark run; prints "rps avg p50 p95 p99
# requests hop_ticks redis_ticks machine_ticks client_secs seconds pg_ticks". A run that fails (an error
# reply makes redis-benchmark 7 exit non-zero), or whose CSV has no line for the test, prints
# redis-benchmark's output and exits. Run it in a subshell of its own ($(...)).
run_bench() {
    local target=$1 test=$2 pipe=$3 n=$4 hop rc=0
    local p0=0 p1=0 r0 r1 m0 m1 c0 c1 s0 s1 g0 g1
    hop=$(hop_pid "$target")
    if [ -n "$hop" ]; then p0=$(cpu_ticks "$hop"); fi
    g0=$(pg_ticks); r0=$(cpu_ticks "$REDIS_PID"); m0=$(machine_ticks); times >"$ROOT/times0"; s0=$(date +%s.%N)
    # shellcheck disable=SC2046 # the target's options are words
    redis-benchmark $(target_args "$target") -c "$CLIENTS" -n "$n" -r "$KEYSPACE" -d "$VALUE_SIZE" \
        -P "$pipe" -t "$test" --csv >"$ROOT/run.out" 2>"$ROOT/run.err" || rc=$?
    s1=$(date +%s.%N); times >"$ROOT/times1"; r1=$(cpu_ticks "$REDIS_PID"); m1=$(machine_ticks); g1=$(pg_ticks)
    if [ -n "$hop" ]; then p1=$(cpu_ticks "$hop"); fi
    read -r c0 c1 < <(children_secs "$ROOT/times0" "$ROOT/times1")
    local t r
    t=$(tr '[:lower:]' '[:upper:]' <<<"$test")
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    r=$(awk -F, -v t="\"$t\"" '$1 == t { gsub(/"/, ""); print $2, $3, $5, $6, $7 }' "$ROOT/run.out")
    if [ "$rc" -ne 0 ] || [ -z "$r" ]; then
        {
            echo "redis-benchmark failed (exit $rc) against $target: $(describe "$target")"
            echo "test $test, -P $pipe, -n $n"
            echo "--- stderr"; grep -v 'Using a password' "$ROOT/run.err" | tail -20
            echo "--- stdout"; tail -20 "$ROOT/run.out"
        } >&2
        if [ "$target" = tdb ]; then serve_log_tail >&2; fi
        if [ "$target" = twemproxy ]; then tail -20 "$ROOT/nutcracker.log" >&2; fi
        exit 1
    fi
    echo "$r $n $((p1 - p0)) $((r1 - r0)) $((m1 - m0)) $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }') $((g1 - g0))"
}

# The warm-up: each workload once against each target, which also sizes the workload's -n so
# that a run takes about DURATION seconds at the targets' mean rate (unless REQUESTS or
# PIPELINED_REQUESTS fix it).
step "warm-up and sizing (one run per workload and target)"
declare -A N
for w in "${WORKLOADS[@]}"; do
    IFS='|' read -r name test pipe <<<"$w"
    if [ "$pipe" = 1 ]; then fixed=$REQUESTS warm=50000; else fixed=$PIPELINED_REQUESTS warm=300000; fi
    sum=0
    for target in "${TARGET_LIST[@]}"; do
        r=$(run_bench "$target" "$test" "$pipe" "$warm")
        rps=${r%% *}
        printf '  %-10s %-10s %10.0f requests/s\n' "$name" "$target" "$rps"
        sum=$(awk -v a="$sum" -v b="$rps" 'BEGIN { print a + b }')
    done
    if [ -n "$fixed" ]; then
        N[$name]=$fixed
    else
        N[$name]=$(awk -v s="$sum" -v k="${#TARGET_LIST[@]}" -v d="$DURATION" \
            'BEGIN { n = s / k * d; n = int(n / 10000 + 0.5) * 10000; print (n < 10000 ? 10000 : n) }')
    fi
    echo "  $name: -n ${N[$name]}"
done

step "tdb serve's and nutcracker's CPU while idle, 5 s"
t0=$(cpu_ticks "$TDB_PID"); w0=$(cpu_ticks "$TW_PID"); sleep 5; t1=$(cpu_ticks "$TDB_PID"); w1=$(cpu_ticks "$TW_PID")
IDLE_MS=$(awk -v d="$((t1 - t0))" -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz * 1000 / 5 }')
TW_IDLE_MS=$(awk -v d="$((w1 - w0))" -v hz="$TICKS" 'BEGIN { printf "%.1f", d / hz * 1000 / 5 }')
echo "idle: tdb serve $IDLE_MS ms of CPU per second, nutcracker $TW_IDLE_MS"

# --- the rounds ----------------------------------------------------------------------------------
total=$((ROUNDS * ${#WORKLOADS[@]} * ${#TARGET_LIST[@]}))
step "$total runs of about ${DURATION}s (about $((total * (DURATION + 1) / 60 + 1)) min)"
RAW=$ROOT/raw
: >"$RAW"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average: $LOAD_START"
for round in $(seq 1 "$ROUNDS"); do
    # Odd rounds run the targets in the order given, even rounds in reverse: none is always first.
    order=("${TARGET_LIST[@]}")
    if ! ((round % 2)); then
        order=()
        for ((i = ${#TARGET_LIST[@]} - 1; i >= 0; i--)); do order+=("${TARGET_LIST[i]}"); done
    fi
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name test pipe <<<"$w"
        for target in "${order[@]}"; do
            r=$(run_bench "$target" "$test" "$pipe" "${N[$name]}")
            read -r rps avg p50 p95 p99 n hop rs machine csecs secs pg <<<"$r"
            echo "$name|$target|$round|$rps|$avg|$p50|$p95|$p99|$n|$hop|$rs|$machine|$csecs|$secs|$pg" >>"$RAW"
            awk -v nm="$name" -v t="$target" -v r="$round" -v R="$ROUNDS" -v rps="$rps" -v avg="$avg" \
                -v n="$n" -v hop="$hop" -v rs="$rs" -v hz="$TICKS" -v s="$secs" 'BEGIN {
                printf "[round %s/%s] %-8s %-10s %10.0f req/s %7.3f ms  hop %5.2f us/req  redis %5.2f us/req  (%.1fs)\n",
                    r, R, nm, t, rps, avg, hop / hz * 1e6 / n, rs / hz * 1e6 / n, s }'
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average: $LOAD_END"

# --- a profile of tdb ----------------------------------------------------------------------------
PROFILES=$ROOT/profiles
: >"$PROFILES"
if [ "$PROFILE" = 1 ] && [[ " $TARGETS " == *" tdb "* ]]; then
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r name test pipe <<<"$w"
        step "perf record -g of tdb serve for ${PROFILE_SECS}s during $name through tdb"
        perf record -q -g -p "$TDB_PID" -o "$ROOT/perf.data" -- sleep "$PROFILE_SECS" >/dev/null 2>&1 &
        perf_pid=$!
        run_bench tdb "$test" "$pipe" "${N[$name]}" >/dev/null
        wait "$perf_pid" || true
        cp "$ROOT/perf.data" "${RESULTS%.md}-$test-P$pipe.perf.data"
        {
            perf_section "$ROOT/perf.data" "$name through tdb" dso 0 8
            perf_section "$ROOT/perf.data" "$name through tdb" dso,sym 1 30
        } >>"$PROFILES"
    done
fi

# --- the report ----------------------------------------------------------------------------------
# Means over the rounds; CPU per request is each run's CPU over its requests, averaged.
# shellcheck disable=SC2016 # awk's own $fields
AWK_LIB='
    function per(ticks, n) { return n > 0 ? ticks / hz * 1e6 / n : 0 }
    {
        if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
        if (!($2 in tseen)) { tseen[$2] = 1; torder[++nt] = $2 }
        kt = $1 "|" $2; cnt[kt]++
        rps[kt] += $4; avg[kt] += $5; p50[kt] += $6; p99[kt] += $8
        hopq[kt] += per($10, $9); redisq[kt] += per($11, $9); machq[kt] += per($12, $9); clientq[kt] += per($13 * hz, $9)
        pgq[kt] += per($15, $9)
    }
    function m(a, kt) { return cnt[kt] ? a[kt] / cnt[kt] : 0 }
'
report() {
    awk -F'|' -v hz="$TICKS" "$AWK_LIB"'
        BEGIN {
            print "| workload | target | requests/s | vs twemproxy | latency avg ms | p50 ms | p99 ms | hop CPU µs/req | redis-server CPU µs/req | catalog PostgreSQL CPU µs/req | client CPU µs/req | machine CPU µs/req |"
            print "|---|---|---|---|---|---|---|---|---|---|---|---|"
        }
        END {
            for (i = 1; i <= n; i++) for (j = 1; j <= nt; j++) {
                t = torder[j]; kt = order[i] "|" t
                if (!cnt[kt]) continue
                tw = order[i] "|twemproxy"
                printf "| %s | %s | %.0f | %s | %.3f | %.3f | %.3f | %s | %.2f | %.2f | %.2f | %.2f |\n", order[i], t, m(rps, kt),
                    cnt[tw] ? sprintf("%.2f", m(rps, kt) / m(rps, tw)) : "-", m(avg, kt), m(p50, kt), m(p99, kt),
                    (t == "tdb" || t == "twemproxy") ? sprintf("%.2f", m(hopq, kt)) : "-",
                    m(redisq, kt), m(pgq, kt), m(clientq, kt), m(machq, kt)
            }
        }' "$RAW"
}
# The goal: tdb at least 1.0x twemproxy's throughput and at most its CPU per request.
goals() {
    awk -F'|' -v hz="$TICKS" "$AWK_LIB"'
        END {
            print "| workload | tdb / twemproxy requests/s | throughput goal (≥ 1.0) | tdb / twemproxy hop CPU µs/req | CPU goal (≤ 1.0) | machine CPU µs/req, tdb / twemproxy |"
            print "|---|---|---|---|---|---|"
            for (i = 1; i <= n; i++) {
                a = order[i] "|tdb"; b = order[i] "|twemproxy"
                if (!cnt[a] || !cnt[b]) continue
                rt = m(rps, a) / m(rps, b); ct = m(hopq, b) > 0 ? m(hopq, a) / m(hopq, b) : 0
                printf "| %s | %.0f / %.0f = %.2f | %s | %.2f / %.2f = %.2f | %s | %.2f / %.2f |\n", order[i],
                    m(rps, a), m(rps, b), rt, rt >= 1 ? "yes" : "no", m(hopq, a), m(hopq, b), ct,
                    ct <= 1 ? "yes" : "no", m(machq, a), m(machq, b)
            }
        }' "$RAW"
}
if [ -n "${TDB_BIN:-}" ]; then
    REV="binary $TDB_BIN"
else
    REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git status --porcelain -- crates Cargo.lock 2>/dev/null)" ]; then REV="$REV+changes"; fi
fi
RBV=$(redis-benchmark --version | awk '{ print $2 }')
{
    echo "# redis-benchmark: Redis directly, through twemproxy and through tdb's Redis proxy"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), tdb $REV, redis-server $REDIS_VERSION (managed by tdb, append-only file on)," \
        "nutcracker $TW_VERSION, redis-benchmark $RBV, $(nproc) cores, $CLIENTS clients, keys below $KEYSPACE" \
        "(all present), values of $VALUE_SIZE bytes, $ROUNDS round(s), requests per run:" \
        "$(for w in "${WORKLOADS[@]}"; do printf '%s %s; ' "${w%%|*}" "${N[${w%%|*}]}"; done)"
    echo "Every target reaches the same redis-server: unix = its Unix socket, tcp = a loopback port"
    echo "given to it for the run, twemproxy and tdb = TCP loopback to the proxy, which reaches the"
    echo "server over the Unix socket. Means over the rounds. Latency is redis-benchmark's. CPU: utime +"
    echo "stime from /proc of the hop (all of \`tdb serve\`, or nutcracker), of redis-server, of the"
    echo "catalog's PostgreSQL (it stores tdb's query log: $QUERY_LOG), of the client (redis-benchmark,"
    echo "from bash's \`times\`) and of the whole machine, per request."
    echo "tdb serve used $IDLE_MS ms of CPU per second while idle, nutcracker $TW_IDLE_MS; load average"
    echo "at the start of the rounds: $LOAD_START, at the end: $LOAD_END."
    echo
    report
    echo
    echo "Goal: tdb at least 1.0x twemproxy's throughput and at most its CPU per request:"
    echo
    goals
    echo
    echo "## Runs"
    echo
    echo "| workload | target | round | requests/s | latency avg ms | p50 ms | p95 ms | p99 ms | requests | seconds | hop CPU µs/req | redis-server CPU µs/req | catalog PostgreSQL CPU µs/req | client CPU µs/req | machine CPU µs/req | rest of the machine µs/req |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'|' -v hz="$TICKS" '
        function per(ticks, n) { return n > 0 ? sprintf("%.2f", ticks / hz * 1e6 / n) : "-" }
        { printf "| %s | %s | %s | %.0f | %.3f | %.3f | %.3f | %.3f | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3,
            $4, $5, $6, $7, $8, $9, $14, ($2 == "tdb" || $2 == "twemproxy") ? per($10, $9) : "-", per($11, $9),
            per($15, $9), per($13 * hz, $9), per($12, $9), per($12 - $10 - $11 - $15 - $13 * hz, $9) }' "$RAW"
    if [ -s "$PROFILES" ]; then
        echo
        echo "## Profiles"
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
