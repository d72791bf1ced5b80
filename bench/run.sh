#!/usr/bin/env bash
# run.sh — sluice's three benchmark workloads (W1 throughput, W2 latency, W3 I/O
# concurrency) on this machine, and with --peers the peer benchmark
# (graphile-worker, pg-boss, a pgbench ceiling; shipped beside this repository in
# ../shared/bench, or PEER_BENCH=DIR) in the same run, for a side-by-side reading.
#
#   bench/run.sh [--peers] [path/to/sluice]      (RUNS=N runs of each sluice workload, default 3;
#                                                 with --peers, sluice runs before and after them)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=""
if [ "${1:-}" = "--peers" ]; then PEERS=1; shift; fi
BIN=${1:-${SLUICE_BIN:-$(dirname "$HERE")/build/sluice}}

RUNS=${RUNS:-3}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

OUT=$(mktemp /tmp/sluice-bench.XXXXXX)
trap 'rm -f "$OUT"' EXIT

# sluice's workloads, RUNS times each, with their medians. W3 twice: against the
# C target (exactly 100 ms) and the asyncio one (a few ms late under this load,
# as the peers' Node.js target is).
run_sluice() {
    echo "== sluice ($("$BIN" --version)) on $(nproc) CPUs, $(uname -r); $RUNS run(s) of each workload$1"
    for w in w1 w2 w3 w3py; do
        : >"$OUT"
        for _ in $(seq "$RUNS"); do
            if [ $w = w3py ]; then SERVER=py "$HERE/w3.sh" "$BIN"; else "$HERE/$w.sh" "$BIN"; fi | tee -a "$OUT"
        done
        case $w in
        w1) echo "W1 median: $(awk '/daemon start → none left/ { print $(NF - 1) }' "$OUT" | median) jobs/s$1" ;;
        w2) echo "W2 median p99: $(awk '/p99/ { for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }' "$OUT" | median) ms$1" ;;
        w3 | w3py) echo "W3 ($w) median wall: $(awk '/daemon start → last completion/ { print $(NF - 4) }' "$OUT" | median) ms, peak RSS $(awk '/VmHWM/ { for (i = 1; i < NF; i++) if ($i == "(VmHWM):") print $(i + 1) }' "$OUT" | median) MB$1" ;;
        esac
    done
}

if [ -z "$PEERS" ]; then
    run_sluice ""
    exit 0
fi
# With the peers: sluice before and after them, so that a drift of the machine's
# speed during the run (it can be ±20 % over a quarter-hour on a shared virtual
# machine) shows instead of passing for a difference between the queues.
run_sluice " (before the peers)"

SRCDIR=${PEER_BENCH:-$(dirname "$(dirname "$HERE")")/shared/bench}
[ -d "$SRCDIR" ] || { echo "no peer benchmark at $SRCDIR (set PEER_BENCH)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/sluice-peers.XXXXXX)
cp -r "$SRCDIR/." "$WORK/"
chmod -R u+w "$WORK"
chmod 755 "$WORK"             # its cluster runs as the postgres user
rm -rf "$WORK/results"/*      # only this run's figures below
echo "== peers (graphile-worker, pg-boss, pgbench ceiling), ${PEER_RUNS:-1} run(s) each"
(cd "$WORK" && ./run_peers.sh --runs "${PEER_RUNS:-1}")
sed -n '/^## W1/,/^## Per-run/p' "$WORK"/results/peers-*.md
rm -rf "$WORK"
run_sluice " (after the peers)"
