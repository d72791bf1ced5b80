#!/usr/bin/env bash
# The demo: installs what is missing and builds sluice, starts the embedded
# Postgres, the loopback services fixture (a simulation of Apify, the LLM and the
# Meta Graph API) and the daemon with the repo's handlers/, sets up a demo brand
# with a competitor, an Amazon product URL and a Meta ad account, queues one job
# of each of the six job types, waits for them, prints the dataset health and the
# recent runs, and stops what it started. Running it again adds a second round.
#
# Environment:
#   SLUICE_HOME             state directory (default: /var/lib/sluice as root,
#                           ~/.local/state/sluice otherwise)
#   SLUICE_BIN              the sluice binary to use (default: build/sluice)
#   SLUICE_DEMO_SKIP_SETUP  1: skip installing and building (needs SLUICE_BIN)
#   SLUICE_DEMO_TIMEOUT     seconds to wait for the jobs (default 300)
# See docs/demo.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BRAND="Demo Brand"
TIMEOUT=${SLUICE_DEMO_TIMEOUT:-300}
# checked before anything starts: a bad one used to stop the demo only once its
# jobs were queued
case $TIMEOUT in
  '' | *[!0-9]*) TIMEOUT=0 ;;
  *) TIMEOUT=$((10#$TIMEOUT)) ;; # 010 is ten seconds, not octal
esac
if [ "$TIMEOUT" -lt 1 ]; then
  echo "SLUICE_DEMO_TIMEOUT must be a whole number of seconds (at least 1), not '$SLUICE_DEMO_TIMEOUT'" >&2
  exit 2
fi

if [ "${SLUICE_DEMO_SKIP_SETUP:-0}" = 1 ]; then
  SLUICE=${SLUICE_BIN:?SLUICE_DEMO_SKIP_SETUP=1 needs SLUICE_BIN, the sluice binary to run}
else
  scripts/setup.sh build
  SLUICE=${SLUICE_BIN:-$ROOT/build/sluice}
fi
SLUICE=$(command -v "$SLUICE" || echo "$SLUICE") # a bare name is looked up on PATH
if [ ! -x "$SLUICE" ] || [ -d "$SLUICE" ]; then
  echo "SLUICE_BIN: '$SLUICE' is not an executable file" >&2
  exit 2
fi
# the embedded cluster, and these handlers only
unset DATABASE_URL
export SLUICE_HANDLERS=$ROOT/handlers

TMP=$(mktemp -d -t sluice-demo-XXXXXX)
DAEMON="" FIXTURE="" STOP_DB=0
cleanup() {
  if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
    kill -TERM "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
  fi
  if [ -n "$FIXTURE" ] && kill -0 "$FIXTURE" 2>/dev/null; then
    kill -TERM "$FIXTURE" 2>/dev/null || true
    wait "$FIXTURE" 2>/dev/null || true
  fi
  if [ "$STOP_DB" = 1 ]; then "$SLUICE" db stop >/dev/null 2>&1 || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS COMMAND…: runs COMMAND every 0.2 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# ------------------------------------------------------------------ database
echo "==> database"
if ! "$SLUICE" db status 2>/dev/null | grep -q '^status: *running'; then
  "$SLUICE" db start >/dev/null
  STOP_DB=1
fi
URL=$("$SLUICE" db url)
echo "    embedded Postgres: $URL"
sql() { psql "$URL" -X -v ON_ERROR_STOP=1 -qAt "$@"; }

# ------------------------------------------------------------------ services
python3 tests/fixtures/services.py --port 0 --seed 42 --port-file "$TMP/port" --exit-with-parent \
  >/dev/null 2>"$TMP/fixture.log" &
FIXTURE=$!
if ! wait_for 20 test -s "$TMP/port"; then
  echo "the services fixture did not start:" >&2
  cat "$TMP/fixture.log" >&2
  exit 1
fi
PORT=$(sed 's/[^0-9]//g' "$TMP/port")
SVC=http://127.0.0.1:$PORT
cat <<EOF
==> services: a fixture on $SVC
    It SIMULATES Apify (three actors), an OpenAI-compatible LLM and the Meta Graph API,
    and serves the ad images and videos they point at. Nothing leaves this machine.
    sluice talks to the real services when these variables point at them instead:
      APIFY_BASE_URL, APIFY_TOKEN                 (https://api.apify.com)
      LLM_BASE_URL, LLM_API_KEY, LLM_MODEL        (https://api.openai.com/v1, …)
      META_GRAPH_URL, META_ACCESS_TOKEN           (https://graph.facebook.com/v21.0)
EOF
export APIFY_BASE_URL=$SVC APIFY_TOKEN=demo-token
export LLM_BASE_URL=$SVC/v1 LLM_API_KEY=demo-key LLM_MODEL=fixture-model
export META_GRAPH_URL=$SVC/v21.0 META_ACCESS_TOKEN=demo-token

# ------------------------------------------------------------------ daemon
echo "==> daemon: sluice serve --handlers handlers/"
"$SLUICE" serve --concurrency 20 --handlers "$ROOT/handlers" >"$TMP/serve.log" 2>&1 &
DAEMON=$!
if ! wait_for 60 grep -q "sluice serving" "$TMP/serve.log"; then
  echo "the daemon did not start:" >&2
  cat "$TMP/serve.log" >&2
  exit 1
fi

# ------------------------------------------------------------------ demo data (idempotent)
echo "==> demo brand, competitor, Amazon URL and ad account"
if [ -z "$(sql -c "SELECT 1 FROM sluice.brands WHERE name = '$BRAND'")" ]; then
  "$SLUICE" brands add "$BRAND" >/dev/null
fi
LIBRARY='https://www.facebook.com/ads/library/?active_status=all&ad_type=all&country=US'
ADLIB="$LIBRARY&view_all_page_id=104857600123456&q=sleep"
COMPETITOR=$(sql -c "SELECT sluice.add_competitor('$BRAND', 'Rival Sleep Co', '104857600123456',
  'https://rivalsleep.example', '$ADLIB', 'https://www.amazon.com/dp/B0DEMO0001')")
AMAZON_URL=$(sql -c "SELECT id FROM public.competitor_amazon_urls
  WHERE competitor_id = '$COMPETITOR' AND asin = 'B0DEMO0001'")
sql -c "SELECT sluice.add_ad_account('$BRAND', 'act_1234567890', 'Demo Ad Account')" >/dev/null
echo "    brand '$BRAND', competitor $COMPETITOR, Amazon URL $AMAZON_URL, ad account act_1234567890"

# ------------------------------------------------------------------ jobs
echo "==> queueing one job of each type"
queue() { "$SLUICE" queue "$@" --brand "$BRAND"; }
declare -A JOB
JOB[meta_sync]=$(queue meta_sync --params \
  '{"days_back": 7, "download_max_videos": 3, "download_max_images": 3, "auto_classify": true}')
JOB[competitor_scrape]=$(queue competitor_scrape --params \
  "{\"competitor_id\": \"$COMPETITOR\", \"ad_library_url\": \"$ADLIB\", \"max_ads\": 100}")
JOB[template_scrape]=$(queue template_scrape --params \
  "{\"search_url\": \"$LIBRARY&q=sleep%20tea\", \"max_ads\": 30}")
JOB[reddit_scrape]=$(queue reddit_scrape --params \
  '{"search_queries": ["trouble sleeping", "sleep tea"], "max_posts": 100}')
JOB[amazon_review_scrape]=$(queue amazon_review_scrape --params \
  "{\"competitor_amazon_url_id\": \"$AMAZON_URL\", \"asin\": \"B0DEMO0001\"}")

job_done() { # job id → true once the job is no longer active
  [ "$(sql -c "SELECT status NOT IN ('active', 'paused') FROM sluice.scheduled_jobs WHERE id = '$1'")" = t ]
}
jobs_done() {
  local id
  for id in "${JOB[@]}"; do job_done "$id" || return 1; done
}

# asset_download picks up the ads meta_sync stored and did not download itself
# (meta_sync is told to download at most 3 videos and 3 images)
if wait_for "$TIMEOUT" job_done "${JOB[meta_sync]}"; then
  JOB[asset_download]=$(queue asset_download --params '{"max_videos": 20, "max_images": 40}')
else
  JOB[asset_download]=$(queue asset_download)
fi
for t in meta_sync asset_download competitor_scrape template_scrape reddit_scrape amazon_review_scrape; do
  printf '    %-22s %s\n' "$t" "${JOB[$t]}"
done

echo "==> waiting for them (at most ${TIMEOUT}s)"
WAITED=0
wait_for "$TIMEOUT" jobs_done || WAITED=1

# ------------------------------------------------------------------ results
echo "==> dataset health ($BRAND)"
if "$SLUICE" health --help >/dev/null 2>&1; then
  "$SLUICE" health --brand "$BRAND" || true
else
  psql "$URL" -X -P pager=off -c "
    SELECT dataset_key, state, round(age_seconds) AS age_s, max_age_seconds AS max_age_s,
           left(coalesce(last_error, ''), 60) AS last_error
    FROM sluice.dataset_health WHERE brand_name = '$BRAND' ORDER BY dataset_key"
fi
echo "==> recent runs"
if "$SLUICE" runs --help >/dev/null 2>&1; then
  "$SLUICE" runs --brand "$BRAND" --limit 12
else
  psql "$URL" -X -P pager=off -c "
    SELECT emoji || ' ' || job_type AS type, status, attempt_number AS try,
           to_char(started_at, 'HH24:MI:SS') AS started, round(duration_seconds::numeric, 2) AS seconds,
           left(log_summary, 70) AS log
    FROM sluice.recent_runs WHERE brand_name = '$BRAND' LIMIT 12"
fi

ids=$(printf "'%s'," "${JOB[@]}")
FAILED=$(sql -c "SELECT string_agg(job_type || ' (' || status || ')', ', ' ORDER BY job_type)
  FROM sluice.scheduled_jobs WHERE id IN (${ids%,}) AND status <> 'completed'")
if [ "$WAITED" = 1 ] || [ -n "$FAILED" ]; then
  echo "==> not every job completed: ${FAILED:-still running after ${TIMEOUT}s}" >&2
  echo "    the daemon's log:" >&2
  tail -n 40 "$TMP/serve.log" >&2
  exit 1
fi
ROUNDS=$(sql -c "SELECT count(*) FROM sluice.scheduled_jobs j JOIN sluice.brands b ON b.id = j.brand_id
  WHERE b.name = '$BRAND' AND j.job_type = 'meta_sync'")
echo "==> done: round $ROUNDS; run scripts/demo.sh again for another (docs/demo.md explains what happened)"
