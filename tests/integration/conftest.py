"""Test harness: starts the real `uhub serve` on a free port with a fresh
SQLite store in a temporary directory, and gives tests an HTTP client.

Fixtures:
  server  -- a running daemon (one per test module by default; `fresh_server`
             for tests that kill or restart it). Attributes: url, admin_token,
             dir, db, config_path, proc, pid, log_path, bin; methods:
             client(token=None) -> Client, restart(), kill9(), stop(),
             make_user(role) -> (user_id, token), project(...), job(...),
             wait_run(run_id, timeout) -> run dict, cli(*args, token=...) ->
             CompletedProcess.
  uhub_bin -- path of build/uhub.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("UH_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "uhub")

TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "rejected", "error", "lost"}

# Executables the test config whitelists (all root-owned, from Debian).
ALLOWED = ["/bin/true", "/bin/false", "/bin/echo", "/bin/sh", "/bin/sleep", "/bin/cat",
           "/usr/bin/id", "/bin/ls", "/usr/bin/env", "/bin/kill", "/usr/bin/yes", "/usr/bin/head",
           "/usr/bin/setsid", "/usr/bin/python3", "/usr/bin/ansible-playbook"]


def base_config(tmp):
    return {
        "listen": "127.0.0.1:0",
        "db": "sqlite:" + os.path.join(tmp, "uhub.db"),
        "logs": {"max_bytes_per_run": 1048576},
        "guardrails": {"default_timeout_seconds": 60, "max_timeout_seconds": 600,
                       "max_mem_limit": "2Gi"},
        "local": {"allowed_executables": [p for p in ALLOWED if os.path.exists(p)],
                  "allowed_workdirs": [os.path.join(tmp, "workdirs")],
                  "grace_seconds": 2,
                  "work_root": os.path.join(tmp, "work"),
                  "pids_limit": 64},
        "secrets": {"key_file": os.path.join(tmp, "secrets.key")},
        "shutdown_grace_seconds": 5,
    }


class Client:
    def __init__(self, url, token):
        self.url = url
        self.s = requests.Session()
        if token:
            self.s.headers["Authorization"] = "Bearer " + token

    def req(self, method, path, **kw):
        kw.setdefault("timeout", 30)
        return self.s.request(method, self.url + "/api/v1" + path, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        if body is not None:
            kw["json"] = body
        return self.req("POST", path, **kw)

    def patch(self, path, body, **kw):
        return self.req("PATCH", path, json=body, **kw)

    def put(self, path, body, **kw):
        return self.req("PUT", path, json=body, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def ok(self, method, path, body=None, status=None):
        r = self.req(method, path, json=body) if body is not None else self.req(method, path)
        want = status or (201 if method == "POST" else 200)
        assert r.status_code == want, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


class Server:
    def __init__(self, tmp, config=None, env=None):
        self.dir = tmp
        self.bin = BIN
        self.config = config or base_config(tmp)
        os.makedirs(os.path.join(tmp, "workdirs"), exist_ok=True)
        os.chmod(tmp, 0o755)
        self.config_path = os.path.join(tmp, "uhub.json")
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        self.db = self.config["db"][len("sqlite:"):]
        self.admin_token = "uht_test_" + secrets.token_urlsafe(32)
        self.extra_env = env or {}
        self.log_path = os.path.join(tmp, "uhub.log")
        self.proc = None
        self.url = None
        self.start()

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        env = dict(os.environ)
        env["UHUB_BOOTSTRAP_TOKEN"] = self.admin_token
        env.update(self.extra_env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin, "serve", "--config", self.config_path],
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=self.dir,
                                     preexec_fn=getattr(self, "preexec", None))
        deadline = time.time() + 20
        line = b""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if b"listening on" in line:
                self.url = line.decode().strip().split("listening on ")[1]
                break
        if not self.url:
            self.proc.kill()
            raise RuntimeError("uhub did not start: " + line.decode(errors="replace") + "\n" + self.read_log())
        # Keep draining stdout so the daemon never blocks on a full pipe.
        import threading
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()

    @staticmethod
    def _drain(f):
        for _ in iter(f.readline, b""):
            pass

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def client(self, token=None):
        return Client(self.url, token if token is not None else self.admin_token)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
            self.check_sanitizers()

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def check_sanitizers(self):
        """Under ASan/UBSan (UH_SANITIZED=1) a daemon that leaked or hit
        undefined behaviour says so in its log at exit: that fails the test
        that stopped it."""
        if not os.environ.get("UH_SANITIZED"):
            return
        log = self.read_log()
        for mark in self.SANITIZER_MARKS:
            if mark in log:
                i = log.index(mark)
                raise AssertionError(f"the daemon reported {mark!r}:\n" + log[max(0, i - 200):i + 4000])

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def restart(self):
        self.stop()
        self.url = None
        self.start()

    # ---- helpers ----
    def make_user(self, role, name=None):
        c = self.client()
        u = c.ok("POST", "/users", {"name": name or f"{role}-{secrets.token_hex(4)}", "role": role})
        t = c.ok("POST", f"/users/{u['id']}/tokens", {})
        return u["id"], t["token"]

    def project(self, name=None, environment="dev", backend="local", config=None):
        return self.client().ok("POST", "/projects", {
            "name": name or "p-" + secrets.token_hex(4), "environment": environment,
            "execution_backend": backend, "execution_backend_config": config or {}})

    def job(self, project_id, command, name=None, **fields):
        body = {"name": name or "j-" + secrets.token_hex(4), "command": command}
        body.update(fields)
        return self.client().ok("POST", f"/projects/{project_id}/jobs", body)

    def trigger(self, job_id, params=None, token=None):
        c = self.client(token)
        body = {"parameters": params} if params else {}
        return c.ok("POST", f"/jobs/{job_id}/runs", body)

    def wait_run(self, run_id, timeout=30, token=None):
        c = self.client(token)
        deadline = time.time() + timeout
        while True:
            r = c.get(f"/runs/{run_id}")
            assert r.status_code == 200, r.text
            run = r.json()
            if run["status"] in TERMINAL:
                return run
            if time.time() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s")
            # follow=1 returns when the run is terminal: a condition, not a sleep
            c.get(f"/runs/{run_id}/logs?follow=1", timeout=timeout)

    def logs(self, run_id, token=None):
        r = self.client(token).get(f"/runs/{run_id}/logs")
        assert r.status_code == 200, r.text
        return r.text

    def cli(self, *args, token=None, env=None, timeout=60, input=None):
        e = dict(os.environ)
        e["UHUB_URL"] = self.url
        e["UHUB_TOKEN"] = token if token is not None else self.admin_token
        if env:
            e.update(env)
        return subprocess.run([self.bin, *args], env=e, capture_output=True, timeout=timeout, input=input)


def uid_processes(uid_min, uid_max):
    """Host processes whose real uid lies in the range (the runs' uids)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uid = int(line.split()[1])
                        if uid_min <= uid <= uid_max:
                            found.append(int(pid))
                        break
        except OSError:
            pass
    return found


@pytest.fixture(scope="session")
def uhub_bin():
    assert os.path.exists(BIN), f"build {BIN} first"
    return BIN


@pytest.fixture(scope="module")
def server(uhub_bin):
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    s = Server(tmp)
    yield s
    s.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def fresh_server(uhub_bin):
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    s = Server(tmp)
    yield s
    s.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def make_server(uhub_bin):
    """Factory for a server with a custom config: make_server(mutate) where
    mutate(config_dict) edits the default config in place."""
    made = []

    def factory(mutate=None, env=None):
        tmp = tempfile.mkdtemp(prefix="uhub-it-")
        cfg = base_config(tmp)
        if mutate:
            mutate(cfg)
        s = Server(tmp, cfg, env)
        made.append((s, tmp))
        return s

    yield factory
    for s, tmp in made:
        s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Helpers shared by the lifecycle, logs, authz, validation, audit, local
# security and recovery suites. Additions only: nothing above is changed.
# ---------------------------------------------------------------------------
import re

UID_MIN, UID_MAX = 61184, 65519  # base_config leaves local.uid_range at the SPEC default

RUN_KEYS = ["id", "job_id", "project_id", "status", "reason", "message", "backend", "parameters",
            "requested_by", "approved_by", "rejected_by", "canceled_by", "comments", "created_at",
            "started_at", "finished_at", "exit_code", "external_id", "log_truncated", "retry_of",
            "effective_config"]
AUDIT_KEYS = ["seq", "at", "actor", "action", "target", "details", "prev", "hash"]
ERROR_CODES = {"invalid_request", "invalid_config", "unsupported_backend", "unauthorized", "forbidden",
               "guardrail", "not_found", "conflict", "payload_too_large", "rate_limited", "unavailable",
               "internal"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def parse_time(s):
    """An RFC 3339 UTC time of the API as seconds since the epoch."""
    import datetime
    assert isinstance(s, str) and RFC3339_UTC.match(s), f"not an RFC 3339 UTC time: {s!r}"
    s = s.replace("Z", "+00:00")
    if "." in s:  # fromisoformat of 3.11 takes any number of fraction digits; keep 6
        head, rest = s.split(".", 1)
        frac, tz = rest[:-6], rest[-6:]
        s = head + "." + (frac + "000000")[:6] + tz
    return datetime.datetime.fromisoformat(s).timestamp()


def wait_for(cond, timeout, what, interval=0.05):
    """Poll cond() until it returns something truthy and return that; fail
    naming `what` when the deadline passes. A wait on a condition, not a sleep."""
    deadline = time.time() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def error_of(r, status, code=None, field=None, what=""):
    """Assert r is the JSON error SPEC §5 describes and return its `error`."""
    ctx = f"{what}: " if what else ""
    assert r.status_code == status, f"{ctx}expected HTTP {status}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("application/json"), f"{ctx}error body is not JSON ({ctype!r}): {r.text[:300]}"
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{ctx}error body does not parse as JSON: {r.text[:300]}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), \
        f"{ctx}error body is not {{\"error\":{{...}}}}: {body}"
    e = body["error"]
    assert isinstance(e.get("code"), str) and e["code"] in ERROR_CODES, f"{ctx}bad error code: {e}"
    assert isinstance(e.get("message"), str) and e["message"], f"{ctx}error without a message: {e}"
    if "field" in e:
        assert e["field"] is None or isinstance(e["field"], str), f"{ctx}error.field not a string: {e}"
    if code is not None:
        assert e["code"] == code, f"{ctx}expected error code {code!r}, got {e}"
    if field is not None:
        assert e.get("field") == field, f"{ctx}expected error.field {field!r}, got {e}"
    return e


def proc_status(pid):
    """{'uid': real uid, 'ppid', 'name', 'cmdline': [argv]} of a host process, or None."""
    try:
        info = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    info["uid"] = int(line.split()[1])
                elif line.startswith("PPid:"):
                    info["ppid"] = int(line.split()[1])
                elif line.startswith("Name:"):
                    info["name"] = line.split(None, 1)[1].strip()
                elif line.startswith("State:"):
                    info["state"] = line.split()[1]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            info["cmdline"] = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        return info
    except (OSError, ValueError):
        return None


def run_processes(exclude=()):
    """{pid: status} of live (non-zombie) host processes with a uid in the
    runs' range, leaving out the pids in `exclude` (a baseline)."""
    out = {}
    for pid in uid_processes(UID_MIN, UID_MAX):
        if pid in exclude:
            continue
        st = proc_status(pid)
        if st and st.get("state") != "Z":
            out[pid] = st
    return out


def describe_processes(procs):
    return "; ".join(f"pid {p} uid {s.get('uid')} {' '.join(s.get('cmdline', []))!r}" for p, s in procs.items())


class HostDir:
    """A directory on the host outside /tmp and /var/tmp (which a Local run
    sees as private tmpfs), so runs and tests both see it. Root-owned."""

    def __init__(self, mode=0o755):
        self.path = tempfile.mkdtemp(prefix="uhub-it-", dir="/var/lib")
        os.chmod(self.path, mode)

    def sub(self, name, mode=0o755):
        p = os.path.join(self.path, name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        return p

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture
def host_dir():
    d = HostDir()
    yield d
    d.cleanup()


class Gate:
    """A condition a running job can wait for: the test opens it by creating
    a file the job polls (`Gate.wait_cmd`). Lets tests assert on order
    (output seen before the job may finish) instead of on timing."""

    def __init__(self, hostdir):
        self.file = os.path.join(hostdir.sub("gates", 0o755), "g-" + secrets.token_hex(6))

    @property
    def wait_cmd(self):
        return f"while [ ! -e {self.file} ]; do sleep 0.05; done"

    def open(self):
        with open(self.file, "w"):
            pass


class LineReader:
    """Reads a streamed response line by line as bytes arrive."""

    def __init__(self, resp):
        self.resp = resp
        self.it = resp.iter_content(chunk_size=1)
        self.buf = b""
        self.eof = False

    def readline(self):
        while b"\n" not in self.buf and not self.eof:
            try:
                b = next(self.it)
            except StopIteration:
                self.eof = True
                break
            self.buf += b
        if b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            return line + b"\n"
        line, self.buf = self.buf, b""
        return line

    def read_rest(self):
        out = self.buf
        self.buf = b""
        for b in self.it:
            out += b
        self.eof = True
        return out


def sse_events(resp):
    """Yield SSE events of a streamed response as dicts {event, id, data,
    comment}; `data` is the data lines joined with '\\n' (the SSE rule)."""
    rd = LineReader(resp)
    ev = {"event": None, "id": None, "data": None}
    while True:
        raw = rd.readline()
        if not raw:
            if ev["data"] is not None:
                yield ev
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")
        if line == "":
            if ev["data"] is not None or ev["event"] is not None:
                ev["event"] = ev["event"] or "message"
                yield ev
            ev = {"event": None, "id": None, "data": None}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            ev["data"] = value if ev["data"] is None else ev["data"] + "\n" + value
        elif name in ("event", "id"):
            ev[name] = value


def me(server, token=None):
    return server.client(token).ok("GET", "/me")


def audit_verify(server):
    return server.client().ok("GET", "/audit/verify")


# Attributing host processes to one run. Other suites may run at the same
# time on this host and use the same uid range, so a run's processes are
# told apart by the run's own uid (which the job reports with `id -u` as its
# first line of output) and by their start time: once a run has ended, its
# uid may be handed to a new run, whose processes start later.

def boot_now():
    """Now, on the clock of /proc/PID/stat's start times (seconds since boot)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def proc_start(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def uid_procs(uid, started_before=None):
    """{pid: status} of the live (non-zombie) processes of one uid; with
    started_before (a boot_now() value), only those started before it."""
    out = {}
    for pid in uid_processes(uid, uid):
        st = proc_status(pid)
        if not st or st.get("state") == "Z":
            continue
        if started_before is not None:
            t = proc_start(pid)
            if t is None or t >= started_before:
                continue
        out[pid] = st
    return out


def job_uid(server, run_id, timeout=15):
    """The uid a run printed as the first line of its log (`id -u`)."""
    def first_line():
        text = server.logs(run_id)
        if "\n" in text:
            return text.split("\n", 1)[0].strip() or None
        return None
    line = wait_for(first_line, timeout, f"run {run_id} to print its uid")
    assert line.isdigit() and UID_MIN <= int(line) <= UID_MAX, f"run {run_id} printed {line!r} as its uid"
    return int(line)


def _other_runs_process(pid, run_ids):
    """Whether pid descends from the init of a run not in run_ids: uhub-init
    names its run as run=ID in its argv. Several daemons (other suites) may
    run on this host at once and give the same uids to their runs."""
    seen = 0
    while pid > 1 and seen < 64:
        st = proc_status(pid)
        if not st:
            return False
        for a in st.get("cmdline", []):
            if a.startswith("run="):
                return a[4:] not in run_ids
        pid = st.get("ppid", 0)
        seen += 1
    return False


def run_procs(uid, run_ids):
    """uid_procs(uid) without the processes that visibly belong to other runs
    (an orphan that escaped its run has no run init above it: it counts)."""
    ids = set(run_ids)
    return {p: st for p, st in uid_procs(uid).items() if not _other_runs_process(p, ids)}


def assert_no_procs(uids, grace, what, run_ids):
    """No process of these runs (by uid, see run_procs) may outlive them;
    `grace` covers the kernel's reaping, no more."""
    deadline = time.time() + grace
    while True:
        left = {}
        for u in uids:
            left.update(run_procs(u, run_ids))
        if not left:
            return
        if time.time() > deadline:
            raise AssertionError(f"{what}: {len(left)} processes survive: {describe_processes(left)}")
        time.sleep(0.05)


def cgroup_dirs_of(run_id, root="/sys/fs/cgroup", depth=4):
    """Directories under the cgroup mounts whose name holds the run id."""
    found = []

    def walk(d, n):
        try:
            entries = os.scandir(d)
        except OSError:
            return
        with entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if run_id in e.name:
                        found.append(e.path)
                    elif n > 0:
                        walk(e.path, n - 1)
    walk(root, depth)
    return found
