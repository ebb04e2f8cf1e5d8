#!/usr/bin/env bash
# Installs the client libraries the integration tests drive tdb's proxies with besides psql,
# mariadb and sqlx: psycopg 3, psycopg2, asyncpg, pg8000, SQLAlchemy, PyMySQL and redis-py (Python),
# node-postgres, postgres.js and MariaDB's Connector/Node.js (Node), the OpenAPI fuzzer schemathesis, and for the console's
# browser tests Chromium (Debian's), playwright-core and axe-core (Node), into
# target/test-clients/ (or $TDB_TEST_CLIENTS), where the tests look for them. Idempotent and
# quiet: clients already there are kept; Python, pip, Node and npm come from Debian's packages
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/packages.sh

dir="${TDB_TEST_CLIENTS:-$PWD/target/test-clients}"

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    ensure_packages python3 python3-pip
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ensure_packages nodejs npm
fi

if ! PYTHONPATH="$dir/python" python3 -c 'import psycopg, asyncpg' >/dev/null 2>&1; then
    echo "installing psycopg and asyncpg into $dir/python"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --upgrade --target "$dir/python" 'psycopg[binary]>=3.1,<4' 'asyncpg>=0.29,<1'
fi
# The other drivers tests/proxy_drivers.rs runs through the proxy, beside the first two.
if ! PYTHONPATH="$dir/python" python3 -c 'import psycopg2, pg8000, sqlalchemy, greenlet' \
    >/dev/null 2>&1; then
    echo "installing psycopg2, pg8000 and SQLAlchemy into $dir/python"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-conflicts --upgrade --target "$dir/python" 'psycopg2-binary>=2.9,<3' \
        'pg8000>=1.30,<2' 'SQLAlchemy[asyncio]>=2,<3'
fi
# PyMySQL: the MySQL proxy's Python client in tests/mysql_proxy.rs.
if ! PYTHONPATH="$dir/python" python3 -c 'import pymysql' >/dev/null 2>&1; then
    echo "installing PyMySQL into $dir/python"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-conflicts --upgrade --target "$dir/python" 'PyMySQL>=1.1,<2'
fi
# redis-py: the Redis proxy's Python client (RESP2 and RESP3) in tdb-proxy's redis tests.
if ! PYTHONPATH="$dir/python" python3 -c 'import redis' >/dev/null 2>&1; then
    echo "installing redis-py into $dir/python"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-conflicts --upgrade --target "$dir/python" 'redis>=5,<8'
fi
# schemathesis: the OpenAPI-driven fuzzer that checks the server against its document.
if ! PYTHONPATH="$dir/schemathesis" python3 -c 'import schemathesis' >/dev/null 2>&1; then
    echo "installing schemathesis into $dir/schemathesis"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --upgrade --target "$dir/schemathesis" 'schemathesis==4.32.5' 'hypothesis==6.170.27'
fi
if [ ! -f "$dir/node/node_modules/pg/package.json" ]; then
    echo "installing node-postgres into $dir/node"
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" 'pg@8'
fi
if [ ! -f "$dir/node/node_modules/postgres/package.json" ]; then
    echo "installing postgres.js into $dir/node"
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" 'postgres@3'
fi
# MariaDB's Connector/Node.js: the MySQL proxy's client that takes MariaDB's metadata caching
# for its prepared statements, in tests/mysql_proxy.rs.
if [ ! -f "$dir/node/node_modules/mariadb/package.json" ]; then
    echo "installing mariadb (Connector/Node.js) into $dir/node"
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" 'mariadb@3'
fi
# The console's browser tests (tests/console_browser.rs): Playwright's driver (without its
# browser downloads) drives Debian's Chromium; axe-core checks each page's accessibility.
if ! command -v chromium >/dev/null 2>&1; then
    ensure_packages chromium fonts-dejavu-core
fi
if [ ! -f "$dir/node/node_modules/playwright-core/package.json" ] \
    || [ ! -f "$dir/node/node_modules/axe-core/package.json" ]; then
    echo "installing playwright-core and axe-core into $dir/node"
    mkdir -p "$dir/node"
    npm install --silent --no-audit --no-fund --prefix "$dir/node" 'playwright-core@1' 'axe-core@4'
fi
