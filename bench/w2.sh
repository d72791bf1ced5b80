#!/usr/bin/env bash
# w2.sh — benchmark W2, pickup latency: an idle daemon; 500 no-op jobs enqueued
# one at a time 20 ms apart (through sluice.queue_one_time_job, i.e. the SQL
# path any application uses, with its NOTIFY); latency = the run's recorded
# start − the time stamped just before the enqueue (same clock). Prints p50,
# p95, p99 and max in ms (nearest rank); asserts nothing.
#
#   bench/w2.sh [path/to/sluice]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME=w2 HANDLERS=$(dirname "$HERE")/examples/handlers
. "$HERE/lib.sh"
bench_setup "$@"
JOBS=${JOBS:-500}
GAP=${GAP_MS:-20}

"${S[@]}" queue noop >/dev/null
sql "DELETE FROM sluice.scheduled_jobs WHERE job_type = 'noop'"

"${S[@]}" serve --concurrency 10 --log-level warn >"$TMP/serve.log" 2>&1 &
D_PID=$!
for _ in $(seq 100); do
    [ "$(sql "SELECT count(*) FROM sluice.workers WHERE pid = $D_PID")" = 1 ] && break
    sleep 0.05
done
sleep 1.5 # idle, as in the peer benchmark
"${S[@]}" exec "$HERE/w2_producer.lua" "$JOBS" "$GAP"
LEFT=1
for _ in $(seq 600); do
    LEFT=$(sql "SELECT count(*) FROM sluice.scheduled_jobs WHERE job_type = 'noop' AND status = 'active'")
    [ "$LEFT" = 0 ] && break
    sleep 0.05
done
kill -TERM "$D_PID"; wait "$D_PID" || true; D_PID=""

sql "WITH l AS (SELECT extract(epoch FROM r.started_at) * 1000 - (j.parameters->>'t')::float8 AS ms
              FROM sluice.scheduled_job_runs r JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
              WHERE j.job_type = 'noop' AND j.parameters ? 't')
     SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY ms),
            percentile_disc(0.95) WITHIN GROUP (ORDER BY ms),
            percentile_disc(0.99) WITHIN GROUP (ORDER BY ms), max(ms) FROM l" |
awk -F'|' -v gap="$GAP" '{
    printf "W2: %d jobs enqueued one at a time %d ms apart into an idle daemon\n", $1, gap
    printf "  start − enqueue latency: p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms\n", $2, $3, $4, $5
}'
# Where the time goes (medians): from the enqueue's transaction start to the
# claim's (the enqueue, its commit, the NOTIFY and the worker's wake-up), and
# from the claim's transaction start to the handler's start (the claim, its
# durable commit, the answer and the start of the coroutine).
sql "WITH l AS (SELECT extract(epoch FROM r.created_at - j.created_at) * 1000 AS to_claim,
                      extract(epoch FROM r.started_at - r.created_at) * 1000 AS to_start
              FROM sluice.scheduled_job_runs r JOIN sluice.scheduled_jobs j ON j.id = r.scheduled_job_id
              WHERE j.job_type = 'noop' AND j.parameters ? 't')
     SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY to_claim),
            percentile_disc(0.5) WITHIN GROUP (ORDER BY to_start) FROM l" |
awk -F'|' '{ printf "  medians: enqueue → claim %.2f ms, claim → start %.2f ms\n", $1, $2 }'
