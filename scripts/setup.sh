#!/usr/bin/env bash
# Sets up a Debian machine to run tdb: installs the database servers tdb manages (PostgreSQL,
# MariaDB, Redis), the C toolchain pieces the build needs, and builds the release binary.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/packages.sh

if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
    apt_cache_ready=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)
    if [ -z "$apt_cache_ready" ]; then
        echo "refreshing the package index"
        if [ "$(id -u)" -eq 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    fi
fi
# shellcheck disable=SC2046
ensure_packages ca-certificates curl jq pkg-config gcc \
    postgresql postgresql-client pgbackrest mariadb-server redis-server \
    $(libclang_packages)

cargo build --release --locked -p tdb
echo
echo "built ./target/release/tdb; start it with: ./target/release/tdb serve"
