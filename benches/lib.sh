# shellcheck shell=bash
# Shared helpers for the benchmarks in benches/: sourced, not run. A script sets
# `set -euo pipefail`, cds to the repository root, sources this file, then calls:
#   bench_build          the release binary into $TDB (or TDB_BIN=path to use a built one)
#   bench_setup          $ROOT (a temporary directory), $PGBIN, $PW, and the cleanup trap
#   start_postgres ARGS  a private PostgreSQL on a free port: $PG_PORT, $ADMIN (superuser URL)
#   start_extra_postgres NAME ARGS  one more, in $ROOT/NAME: $EXTRA_PORT_<NAME>, $EXTRA_ADMIN_<NAME>
#   start_tdb ARGS       `tdb serve` attached to it: $API, $TDB_PID; fails with its log
#   signup               an account and its admin key: $KEY, $H (the Authorization header)
# and, when it starts more, registers how to stop it with `bench_on_exit 'command'`.

BENCH_ON_EXIT=()

bench_build() {
    if [ -n "${TDB_BIN:-}" ]; then
        TDB=$(realpath "$TDB_BIN")
    else
        . scripts/lib/packages.sh
        # shellcheck disable=SC2046
        ensure_packages $(libclang_packages) # pg_query's bindings
        cargo build --release --locked -q -p tdb
        TDB=$PWD/target/release/tdb
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || shuf -i 20000-60000 -n 1
}

# Runs a command as `postgres` when root (PostgreSQL and PgBouncer refuse to run as root).
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# Makes a directory that `postgres` owns when we are root.
pg_dir() { mkdir -p "$1"; if [ "$(id -u)" -eq 0 ]; then chown postgres "$1"; fi; }

bench_on_exit() { BENCH_ON_EXIT+=("$1"); }

# in_own_session COMMAND...: runs COMMAND as the leader of a new session, in this process (so a
# background job's $! is COMMAND's pid: scripts run without job control, so a job is never a
# process group leader and setsid does not fork).
in_own_session() { exec setsid "$@"; }

bench_cleanup() {
    local i
    for ((i = ${#BENCH_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${BENCH_ON_EXIT[i]}" >/dev/null 2>&1 || true
    done
    if [ -n "${TDB_PID:-}" ]; then
        kill "$TDB_PID" 2>/dev/null || true
        wait "$TDB_PID" 2>/dev/null || true
    fi
    if [ -d "${ROOT:-}/pg/data" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -m fast stop >/dev/null 2>&1 || true
    fi
    if [ -n "${ROOT:-}" ]; then rm -rf "$ROOT"; fi
}

bench_setup() {
    PGBIN=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    ROOT=$(mktemp -d /tmp/tdb-bench.XXXXXX)
    chmod 755 "$ROOT"
    PW=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    # shellcheck disable=SC2154 # st is set by the trap itself
    trap 'st=$?; bench_cleanup; exit $st' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# start_postgres [-c name=value ...]: initdb as `bench` with a SCRAM password, then start on
# 127.0.0.1 only (no Unix socket).
start_postgres() {
    PG_PORT=$(free_port)
    pg_dir "$ROOT/pg"
    echo "$PW" >"$ROOT/pw"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$ROOT/pw"; fi
    as_pg "$PGBIN/initdb" -D "$ROOT/pg/data" -U bench -A scram-sha-256 --pwfile="$ROOT/pw" -E UTF8 --no-locale >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$ROOT/pg/data" -l "$ROOT/pg/log" -w -o \
        "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= $*" start >/dev/null \
        || { echo "PostgreSQL did not start:" >&2; tail -20 "$ROOT/pg/log" >&2; return 1; }
    ADMIN="postgresql://bench:$PW@127.0.0.1:$PG_PORT/postgres"
}

# start_extra_postgres NAME [-c name=value ...]: one more private PostgreSQL, made as
# start_postgres makes its own (user `bench`, the same password, 127.0.0.1 only), in $ROOT/NAME on
# a free port. NAME is a shell identifier's tail (e.g. `2`); sets EXTRA_PORT_<NAME> and
# EXTRA_ADMIN_<NAME> (its superuser URL) and stops the server on exit.
start_extra_postgres() {
    local name=$1 port dir
    shift
    dir=$ROOT/$name
    port=$(free_port)
    pg_dir "$dir"
    if [ ! -f "$ROOT/pw" ]; then
        echo "$PW" >"$ROOT/pw"
        if [ "$(id -u)" -eq 0 ]; then chown postgres "$ROOT/pw"; fi
    fi
    as_pg "$PGBIN/initdb" -D "$dir/data" -U bench -A scram-sha-256 --pwfile="$ROOT/pw" -E UTF8 --no-locale >/dev/null
    bench_on_exit "as_pg '$PGBIN/pg_ctl' -D '$dir/data' -m fast stop"
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
        "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= $*" start >/dev/null \
        || { echo "PostgreSQL $name did not start:" >&2; tail -20 "$dir/log" >&2; return 1; }
    printf -v "EXTRA_PORT_$name" '%s' "$port"
    printf -v "EXTRA_ADMIN_$name" '%s' "postgresql://bench:$PW@127.0.0.1:$port/postgres"
}

# start_tdb [serve flags ...]: `tdb serve` with the catalog in the server's `postgres` database,
# the API on a free port; waits for /health. It runs in a session of its own, as a service would
# and as PostgreSQL (pg_ctl) and PgBouncer (-d) do: with the kernel's autogroup scheduling a
# session is one scheduling group, and tdb left in the script's session would share one CPU share
# with pgbench instead of having its own.
start_tdb() {
    local api_port
    api_port=$(free_port)
    in_own_session "$TDB" serve --data-dir "$ROOT/tdb" --catalog-url "$ADMIN" \
        --api-listen "127.0.0.1:$api_port" "$@" >"$ROOT/serve.log" 2>&1 &
    TDB_PID=$!
    API=http://127.0.0.1:$api_port
    local _
    for _ in $(seq 1 300); do
        if curl -sf "$API/health" >/dev/null; then return 0; fi
        if ! kill -0 "$TDB_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "tdb serve did not become healthy; its log:" >&2
    tail -30 "$ROOT/serve.log" >&2
    return 1
}

signup() {
    KEY=$(curl -sf "$API/signup" -d '{"email":"bench@example.com","password":"bench-password"}' | jq -r .api_key)
    H="Authorization: Bearer $KEY"
}

# Polls a deployment until it ends; prints its final JSON.
wait_deployment() {
    local id=$1 d
    while true; do
        d=$(curl -sf "$API/deployments/$id" -H "$H")
        case $(jq -r .status <<<"$d") in completed | completed_with_errors | failed) echo "$d"; return ;; esac
        sleep 0.05
    done
}

# unseal_admin SERVER_DIR AAD: the administrator's user and password of a managed server (two
# lines), the password unsealed from its state.json with the data dir's master key
# ($ROOT/tdb/master.key: AES-256-GCM, a version byte, a 12-byte nonce, then the ciphertext;
# AAD is `managed-mariadb-admin`, `managed-redis-admin`, ...).
unseal_admin() {
    python3 - "$1/state.json" "$ROOT/tdb/master.key" "$2" <<'EOF'
import base64, json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
state = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read().strip()
try:
    key = bytes.fromhex(text)
except ValueError:
    key = base64.b64decode(text)
sealed = bytes.fromhex(state["admin_password_sealed"])
if sealed[0] != 1:
    sys.exit("unknown sealed format")
print(state["admin_user"])
print(AESGCM(key).decrypt(sealed[1:13], sealed[13:], sys.argv[3].encode()).decode())
EOF
}

# perf_section PERF_DATA TITLE SORT PERCENT ROWS: a Markdown section of `perf report
# --no-children --sort SORT` of PERF_DATA, the entries at PERCENT% or more, at most ROWS.
perf_section() {
    echo "### $2: \`perf report --no-children --sort $3\`, entries at $4% or more"
    echo
    echo '```'
    perf report -i "$1" --no-children --sort "$3" --percent-limit "$4" --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -"$5"
    echo '```'
    echo
}
