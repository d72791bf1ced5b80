#!/usr/bin/env bash
# Sets everything up and runs every test: the regular build, then the whole
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Each suite's Postgres is an embedded cluster the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh build
scripts/setup.sh build-asan -DSLUICE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

# Three suites at a time on two cores: most of a suite's time is spent waiting
# (leases, timeouts, servers starting), so two left the cores half idle.
status=0
echo "==> tests"
(cd build && ctest --output-on-failure -j 3) || status=1
echo "==> tests under AddressSanitizer + UBSan"
(cd build-asan && ctest --output-on-failure -j 3) || status=1
if [ $status -eq 0 ]; then echo "==> all tests passed (regular and sanitized builds)"; fi
exit $status
