"""The `uhub` command-line client (SPEC §6), driven as a user drives it.

Two halves:

* `TestAgainstStub` runs the real binary against a small HTTP server written
  here, which answers exactly what a test wants: every run status, every
  HTTP error, streams cut short, pages. It pins the client's own contract
  (exit statuses, what goes on stdout and stderr, the requests it sends)
  independently of the daemon.
* `TestAgainstServer` runs the binary against the real daemon (the `server`
  fixture of conftest.py): projects, jobs, runs with --follow/--wait, approvals,
  exceptions, secrets, audit.
"""
import json
import os
import queue
import re
import secrets
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

TOKEN = "uht_stub_" + "s3cr3t" * 6


# ---------------------------------------------------------------------------
# A scriptable HTTP server
# ---------------------------------------------------------------------------


class Stub:
    """Routes are (METHOD, path-without-query) -> handler(req) returning
    (status, body) where body is a dict/list (sent as JSON), bytes, or a
    generator of bytes (sent chunked, flushed one by one)."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                u = urlsplit(self.path)
                req = {"method": self.command, "path": u.path, "query": parse_qs(u.query),
                       "headers": dict(self.headers), "body": body}
                stub.requests.append(req)
                h = stub.routes.get((self.command, u.path))
                headers = {}
                if h is None:
                    status, out = 404, {"error": {"code": "not_found", "message": f"no route {u.path}"}}
                else:
                    status, out, *extra = h(req) if callable(h) else h
                    headers = extra[0] if extra else {}
                if isinstance(out, (dict, list)):
                    data = json.dumps(out).encode()
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif isinstance(out, (bytes, str)):
                    data = out.encode() if isinstance(out, str) else out
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif out is None:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:  # a generator: chunked, each piece flushed; "CUT" drops the connection
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in out:
                        if piece == "CUT":
                            self.close_connection = True
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, method, path, handler):
        self.routes[(method, "/api/v1" + path)] = handler

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.close()


def run_cli(bin_, url, *args, token=TOKEN, input=None, timeout=60, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("UHUB_")}
    e["UHUB_URL"] = url
    if token is not None:
        e["UHUB_TOKEN"] = token
    if env:
        e.update(env)
    return subprocess.run([bin_, *args], env=e, capture_output=True, timeout=timeout, input=input)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def a_run(status="queued", exit_code=None, rid="r_1", **kw):
    run = {"id": rid, "job_id": "j_1", "project_id": "p_1", "status": status, "reason": None,
           "message": None, "backend": "local", "parameters": {}, "requested_by": "u_1",
           "approved_by": None, "rejected_by": None, "canceled_by": None, "comments": [],
           "created_at": "2026-01-01T00:00:00Z", "started_at": None, "finished_at": None,
           "exit_code": exit_code, "external_id": None, "log_truncated": False, "retry_of": None,
           "effective_config": {}}
    run.update(kw)
    return run


class TestAgainstStub:
    """The client's contract, against answers scripted here."""

    @pytest.mark.parametrize("status,exit_code,want", [
        ("succeeded", 0, 0),
        ("failed", 3, 3),
        ("failed", None, 1),
        ("failed", 0, 1),
        ("timed_out", 143, 124),
        ("canceled", 143, 130),
        ("rejected", None, 77),
        ("error", None, 70),
        ("lost", None, 75),
    ])
    def test_wait_exits_with_the_runs_status(self, stub, uhub_bin, status, exit_code, want):
        polls = []

        def get_run(req):
            polls.append(1)
            # Running twice first: --wait must poll until the run is terminal.
            if len(polls) < 3:
                return 200, a_run("running")
            return 200, a_run(status, exit_code)

        stub.route("POST", "/jobs/j_1/runs", (201, a_run("queued")))
        stub.route("GET", "/runs/r_1", get_run)
        r = run_cli(uhub_bin, stub.url, "run", "j_1", "--wait")
        assert r.returncode == want, r.stderr
        assert r.stdout == b""
        assert len(polls) == 3
        if status != "succeeded":
            assert status.encode() in r.stderr

    def test_run_without_flags_prints_the_id(self, stub, uhub_bin):
        stub.route("POST", "/jobs/j_1/runs", (201, a_run("queued", rid="r_abc")))
        r = run_cli(uhub_bin, stub.url, "run", "j_1", "-p", "VERSION=1.2", "--param", "ENV=a=b")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"r_abc\n"
        post = [q for q in stub.requests if q["method"] == "POST"][0]
        assert json.loads(post["body"]) == {"parameters": {"VERSION": "1.2", "ENV": "a=b"}}
        assert post["headers"]["Authorization"] == "Bearer " + TOKEN
        assert post["headers"]["Content-Type"].startswith("application/json")

        r = run_cli(uhub_bin, stub.url, "run", "j_1", "--json")
        assert r.returncode == 0
        assert json.loads(r.stdout)["id"] == "r_abc"

    def test_idempotency_key_is_sent(self, stub, uhub_bin):
        stub.route("POST", "/jobs/j_1/runs", (201, a_run()))
        r = run_cli(uhub_bin, stub.url, "run", "j_1", "--idempotency-key", "deploy-42")
        assert r.returncode == 0, r.stderr
        assert stub.requests[-1]["headers"]["Idempotency-Key"] == "deploy-42"

    def test_run_by_project_and_job_names(self, stub, uhub_bin):
        stub.route("GET", "/projects", lambda q: (200, {
            "items": [{"id": "p_7", "name": q["query"]["name"][0]}], "next": None}))
        # A server ignoring ?name= still works: the client matches the name itself.
        stub.route("GET", "/projects/p_7/jobs", (200, {"items": [
            {"id": "j_8", "name": "deploy-old"}, {"id": "j_9", "name": "deploy"}], "next": None}))
        stub.route("POST", "/jobs/j_9/runs", (201, a_run(rid="r_9")))
        r = run_cli(uhub_bin, stub.url, "run", "ops/deploy")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"r_9\n"
        gets = [q for q in stub.requests if q["method"] == "GET"]
        assert gets[0]["query"]["name"] == ["ops"]
        assert gets[1]["query"]["name"] == ["deploy"]

    def test_unknown_job_name_is_1(self, stub, uhub_bin):
        stub.route("GET", "/projects", (200, {"items": [{"id": "p_7", "name": "ops"}], "next": None}))
        stub.route("GET", "/projects/p_7/jobs", (200, {"items": [], "next": None}))
        r = run_cli(uhub_bin, stub.url, "run", "ops/nope")
        assert r.returncode == 1
        assert b"uhub: job 'nope' not found" in r.stderr

    def test_follow_streams_before_the_end(self, stub, uhub_bin):
        release = threading.Event()
        ended = threading.Event()

        def logs(req):
            assert req["query"].get("follow") == ["1"]

            def gen():
                yield b"first line\n"
                release.wait(20)
                yield b"second line\n"
                ended.set()
            return 200, gen()

        stub.route("POST", "/jobs/j_1/runs", (201, a_run("queued")))
        stub.route("GET", "/runs/r_1/logs", logs)
        stub.route("GET", "/runs/r_1", lambda q: (200, a_run("failed", 3) if ended.is_set() else a_run("running")))
        e = {k: v for k, v in os.environ.items() if not k.startswith("UHUB_")}
        e.update(UHUB_URL=stub.url, UHUB_TOKEN=TOKEN)
        p = subprocess.Popen([uhub_bin, "run", "j_1", "--follow"], env=e, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            # The first line shows while the run still goes on: no buffering.
            got = queue.Queue()
            threading.Thread(target=lambda: got.put(p.stdout.readline()), daemon=True).start()
            assert got.get(timeout=15) == b"first line\n"
            release.set()
            assert p.wait(30) == 3
            assert p.stdout.read() == b"second line\n"
            err = p.stderr.read()
            assert b"r_1" in err and b"failed" in err
        finally:
            release.set()
            if p.poll() is None:
                p.kill()

    def test_follow_resumes_a_cut_stream_without_repeating(self, stub, uhub_bin):
        calls = []

        def logs(req):
            calls.append(1)
            if len(calls) == 1:
                return 200, iter([b"abc", b"def", "CUT"])
            return 200, iter([b"abc", b"def", b"ghi\n"])

        stub.route("GET", "/runs/r_1/logs", logs)
        stub.route("GET", "/runs/r_1", lambda q: (200, a_run("succeeded", 0) if len(calls) >= 2 else a_run("running")))
        stub.route("POST", "/jobs/j_1/runs", (201, a_run()))
        r = run_cli(uhub_bin, stub.url, "run", "j_1", "--follow")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"abcdefghi\n"
        assert len(calls) >= 2

    def test_follow_against_a_server_that_does_not_hold_the_stream(self, stub, uhub_bin):
        # Each log request answers what exists and ends; the run ends between
        # two reads with more output: none of it may be lost or repeated.
        log = [b"one\n"]
        state = {"gets": 0}

        def logs(req):
            return 200, b"".join(log)

        def get_run(req):
            state["gets"] += 1
            if state["gets"] < 3:
                log.append(b"more %d\n" % state["gets"])
                return 200, a_run("running")
            if state["gets"] == 3:
                log.append(b"last words\n")
            return 200, a_run("failed", 2)

        stub.route("POST", "/jobs/j_1/runs", (201, a_run()))
        stub.route("GET", "/runs/r_1/logs", logs)
        stub.route("GET", "/runs/r_1", get_run)
        r = run_cli(uhub_bin, stub.url, "run", "j_1", "--follow")
        assert r.returncode == 2, r.stderr
        assert r.stdout == b"one\nmore 1\nmore 2\nlast words\n"

    def test_logs_prints_bytes_as_they_are(self, stub, uhub_bin):
        raw = b"\xff not utf8 \x1b[31m red\n"
        stub.route("GET", "/runs/r_1/logs", (200, raw))
        r = run_cli(uhub_bin, stub.url, "logs", "r_1")
        assert r.returncode == 0
        assert r.stdout == raw
        stub.route("GET", "/runs/r_1/logs", lambda q: (200, b'{"t":"x","stream":"stdout","text":"a"}\n'
                                                       if q["query"].get("format") == ["ndjson"] else b"plain"))
        r = run_cli(uhub_bin, stub.url, "logs", "r_1", "--json")
        assert json.loads(r.stdout)["text"] == "a"

    @pytest.mark.parametrize("status,code,want", [
        (400, "invalid_config", 1),
        (401, "unauthorized", 77),
        (403, "forbidden", 77),
        (403, "guardrail", 77),
        (404, "not_found", 1),
        (409, "conflict", 1),
        (429, "rate_limited", 1),
        (500, "internal", 1),
        (503, "unavailable", 69),
    ])
    def test_http_errors(self, stub, uhub_bin, status, code, want):
        stub.route("GET", "/runs/r_1", (status, {"error": {"code": code, "message": f"the {code} words",
                                                           "field": "execution_backend_config.x"}}))
        r = run_cli(uhub_bin, stub.url, "show", "r_1")
        assert r.returncode == want
        assert r.stdout == b""
        assert r.stderr.startswith(b"uhub: ")
        assert f"the {code} words (field: execution_backend_config.x)".encode() in r.stderr
        assert TOKEN.encode() not in r.stderr

    def test_error_without_json_body(self, stub, uhub_bin):
        stub.route("GET", "/runs/r_1", (400, b"<html>Bad Request</html>"))
        r = run_cli(uhub_bin, stub.url, "show", "r_1")
        assert r.returncode == 1
        assert b"uhub: server answered HTTP 400" in r.stderr

    def test_redirects_are_not_followed(self, stub, uhub_bin):
        stub.route("GET", "/me", (302, {"error": {"code": "x", "message": "moved"}},
                                  {"Location": stub.url + "/api/v1/elsewhere"}))
        stub.route("GET", "/elsewhere", (200, {"id": "u_evil"}))
        r = run_cli(uhub_bin, stub.url, "me")
        assert r.returncode == 1
        assert not any(q["path"].endswith("/elsewhere") for q in stub.requests)

    def test_unreachable_is_69(self, uhub_bin):
        r = run_cli(uhub_bin, "http://127.0.0.1:%d" % free_port(), "runs", timeout=30)
        assert r.returncode == 69
        assert r.stderr.startswith(b"uhub: cannot reach the server")
        assert TOKEN.encode() not in r.stderr

    def test_userinfo_in_url_is_not_printed(self, uhub_bin):
        r = run_cli(uhub_bin, "http://bob:hunter2@127.0.0.1:%d" % free_port(), "me", timeout=30)
        assert r.returncode == 69
        assert b"hunter2" not in r.stderr

    def test_no_token_is_77_and_bad_token_is_64(self, stub, uhub_bin):
        r = run_cli(uhub_bin, stub.url, "me", token=None)
        assert r.returncode == 77
        assert b"UHUB_TOKEN" in r.stderr
        assert stub.requests == []
        r = run_cli(uhub_bin, stub.url, "me", token="has\nnewline")
        assert r.returncode == 64
        assert stub.requests == []

    def test_token_file(self, stub, uhub_bin, tmp_path):
        f = tmp_path / "tok"
        f.write_text(TOKEN + "\n")
        stub.route("GET", "/me", (200, {"id": "u_1", "name": "root", "role": "admin"}))
        r = run_cli(uhub_bin, stub.url, "me", token=None, env={"UHUB_TOKEN_FILE": str(f)})
        assert r.returncode == 0, r.stderr
        assert stub.requests[0]["headers"]["Authorization"] == "Bearer " + TOKEN
        assert b"role: admin" in r.stdout.replace(b"  ", b"").replace(b": ", b": ")
        r = run_cli(uhub_bin, stub.url, "me", token=None, env={"UHUB_TOKEN_FILE": str(tmp_path / "none")})
        assert r.returncode == 64

    def test_usage_errors_are_64(self, stub, uhub_bin):
        for args in (["frobnicate"], ["run"], ["run", "j", "--follow", "--wait"], ["run", "j", "-p", "bad"],
                     ["project", "create"], ["job", "create", "p", "n", "--", "relative"],
                     ["runs", "--limit", "many"], ["token", "create", "u", "--expires", "soonish"]):
            r = run_cli(uhub_bin, stub.url, *args)
            assert r.returncode == 64, (args, r.stderr)
            assert r.stderr.startswith(b"uhub: "), args
        assert stub.requests == []
        r = run_cli(uhub_bin, stub.url, "help")
        assert r.returncode == 0 and b"uhub run" in r.stdout and b"exit status" in r.stdout
        r = run_cli(uhub_bin, stub.url, "run", "--help")
        assert r.returncode == 0 and b"--follow" in r.stdout

    def test_secret_value_comes_from_stdin(self, stub, uhub_bin):
        stub.route("GET", "/projects", (200, {"items": [{"id": "p_1", "name": "ops"}], "next": None}))
        stub.route("PUT", "/projects/p_1/secrets/DB_PASSWORD", (204, None))
        value = 'p@ss"w\\ord\twith tab'
        r = run_cli(uhub_bin, stub.url, "secret", "set", "--project", "ops", "DB_PASSWORD",
                    input=(value + "\n").encode())
        assert r.returncode == 0, r.stderr
        put = [q for q in stub.requests if q["method"] == "PUT"][0]
        assert json.loads(put["body"]) == {"value": value}
        assert value.encode() not in r.stdout + r.stderr

        stub.route("PUT", "/secrets/SHARED", (200, {"name": "SHARED"}))
        r = run_cli(uhub_bin, stub.url, "secret", "set", "--grant", "ops", "--keep-newline", "SHARED",
                    input=b"line1\nline2\n")
        assert r.returncode == 0, r.stderr
        put = [q for q in stub.requests if q["method"] == "PUT"][-1]
        assert json.loads(put["body"]) == {"value": "line1\nline2\n", "projects": ["p_1"]}

        r = run_cli(uhub_bin, stub.url, "secret", "set", "X", input=b"")
        assert r.returncode == 64

    def test_lists_follow_pages(self, stub, uhub_bin):
        pages = {None: ([a_run(rid="r_5"), a_run(rid="r_4")], "c1"),
                 "c1": ([a_run(rid="r_3"), a_run(rid="r_2")], "c2"),
                 "c2": ([a_run(rid="r_1")], None)}

        def runs(q):
            items, nxt = pages[q["query"].get("before", [None])[0]]
            return 200, {"items": items, "next": nxt}

        stub.route("GET", "/runs", runs)
        r = run_cli(uhub_bin, stub.url, "runs", "--limit", "3", "--json")
        assert r.returncode == 0, r.stderr
        assert [x["id"] for x in json.loads(r.stdout)["items"]] == ["r_5", "r_4", "r_3"]
        assert stub.requests[0]["query"]["limit"] == ["3"]
        r = run_cli(uhub_bin, stub.url, "runs", "--limit", "0", "--pending")
        assert r.returncode == 0
        lines = r.stdout.decode().splitlines()
        assert lines[0].split()[:3] == ["ID", "JOB", "STATUS"]
        assert [ln.split()[0] for ln in lines[1:]] == ["r_5", "r_4", "r_3", "r_2", "r_1"]
        assert stub.requests[-1]["query"]["status"] == ["pending_approval"]

    def test_table_output_is_sanitized(self, stub, uhub_bin):
        stub.route("GET", "/projects", (200, {"items": [
            {"id": "p_1", "name": "evil\x1b]2;pwned\x07", "environment": "dev", "execution_backend": "local"}],
            "next": None}))
        r = run_cli(uhub_bin, stub.url, "project", "list")
        assert r.returncode == 0
        assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout
        r = run_cli(uhub_bin, stub.url, "project", "list", "--json")
        assert json.loads(r.stdout)["items"][0]["name"].startswith("evil\x1b")

    def test_audit_verify(self, stub, uhub_bin):
        stub.route("GET", "/audit/verify", (200, {"ok": True, "events": 12}))
        r = run_cli(uhub_bin, stub.url, "audit", "verify")
        assert r.returncode == 0
        assert b"12" in r.stdout
        stub.route("GET", "/audit/verify", (200, {"ok": False, "broken_at": 7}))
        r = run_cli(uhub_bin, stub.url, "audit", "verify")
        assert r.returncode == 1
        assert b"7" in r.stdout and b"7" in r.stderr
        r = run_cli(uhub_bin, stub.url, "audit", "verify", "--json")
        assert r.returncode == 1
        assert json.loads(r.stdout) == {"ok": False, "broken_at": 7}

    def test_job_create_body(self, stub, uhub_bin, tmp_path):
        stub.route("GET", "/projects", (200, {"items": [{"id": "p_1", "name": "ops"}], "next": None}))
        stub.route("POST", "/projects/p_1/jobs", lambda q: (201, dict(json.loads(q["body"]), id="j_new")))
        cfg = tmp_path / "cfg.json"
        cfg.write_text('{"timeout_seconds": 30}')
        r = run_cli(uhub_bin, stub.url, "job", "create", "ops", "deploy", "--backend", "local",
                    "--config", "@" + str(cfg), "--env", "A=1", "--env", "B=x=y", "--secret", "TOKEN=shared:gl",
                    "--param", "VERSION", "--critical", "--max-concurrent", "1", "--retries", "2",
                    "--", "/bin/sh", "-c", "echo $A --not-an-option")
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"j_new\n"
        body = json.loads([q for q in stub.requests if q["method"] == "POST"][0]["body"])
        assert body == {"name": "deploy", "command": ["/bin/sh", "-c", "echo $A --not-an-option"],
                        "execution_backend": "local", "execution_backend_config": {"timeout_seconds": 30},
                        "env": {"A": "1", "B": "x=y"}, "secrets": {"TOKEN": "shared:gl"},
                        "parameters": ["VERSION"], "critical": True, "max_concurrent": 1, "retries": 2}

    def test_approve_and_reject_send_the_comment(self, stub, uhub_bin):
        stub.route("POST", "/runs/r_1/approve", (200, a_run("queued")))
        stub.route("POST", "/runs/r_1/reject", (200, a_run("rejected")))
        r = run_cli(uhub_bin, stub.url, "approve", "r_1", "-m", "looks good")
        assert r.returncode == 0 and r.stdout == b"r_1 queued\n"
        assert json.loads(stub.requests[-1]["body"]) == {"comment": "looks good"}
        r = run_cli(uhub_bin, stub.url, "reject", "r_1")
        assert r.returncode == 0 and r.stdout == b"r_1 rejected\n"

    def test_path_parts_are_escaped(self, stub, uhub_bin):
        stub.route("GET", "/runs/a/b", (200, a_run()))
        r = run_cli(uhub_bin, stub.url, "show", "a/b")
        assert r.returncode == 1  # sent as /runs/a%2Fb, which is no route here
        assert stub.requests[-1]["path"] == "/api/v1/runs/a%2Fb"


# ---------------------------------------------------------------------------
# Against the real daemon
# ---------------------------------------------------------------------------


def out(r):
    return r.stdout.decode()


_documented = {}


def need_routes(server, *routes):
    """Skip while the daemon under test does not serve a route of SPEC §5
    that the test needs (its OpenAPI document lists what it serves). The
    client's side of these routes is pinned by TestAgainstStub meanwhile."""
    if server.url not in _documented:
        doc = server.client().get("/openapi.json").json()
        _documented[server.url] = {(m.upper(), re.sub(r"\{[^}]*\}", "{}", p))
                                   for p, ops in doc.get("paths", {}).items() for m in ops}
    missing = [f"{m} {p}" for m, p in routes
               if (m, re.sub(r"\{[^}]*\}", "{}", "/api/v1" + p)) not in _documented[server.url]]
    if missing:
        pytest.skip("the daemon does not serve " + ", ".join(missing) + " yet")


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.decode()}"
    return out(r).strip()


class TestAgainstServer:
    def test_me_and_users(self, server):
        me = json.loads(ok(server.cli("me", "--json")))
        assert me["role"] == "admin"
        uid = ok(server.cli("user", "create", "cli-viewer-" + secrets.token_hex(3), "viewer"))
        tok = ok(server.cli("token", "create", uid, "--expires", "1d"))
        assert tok and tok != server.admin_token
        me2 = json.loads(ok(server.cli("me", "--json", token=tok)))
        assert me2["id"] == uid
        listed = json.loads(ok(server.cli("user", "list", "--json")))
        assert uid in [u["id"] for u in listed["items"]]
        # A viewer may not create projects: not permitted.
        r = server.cli("project", "create", "nope-" + secrets.token_hex(3), token=tok)
        assert r.returncode == 77, r.stderr
        # A bad token: not permitted, and never echoed.
        r = server.cli("me", token="uht_wrong_" + "x" * 40)
        assert r.returncode == 77
        assert b"uht_wrong_" not in r.stderr + r.stdout

    def test_project_and_job_commands(self, server):
        name = "cli-p-" + secrets.token_hex(3)
        pid = ok(server.cli("project", "create", name, "--env", "dev", "--backend", "local"))
        shown = json.loads(ok(server.cli("project", "show", name, "--json")))
        assert shown["id"] == pid and shown["environment"] == "dev"
        assert json.loads(ok(server.cli("project", "show", pid, "--json")))["name"] == name
        assert name in ok(server.cli("project", "list"))
        jid = ok(server.cli("job", "create", name, "hello", "--env", "GREETING=hi", "--param", "WHO",
                            "--", "/bin/sh", "-c", 'echo "$GREETING $UHUB_PARAM_WHO"'))
        job = json.loads(ok(server.cli("job", "show", f"{name}/hello", "--json")))
        assert job["id"] == jid and job["command"][0] == "/bin/sh"
        assert "hello" in ok(server.cli("job", "list", name))
        r = server.cli("run", f"{name}/hello", "-p", "WHO=world", "--follow")
        assert r.returncode == 0, r.stderr
        assert "hi world" in out(r)
        # Bad config: the server's message names the key; exit 1.
        r = server.cli("job", "create", name, "bad", "--config", '{"no_such_key": 1}', "--", "/bin/true")
        assert r.returncode == 1
        assert b"no_such_key" in r.stderr
        # Unknown things are 1 (404).
        r = server.cli("show", "r_doesnotexist")
        assert r.returncode == 1 and r.stderr.startswith(b"uhub: ")
        r = server.cli("project", "show", "no-such-project-" + secrets.token_hex(3))
        assert r.returncode == 1

    def test_members_and_roles(self, server):
        name = "cli-m-" + secrets.token_hex(3)
        ok(server.cli("project", "create", name, "--env", "dev", "--backend", "local"))
        jid = ok(server.cli("job", "create", name, "echo", "--", "/bin/echo", "member run"))
        uid = ok(server.cli("user", "create", "cli-op-" + secrets.token_hex(3), "operator"))
        tok = ok(server.cli("token", "create", uid))
        # Not a member yet: the project is invisible (404: 1) or refused (77).
        r = server.cli("run", jid, token=tok)
        assert r.returncode in (1, 77), r.stderr
        r = server.cli("project", "member", "add", name, uid)
        assert r.returncode == 0, r.stderr
        listed = json.loads(ok(server.cli("project", "member", "list", name, "--json")))
        assert uid in [m.get("user_id", m.get("id")) for m in listed["items"]]
        # A member operator runs the job by names and follows it.
        r = server.cli("run", f"{name}/echo", "--follow", token=tok)
        assert r.returncode == 0, r.stderr
        assert "member run" in out(r)
        r = server.cli("logs", "-f", ok(server.cli("run", jid, token=tok)), token=tok)
        assert r.returncode == 0 and "member run" in out(r)
        # ...but may not create jobs.
        r = server.cli("job", "create", name, "nope", "--", "/bin/true", token=tok)
        assert r.returncode == 77, r.stderr
        ok(server.cli("project", "member", "remove", name, uid))
        r = server.cli("run", jid, token=tok)
        assert r.returncode in (1, 77)
        ok(server.cli("token", "revoke", json.loads(ok(server.cli("token", "create", uid, "--json")))["id"]))

    def test_run_exit_statuses(self, server):
        p = server.project()
        ok_job = server.job(p["id"], ["/bin/echo", "hello from uhub"])
        three = server.job(p["id"], ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
        false = server.job(p["id"], ["/bin/false"])
        slow = server.job(p["id"], ["/bin/sleep", "30"], execution_backend_config={"timeout_seconds": 1})

        r = server.cli("run", ok_job["id"], "--follow")
        assert r.returncode == 0, r.stderr
        assert "hello from uhub" in out(r)

        r = server.cli("run", three["id"], "--follow")
        assert r.returncode == 3, r.stderr
        assert "out" in out(r)

        r = server.cli("run", three["id"], "--wait")
        assert r.returncode == 3
        assert r.stdout == b""

        r = server.cli("run", false["id"], "--wait", "--json")
        assert r.returncode == 1
        assert json.loads(r.stdout)["status"] == "failed"

        r = server.cli("run", slow["id"], "--wait", timeout=90)
        assert r.returncode == 124, r.stderr

        rid = ok(server.cli("run", ok_job["id"]))
        run = server.wait_run(rid)
        assert run["status"] == "succeeded"
        assert "hello from uhub" in ok(server.cli("logs", rid))
        assert json.loads(ok(server.cli("show", rid, "--json")))["id"] == rid
        assert rid in ok(server.cli("runs", "--job", ok_job["id"]))
        listed = json.loads(ok(server.cli("runs", "--project", p["name"], "--limit", "200", "--json")))
        assert rid in [x["id"] for x in listed["items"]]

    def test_rerun(self, server):
        need_routes(server, ("POST", "/runs/{id}/rerun"))
        p = server.project()
        job = server.job(p["id"], ["/bin/sh", "-c", 'echo "v=$UHUB_PARAM_V"; exit 4'], parameters=["V"])
        rid = ok(server.cli("run", job["id"], "-p", "V=7"))
        assert server.wait_run(rid)["status"] == "failed"
        new = ok(server.cli("rerun", rid))
        assert new != rid
        assert server.wait_run(new)["parameters"] == {"V": "7"}
        r = server.cli("rerun", rid, "--follow")
        assert r.returncode == 4, r.stderr
        assert "v=7" in out(r)

    def test_cancel_gives_130(self, server):
        p = server.project()
        job = server.job(p["id"], ["/bin/sleep", "30"])
        e = dict(os.environ, UHUB_URL=server.url, UHUB_TOKEN=server.admin_token)
        w = subprocess.Popen([server.bin, "run", job["id"], "--wait"], env=e, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 20
            rid = None
            while time.time() < deadline and not rid:
                listed = json.loads(ok(server.cli("runs", "--job", job["id"], "--json")))
                running = [x for x in listed["items"] if x["status"] == "running"]
                rid = running[0]["id"] if running else None
                if not rid:
                    time.sleep(0.2)
            assert rid, "the run never started"
            c = server.cli("cancel", rid)
            assert c.returncode == 0, c.stderr
            assert w.wait(40) == 130
        finally:
            if w.poll() is None:
                w.kill()

    def test_prod_local_is_refused_without_exception(self, server):
        name = "cli-prod-" + secrets.token_hex(3)
        ok(server.cli("project", "create", name, "--env", "prod", "--backend", "local"))
        # 403 guardrail, at job creation or at trigger: not permitted.
        r = server.cli("job", "create", name, "deploy", "--", "/bin/echo", "deployed")
        if r.returncode == 0:
            r = server.cli("run", f"{name}/deploy", "--wait")
        assert r.returncode == 77, r.stderr
        assert r.stderr.startswith(b"uhub: ")

    def test_prod_exception_approval_and_rejection(self, server):
        need_routes(server, ("POST", "/exceptions"), ("GET", "/exceptions"), ("DELETE", "/exceptions/{id}"),
                    ("POST", "/runs/{id}/approve"), ("POST", "/runs/{id}/reject"))
        name = "cli-prod-" + secrets.token_hex(3)
        ok(server.cli("project", "create", name, "--env", "prod", "--backend", "local"))
        eid = ok(server.cli("exception", "create", name, "--reason", "legacy host", "--expires", "2h"))
        assert eid in ok(server.cli("exception", "list"))
        ok(server.cli("job", "create", name, "deploy", "--critical", "--", "/bin/echo", "deployed"))

        # Another admin decides: never the requester.
        uid = ok(server.cli("user", "create", "cli-approver-" + secrets.token_hex(3), "admin"))
        approver = ok(server.cli("token", "create", uid))
        e = dict(os.environ, UHUB_URL=server.url, UHUB_TOKEN=server.admin_token)

        for decision, want in (("approve", 0), ("reject", 77)):
            w = subprocess.Popen([server.bin, "run", f"{name}/deploy", "--wait"], env=e,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                deadline = time.time() + 20
                pending = []
                while time.time() < deadline and not pending:
                    listed = json.loads(ok(server.cli("runs", "--pending", "--project", name, "--json")))
                    pending = listed["items"]
                    if not pending:
                        time.sleep(0.2)
                assert pending, "no run waits for approval"
                rid = pending[0]["id"]
                # The requester may not decide on its own run.
                r = server.cli(decision, rid, "-m", "self")
                assert r.returncode in (1, 77), r.stderr
                d = server.cli(decision, rid, "-m", "checked by cli test", token=approver)
                assert d.returncode == 0, d.stderr
                assert w.wait(40) == want, w.stderr.read()
            finally:
                if w.poll() is None:
                    w.kill()
        ok(server.cli("exception", "delete", eid))
        assert eid not in ok(server.cli("exception", "list"))

    def test_secret_set_from_stdin_is_masked(self, server):
        need_routes(server, ("PUT", "/projects/{id}/secrets/{name}"), ("GET", "/projects/{id}/secrets"))
        name = "cli-s-" + secrets.token_hex(3)
        ok(server.cli("project", "create", name, "--env", "dev", "--backend", "local"))
        value = "cli-secret-" + secrets.token_hex(8)
        r = server.cli("secret", "set", "--project", name, "API_KEY", input=(value + "\n").encode())
        assert r.returncode == 0, r.stderr
        assert value.encode() not in r.stdout + r.stderr
        listed = server.cli("secret", "list", "--project", name)
        assert listed.returncode == 0 and b"API_KEY" in listed.stdout and value.encode() not in listed.stdout
        ok(server.cli("job", "create", name, "leak", "--secret", "API_KEY=API_KEY",
                      "--", "/bin/sh", "-c", 'echo "key=$API_KEY"'))
        r = server.cli("run", f"{name}/leak", "--follow")
        assert r.returncode == 0, r.stderr
        assert value.encode() not in r.stdout
        assert b"[MASKED]" in r.stdout
        # Too short (SPEC: at least 8 bytes): the server refuses it, exit 1.
        r = server.cli("secret", "set", "--project", name, "SHORT", input=b"abc")
        assert r.returncode == 1

    def test_audit(self, server):
        r = server.cli("audit", "verify")
        assert r.returncode == 0, r.stderr
        events = json.loads(ok(server.cli("audit", "list", "--limit", "5", "--json")))
        assert 0 < len(events["items"]) <= 5
        assert ok(server.cli("audit", "list")).startswith("SEQ")

    def test_unreachable(self, server):
        r = server.cli("runs", env={"UHUB_URL": "http://127.0.0.1:%d" % free_port()})
        assert r.returncode == 69
