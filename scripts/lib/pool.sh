# A pool of background jobs, for scripts that run independent commands several at a time.
# Sourced by scripts/fuzz.sh and scripts/lib/run-tests.sh.
#
# pool_run JOBS START FINISH: for each line of standard input, runs `START LINE` in the
# background (standard input from /dev/null), at most JOBS at once; as each ends, calls
# `FINISH LINE STATUS` in the calling shell, in the order they end. Returns once all have ended.
pool_run() {
    local jobs=$1 start=$2 finish=$3 running=0 line pid
    local -A item_of=()
    while IFS= read -r line; do
        while [ "$running" -ge "$jobs" ]; do
            pool_reap_one
        done
        "$start" "$line" </dev/null &
        item_of[$!]=$line
        running=$((running + 1))
    done
    while [ "$running" -gt 0 ]; do
        pool_reap_one
    done
}

# pool_reap_one: waits for one of pool_run's jobs and hands it to FINISH (pool_run's locals).
pool_reap_one() {
    local status=0
    wait -n -p pid || status=$?
    # Not one of the pool's jobs (another child of the calling shell): not counted.
    [ -n "${pid:-}" ] && [ -n "${item_of[$pid]+set}" ] || return 0
    "$finish" "${item_of[$pid]}" "$status"
    unset "item_of[$pid]"
    running=$((running - 1))
}
