#!/usr/bin/env bash
# w3.sh — benchmark W3: 2,000 jobs, each one GET to a loopback server that
# answers after 100 ms, run by `sluice serve --concurrency 100`. Prints the wall
# time from the daemon's start to the last completion (ideal: 2,000 / 100 ×
# 0.1 s = 2.0 s) and the daemon's peak RSS (VmHWM). Asserts nothing.
#
#   bench/w3.sh [path/to/sluice]        (default: $SLUICE_BIN, else build/sluice)
#
# Database: $DATABASE_URL if set (it must be a disposable database: the jobs of
# type http_get in it are deleted), else a private embedded cluster under a
# temporary --home, stopped and removed at the end.
# Shape: JOBS (2000), CONCURRENCY (100), DELAY_MS (100).
# The target: bench/delay_server.c (built beside sluice as `delay_server`; it
# answers within ~0.2 ms of the delay, so what is measured beyond the ideal is
# the queue's own overhead), or with SERVER=py bench/delay_server.py (asyncio:
# 2–4 ms late at this rate, like the peers' Node.js target), or TARGET (a base
# URL, e.g. http://127.0.0.1:8080) of another server with /delay/N.
# KEEP=1 keeps the temporary directory (the daemon's log) for a look afterwards.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NAME=w3 HANDLERS=$HERE/handlers
JOBS=${JOBS:-2000}
CONC=${CONCURRENCY:-100}
DELAY=${DELAY_MS:-100}
FX_PID=""
. "$HERE/lib.sh"
bench_setup "$@"

# ---------------------------------------------------------------- the target
if [ -n "${TARGET:-}" ]; then
    URL="$TARGET/delay/$DELAY"
else
    SERVER=${SERVER:-c}
    if [ "$SERVER" = c ] && [ -x "$(dirname "$BIN")/delay_server" ]; then
        "$(dirname "$BIN")/delay_server" --port 0 >"$TMP/fixture.out" &
    else
        SERVER=py
        python3 "$HERE/delay_server.py" --port 0 --exit-with-parent >"$TMP/fixture.out" &
    fi
    FX_PID=$!
    for _ in $(seq 100); do grep -q port "$TMP/fixture.out" 2>/dev/null && break; sleep 0.1; done
    PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$TMP/fixture.out")
    URL="http://127.0.0.1:$PORT/delay/$DELAY"
fi

# ---------------------------------------------------------------- the database
# migrations and the job-type registry: queue one job, then remove it
"${S[@]}" queue http_get --params "{\"url\": \"$URL\"}" >/dev/null
sql "DELETE FROM sluice.scheduled_jobs WHERE job_type = 'http_get'"
sql "INSERT INTO sluice.scheduled_jobs (job_type, parameters, next_run_at, trigger_source)
     SELECT 'http_get', jsonb_build_object('url', '$URL'), now(), 'api'
     FROM generate_series(1, $JOBS) g"

# ---------------------------------------------------------------- the run
poll_open
T0=$(now)
"${S[@]}" serve --concurrency "$CONC" >"$TMP/serve.log" 2>&1 &
D_PID=$!
LEFT=1 LEFT_SQL=$(left_sql http_get) # built once: no subshell per poll
while [ "$LEFT" != 0 ]; do
    nap 0.05
    if ! kill -0 "$D_PID" 2>/dev/null; then
        echo "w3: the daemon exited early:" >&2
        cat "$TMP/serve.log" >&2
        exit 1
    fi
    poll "$LEFT_SQL"; LEFT=$POLLED
done
T1=$(now)
read -r HWM CPU <<<"$(proc_figures "$D_PID")"
kill -TERM "$D_PID"
wait "$D_PID" || true
D_PID=""

read -r OK FAILED FIRST LAST RUNSECS HTTPSECS <<<"$(sql "SELECT count(*) FILTER (WHERE status = 'completed'),
                                         count(*) FILTER (WHERE status = 'failed'),
                                         extract(epoch FROM min(started_at)),
                                         extract(epoch FROM max(completed_at)),
                                         avg(extract(epoch FROM completed_at - started_at)),
                                         avg((result->>'seconds')::float8)
                                  FROM sluice.scheduled_job_runs r
                                  WHERE r.job_type = 'http_get'" | tr '|' ' ')"
IDEAL=$(awk -v j="$JOBS" -v c="$CONC" -v d="$DELAY" 'BEGIN { printf "%.0f", j / c * d }')
awk -v t0="$T0" -v t1="$T1" -v first="$FIRST" -v last="$LAST" -v runsecs="$RUNSECS" -v httpsecs="$HTTPSECS" \
    -v hwm="$HWM" -v cpu="$CPU" -v ideal="$IDEAL" \
    -v jobs="$JOBS" -v conc="$CONC" -v delay="$DELAY" -v server="${TARGET:-bench/delay_server.$SERVER}" -v ok="$OK" -v failed="$FAILED" 'BEGIN {
    printf "W3: %d jobs × GET /delay/%d (%s), serve --concurrency %d\n", jobs, delay, server, conc
    printf "  runs completed %d, failed %d\n", ok, failed
    printf "  wall, daemon start → last completion (runs table): %6.0f ms (ideal %d ms)\n", (last - t0) * 1000, ideal
    printf "  wall, daemon start → seen done by the 50 ms poll:  %6.0f ms\n", (t1 - t0) * 1000
    printf "  daemon start → first run started:                 %6.0f ms\n", (first - t0) * 1000
    printf "  first run started → last completion:              %6.0f ms\n", (last - first) * 1000
    printf "  mean run (started → completed):                   %6.1f ms\n", runsecs * 1000
    printf "  mean GET inside a run (res.seconds):              %6.1f ms\n", httpsecs * 1000
    printf "  daemon peak RSS (VmHWM): %.1f MB; daemon CPU (user + system): %.2f s\n", hwm, cpu
}'
