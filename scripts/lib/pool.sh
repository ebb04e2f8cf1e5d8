# A pool of background jobs, for scripts that run independent commands several at a time.
# Sourced by scripts/fuzz.sh and scripts/lib/run-tests.sh.
#
# pool_run JOBS START FINISH: for each line of standard input, runs `START LINE` in the
# background (standard input from /dev/null), at most JOBS at once; as each ends, calls
# `FINISH LINE STATUS` in the calling shell, in the order they end. Returns once all have ended.
pool_run() {
    local jobs=$1 start=$2 finish=$3 running=0 line pid
    local -A item_of=()
    if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
        echo "pool_run: the number of jobs must be a whole number from 1, not '$jobs'" >&2
        return 2
    fi
    while IFS= read -r line; do
        while [ "$running" -ge "$jobs" ]; do
            pool_reap_one || return
        done
        "$start" "$line" </dev/null &
        item_of[$!]=$line
        running=$((running + 1))
    done
    while [ "$running" -gt 0 ]; do
        pool_reap_one || return
    done
}

# pool_reap_one: waits for one of pool_run's jobs and hands it to FINISH (pool_run's locals);
# fails if the shell has no child left to wait for while jobs are counted as running.
pool_reap_one() {
    local status=0
    pid=
    wait -n -p pid || status=$?
    if [ -z "$pid" ]; then
        echo "pool_run: $running job(s) counted as running, but none is left to wait for" >&2
        return 1
    fi
    # Not one of the pool's jobs (another child of the calling shell): not counted.
    [ -n "${item_of[$pid]+set}" ] || return 0
    "$finish" "${item_of[$pid]}" "$status" </dev/null
    unset "item_of[$pid]"
    running=$((running - 1))
}
