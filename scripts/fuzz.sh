#!/usr/bin/env bash
# Runs every fuzz target in fuzz/fuzz_targets/ for SECONDS each (default 30) with cargo-fuzz on
# the default (stable) toolchain, and exits non-zero if any target finds a crash (a panic, a failed
# assertion, or an input taking over 10 s). Stable has no -Zsanitizer, so targets run with
# `-s none`: libFuzzer still guides by coverage; AddressSanitizer is what is lost, and the
# workspace denies unsafe code. New targets need no change here: `cargo fuzz add NAME` writes
# fuzz/fuzz_targets/NAME.rs and its [[bin]] entry; seeds go in fuzz/corpus/NAME/seed-*.
# Targets run FUZZ_JOBS at a time (default: one per core).
# Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/packages.sh
source scripts/lib/pool.sh

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [seconds]  (a whole number of seconds per target, default 30)" >&2
    exit 2
fi

# libfuzzer-sys compiles libFuzzer's C++ sources.
ensure_packages g++
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

shopt -s nullglob
targets=(fuzz/fuzz_targets/*.rs)
if [ ${#targets[@]} -eq 0 ]; then
    echo "no fuzz targets in fuzz/fuzz_targets/" >&2
    exit 1
fi

fuzz_flags=(--fuzz-dir fuzz --sanitizer none --debug-assertions)
cargo fuzz build "${fuzz_flags[@]}"

# What libFuzzer finds goes to a scratch corpus; the tracked seeds are only read.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
logs="fuzz/target/logs"
mkdir -p "$logs"

# The panic message, then libFuzzer's summary: the crashing input and how to reproduce it.
report_crash() {
    local log="$1"
    if grep -q '^SUMMARY: libFuzzer' "$log"; then
        grep -m 1 -A 6 'panicked at' "$log" || true
        sed -n '/^SUMMARY: libFuzzer/,$p' "$log"
    else
        tail -n 40 "$log"
    fi
}

# One target: its own scratch corpus, the tracked seeds, a log; exits as cargo fuzz does.
fuzz_one() {
    local name=$1 corpora=("$scratch/$1")
    echo "fuzzing $name for ${seconds}s (log: $logs/$name.log)"
    mkdir -p "${corpora[0]}"
    if [ -d "fuzz/corpus/$name" ]; then
        corpora+=("$PWD/fuzz/corpus/$name")
    fi
    cargo fuzz run "${fuzz_flags[@]}" "$name" "${corpora[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$logs/$name.log" 2>&1
}

# libFuzzer runs one process on one core: FUZZ_JOBS targets (default: one per core) run at once.
passed=0
failed=()
# finish NAME STATUS: reports a target that ended.
finish() {
    local name=$1 status=$2 log="$logs/$1.log"
    if [ "$status" -eq 0 ]; then
        echo "$name: $(grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || echo done)"
        passed=$((passed + 1))
    else
        report_crash "$log" >&2
        echo "fuzz target $name failed; full log: $log" >&2
        failed+=("$name")
    fi
}
for file in "${targets[@]}"; do basename "$file" .rs; done >"$scratch/names"
pool_run "${FUZZ_JOBS:-$(nproc)}" fuzz_one finish <"$scratch/names"

echo "fuzz: $passed passed, ${#failed[@]} failed"
if [ ${#failed[@]} -ne 0 ]; then
    echo "failing targets: ${failed[*]}" >&2
    exit 1
fi
