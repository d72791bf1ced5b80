# lib.sh — shared set-up for the benchmark scripts (sourced, not run).
#
#   NAME=w1 HANDLERS=dir; . "$HERE/lib.sh"; bench_setup "$@"
#
# Sets BIN (the sluice binary: $1, $SLUICE_BIN or build/sluice), TMP (a private
# temporary directory, removed at exit), DB (the database URL: $DATABASE_URL, a
# disposable database, else a private embedded cluster under TMP), S (the sluice
# command line with that database and HANDLERS), and D_PID (set it to a daemon's
# pid: it is stopped at exit). sql "…" runs a statement and prints the result;
# poll "…" runs one in a persistent session (poll_open first) and sets POLLED.

bench_setup() {
    SRC=$(dirname "$HERE")
    BIN=${1:-${SLUICE_BIN:-$SRC/build/sluice}}
    [ -x "$BIN" ] || { echo "$NAME: no sluice binary at $BIN (build first, or pass its path)" >&2; exit 2; }
    BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
    TMP=$(mktemp -d "/tmp/sluice-$NAME.XXXXXX")
    chmod 711 "$TMP" # as root the embedded cluster runs as the postgres user
    D_PID="" OWN_DB=""
    trap bench_cleanup EXIT
    unset SLUICE_CONFIG SLUICE_HANDLERS SLUICE_HOME http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
    if [ -n "${DATABASE_URL:-}" ]; then
        DB=$DATABASE_URL
        S=("$BIN" --db "$DB" --handlers "$HANDLERS")
    else
        S=("$BIN" --home "$TMP/home" --handlers "$HANDLERS")
        OWN_DB=1
        "${S[@]}" db start >/dev/null
        DB=$("${S[@]}" db url)
    fi
}

bench_cleanup() {
    [ -n "${POLL_PID:-}" ] && kill "$POLL_PID" 2>/dev/null
    [ -n "$D_PID" ] && kill "$D_PID" 2>/dev/null && wait "$D_PID" 2>/dev/null
    [ -n "${FX_PID:-}" ] && kill "$FX_PID" 2>/dev/null && wait "$FX_PID" 2>/dev/null
    [ -n "$OWN_DB" ] && "${S[@]}" db stop >/dev/null 2>&1
    [ -n "${KEEP:-}" ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}

now() { date +%s.%N; }

# nap SECONDS: sleeps without starting a process (a read that times out on a
# pipe this shell holds both ends of). The completion polls run every 50 ms
# while the daemon is measured; a `sleep` each time would fork and exec on the
# same two cores.
nap() {
    [ -n "${NAP_FD:-}" ] || exec {NAP_FD}<> <(:)
    read -r -t "$1" -u "$NAP_FD" _ || true
}
sql() { psql "$DB" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

# The completion polls run every 50 ms in one open session: starting psql
# each time (on Debian a Perl wrapper, then a new connection) would cost the
# machine more CPU than the query, and the benchmark would measure that.
poll_open() {
    coproc POLL { psql "$DB" -X -q -A -t -v ON_ERROR_STOP=1 2>&1; }
}
# 1 while a one-time job of type $1 is still due or running, else 0, through the
# two partial indexes that hold them (the running jobs are looked at only when
# none is due). It stops at the first such job: counting them all (thousands
# while the run starts) cost the database ~10 ms per poll, on the cores the
# daemon is measured on. The ORDER BY keeps the first lookup on the due-jobs
# index: planned as "any row will do", it was a sequential scan that read every
# job already done before the first one still due (2–12 ms a poll).
left_sql() {
    echo "SELECT ((SELECT 1 FROM sluice.scheduled_jobs
                   WHERE status = 'active' AND next_run_at IS NOT NULL AND job_type = '$1'
                   ORDER BY priority, next_run_at LIMIT 1) IS NOT NULL
               OR EXISTS (SELECT 1 FROM sluice.scheduled_jobs
                          WHERE current_run_id IS NOT NULL AND job_type = '$1'))::int"
}
poll() {
    printf '%s;\n' "$1" >&"${POLL[1]}"
    IFS= read -r -t 30 POLLED <&"${POLL[0]}" || { echo "$NAME: the polling session ended" >&2; exit 1; }
}

# Peak RSS (MB) and CPU seconds of a live process.
proc_figures() {
    awk '/^VmHWM/ {printf "%.1f ", $2 / 1024}' "/proc/$1/status"
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}
