#!/usr/bin/env python3
"""The real-workload rows of bench/run.sh: an Ansible playbook and a large log ingest.

  workloads.py --url URL --project ID --tmp DIR --bin DIR --db FILE [--rounds N] [--smoke]

Needs UHUB_TOKEN in the environment, the bench daemon of bench/run.sh (its
allowed_executables hold /usr/bin/ansible-playbook and /usr/bin/head, its
logs.max_bytes_per_run is above the ingest size) and build/bench/ingest_floor.

playbook: bench/playbook/site.yml (localhost, connection local, 6 tasks),
  each round (a) `ansible-playbook` directly, (b) `ansible-runner run` on the
  same playbook, (c) a uhub Local job running /usr/bin/ansible-playbook
  (trigger -> logs?follow=1 -> GET, as the latency rows do). (a) and (b) get
  a fresh HOME and TMPDIR each round and the environment uhub gives a run
  (PATH, HOME, TMPDIR, LANG), so the three do the same work. The playbook is
  copied into a root-owned 0755 directory under /var/lib: a run sees its own
  private /tmp, so a playbook under /tmp would not be there.
ingest: each round (floor) `head -c N /dev/urandom | ingest_floor DB`,
  (uhub) a Local job `/usr/bin/head -c N /dev/urandom`, trigger -> terminal
  (GET /runs/{id} polled every 10 ms), (masked) the same job given 100
  project secrets (so its output goes through the masker). The stored bytes
  are checked in the daemon's store; the masker is checked once by a run
  that prints its environment.

Prints one JSON object: "rows" (table rows for run.sh's report), "notes"
(lines printed under the table) and the raw measurements.
"""
import argparse
import glob
import http.client
import json
import os
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
N_SECRETS = 100
RUN_PATH = "/usr/local/bin:/usr/bin:/bin"  # what uhub's Local backend gives a run
RUN_NOFILE = 1024
TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "rejected", "error", "lost"}


class Fail(Exception):
    pass


class Api:
    """One keep-alive connection to the daemon."""

    def __init__(self, url, token):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.token = u.hostname, u.port, token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)

    def call(self, method, path, body=None, raw=False):
        headers = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            out = r.read()
        except (http.client.HTTPException, OSError) as e:
            self.conn.close()
            raise Fail(f"{method} {path}: {e}")
        if not 200 <= r.status < 300:
            raise Fail(f"{method} {path}: HTTP {r.status}: {out[:300]!r}")
        if raw:
            return out
        return json.loads(out) if out else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def wait_terminal(api, run_id, timeout_s):
    t_end = time.monotonic() + timeout_s
    while True:
        run = api.call("GET", f"/api/v1/runs/{run_id}")
        if run["status"] in TERMINAL:
            return run
        if time.monotonic() > t_end:
            raise Fail(f"run {run_id} still {run['status']} after {timeout_s} s")
        time.sleep(0.01)


def stored_bytes(db, run_id):
    """Bytes and chunks of a run's output in the daemon's store (length() of a
    blob does not read its pages)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        n, b = con.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM logs WHERE run_id = ?",
                           (run_id,)).fetchone()
    finally:
        con.close()
    return b, n


# ---- the playbook ----

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def daemon_cpu(pid):
    """CPU seconds of the daemon and of every child it has reaped (a run's
    uhub-init, which has reaped the job's processes)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


CPU_CGROUP = None  # set by measure_playbook


def make_cpu_cgroup():
    """A cpu cgroup of their own for the direct and ansible-runner runs, as a
    uhub run has: in the bench's own group they would be scheduled against
    other sessions differently (autogroups) from a uhub run."""
    for base, probe in (("/sys/fs/cgroup/cpu", "cgroup.procs"), ("/sys/fs/cgroup", "cgroup.controllers")):
        if os.path.exists(os.path.join(base, probe)):
            path = os.path.join(base, f"uhub-bench-direct.{os.getpid()}")
            try:
                os.mkdir(path)
                return path
            except OSError:
                return None
    return None


def remove_cgroup(path):
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def run_limits():
    # A Local run's descriptor limit (RUN_NOFILE in src/backend/local.c), not
    # the bench's raised one: the direct runs get what a uhub run gets.
    resource.setrlimit(resource.RLIMIT_NOFILE, (RUN_NOFILE, RUN_NOFILE))
    if CPU_CGROUP:
        with open(os.path.join(CPU_CGROUP, "cgroup.procs"), "w") as f:
            f.write("0")


def run_env(home, tmp):
    return {"PATH": RUN_PATH, "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8"}


def fresh_dirs(work, name):
    d = tempfile.mkdtemp(prefix=name + ".", dir=work)
    os.mkdir(os.path.join(d, "home"))
    os.mkdir(os.path.join(d, "tmp"))
    return d


def playbook_direct(work, pb):
    d = fresh_dirs(work, "direct")
    try:
        with open(os.path.join(d, "out"), "w+b") as out:
            c0, t0 = children_cpu(), time.monotonic()
            p = subprocess.run(["/usr/bin/ansible-playbook", "-i", f"{pb}/hosts", f"{pb}/site.yml"], cwd=d,
                               env=run_env(f"{d}/home", f"{d}/tmp"), stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, preexec_fn=run_limits)
            t, c = time.monotonic() - t0, children_cpu() - c0
            out.seek(0)
            text = out.read()
        if p.returncode != 0 or b"failed=0" not in text:
            raise Fail(f"ansible-playbook exited {p.returncode}: {text[-600:]!r}")
        return t, c
    finally:
        shutil.rmtree(d, ignore_errors=True)


def playbook_runner(work, pb):
    d = fresh_dirs(work, "runner")
    try:
        pdd = os.path.join(d, "pdd")
        os.makedirs(os.path.join(pdd, "project"))
        for f in ("site.yml", "report.j2"):
            shutil.copy(f"{pb}/{f}", os.path.join(pdd, "project", f))
        with open(os.path.join(d, "out"), "w+b") as out:
            c0, t0 = children_cpu(), time.monotonic()
            p = subprocess.run(["/usr/bin/ansible-runner", "run", pdd, "-p", "site.yml", "--inventory", f"{pb}/hosts"],
                               cwd=d, env=run_env(f"{d}/home", f"{d}/tmp"), stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, preexec_fn=run_limits)
            t, c = time.monotonic() - t0, children_cpu() - c0
            out.seek(0)
            text = out.read()
        status = [open(s).read().strip() for s in glob.glob(os.path.join(pdd, "artifacts", "*", "status"))]
        if p.returncode != 0 or status != ["successful"]:
            raise Fail(f"ansible-runner exited {p.returncode}, status {status}: {text[-600:]!r}")
        return t, c
    finally:
        shutil.rmtree(d, ignore_errors=True)


def playbook_uhub(api, job, pid):
    c0, t0 = daemon_cpu(pid), time.monotonic()
    run_id = api.call("POST", f"/api/v1/jobs/{job}/runs", {})["id"]
    text = api.call("GET", f"/api/v1/runs/{run_id}/logs?follow=1", raw=True)
    run = api.call("GET", f"/api/v1/runs/{run_id}")
    t = time.monotonic() - t0
    # uhub-init is reaped by the time the run is terminal: its CPU (and the
    # job's) is in the daemon's cutime/cstime by now.
    c = daemon_cpu(pid) - c0
    if run["status"] != "succeeded" or b"failed=0" not in text:
        raise Fail(f"playbook run {run_id} {run['status']} ({run.get('message')}): {text[-600:]!r}")
    return t, c, run_id


def measure_playbook(api, a, work, rows, notes, raw):
    global CPU_CGROUP
    pb = tempfile.mkdtemp(prefix="uhub-bench-playbook.", dir="/var/lib")
    CPU_CGROUP = make_cpu_cgroup()
    try:
        os.chmod(pb, 0o755)
        for f in ("site.yml", "report.j2"):
            shutil.copy(os.path.join(HERE, "playbook", f), os.path.join(pb, f))
            os.chmod(os.path.join(pb, f), 0o644)
        with open(os.path.join(pb, "hosts"), "w") as f:
            f.write("localhost ansible_connection=local\n")
        os.chmod(os.path.join(pb, "hosts"), 0o644)
        # Nothing ANSIBLE_* is needed: uhub gives the run a writable HOME
        # (~/.ansible/tmp is ANSIBLE_LOCAL_TEMP's default) and TMPDIR, and
        # ansible copes with a uid that has no passwd entry.
        job = api.call("POST", f"/api/v1/projects/{a.project}/jobs",
                       {"name": "playbook", "command": ["/usr/bin/ansible-playbook", "-i", f"{pb}/hosts",
                                                        f"{pb}/site.yml"]})["id"]
        # A 2 s playbook varies by ±0.1 s from round to round here, more
        # than uhub's overhead: 9 rounds at least.
        n = 1 if a.smoke else max(9, a.rounds)
        warmup = 0 if a.smoke else 1
        da, db, dc = [], [], []
        ca, cb, cc = [], [], []
        run_id = None
        if not warmup:
            # Not even one warm-up round: at least one direct run, or the
            # first timed run reads ansible's files from disk.
            playbook_direct(work, pb)
        for i in range(warmup + n):
            # The order turns each round, so none of the three always runs
            # first (colder caches) or right after another one.
            t, c = {}, {}
            for k in ("abc", "bca", "cab")[i % 3]:
                if k == "a":
                    t[k], c[k] = playbook_direct(work, pb)
                elif k == "b":
                    t[k], c[k] = playbook_runner(work, pb)
                else:
                    t[k], c[k], run_id = playbook_uhub(api, job, a.pid)
            ta, tb, tc = t["a"], t["b"], t["c"]
            if i >= warmup:
                da.append(ta)
                db.append(tb)
                dc.append(tc)
                ca.append(c["a"])
                cb.append(c["b"])
                cc.append(c["c"])
            print(f"  playbook round {i + 1 - warmup}/{n}{' (warm-up)' if i < warmup else ''}: direct {ta:.3f} s, "
                  f"ansible-runner {tb:.3f} s, uhub {tc:.3f} s ({run_id}); CPU {c['a']:.2f}, {c['b']:.2f}, {c['c']:.2f} s",
                  file=sys.stderr)
    finally:
        shutil.rmtree(pb, ignore_errors=True)
        if CPU_CGROUP:
            remove_cgroup(CPU_CGROUP)
    ma, mb, mc = med(da), med(db), med(dc)
    # Overheads are medians of per-round differences: the three runs of a
    # round follow each other within seconds, so a round's difference
    # cancels the machine's drift between rounds, which a difference of
    # medians keeps.
    ov_u = med([c - x for c, x in zip(dc, da)])
    ov_r = med([b - x for b, x in zip(db, da)])
    raw["playbook"] = {"rounds": n, "warmup": warmup, "direct_s": da, "runner_s": db, "uhub_s": dc,
                       "direct_cpu_s": ca, "runner_cpu_s": cb, "uhub_cpu_s": cc}
    rows.append({"key": "playbook_uhub", "measure": "Ansible playbook (6 local tasks) through uhub, median",
                 "unit": "s", "uhub": mc, "floor": ma, "ratio": mc / ma, "target": "—", "ok": None})
    ratio = ov_u / ov_r if ov_r > 0 else None
    rows.append({"key": "playbook_overhead",
                 "measure": "playbook wall-time overhead: uhub (c−a) vs ansible-runner (b−a) as floor",
                 "unit": "ms", "uhub": ov_u * 1000, "floor": ov_r * 1000, "ratio": ratio, "target": "≤ 0.1×",
                 "ok": (ov_u <= 0.1 * ov_r) if ov_r > 0 else None})
    # CPU time (the process tree's user + system) is what the load on a
    # shared machine disturbs least.
    mca, mcb, mcc = med(ca), med(cb), med(cc)
    cu = med([c - x for c, x in zip(cc, ca)])
    cr = med([b - x for b, x in zip(cb, ca)])
    rows.append({"key": "playbook_cpu_overhead",
                 "measure": "playbook CPU overhead: uhub (c−a) vs ansible-runner (b−a) as floor",
                 "unit": "ms", "uhub": cu * 1000, "floor": cr * 1000, "ratio": cu / cr if cr > 0 else None,
                 "target": "≤ 0.1×", "ok": (cu <= 0.1 * cr) if cr > 0 else None})
    notes.append(f"playbook ({n} round(s)): medians direct {ma:.3f} s, ansible-runner {mb:.3f} s, uhub {mc:.3f} s "
                 f"(differences of these medians: uhub {(mc - ma) * 1000:+.0f} ms, ansible-runner "
                 f"{(mb - ma) * 1000:+.0f} ms; the overhead rows are medians of per-round differences); CPU "
                 f"medians direct {mca:.2f} s, ansible-runner {mcb:.2f} s, uhub {mcc:.2f} s (uhub: the daemon and "
                 f"the runs it reaped); direct and ansible-runner runs in cpu cgroup "
                 f"{CPU_CGROUP or '(none: could not make one)'}")


# ---- the log ingest ----

def floor_ingest(a, nbytes, i):
    # Each round's store is new and kept to the end: deleting 1 GiB here
    # would discard its blocks while the next measure runs.
    db = os.path.join(a.work, f"ingest-floor.{i}.db")
    t0 = time.monotonic()
    head = subprocess.Popen(["/usr/bin/head", "-c", str(nbytes), "/dev/urandom"], stdout=subprocess.PIPE)
    fl = subprocess.Popen([os.path.join(a.bin, "ingest_floor"), db], stdin=head.stdout, stdout=subprocess.PIPE)
    head.stdout.close()
    out, _ = fl.communicate()
    head.wait()
    t = time.monotonic() - t0
    if fl.returncode or head.returncode:
        raise Fail(f"floor ingest: head {head.returncode}, ingest_floor {fl.returncode}")
    res = json.loads(out)
    if res["bytes"] != nbytes:
        raise Fail(f"floor ingest stored {res['bytes']} bytes of {nbytes}")
    res["wall_s"] = t
    return res


def uhub_ingest(api, a, job, nbytes, exact):
    t0 = time.monotonic()
    run_id = api.call("POST", f"/api/v1/jobs/{job}/runs", {})["id"]
    run = wait_terminal(api, run_id, 900)
    t = time.monotonic() - t0
    if run["status"] != "succeeded":
        raise Fail(f"ingest run {run_id} {run['status']}: {run.get('message')}")
    b, n = stored_bytes(a.db, run_id)
    if run.get("log_truncated") or (exact and b != nbytes):
        raise Fail(f"ingest run {run_id} stored {b} bytes of {nbytes} (truncated: {run.get('log_truncated')})")
    return {"run": run_id, "seconds": t, "stored_bytes": b, "chunks": n}


def check_masker(api, a, secret_env, values):
    """A run printing its environment must show no secret value, only markers."""
    job = api.call("POST", f"/api/v1/projects/{a.project}/jobs",
                   {"name": "ingest-env", "command": ["/usr/bin/head", "-c", "1048576", "/proc/self/environ"],
                    "secrets": secret_env})["id"]
    run_id = api.call("POST", f"/api/v1/jobs/{job}/runs", {})["id"]
    text = api.call("GET", f"/api/v1/runs/{run_id}/logs?follow=1&format=ndjson", raw=True)
    run = api.call("GET", f"/api/v1/runs/{run_id}")
    shown = "".join(json.loads(line)["text"] for line in text.decode().splitlines() if line.strip())
    leaked = sum(v in shown for v in values)
    masked = shown.count("[MASKED]")
    if run["status"] != "succeeded" or leaked or masked < len(values):
        raise Fail(f"masker check run {run_id} {run['status']}: {leaked} values shown, {masked} markers")
    return masked


def measure_ingest(api, a, rows, notes, raw):
    nbytes = a.ingest_bytes
    cmd = ["/usr/bin/head", "-c", str(nbytes), "/dev/urandom"]
    job = api.call("POST", f"/api/v1/projects/{a.project}/jobs", {"name": "ingest", "command": cmd})["id"]
    values, secret_env = [], {}
    for i in range(N_SECRETS):
        v = secrets.token_urlsafe(18)  # 24 characters
        name = f"bench_secret_{i:03d}"
        api.call("PUT", f"/api/v1/projects/{a.project}/secrets/{name}", {"value": v})
        values.append(v)
        secret_env[f"BENCH_SECRET_{i:03d}"] = name
    job_masked = api.call("POST", f"/api/v1/projects/{a.project}/jobs",
                          {"name": "ingest-masked", "command": cmd, "secrets": secret_env})["id"]
    markers = check_masker(api, a, secret_env, values)
    n = a.rounds
    fl, un, ms = [], [], []
    for i in range(n):
        f = floor_ingest(a, nbytes, i)
        u = uhub_ingest(api, a, job, nbytes, True)
        # Random bytes could, very rarely, contain a secret's form: then the
        # stored size differs; the check above already proved the masker is on.
        m = uhub_ingest(api, a, job_masked, nbytes, False)
        fl.append(f)
        un.append(u)
        ms.append(m)
        print(f"  ingest round {i + 1}/{n}: floor {f['wall_s']:.2f} s, uhub {u['seconds']:.2f} s, "
              f"masked {m['seconds']:.2f} s", file=sys.stderr)
    mib = nbytes / 1048576
    f_mibs = med([mib / x["wall_s"] for x in fl])
    u_mibs = med([mib / x["seconds"] for x in un])
    m_mibs = med([mib / x["seconds"] for x in ms])
    raw["ingest"] = {"bytes": nbytes, "secrets": N_SECRETS, "floor": fl, "uhub": un, "masked": ms}
    label = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib:g} MiB"
    rows.append({"key": "ingest", "measure": f"Log ingest, {label} of output: trigger→terminal", "unit": "MiB/s",
                 "uhub": u_mibs, "floor": f_mibs, "ratio": u_mibs / f_mibs, "target": "≥ 0.5×",
                 "ok": u_mibs / f_mibs >= 0.5})
    rows.append({"key": "ingest_masked", "measure": f"Log ingest, {label}, {N_SECRETS} secrets masked (floor: unmasked)",
                 "unit": "MiB/s", "uhub": m_mibs, "floor": u_mibs, "ratio": m_mibs / u_mibs, "target": "≥ 0.9×",
                 "ok": m_mibs / u_mibs >= 0.9})
    notes.append(f"ingest ({n} round(s) of {nbytes:,} bytes from /dev/urandom): stored chunks per run "
                 f"{un[-1]['chunks']:,} (floor {fl[-1]['chunks']:,} in {fl[-1]['transactions']:,} transactions); "
                 f"masker check: {markers} [MASKED] markers, no value shown; masked runs stored "
                 f"{', '.join(str(x['stored_bytes'] - nbytes) for x in ms)} bytes more than produced")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--tmp", required=True, help="the bench's temporary directory")
    p.add_argument("--bin", required=True, help="where ingest_floor is")
    p.add_argument("--db", required=True, help="the daemon's SQLite store")
    p.add_argument("--pid", type=int, required=True, help="the daemon's pid (its CPU time is read)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--ingest-bytes", type=int, default=None)
    p.add_argument("--only", choices=["playbook", "ingest"], default=None)
    a = p.parse_args()
    if a.ingest_bytes is None:
        a.ingest_bytes = (16 << 20) if a.smoke else (1 << 30)
    if a.smoke:
        a.rounds = 1
    token = os.environ.get("UHUB_TOKEN") or sys.exit("workloads.py: UHUB_TOKEN is not set")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    api = Api(a.url, token)
    rows, notes, raw = [], [], {}
    work = a.work = tempfile.mkdtemp(prefix="workloads.", dir=a.tmp)
    try:
        if a.only in (None, "playbook"):
            measure_playbook(api, a, work, rows, notes, raw)
        if a.only in (None, "ingest"):
            measure_ingest(api, a, rows, notes, raw)
    except Fail as e:
        print(f"workloads.py: {e}", file=sys.stderr)
        print(json.dumps({"rows": rows, "notes": notes, "raw": raw, "error": str(e)}))
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"rows": rows, "notes": notes, "raw": raw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
