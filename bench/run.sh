#!/usr/bin/env bash
# uhub benchmarks: each speed is a ratio to a floor measured in the same run,
# on the same machine, a few seconds apart (the machine is shared and noisy).
#
# Usage: bench/run.sh [--smoke] [--json FILE] [--perf] [--idle-poll]
#   --smoke      every measure briefly (about 30 s; 100 runs in flight instead of 10,000)
#   --json FILE  also write the results as JSON (default: build/bench/results.json)
#   --perf       record the daemon with `perf record -g` while it is measured
#                (build/bench/perf.data; needs linux-perf)
#   --idle-poll  hold /dev/cpu_dma_latency at 0 for the whole run (floors and
#                uhub alike): idle CPUs poll instead of halting, which shows
#                what waking a halted CPU costs each measure (see README.md)
# Environment: UH_BENCH_INFLIGHT=N overrides the number of runs in flight,
#              UH_BENCH_ROUNDS=N the number of rounds (medians are over rounds),
#              UH_BENCH_UHUB=PATH a uhub binary to measure instead of building build/uhub.
#
# Builds uhub (scripts/build.sh build) and the bench programs (build/bench/),
# starts its own `uhub serve` on a free port with a store in a temporary
# directory, creates a project and two jobs through the API, runs the
# measures, prints a table and writes JSON. A missed target is reported, not
# failed: the exit status is non-zero only when something errors (a build, the
# daemon, a request, a run that does not succeed). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

smoke=0 perf=0 idle_poll=0 json_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --perf) perf=1 ;;
    --idle-poll) idle_poll=1 ;;
    --json) json_out=${2:?--json needs a file}; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done

if [ $smoke = 1 ]; then
  rounds=1 floor_n=300 lat_n=30 thr_s=2 rps_s=2 inflight=100 inflight_get_s=2 idle_n=5
else
  rounds=3 floor_n=2000 lat_n=200 thr_s=8 rps_s=5 inflight=10000 inflight_get_s=10 idle_n=20
fi
docker_n=5; [ $smoke = 1 ] || docker_n=30   # hardened `true` containers per Docker measure
rounds=${UH_BENCH_ROUNDS:-$rounds}
inflight=${UH_BENCH_INFLIGHT:-$inflight}
sleep_s=60
[ "$inflight" -le 1000 ] || sleep_s=600   # 10,000 runs take longer than a minute to start

[ "$(id -u)" = 0 ] || { echo "bench/run.sh: the Local backend needs root (runs get their own uids)" >&2; exit 1; }
t_begin=$(date +%s)
say() { printf '[bench %3ds] %s\n' $(( $(date +%s) - t_begin )) "$*" >&2; }

# ---- what the bench needs beyond scripts/deps.sh's list ----
pkgs=(build-essential libcurl4-openssl-dev libjansson-dev python3 libsqlite3-dev ansible-core python3-ansible-runner)
[ $perf = 1 ] && pkgs+=(linux-perf)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- build ----
uhub=${UH_BENCH_UHUB:-}
if [ -z "$uhub" ]; then
  say "building uhub (scripts/build.sh build)"
  scripts/build.sh build >/dev/null
  uhub=build/uhub
fi
[ -x "$uhub" ] || { echo "bench/run.sh: $uhub is not built" >&2; exit 1; }
bin=build/bench
mkdir -p "$bin"
cflags=(-O2 -g -Wall -Wextra -Wno-unused-parameter -pthread)
cc "${cflags[@]}" bench/floor.c -o "$bin/floor"
cc "${cflags[@]}" bench/miniserver.c -o "$bin/miniserver"
cc "${cflags[@]}" bench/client.c -o "$bin/client" -lcurl -ljansson
cc "${cflags[@]}" bench/docker_floor.c -o "$bin/docker_floor" -lcurl
cc "${cflags[@]}" bench/ingest_floor.c -o "$bin/ingest_floor" -lsqlite3
json_out=${json_out:-$bin/results.json}

# ---- limits: fds for the daemon's per-run channels, pids for the runs ----
want_fds=$(( inflight * 2 + 4096 ))
[ $want_fds -lt 20000 ] && want_fds=20000
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $want_fds ]; then
  ulimit -Hn $want_fds 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The daemon keeps Local runs queued past nofile - 512 in flight (one
# descriptor each, the rest a reserve): measure no more than it will run at once.
if [ "$(ulimit -n)" != unlimited ]; then
  fd_cap=$(( $(ulimit -n) - 512 ))
  if [ "$inflight" -gt "$fd_cap" ]; then
    echo "bench/run.sh: open files limited to $(ulimit -n) (raising it needs CAP_SYS_RESOURCE): the daemon" \
      "runs at most $fd_cap at once, so $fd_cap runs in flight are measured instead of $inflight" >&2
    inflight=$fd_cap
  fi
fi
pid_max_old=$(cat /proc/sys/kernel/pid_max)
want_pids=$(( inflight * 4 + 16384 ))
pid_max_set=0
if [ "$pid_max_old" -lt $want_pids ]; then
  echo $want_pids > /proc/sys/kernel/pid_max && pid_max_set=1
  say "pid_max raised from $pid_max_old to $want_pids (restored on exit)"
fi
# A uid range of the bench's own (not the default one other uhubs on this
# machine use), so the leftover-process check below sees only these runs.
uid_first=3100000 uid_last=$(( 3100000 + inflight + 4096 ))

# PM QoS: while this descriptor is open with 0 written, the kernel keeps idle
# CPUs out of halt (the request ends with the script).
if [ $idle_poll = 1 ]; then
  [ -w /dev/cpu_dma_latency ] || { echo "bench/run.sh: --idle-poll needs /dev/cpu_dma_latency (PM QoS), absent here" >&2; exit 1; }
  exec 9>/dev/cpu_dma_latency
  printf '\0\0\0\0' >&9
  say "idle CPUs poll instead of halting for this run (/dev/cpu_dma_latency held at 0)"
fi

# ---- the daemon ----
tmp=$(mktemp -d /tmp/uhub-bench.XXXXXX)
chmod 0755 "$tmp"           # run uids must traverse it to reach their work dirs
mkdir -p "$tmp/res"
daemon_pid="" mini_pid="" perf_pid=""
cleanup() {
  local rc=$?
  set +e
  [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null
  [ -n "$mini_pid" ] && kill "$mini_pid" 2>/dev/null && wait "$mini_pid" 2>/dev/null
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$daemon_pid" 2>/dev/null && { say "daemon did not stop on SIGTERM within 10 s: SIGKILL"; kill -KILL "$daemon_pid"; }
    wait "$daemon_pid" 2>/dev/null
  fi
  [ -f "$tmp/uhub.log" ] && cp "$tmp/uhub.log" "$bin/last-uhub.log"
  [ $pid_max_set = 1 ] && echo "$pid_max_old" > /proc/sys/kernel/pid_max
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token="uht_bench_$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
cat > "$tmp/uhub.json" <<EOF
{
  "listen": "127.0.0.1:0",
  "db": "sqlite:$tmp/uhub.db",
  "api": { "rate_limit_per_minute": 0 },
  "guardrails": { "default_timeout_seconds": 600 },
  "logs": { "max_bytes_per_run": 4294967296 },
  "local": { "allowed_executables": ["/bin/true", "/bin/sleep", "/usr/bin/head", "/usr/bin/ansible-playbook"],
             "work_root": "$tmp/work",
             "uid_range": [$uid_first, $uid_last], "grace_seconds": 2 },
  "secrets": { "key_file": "$tmp/secrets.key" },
  "docker": { "allowed_images": ["uhub-test/*"] },
  "cluster": { "node_name": "bench-$$" },
  "shutdown_grace_seconds": 2
}
EOF
say "starting $uhub serve (store in $tmp)"
UHUB_BOOTSTRAP_TOKEN=$token "$uhub" serve --config "$tmp/uhub.json" >"$tmp/uhub.out" 2>"$tmp/uhub.log" &
daemon_pid=$!
url=$(listening_url "$tmp/uhub.out" "$daemon_pid" 300)
if [ -z "$url" ]; then
  echo "bench/run.sh: uhub did not start; its log:" >&2
  tail -n 30 "$tmp/uhub.log" >&2
  exit 1
fi
say "uhub pid $daemon_pid on $url"

"$bin/miniserver" >"$tmp/mini.out" &
mini_pid=$!
mini_url=$(listening_url "$tmp/mini.out" "$mini_pid" 50)
[ -n "$mini_url" ] || { echo "bench/run.sh: miniserver did not start" >&2; exit 1; }

export UHUB_TOKEN=$token    # the client reads it from here, not from argv
api() { "$bin/client" --url "$url" call "$@"; }
project=$(api POST /api/v1/projects \
  '{"name":"bench","environment":"dev","execution_backend":"local","execution_backend_config":{}}' --field id)
job_true=$(api POST "/api/v1/projects/$project/jobs" '{"name":"true","command":["/bin/true"]}' --field id)
job_sleep=$(api POST "/api/v1/projects/$project/jobs" \
  "{\"name\":\"sleep\",\"command\":[\"/bin/sleep\",\"$sleep_s\"]}" --field id)
run_done=$(api POST "/api/v1/jobs/$job_true/runs" '{}' --field id)
api GET "/api/v1/runs/$run_done/logs?follow=1" >/dev/null
status=$(api GET "/api/v1/runs/$run_done" --field status)
say "project $project, jobs $job_true (/bin/true) and $job_sleep (/bin/sleep $sleep_s); first run: $status"

if [ $perf = 1 ]; then
  perf record -g -F 999 -o "$bin/perf.data" -p "$daemon_pid" >/dev/null 2>"$tmp/perf.log" &
  perf_pid=$!
  say "perf recording the daemon into $bin/perf.data"
fi

failures=0
# measure NAME CMD...: runs CMD, keeps its JSON line in $tmp/res/NAME.json
measure() {
  local name=$1; shift
  if ! "$@" >"$tmp/res/$name.json" 2>"$tmp/res/$name.err"; then
    failures=$((failures + 1))
    say "ERROR in $name: $(tail -c 600 "$tmp/res/$name.err" | tr '\n' ' ') $(tail -c 600 "$tmp/res/$name.json")"
  fi
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    local st=0; wait "$daemon_pid" || st=$?; daemon_pid=""
    say "the daemon died during $name (exit status $st; above 128: killed by signal $((st - 128)))"
    tail -n 30 "$tmp/uhub.log" >&2; exit 1
  fi
}
C=("$bin/client" --url "$url")
for r in $(seq "$rounds"); do
  say "round $r/$rounds: spawn latency (floor, $floor_n; uhub, $lat_n)"
  measure "floor_latency.$r" "$bin/floor" latency "$floor_n" /bin/true
  measure "uhub_latency.$r" "${C[@]}" trigger --job "$job_true" --clients 1 --count "$lat_n" --warmup 5
  say "round $r/$rounds: throughput, 2 in flight (${thr_s}s each)"
  measure "floor_throughput.$r" "$bin/floor" throughput "$thr_s" 2 /bin/true
  measure "uhub_throughput.$r" "${C[@]}" trigger --job "$job_true" --clients 2 --seconds "$thr_s" --warmup 2
  say "round $r/$rounds: GET /runs/{id} requests/s, 2 keep-alive connections (${rps_s}s each)"
  measure "mini_rps.$r" "$bin/client" --url "$mini_url" get --path "/api/v1/runs/$run_done" --conns 2 --seconds "$rps_s"
  measure "uhub_rps.$r" "${C[@]}" get --path "/api/v1/runs/$run_done" --conns 2 --seconds "$rps_s"
done
say "isolated runs: $idle_n trigger→terminal cycles, each after 200 ms idle"
measure floor_idle "$bin/floor" latency "$idle_n" /bin/true 200
measure uhub_idle "${C[@]}" trigger --job "$job_true" --clients 1 --count "$idle_n" --warmup 1 --gap-ms 200
say "workloads: an Ansible playbook (direct, ansible-runner, uhub) and a log ingest (bench/workloads.py)"
measure workloads python3 bench/workloads.py --url "$url" --project "$project" --tmp "$tmp" --bin "$bin" \
  --db "$tmp/uhub.db" --pid "$daemon_pid" --rounds "$rounds" $([ $smoke = 1 ] && echo --smoke)
# Docker: a hardened `true` container through uhub (trigger→terminal) vs the
# raw Engine API sequence with the same HostConfig and vs `docker run --rm`.
if scripts/docker-env.sh >"$tmp/docker-env.log" 2>&1; then
  dimg=uhub-test/busybox:1
  dproj=$(api POST /api/v1/projects "{\"name\":\"bench-docker\",\"environment\":\"dev\",\"execution_backend\":\"docker\",\"execution_backend_config\":{\"image\":\"$dimg\"}}" --field id)
  djob=$(api POST "/api/v1/projects/$dproj/jobs" '{"name":"true","command":["true"]}' --field id)
  for r in $(seq "$rounds"); do
    say "round $r/$rounds: docker, $docker_n hardened \`true\` containers each: raw Engine API, uhub, docker run"
    measure "docker_raw.$r" "$bin/docker_floor" raw "$docker_n" "$dimg" "$(cd "$(dirname "$uhub")" && pwd)/uhub-cinit"
    measure "docker_uhub.$r" "${C[@]}" trigger --job "$djob" --clients 1 --count "$docker_n" --warmup 1
    measure "docker_cli.$r" "$bin/docker_floor" cli "$docker_n" "$dimg"
  done
else
  say "docker: no engine ($(tail -n 1 "$tmp/docker-env.log")): Docker measures skipped"
fi
say "$inflight runs of /bin/sleep $sleep_s in flight, GET /runs/{id} for ${inflight_get_s}s, then cancel all"
measure inflight "${C[@]}" inflight --job "$job_sleep" --count "$inflight" --pid "$daemon_pid" \
  --seconds "$inflight_get_s" --timeout $(( 120 + inflight / 50 ))
# Every process of a canceled run must be gone once the run is terminal.
leftover=$(ps -eo uid= | awk -v a=$uid_first -v b=$uid_last '$1 >= a && $1 <= b' | wc -l)
[ "$leftover" -eq 0 ] || say "WARNING: $leftover processes still run under the runs' uids after all runs ended"
audit=$(api GET /api/v1/audit/verify 2>/dev/null | tr -d '\n' || true)

# ---- report ----
python3 - "$tmp/res" "$json_out" "$smoke" "$rounds" "$inflight" "$failures" "$audit" "$leftover" "$idle_poll" <<'PY'
import glob, json, os, platform, statistics, sys, time
res, out, smoke, rounds, inflight, failures, audit, leftover, idle_poll = sys.argv[1:10]
idle_poll = idle_poll == "1"
smoke, rounds, inflight, failures, leftover = smoke == "1", int(rounds), int(inflight), int(failures), int(leftover)

def load(name):
    try:
        with open(os.path.join(res, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

def rounds_of(prefix):
    return [x for x in (load(f"{prefix}.{r}") for r in range(1, rounds + 1)) if x]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

raw = {}
for p in sorted(glob.glob(os.path.join(res, "*.json"))):
    name = os.path.basename(p)[:-5]
    raw[name] = load(name)

fl, ul = rounds_of("floor_latency"), rounds_of("uhub_latency")
ft, ut = rounds_of("floor_throughput"), rounds_of("uhub_throughput")
mr, ur = rounds_of("mini_rps"), rounds_of("uhub_rps")
inf = load("inflight") or {}

rows = []
def row(key, label, unit, uhub, floor, ratio, target, ok):
    rows.append({"key": key, "measure": label, "unit": unit, "uhub": uhub, "floor": floor,
                 "ratio": ratio, "target": target, "ok": ok})

def ratio(a, b):
    return a / b if a is not None and b else None

# Latency: uhub p50 over floor p50 (each the median over rounds).
u = med([x["latency"]["p50_us"] / 1000 for x in ul if x["ok"]])
f = med([x["p50_us"] / 1000 for x in fl])
rt = ratio(u, f)
row("latency_p50", "Local trigger→terminal /bin/true, p50", "ms", u, f, rt, "≤ 3×", rt is not None and rt <= 3)
ui, fi = load("uhub_idle"), load("floor_idle")
u = ui["latency"]["p50_us"] / 1000 if ui and ui.get("ok") else None
f = fi["p50_us"] / 1000 if fi else None
row("latency_idle_p50", "Local trigger→terminal, isolated runs (200 ms apart), p50", "ms", u, f, ratio(u, f), "—", None)
u99 = med([x["latency"]["p99_us"] / 1000 for x in ul if x["ok"]])
f99 = med([x["p99_us"] / 1000 for x in fl])
row("latency_p99", "Local trigger→terminal /bin/true, p99", "ms", u99, f99, ratio(u99, f99), "—", None)

u = med([x["per_s"] for x in ut])
f = med([x["per_s"] for x in ft])
rt = ratio(u, f)
row("throughput", "Local sustained throughput, 2 in flight", "runs/s", u, f, rt, "≥ 0.5×", rt is not None and rt >= 0.5)

u = med([x["rps"] for x in ur])
f = med([x["rps"] for x in mr])
rt = ratio(u, f)
row("api_rps", "API GET /runs/{id}, 2 keep-alive conns", "req/s", u, f, rt, "≥ 0.4×", rt is not None and rt >= 0.4)
u = med([x["latency"]["p50_us"] / 1000 for x in ur])
f = med([x["latency"]["p50_us"] / 1000 for x in mr])
row("api_p50", "API GET /runs/{id}, p50", "ms", u, f, ratio(u, f), "—", None)

n = inf.get("runs", inflight)
mem = inf.get("mem_running") or {}
rss = mem.get("rss_mib")
ok_mem = rss is not None and rss >= 0 and rss <= 100 and inf.get("running") == n
row("inflight_rss", f"{n:,} runs in flight: daemon RSS (peak sampled)", "MiB", rss, None, None, "≤ 100 MiB",
    ok_mem if rss is not None else None)
g = (inf.get("get") or {}).get("latency") or {}
row("inflight_get_p50", f"{n:,} in flight: GET /runs/{{id}} p50", "ms",
    g.get("p50_us", 0) / 1000 if g else None, None, None, "report", None)
p99 = g.get("p99_us", 0) / 1000 if g else None
row("inflight_get_p99", f"{n:,} in flight: GET /runs/{{id}} p99", "ms", p99, None, None, "≤ 50 ms",
    p99 <= 50 and inf.get("running") == n if p99 is not None else None)
tr = inf.get("trigger") or {}
row("inflight_trigger", f"{n:,} in flight: trigger all, then all running", "s",
    inf.get("all_running_s"), None, None, "report", None)
row("inflight_cancel", f"{n:,} in flight: cancel all, then all terminal", "s",
    inf.get("all_terminal_s"), None, None, "report", None)
dr, du, dc = rounds_of("docker_raw"), rounds_of("docker_uhub"), rounds_of("docker_cli")
if du:
    u = med([x["latency"]["p50_us"] / 1000 for x in du if x.get("ok")])
    f = med([x["p50_us"] / 1000 for x in dr])
    rt = ratio(u, f)
    row("docker_p50", "Docker hardened `true` trigger→terminal vs raw Engine API, p50", "ms", u, f, rt, "≤ 1.1×",
        rt is not None and rt <= 1.1)
    c = med([x["p50_us"] / 1000 for x in dc])
    rc = ratio(u, c)
    row("docker_cli_p50", "Docker hardened `true`: uhub vs `docker run --rm`, p50", "ms", u, c, rc, "< 1×",
        rc is not None and rc < 1)
wl = load("workloads") or {}   # bench/workloads.py: playbook and log-ingest rows
rows.extend(wl.get("rows", []))

def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"

hdr = ["measure", "unit", "uhub", "floor", "ratio", "target", "ok?"]
lines = []
for r in rows:
    lines.append([r["measure"], r["unit"], fmt(r["uhub"]), fmt(r["floor"]),
                  (fmt(r["ratio"]) + "×") if r["ratio"] is not None else "—", r["target"],
                  "—" if r["ok"] is None else ("yes" if r["ok"] else "NO")])
w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(hdr)]
def pr(cells):
    print("| " + " | ".join(c.ljust(w[i]) if i in (0, 1, 5) else c.rjust(w[i]) for i, c in enumerate(cells)) + " |")
print()
pr(hdr)
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for l in lines:
    pr(l)
extra = []
def phase_p50(runs, ph):
    return med([x["phases"][ph]["p50_us"] / 1000 for x in runs if x.get("phases") and x["ok"]])
if ul:
    extra.append("trigger→terminal, p50 of each request (1 client): POST %s ms, logs?follow=1 %s ms, GET %s ms"
                 % tuple(fmt(phase_p50(ul, k)) for k in ("post", "follow", "get")))
errs = sum(x.get("errors", 0) for x in ul + ut + ur)
if errs:
    extra.append(f"{errs} errors in the latency/throughput/API measures")
if inf:
    extra.append("in flight: running %s/%s, after cancel %s, processes left %d; daemon threads %s, fds %s; "
                 "trigger p50 %.1f ms, cancel p50 %.1f ms"
                 % (inf.get("running"), n, json.dumps(inf.get("status_after_cancel")), leftover, mem.get("threads"),
                    mem.get("fds"), tr.get("latency", {}).get("p50_us", 0) / 1000,
                    (inf.get("cancel") or {}).get("latency", {}).get("p50_us", 0) / 1000))
extra.extend(wl.get("notes", []))
if audit:
    extra.append("audit verify: " + audit)
load = os.getloadavg()
extra.append(f"{'smoke' if smoke else 'full'} run, {rounds} round(s), medians over rounds; load average {load[0]:.2f} at the end; {failures} measure(s) errored")
if idle_poll:
    extra.append("idle CPUs polled instead of halting (--idle-poll): not this machine's default")
for e in extra:
    print("  " + e)
print()

doc = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
       "kernel": platform.release(), "cpus": os.cpu_count(), "smoke": smoke, "rounds": rounds,
       "failures": failures, "idle_poll": idle_poll, "processes_left_after_cancel": leftover, "audit_verify": audit, "measures": rows, "raw": raw}
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
print("results written to " + out)
PY

if [ $failures -gt 0 ]; then
  say "$failures measure(s) errored (daemon log: $bin/last-uhub.log)"
  exit 1
fi
say "done"
