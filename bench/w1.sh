#!/usr/bin/env bash
# w1.sh — benchmark W1, throughput: enqueue 20,000 no-op jobs in bulk (timed on
# its own), then run them with `sluice serve --concurrency 10` and time it from
# the daemon's start until SQL shows none left. Prints figures; asserts nothing.
#
#   bench/w1.sh [path/to/sluice]        (default: $SLUICE_BIN, else build/sluice)
#
# Database: $DATABASE_URL if set (a disposable database: its noop jobs are
# deleted), else a private embedded cluster under a temporary --home.
# Shape: JOBS (20000), CONCURRENCY (10). Bulk enqueue is one SQL statement,
# sluice.enqueue_many() (each element validated like a single enqueue).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME=w1 HANDLERS=$(dirname "$HERE")/examples/handlers
. "$HERE/lib.sh"
bench_setup "$@"
JOBS=${JOBS:-20000}
CONC=${CONCURRENCY:-10}

"${S[@]}" queue noop >/dev/null # migrations + registry
sql "DELETE FROM sluice.scheduled_jobs WHERE job_type = 'noop'"

T0=$(now)
sql "SELECT sluice.enqueue_many(NULL, 'noop', array_fill('{}'::jsonb, ARRAY[$JOBS]))" >/dev/null
T1=$(now)
sql "ANALYZE sluice.scheduled_jobs" # a long-running deployment has planner statistics

poll_open
T2=$(now)
"${S[@]}" serve --concurrency "$CONC" ${PREFETCH:+--prefetch "$PREFETCH"} --log-level warn >"$TMP/serve.log" 2>&1 &
D_PID=$!
LEFT=1 LEFT_SQL=$(left_sql noop) # built once: no subshell per poll
while [ "$LEFT" != 0 ]; do
    nap 0.05
    kill -0 "$D_PID" 2>/dev/null || { echo "w1: the daemon exited early:" >&2; cat "$TMP/serve.log" >&2; exit 1; }
    poll "$LEFT_SQL"; LEFT=$POLLED
done
T3=$(now)
read -r HWM CPU <<<"$(proc_figures "$D_PID")"
kill -TERM "$D_PID"; wait "$D_PID" || true; D_PID=""

read -r OK FIRST LAST <<<"$(sql "SELECT count(*) FILTER (WHERE status = 'completed'),
        extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at))
        FROM sluice.scheduled_job_runs WHERE job_type = 'noop'" | tr '|' ' ')"
awk -v t0="$T0" -v t1="$T1" -v t2="$T2" -v t3="$T3" -v first="$FIRST" -v last="$LAST" \
    -v jobs="$JOBS" -v conc="$CONC" -v ok="$OK" -v hwm="$HWM" -v cpu="$CPU" 'BEGIN {
    printf "W1: %d no-op jobs, serve --concurrency %d\n", jobs, conc
    printf "  enqueue (one statement):               %7.0f ms  %8.0f jobs/s\n", (t1 - t0) * 1000, jobs / (t1 - t0)
    printf "  run, daemon start → none left:         %7.0f ms  %8.0f jobs/s\n", (t3 - t2) * 1000, jobs / (t3 - t2)
    printf "  run, first start → last completion:    %7.0f ms  %8.0f jobs/s\n", (last - first) * 1000, jobs / (last - first)
    printf "  runs recorded completed: %d; daemon peak RSS %.1f MB; daemon CPU %.2f s\n", ok, hwm, cpu
}'
