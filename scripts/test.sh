#!/usr/bin/env bash
# Runs tdb's checks and tests: formatting, clippy with warnings as errors, the fuzz targets of
# the wire codecs for a short time, and every unit and integration test, several test binaries
# at a time (TDB_TEST_JOBS, default 3: see scripts/lib/run-tests.sh). Installs what the tests
# need first (the PostgreSQL, MariaDB and Redis server programs the harness starts on free
# ports, and the Python and Node clients some tests drive the proxies with), so it passes on a
# fresh Debian machine by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/packages.sh

ensure_packages ca-certificates pkg-config gcc postgresql postgresql-client pgbackrest \
    mariadb-server mariadb-client redis-server redis-tools jq $(libclang_packages)
./scripts/test-clients.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Each fuzz target of the proxy's codecs for a short time; any crash fails the run.
./scripts/fuzz.sh "${TDB_FUZZ_SECONDS:-30}"
# `cargo test --workspace`, with the test binaries run several at a time (see the script).
./scripts/lib/run-tests.sh
