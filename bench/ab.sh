#!/usr/bin/env bash
# A/B: two uhub builds side by side, measured alternately. This machine's
# speed moves by ±20 % between minutes, so a change is only seen by
# alternating the two builds many times in the same period and comparing
# the medians of their per-round figures.
#
# Usage: bench/ab.sh [--rounds R] [--count N] [--throughput SECONDS] A_UHUB B_UHUB
#   A_UHUB, B_UHUB  two `uhub` binaries, each with its uhub-init beside it
#                   (e.g. a `git worktree` of the old commit built with
#                   scripts/build.sh, and build/uhub)
#   --rounds R      alternations (default 8): A then B, R times
#   --count N       trigger→terminal cycles of /bin/true per measure (default 300)
#   --throughput S  also two clients looping the cycle for S seconds per measure
#
# Each build gets its own daemon (store, work root and uid range in a
# temporary directory), started once and kept for all rounds. Prints each
# round's p50 (and runs/s), the median per build, B − A and B/A, and in how
# many rounds B was the faster. Writes nothing else; stops its daemons on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

rounds=8 count=300 thr_s=0
while [ $# -gt 2 ]; do
  case "$1" in
    --rounds) rounds=${2:?}; shift ;;
    --count) count=${2:?}; shift ;;
    --throughput) thr_s=${2:?}; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench/ab.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
[ $# = 2 ] || { sed -n '7,14p' "$0" >&2; exit 64; }
[ "$(id -u)" = 0 ] || { echo "bench/ab.sh: the Local backend needs root" >&2; exit 1; }
bins=("$1" "$2")
for b in "${bins[@]}"; do
  [ -x "$b" ] && [ -x "$(dirname "$b")/uhub-init" ] || { echo "bench/ab.sh: $b (and uhub-init beside it) not built" >&2; exit 1; }
done

bin=build/bench
mkdir -p "$bin"
cc -O2 -g -Wall -Wextra -Wno-unused-parameter -pthread bench/client.c -o "$bin/client" -lcurl -ljansson
tmp=$(mktemp -d /tmp/uhub-ab.XXXXXX)
chmod 0755 "$tmp"
pids=()
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

urls=() jobs=() tokens=()
for i in 0 1; do
  d="$tmp/$i"
  mkdir -p "$d"
  token="uht_ab_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  first=$((3500000 + i * 100000))
  cat > "$d/uhub.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "db": "sqlite:$d/uhub.db",
  "api": { "rate_limit_per_minute": 0 },
  "local": { "allowed_executables": ["/bin/true"], "work_root": "$d/work",
             "uid_range": [$first, $((first + 99999))], "grace_seconds": 2 },
  "secrets": { "key_file": "$d/secrets.key" },
  "cluster": { "node_name": "ab-$i-$$" },
  "shutdown_grace_seconds": 2
}
EOF
  UHUB_BOOTSTRAP_TOKEN=$token "${bins[$i]}" serve --config "$d/uhub.json" >"$d/out" 2>"$d/log" &
  pids+=($!)
  url=$(listening_url "$d/out" "${pids[-1]}" 100)
  [ -n "$url" ] || { echo "bench/ab.sh: ${bins[$i]} did not start:" >&2; tail -n 20 "$d/log" >&2; exit 1; }
  export UHUB_TOKEN=$token
  p=$("$bin/client" --url "$url" call POST /api/v1/projects \
    '{"name":"ab","environment":"dev","execution_backend":"local","execution_backend_config":{}}' --field id)
  j=$("$bin/client" --url "$url" call POST "/api/v1/projects/$p/jobs" '{"name":"true","command":["/bin/true"]}' --field id)
  urls+=("$url") jobs+=("$j") tokens+=("$token")
done

field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(eval(sys.argv[1]))' "$1"; }
: > "$tmp/results"
for r in $(seq "$rounds"); do
  for i in 0 1; do
    export UHUB_TOKEN=${tokens[$i]}
    c=("$bin/client" --url "${urls[$i]}" trigger --job "${jobs[$i]}")
    p50=$("${c[@]}" --clients 1 --count "$count" --warmup 5 | field 'd["latency"]["p50_us"]')
    per_s=-
    [ "$thr_s" = 0 ] || per_s=$("${c[@]}" --clients 2 --seconds "$thr_s" --warmup 2 | field 'd["per_s"]')
    echo "$r $i $p50 $per_s" >> "$tmp/results"
    printf 'round %d %s: p50 %.1f us%s\n' "$r" "$([ $i = 0 ] && echo A || echo B)" "$p50" \
      "$([ "$per_s" = - ] || printf ', %.0f runs/s' "$per_s")"
  done
done
python3 - "$tmp/results" "${bins[0]}" "${bins[1]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
lat = {0: [], 1: []}; thr = {0: [], 1: []}
for r, i, p50, per_s in rows:
    lat[int(i)].append(float(p50))
    if per_s != "-":
        thr[int(i)].append(float(per_s))
a, b = statistics.median(lat[0]), statistics.median(lat[1])
wins = sum(1 for x, y in zip(lat[0], lat[1]) if y < x)
print(f"A {sys.argv[2]}\nB {sys.argv[3]}")
print(f"trigger→terminal p50, median of {len(lat[0])} rounds: A {a:.1f} us, B {b:.1f} us, "
      f"B−A {b - a:+.1f} us, B/A {b / a:.3f}; B faster in {wins} of {len(lat[0])} rounds")
if thr[0]:
    ta, tb = statistics.median(thr[0]), statistics.median(thr[1])
    print(f"throughput (2 clients), median: A {ta:.0f}/s, B {tb:.0f}/s, B/A {tb / ta:.3f}")
PY
