#!/usr/bin/env bash
# The query-log endpoints with a big log: ROWS records (default 1,000,000) spread over LOG_TENANTS
# tenant names (default 1,000) and six days, of which REAL_TENANTS are real tenants. Each endpoint
# is timed with curl from outside (HTTP, authentication, the catalog query, JSON), REQUESTS times
# per real tenant; the report gives the median and p95 in milliseconds.
# Usage: benches/logs.sh   (env: ROWS=1000000 LOG_TENANTS=1000 REAL_TENANTS=20 REQUESTS=25
#                           RESULTS=path TDB_BIN=path)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
LOG_TENANTS=${LOG_TENANTS:-1000}
REAL_TENANTS=${REAL_TENANTS:-20}
REQUESTS=${REQUESTS:-25}
RESULTS=${RESULTS:-/tmp/tdb-logs-$(date +%Y%m%d-%H%M%S).md}

. benches/lib.sh
bench_build
bench_setup
start_postgres -c shared_buffers=256MB
# The benchmark's own requests are far above the default per-project quota.
TDB_QUOTA_FREE_PER_MINUTE=1000000 TDB_RATE_LIMIT_PER_SECOND=100000 start_tdb
signup
curl -sf "$API/workspaces" -H "$H" -d '{"name":"app","database":"postgresql","mode":"tenant"}' >/dev/null
curl -sf "$API/workspaces/app/queries" -H "$H" -d '{"query":"CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric)"}' >/dev/null
DEP=$(curl -sf "$API/deployments" -H "$H" -d '{"blueprint_name":"app"}' | jq -r .id)
wait_deployment "$DEP" >/dev/null
name() { printf 'lt%04d' "$1"; }
for i in $(seq 0 $((REAL_TENANTS - 1))); do
    curl -sf "$API/tenants" -H "$H" -d "{\"tenant_id\":\"$(name "$i")\",\"databases\":[{\"blueprint\":\"app\"}]}" >/dev/null
done
PROJECT=$(psql -Atq "$ADMIN" -c "SELECT id FROM projects LIMIT 1")

echo "writing $ROWS log records over $LOG_TENANTS tenants"
# Each record in a chunk of its own, as a tenant with one statement per writer batch has them:
# the most chunks for the records, the hardest case for reading a page.
psql -Atq "$ADMIN" -c "
INSERT INTO query_log_chunk (project_id, tenant, workspace, database, source, username, first_at,
                             last_at, records, statements, durations_us, successes, sqlstates,
                             row_counts, started)
SELECT '$PROJECT', t, NULL, 'app__' || t, CASE WHEN g % 10 = 0 THEN 'api' ELSE 'proxy' END,
       'u_bench', at, at, 1, ARRAY['SELECT * FROM orders WHERE id = ' || g],
       ARRAY[(random() * 20000)::int8 + 50], ARRAY[g % 50 <> 0],
       ARRAY[CASE WHEN g % 50 = 0 THEN '42P01' END], ARRAY[1::int8], ARRAY[at]
  FROM (SELECT g, 'lt' || lpad((g % $LOG_TENANTS)::text, 4, '0') AS t,
               now() - make_interval(secs => g * 500000.0 / $ROWS) AS at
          FROM generate_series($ROWS, 1, -1) g) s" >/dev/null
psql -Atq "$ADMIN" -c "VACUUM ANALYZE query_log_chunk" >/dev/null
TOTAL=$(psql -Atq "$ADMIN" -c "SELECT count(*) FROM query_log")
echo "query_log holds $TOTAL records"

# time_ms PATH: one request's total time in ms; fails on a non-200 answer.
time_ms() {
    local out code t
    out=$(curl -s -o "$ROOT/body" -w '%{http_code} %{time_total}' "$API$1" -H "$H")
    code=${out% *}; t=${out#* }
    [ "$code" = 200 ] || { echo "GET $1 answered $code: $(cat "$ROOT/body")" >&2; exit 1; }
    awk -v t="$t" 'BEGIN { printf "%.3f\n", t * 1000 }'
}
stat_line() {
    sort -n "$2" | awk -v label="$1" '{ a[NR] = $1 } END {
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        i = int(NR * 0.95 + 0.999); if (i > NR) i = NR
        printf "| %s | %d | %.1f | %.1f |\n", label, NR, m, a[i] }'
}

declare -A PATHS=(
    ["first page (limit 50)"]="/logs"
    ["errors only (type=error)"]="/logs?type=error"
    ["search (search=id = 12)"]="/logs?search=id%20%3D%2012"
    ["stats"]="/logs/stats"
    ["metrics, 24h by hour"]="/metrics?window=24h"
)
ORDER=("first page (limit 50)" "errors only (type=error)" "search (search=id = 12)" "stats" "metrics, 24h by hour")
for label in "${ORDER[@]}"; do : >"$ROOT/$(echo "$label" | tr -c 'a-z0-9' '_')"; done
# Interleaved: every endpoint for one tenant, then the next tenant, REQUESTS rounds.
for _ in $(seq 1 "$REQUESTS"); do
    for i in $(seq 0 $((REAL_TENANTS - 1))); do
        for label in "${ORDER[@]}"; do
            time_ms "/tenants/$(name "$i")${PATHS[$label]}" >>"$ROOT/$(echo "$label" | tr -c 'a-z0-9' '_')"
        done
    done
done
# The first page is what it should be: 50 records, newest first, and more to come.
curl -s "$API/tenants/$(name 0)/logs" -H "$H" | jq -e '.count == 50 and .has_more == true' >/dev/null \
    || { echo "unexpected first page" >&2; exit 1; }

{
    echo "query_log: $TOTAL records over $LOG_TENANTS tenants; $REAL_TENANTS tenants × $REQUESTS requests per endpoint; $(nproc) cores"
    echo
    echo "| endpoint (per tenant, about $((TOTAL / LOG_TENANTS)) records each) | requests | median ms | p95 ms |"
    echo "|---|---|---|---|"
    for label in "${ORDER[@]}"; do stat_line "$label" "$ROOT/$(echo "$label" | tr -c 'a-z0-9' '_')"; done
} | tee "$RESULTS"
echo "written to $RESULTS"
