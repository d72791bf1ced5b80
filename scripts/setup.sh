#!/usr/bin/env bash
# Installs what sluice needs on Debian 12 (only the packages that are missing),
# then configures and builds it with CMake.
#
#   scripts/setup.sh [BUILD_DIR] [extra cmake args…]     (default BUILD_DIR: build)
#
# Run as root (or with sudo) when packages are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${1:-build}
shift || true

PACKAGES=(build-essential cmake pkg-config liblua5.4-dev lua-cjson-dev libev-dev
          libcurl4-openssl-dev libpq-dev libedit-dev libcmocka-dev postgresql
          postgresql-client python3 tzdata ca-certificates)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "==> building in $BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DSLUICE_WERROR=ON "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
