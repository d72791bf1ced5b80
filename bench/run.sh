#!/usr/bin/env bash
# run.sh — sluice's three benchmark workloads (W1 throughput, W2 latency, W3 I/O
# concurrency) on this machine, and with --peers the peer benchmark
# (graphile-worker, pg-boss, a pgbench ceiling; shipped beside this repository in
# ../shared/bench, or PEER_BENCH=DIR) in the same run, for a side-by-side reading.
#
#   bench/run.sh [--peers] [path/to/sluice]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=""
if [ "${1:-}" = "--peers" ]; then PEERS=1; shift; fi
BIN=${1:-${SLUICE_BIN:-$(dirname "$HERE")/build/sluice}}

echo "== sluice ($("$BIN" --version)) on $(nproc) CPUs, $(uname -r)"
"$HERE/w1.sh" "$BIN"
"$HERE/w2.sh" "$BIN"
"$HERE/w3.sh" "$BIN"

if [ -n "$PEERS" ]; then
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
fi
