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
                                     stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=self.dir)
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
