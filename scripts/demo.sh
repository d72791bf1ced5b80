#!/usr/bin/env bash
# The demo: sets everything up, starts the embedded Postgres and the daemon,
# queues a few jobs of the example job types, waits for them, and shows their runs.
# Running it again shows a second round. State lives in $SLUICE_HOME
# (default: /var/lib/sluice as root, ~/.local/state/sluice otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh build
SLUICE=$PWD/build/sluice
export SLUICE_HANDLERS=$PWD/examples/handlers

echo "==> database: $($SLUICE db url)"
$SLUICE brands add "Demo Brand" >/dev/null 2>&1 || true

echo "==> starting the daemon"
LOG=$(mktemp -t sluice-demo-XXXXXX.log)
$SLUICE serve --concurrency 20 >"$LOG" 2>&1 &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null || true; rm -f "$LOG"' EXIT

echo "==> queueing jobs"
JOBS=()
JOBS+=("$($SLUICE queue echo --brand "Demo Brand" --params '{"message": "hello from the demo", "records": 3}')")
JOBS+=("$($SLUICE queue noop)")
for s in 0.5 1 1.5; do
  JOBS+=("$($SLUICE queue sleep --params "{\"seconds\": $s}")")
done
JOBS+=("$($SLUICE queue echo --params '{"fail": true, "permanent": true, "message": "this one fails on purpose"}')")
printf '    %s\n' "${JOBS[@]}"

URL=$($SLUICE db url)
ids=$(printf "'%s'," "${JOBS[@]}"); ids=${ids%,}
echo "==> waiting for them"
for _ in $(seq 1 120); do
  left=$(psql "$URL" -XAtc "select count(*) from sluice.scheduled_jobs where id in ($ids) and status = 'active'")
  [ "$left" = 0 ] && break
  sleep 0.25
done

echo "==> runs"
psql "$URL" -XP pager=off -c "
  select j.job_type as type, coalesce(b.name, '—') as brand, r.status, r.attempt_number as attempt,
         to_char(r.started_at, 'HH24:MI:SS') as started,
         round(extract(epoch from r.completed_at - r.started_at)::numeric, 2) as seconds,
         left(coalesce(r.error_message, r.result::text), 60) as outcome
  from sluice.scheduled_job_runs r join sluice.scheduled_jobs j on j.id = r.scheduled_job_id
  left join sluice.brands b on b.id = j.brand_id
  where j.id in ($ids) order by r.started_at"
echo "==> freshness"
psql "$URL" -XP pager=off -c "
  select coalesce(b.name, 'platform') as brand, d.dataset_key, d.last_status, d.records_affected,
         to_char(d.last_success_at, 'HH24:MI:SS') as last_success
  from sluice.dataset_status d left join sluice.brands b on b.id = d.brand_id order by 1, 2"
