#!/usr/bin/env bash
# Installs what uhub needs to build, run and test, from Debian's packages.
# Usage: scripts/deps.sh [run|test]   (run: build + run; test: also the test tools)
set -euo pipefail
what=${1:-run}
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev
      libsqlite3-dev libssl-dev libuv1-dev libsodium-dev musl-tools curl ca-certificates python3 ansible-core)
if [ "$what" = test ]; then
  pkgs+=(python3-pytest python3-requests clang libclang-rt-14-dev clang-format sqlite3 iproute2 procps
        python3-ansible-runner)
  pkgs+=(docker.io busybox-static)  # Docker backend tests: scripts/docker-env.sh
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
