#!/usr/bin/env bash
# Test set-up for the Docker backend (idempotent): starts dockerd when no
# engine answers on /var/run/docker.sock, and builds the test image
# uhub-test/busybox:1 FROM scratch with Debian's busybox-static. Installs
# nothing (scripts/deps.sh test does). The docker CLI is fine here: only
# uhub itself must not shell out to it.
# Usage: scripts/docker-env.sh            (exit 0 when the engine and image are ready)
set -euo pipefail
cd "$(dirname "$0")/.."
sock=/var/run/docker.sock
image=uhub-test/busybox:1
log=/var/log/uhub-dockerd.log

ping() { curl -sf --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1; }

if ! ping; then
  command -v dockerd >/dev/null || { echo "docker-env: dockerd not installed (scripts/deps.sh test)" >&2; exit 1; }
  # A dockerd killed with -9 leaves its pid file, and until it is reaped its
  # pid still looks alive (a zombie): the next dockerd then refuses to start.
  # Its containerd dies with it (Pdeathsig); the new one can take a while
  # to come up, and the first dockerd may give up waiting for it: try twice.
  for attempt in 1 2; do
    pidf=/var/run/docker.pid
    if [ -f "$pidf" ]; then
      old=$(cat "$pidf" 2>/dev/null || true)
      state=$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null || echo gone)
      comm=$(cat "/proc/$old/comm" 2>/dev/null || echo gone)
      if [ "$state" = gone ] || [ "$state" = Z ] || [ "$comm" != dockerd ]; then rm -f "$pidf"; fi
    fi
    # No iptables/bridge here (PITFALLS.md): runs use NetworkMode none anyway.
    # The storage driver is left to dockerd (overlay2 here).
    nohup dockerd --iptables=false --ip-masq=false --bridge=none --log-level=warn >>"$log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 450); do ping && break; [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)" != Z ] || break; sleep 0.1; done
    ping && break
  done
  ping || { echo "docker-env: dockerd did not answer; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
fi

if ! curl -sf --unix-socket "$sock" "http://localhost/images/$image/json" >/dev/null; then
  bb=$(command -v busybox || true)
  [ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'statically linked' || bb=/bin/busybox
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp tests/docker/Dockerfile "$ctx/"
  cp "$bb" "$ctx/busybox"
  mkdir "$ctx/links"
  for a in sh ash id cat sleep true false grep ls echo head tail dd env touch wc tr printf seq yes \
           mkdir rm test kill ps pwd uname hostname stat readlink; do
    ln -s busybox "$ctx/links/$a"
  done
  DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >/dev/null
fi
echo "docker-env: engine $(curl -sf --unix-socket "$sock" http://localhost/version | sed -n 's/.*"ApiVersion":"\([^"]*\)".*/API \1/p'), image $image ready"
