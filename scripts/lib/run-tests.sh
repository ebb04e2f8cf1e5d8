#!/usr/bin/env bash
# Builds every test binary of the workspace, then runs them JOBS at a time instead of cargo's
# one after another: most integration tests spend their time waiting on the servers they
# start, so on 2 cores one binary at a time leaves the machine half idle. Each binary runs in
# its package's directory, as under `cargo test`, with its output kept in
# target/test-logs/<package>-<target>.log; a binary that fails has its whole output printed.
# The doc tests run last, through cargo. Exits non-zero if anything failed.
#
# A few binaries whose tests need a machine without other load run first, one at a time
# (ALONE). Of the rest, the slowest binaries of the last run start first (their times are kept in
# target/test-logs/durations.tsv). On a clean clone, those that took longest in earlier runs
# (SLOW, 100-215 s each at 3 at a time on 2 cores) start first, then the other integration
# tests of the `tdb` crate, then the rest.
#
# Usage: scripts/lib/run-tests.sh [JOBS]   (default: TDB_TEST_JOBS, else 3)
#   Arguments after `--` go to every test binary (e.g. `-- --test-threads=1`).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/pool.sh

jobs="${TDB_TEST_JOBS:-3}"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    jobs=$1
    shift
fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then
    shift
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [JOBS] [-- test binary arguments]  (JOBS: a whole number, default 3)" >&2
    exit 2
fi

logs=target/test-logs
mkdir -p "$logs"
list="$logs/binaries.tsv"
durations="$logs/durations.tsv"

# Each test artifact: the executable, its package's directory, and a name for its log.
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics \
    | jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
        | [.executable, (.manifest_path | sub("/Cargo.toml$"; "")),
           ((.manifest_path | split("/"))[-2] + "-" + .target.kind[0] + "-" + .target.name)]
        | @tsv' >"$list"

# The order: by the last run's durations, slowest first; binaries it did not see go first, those
# of the tdb crate's integration tests ahead of the rest.
SLOW="tdb-test-crash tdb-test-pitr tdb-test-hardening tdb-test-dedicated tdb-test-backups"
# Binaries run alone, before the others (see below).
ALONE="tdb-test-hardening_net tdb-test-hardening_proxy tdb-test-pitr tdb-test-crash"
order() {
    awk -F'\t' -v known="$durations" -v slow="$SLOW" '
        BEGIN {
            while ((getline line < known) > 0) { split(line, f, "\t"); secs[f[1]] = f[2] }
            n = split(slow, s, " "); for (i = 1; i <= n; i++) rank[s[i]] = n - i
        }
        {
            if ($3 in secs) key = secs[$3]
            else if ($3 in rank) key = 200000 + rank[$3]
            else if ($3 ~ /^tdb-test-/) key = 100000
            else key = 50000
            printf "%s\t%s\n", key, $0
        }' "$list" | sort -t$'\t' -k1,1nr -s | cut -f2-
}

failed=()
passed=0
tests=0
: >"$durations.new"

# run_one "EXE<tab>DIR<tab>NAME": one test binary in its package's directory, as cargo runs it.
run_one() {
    local exe dir name
    IFS=$'\t' read -r exe dir name <<<"$1"
    printf '%s\n' "$SECONDS" >"$logs/$name.started"
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" exec "$exe" "${binary_args[@]}") >"$logs/$name.log" 2>&1
}

# finish "EXE<tab>DIR<tab>NAME" STATUS: reports a binary that ended.
finish() {
    local name=${1##*$'\t'} status=$2 secs summary count
    secs=$((SECONDS - $(cat "$logs/$name.started")))
    rm -f "$logs/$name.started"
    printf '%s\t%s\n' "$name" "$secs" >>"$durations.new"
    summary=$(grep -E '^test result:' "$logs/$name.log" | tail -n 1 || true)
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        count=$(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed.*/\1/p' <<<"$summary")
        tests=$((tests + ${count:-0}))
        echo "ok      $name (${secs}s): ${summary#test result: }"
    else
        failed+=("$name")
        echo "FAILED  $name (${secs}s, exit $status); its output:"
        sed 's/^/    /' "$logs/$name.log"
    fi
}

binary_args=("$@")
# Test binaries still running when this script stops (interrupted, or failed itself) stop too.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
order >"$logs/order.tsv"
# First, one at a time on an otherwise idle machine, the binaries whose tests failed when run
# beside others (each waits for an effect of load-free timing: a statement parked within its
# 1 s window, a burst of 300 connections queued by the kernel while tdb is stopped, a restart
# right after kill -9); then the rest, JOBS at a time.
grep -E $'\t('"${ALONE// /|}"')$' "$logs/order.tsv" >"$logs/alone.tsv" || true
grep -vE $'\t('"${ALONE// /|}"')$' "$logs/order.tsv" >"$logs/pooled.tsv" || true
pool_run 1 run_one finish <"$logs/alone.tsv"
pool_run "$jobs" run_one finish <"$logs/pooled.tsv"
mv "$durations.new" "$durations"

echo "test binaries: $passed passed ($tests tests), ${#failed[@]} failed, $jobs at a time, ${SECONDS}s"
doc_status=0
cargo test --workspace --locked --doc || doc_status=$?
if [ ${#failed[@]} -ne 0 ]; then
    echo "failing test binaries: ${failed[*]} (logs in $logs/)" >&2
    exit 1
fi
exit "$doc_status"
