"""The webhook backend end to end (SPEC §3 "webhook"): the real daemon
against real TLS servers on loopback (webhook.allow_private_networks is
true for that), signed by a CA made here with the openssl CLI. The fakes
speak GitLab's pipeline API, Jenkins' queue/build API, Azure Durable
Functions' status API and a generic JSON target, and record every request
they get.

Tests marked `needs_secrets` use a token_secret: they need the secret store
(PUT /projects/{id}/secrets/{name}) and the supervisor handing config
secrets to the backend; without those the run ends `secret_unavailable`."""
import hashlib
import hmac
import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import TERMINAL, wait_for



def needs_secrets(f):
    """Tag: the test needs the secret store and config secrets (see above)."""
    f.needs_secrets = True
    return f


# ---------------------------------------------------------------------------
# A CA and server certificates, made once per module


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="uhub-wh-pki-")

    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=uhub test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    with open(os.path.join(d, "ca.pem")) as f:
        ca = f.read()
    yield {"dir": d, "ca": ca, "cert": os.path.join(d, "srv.pem"), "key": os.path.join(d, "srv.key")}
    shutil.rmtree(d, ignore_errors=True)


class Fake:
    """An HTTPS server on 127.0.0.1. `routes` maps (METHOD, path-prefix) to a
    function(req) -> (status, headers dict, body bytes|dict|None). Every
    request is recorded in `requests` as a dict."""

    def __init__(self, pki):
        self.routes = {}
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                # The TLS handshake in this connection's own thread, as a
                # real server does them concurrently (not in accept()).
                try:
                    self.request.do_handshake()
                except (ssl.SSLError, OSError):
                    pass
                super().setup()

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                       "body": body}
                with fake.lock:
                    fake.requests.append(req)
                fn = None
                best = -1
                for (m, p), f in fake.routes.items():
                    if m == self.command and self.path.startswith(p) and len(p) > best:
                        fn, best = f, len(p)
                if fn is None:
                    status, hdrs, out = 404, {}, {"message": "no route"}
                else:
                    status, hdrs, out = fn(req)
                if isinstance(out, (dict, list)):
                    out = json.dumps(out).encode()
                    hdrs = dict(hdrs)
                    hdrs.setdefault("Content-Type", "application/json")
                out = out or b""
                self.send_response(status)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = handle_any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["cert"], pki["key"])
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.base = f"https://127.0.0.1:{self.port}"
        self.t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.t.start()

    def route(self, method, path, fn):
        self.routes[(method, path)] = fn

    def got(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method) and (path is None or r["path"].startswith(path))]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake(pki):
    f = Fake(pki)
    yield f
    f.close()


@pytest.fixture
def fake2(pki):
    f = Fake(pki)
    yield f
    f.close()


@pytest.fixture(scope="module")
def wh_server(request, uhub_bin):
    from conftest import Server, base_config
    tmp = tempfile.mkdtemp(prefix="uhub-it-wh-")
    cfg = base_config(tmp)
    cfg["webhook"] = {"allow_private_networks": True, "allowed_hosts": ["*"]}
    s = Server(tmp, cfg)
    yield s
    died = s.proc.poll() is not None
    s.stop()
    log = s.read_log()
    if died or "Sanitizer" in log:
        print("uhub died or a sanitizer spoke; its log:\n" + log)
    shutil.rmtree(tmp, ignore_errors=True)


def project(s):
    return s.project(backend="local", environment="dev")


def wh_job(s, config, parameters=None, pid=None):
    pid = pid or project(s)["id"]
    fields = {"execution_backend": "webhook", "execution_backend_config": config}
    if parameters:
        fields["parameters"] = parameters
    return s.job(pid, None, **fields)


def put_secret(s, pid, name, value):
    r = s.client().put(f"/projects/{pid}/secrets/{name}", {"value": value})
    assert r.status_code in (200, 201), r.text


def sign(token, body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(token.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post_callback(s, run_id, body, sig):
    import requests
    return requests.post(f"{s.url}/api/v1/runs/{run_id}/callback", data=body,
                         headers={"Content-Type": "application/json", "X-Uhub-Signature": sig}, timeout=30)


def wait_status(s, run_id, statuses, timeout=30):
    def cond():
        r = s.client().get(f"/runs/{run_id}").json()
        return r if r["status"] in statuses else None
    return wait_for(cond, timeout, f"run {run_id} in {statuses}")


# ---------------------------------------------------------------------------
# Validation


def test_config_refusals(wh_server, pki):
    s = wh_server
    pid = project(s)["id"]
    c = s.client()

    def bad(config, field_part):
        r = c.post(f"/projects/{pid}/jobs", {"name": "j-" + secrets.token_hex(4), "command": None,
                                             "execution_backend": "webhook", "execution_backend_config": config})
        assert r.status_code == 400, (config, r.text)
        assert field_part in (r.json()["error"].get("field") or ""), r.text

    base = {"url": "https://127.0.0.1:1/x", "mode": "fire_and_forget"}
    bad({**base, "url": "http://127.0.0.1:1/x"}, "url")
    bad({**base, "headers": {"Authorization": "Bearer abc"}}, "headers.Authorization")
    bad({**base, "headers": {"X-Api-Key": "abc"}}, "headers.X-Api-Key")
    bad({**base, "headers": {"Cookie": "a=b"}}, "headers.Cookie")
    bad({**base, "body": {"x": "{{secrets.tok}}"}}, "body")
    bad({**base, "url": "https://127.0.0.1:1/{{secrets.tok}}"}, "url")
    bad({**base, "url": "https://169.254.169.254/latest"}, "url")  # metadata even with private allowed
    bad({**base, "url": "https://[fd00:ec2::254]/latest"}, "url")
    bad({**base, "nope": 1}, "nope")
    bad({**base, "mode": "sometimes"}, "mode")
    bad({**base, "mode": "poll"}, "status_url")
    bad({**base, "external_id_path": "id"}, "external_id_path")
    bad({**base, "body": {"x": "{{run.nope}}"}}, "body")
    bad({**base, "preset": "gitlab", "project": 1, "ref": "main"}, "token_secret")
    bad({**base, "preset": "circleci"}, "preset")
    bad({**base, "ca_cert": "not a pem"}, "ca_cert")
    r = c.post(f"/projects/{pid}/jobs", {"name": "ok-" + secrets.token_hex(4), "command": None,
                                         "execution_backend": "webhook", "execution_backend_config": {
                                             **base, "headers": {"Authorization": "{{secrets.tok}}",
                                                                 "X-Trace": "uhub-{{run.id}}"}}})
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------------------
# Generic target


def test_fire_and_forget(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/hook", lambda req: (202, {}, {"ok": True}))
    job = wh_job(s, {"url": fake.base + "/hook?run={{run.id}}&p={{parameters.WHO}}", "mode": "fire_and_forget",
                     "ca_cert": pki["ca"],
                     "body": {"run": "{{run.id}}", "who": "{{parameters.WHO}}", "job": "{{job.name}}"}},
                 parameters=["WHO"])
    who = 'a "quoted" \\ & ? value\n'
    run = s.trigger(job["id"], {"WHO": who})
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    [req] = fake.got("POST", "/hook")
    assert req["headers"].get("Idempotency-Key") == run["id"]
    assert "Authorization" not in req["headers"]
    body = json.loads(req["body"])
    assert body == {"run": run["id"], "who": who, "job": job["name"]}
    from urllib.parse import quote
    assert req["path"] == f"/hook?run={run['id']}&p=" + quote(who, safe="-._~")
    logs = s.logs(run["id"])
    assert "202" in logs and '{"ok": true}' in logs  # the answer is the run's log


def test_poll_succeeded_and_failed(wh_server, fake, pki):
    s = wh_server
    polls = {"n": 0}

    def status(req):
        polls["n"] += 1
        return 200, {}, {"state": "running" if polls["n"] < 2 else "done"}

    fake.route("POST", "/start", lambda req: (201, {}, {"job": {"id": 77}}))
    fake.route("GET", "/status/77", status)
    fake.route("GET", "/status/78", lambda req: (200, {}, {"state": "broken"}))
    cfg = {"url": fake.base + "/start", "mode": "poll", "ca_cert": pki["ca"], "external_id_path": "/job/id",
           "status_url": fake.base + "/status/{{external_id}}", "status_path": "/state",
           "success_values": ["done"], "failure_values": ["broken"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert done["external_id"] == "77"
    assert polls["n"] >= 2
    fake.route("POST", "/start", lambda req: (201, {}, {"job": {"id": 78}}))
    run = s.trigger(wh_job(s, cfg)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "failed", done
    assert "broken" in (done["message"] or "")


def test_unverified_certificate_refused_nothing_sent(wh_server, fake):
    s = wh_server
    fake.route("POST", "/hook", lambda req: (200, {}, {}))
    run = s.trigger(wh_job(s, {"url": fake.base + "/hook", "mode": "fire_and_forget"})["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "error", done
    assert fake.got() == []


def test_redirect_to_metadata_not_followed(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/hook", lambda req: (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""))
    run = s.trigger(wh_job(s, {"url": fake.base + "/hook", "mode": "fire_and_forget", "ca_cert": pki["ca"]})["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "error", done
    assert "redirect" in done["message"]
    assert len(fake.got()) == 1


def test_status_url_handed_back_to_metadata_refused(wh_server, fake, pki):
    """A Durable Functions answer pointing the poll at the metadata address."""
    s = wh_server
    fake.route("POST", "/api/orch", lambda req: (202, {}, {
        "id": "abc", "statusQueryGetUri": "https://169.254.169.254/latest/meta-data/"}))
    cfg = {"preset": "azure_function", "url": fake.base + "/api/orch", "ca_cert": pki["ca"],
           "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "error", done
    assert "refused" in done["message"] or "private" in done["message"], done


def test_target_down(wh_server, pki):
    s = wh_server
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    run = s.trigger(wh_job(s, {"url": f"https://127.0.0.1:{port}/x", "mode": "fire_and_forget",
                               "ca_cert": pki["ca"]})["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "error" and done["reason"] == "backend_unavailable", done


def test_5xx_slow_and_oversized(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/five", lambda req: (503, {}, {"message": "down"}))
    fake.route("POST", "/big", lambda req: (200, {}, b"x" * (2 << 20)))

    def slow(req):
        time.sleep(8)
        return 200, {}, {}
    fake.route("POST", "/slow", slow)
    base = {"mode": "fire_and_forget", "ca_cert": pki["ca"]}
    r1 = s.trigger(wh_job(s, {**base, "url": fake.base + "/five"})["id"])
    r2 = s.trigger(wh_job(s, {**base, "url": fake.base + "/big"})["id"])
    r3 = s.trigger(wh_job(s, {**base, "url": fake.base + "/slow", "timeout_seconds": 2})["id"])
    d1, d2, d3 = (s.wait_run(r["id"], timeout=40) for r in (r1, r2, r3))
    assert d1["status"] == "error" and d1["reason"] == "backend_unavailable", d1
    assert d2["status"] == "error" and "larger" in d2["message"], d2
    assert d3["status"] == "timed_out", d3


# ---------------------------------------------------------------------------
# Callback mode


def test_callback_forged_stale_replayed(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/cb", lambda req: (200, {}, {"accepted": True}))
    cfg = {"url": fake.base + "/cb", "mode": "callback", "ca_cert": pki["ca"],
           "body": {"callback_url": "{{callback.url}}", "token": "{{callback.token}}"}}
    run = s.trigger(wh_job(s, cfg)["id"])
    rid = run["id"]
    wait_for(lambda: fake.got("POST", "/cb"), 20, "the trigger")
    sent = json.loads(fake.got("POST", "/cb")[0]["body"])
    assert sent["callback_url"].endswith(f"/api/v1/runs/{rid}/callback")
    token = sent["token"]
    assert len(token) == 64
    body = json.dumps({"status": "succeeded", "message": "all good", "log": "line 1\nline 2\n"}).encode()
    refusals = [
        post_callback(s, rid, body, sign("0" * 64, body)),                      # forged
        post_callback(s, rid, body, sign(token, body, int(time.time()) - 400)),  # stale
        post_callback(s, rid, body, sign(token, body, int(time.time()) + 400)),  # future
        post_callback(s, rid, body, "t=1"),                                      # missing v1
        post_callback(s, rid, body, sign(token, body + b" ")),                   # other bytes
        post_callback(s, "r_doesnotexist000000", body, sign(token, body)),       # unknown run
        post_callback(s, rid, b"{not json", sign("0" * 64, b"{not json")),       # malformed, unsigned
        post_callback(s, rid, b'{"status":"succeeded","status":"failed"}',       # duplicate keys, signed
                      sign(token, b'{"status":"succeeded","status":"failed"}')),
        post_callback(s, rid, b"", sign(token, b"")),                            # empty
    ]
    first = refusals[0].json()
    for r in refusals:
        assert r.status_code == 401, r.text
        assert r.json() == first
    assert s.client().get(f"/runs/{rid}").json()["status"] == "running"
    # several v1, one good
    good = sign(token, body)
    t = good.split(",")[0]
    r = post_callback(s, rid, body, f"{t},v1={'ab' * 32},{good.split(',')[1]}")
    assert r.status_code == 200, r.text
    done = s.wait_run(rid)
    assert done["status"] == "succeeded", done
    assert "line 2" in s.logs(rid)
    replay = post_callback(s, rid, body, good)
    assert replay.status_code == 401 and replay.json() == first
    assert s.client().get(f"/runs/{rid}").json()["status"] == "succeeded"


def test_callback_mode_polls_as_fallback(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/cb", lambda req: (200, {}, {"id": "x/1"}))
    fake.route("GET", "/jobs/x%2F1", lambda req: (200, {}, {"state": "ok"}))
    cfg = {"url": fake.base + "/cb", "mode": "callback", "ca_cert": pki["ca"], "external_id_path": "/id",
           "status_url": fake.base + "/jobs/{{external_id}}", "status_path": "/state", "success_values": ["ok"],
           "poll_interval_seconds": 1, "body": {"token": "{{callback.token}}"}}
    done = s.wait_run(s.trigger(wh_job(s, cfg)["id"])["id"])
    assert done["status"] == "succeeded", done
    assert done["external_id"] == "x/1"
    # the callback token sent to the target is not in the log
    token = json.loads(fake.got("POST", "/cb")[0]["body"])["token"]
    assert token not in s.logs(done["id"])


def test_callback_failed_status(wh_server, fake, pki):
    s = wh_server
    fake.route("POST", "/cb", lambda req: (200, {}, {}))
    cfg = {"url": fake.base + "/cb", "mode": "callback", "ca_cert": pki["ca"],
           "body": {"token": "{{callback.token}}"}}
    run = s.trigger(wh_job(s, cfg)["id"])
    wait_for(lambda: fake.got("POST", "/cb"), 20, "the trigger")
    token = json.loads(fake.got("POST", "/cb")[0]["body"])["token"]
    body = json.dumps({"status": "failed", "exit_code": 3}).encode()
    assert post_callback(s, run["id"], body, sign(token, body)).status_code == 200
    done = s.wait_run(run["id"])
    assert done["status"] == "failed" and done["exit_code"] == 3, (done, s.logs(done["id"]))


# ---------------------------------------------------------------------------
# Presets (token from a secret)


@needs_secrets
def test_gitlab_poll_and_token(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "gl_trigger", "glptt-trigger-token-1234")
    put_secret(s, pid, "gl_api", "glpat-api-token-5678")
    polls = {"n": 0}

    def pipeline(req):
        polls["n"] += 1
        return 200, {}, {"id": 991, "status": "running" if polls["n"] < 2 else "success"}
    fake.route("POST", "/api/v4/projects/group%2Fapp/trigger/pipeline",
               lambda req: (201, {}, {"id": 991, "iid": 5, "status": "created", "ref": "main"}))
    fake.route("GET", "/api/v4/projects/group%2Fapp/pipelines/991", pipeline)
    cfg = {"preset": "gitlab", "url": fake.base, "project": "group/app", "ref": "main",
           "variables": {"DEPLOY_RUN": "{{run.id}}"}, "token_secret": "gl_trigger",
           "headers": {"PRIVATE-TOKEN": "{{secrets.gl_api}}"}, "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert done["external_id"] == "991"
    [trig] = fake.got("POST", "/api/v4/projects/group%2Fapp/trigger/pipeline")
    b = json.loads(trig["body"])
    assert b["token"] == "glptt-trigger-token-1234" and b["ref"] == "main"
    assert b["variables"]["DEPLOY_RUN"] == run["id"]
    for g in fake.got("GET"):
        assert g["headers"].get("PRIVATE-TOKEN") == "glpat-api-token-5678"
    logs = s.logs(run["id"])
    assert "glptt-trigger-token-1234" not in logs and "glpat-api-token-5678" not in logs


@needs_secrets
def test_gitlab_cancel_calls_cancel_endpoint(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "gl_trigger", "glptt-trigger-token-1234")
    put_secret(s, pid, "gl_api", "glpat-api-token-5678")
    fake.route("POST", "/api/v4/projects/42/trigger/pipeline", lambda req: (201, {}, {"id": 5, "status": "created"}))
    fake.route("GET", "/api/v4/projects/42/pipelines/5", lambda req: (200, {}, {"id": 5, "status": "running"}))
    fake.route("POST", "/api/v4/projects/42/pipelines/5/cancel", lambda req: (200, {}, {"id": 5, "status": "canceled"}))
    cfg = {"preset": "gitlab", "url": fake.base, "project": 42, "ref": "main", "token_secret": "gl_trigger",
           "headers": {"PRIVATE-TOKEN": "{{secrets.gl_api}}"}, "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    wait_for(lambda: fake.got("GET", "/api/v4/projects/42/pipelines/5"), 20, "a poll")
    assert s.client().post(f"/runs/{run['id']}/cancel", {}).status_code == 202
    done = s.wait_run(run["id"])
    assert done["status"] == "canceled", done
    [c] = fake.got("POST", "/api/v4/projects/42/pipelines/5/cancel")
    assert c["headers"].get("PRIVATE-TOKEN") == "glpat-api-token-5678"


@needs_secrets
def test_jenkins_queue_then_build(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "jk", "jenkins-api-token-abcdef")
    state = {"q": 0}

    def queue(req):
        state["q"] += 1
        if state["q"] < 2:
            return 200, {}, {"id": 17, "cancelled": False, "executable": None, "why": "waiting"}
        return 200, {}, {"id": 17, "executable": {"number": 3, "url": fake.base + "/job/deploy/3/"}}
    fake.route("POST", "/job/deploy/buildWithParameters",
               lambda req: (201, {"Location": fake.base + "/queue/item/17/"}, b""))
    fake.route("GET", "/queue/item/17/api/json", queue)
    fake.route("GET", "/job/deploy/3/api/json", lambda req: (200, {}, {"building": False, "result": "FAILURE"}))
    cfg = {"preset": "jenkins", "url": fake.base, "job": "deploy", "user": "robot", "token_secret": "jk",
           "parameters": {"RUN": "{{run.id}}"}, "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "failed", done
    import base64
    want = "Basic " + base64.b64encode(b"robot:jenkins-api-token-abcdef").decode()
    for r in fake.got():
        assert r["headers"].get("Authorization") == want
    assert fake.got("POST")[0]["path"] == f"/job/deploy/buildWithParameters?RUN={run['id']}"


@needs_secrets
def test_jenkins_cancelled_queue_item(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "jk", "jenkins-api-token-abcdef")
    fake.route("POST", "/job/deploy/build", lambda req: (201, {"Location": fake.base + "/queue/item/9/"}, b""))
    fake.route("GET", "/queue/item/9/api/json", lambda req: (200, {}, {"id": 9, "cancelled": True}))
    cfg = {"preset": "jenkins", "url": fake.base, "job": "deploy", "user": "robot", "token_secret": "jk",
           "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    done = s.wait_run(s.trigger(wh_job(s, cfg, pid=pid)["id"])["id"])
    assert done["status"] == "failed" and "cancelled" in done["message"], done


@needs_secrets
def test_azure_durable_function(wh_server, fake, fake2, pki):
    """The function key goes to the configured origin only: the status URL
    handed back points at another origin (fake2) and gets no key."""
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "fnkey", "azure-function-key-xyz123")
    n = {"i": 0}

    def status(req):
        n["i"] += 1
        if n["i"] < 2:
            return 202, {}, {"runtimeStatus": "Running"}
        return 200, {}, {"runtimeStatus": "Completed", "output": "ok"}
    fake.route("POST", "/api/orchestrators/Deploy", lambda req: (202, {}, {
        "id": "inst1", "statusQueryGetUri": fake2.base + "/runtime/webhooks/durabletask/instances/inst1?code=sys",
        "terminatePostUri": fake2.base + "/runtime/webhooks/durabletask/instances/inst1/terminate?reason={text}"}))
    fake2.route("GET", "/runtime/webhooks/durabletask/instances/inst1", status)
    cfg = {"preset": "azure_function", "url": fake.base + "/api/orchestrators/Deploy", "token_secret": "fnkey",
           "ca_cert": pki["ca"], "poll_interval_seconds": 1, "body": {"run": "{{run.id}}"}}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert done["external_id"] == "inst1"
    [t] = fake.got("POST")
    assert t["headers"].get("x-functions-key") == "azure-function-key-xyz123"
    assert fake2.got()
    for r in fake2.got():
        assert "x-functions-key" not in {k.lower() for k in r["headers"]}


@needs_secrets
def test_bearer_token_generic(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "tok", "generic-bearer-token-42")
    fake.route("POST", "/hook", lambda req: (200, {}, {"echo": "generic-bearer-token-42"}))
    cfg = {"url": fake.base + "/hook", "mode": "fire_and_forget", "ca_cert": pki["ca"], "token_secret": "tok"}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert fake.got()[0]["headers"]["Authorization"] == "Bearer generic-bearer-token-42"
    assert "generic-bearer-token-42" not in s.logs(run["id"])


@needs_secrets
def test_jenkins_cancel_while_queued(wh_server, fake, pki):
    s = wh_server
    pid = project(s)["id"]
    put_secret(s, pid, "jk", "jenkins-api-token-abcdef")
    fake.route("POST", "/ci/job/folder/job/deploy/build",
               lambda req: (201, {"Location": fake.base + "/ci/queue/item/31/"}, b""))
    fake.route("GET", "/ci/queue/item/31/api/json", lambda req: (200, {}, {"id": 31, "why": "waiting"}))
    fake.route("POST", "/ci/queue/cancelItem", lambda req: (204, {}, b""))
    cfg = {"preset": "jenkins", "url": fake.base + "/ci/", "job": "folder/deploy", "user": "robot",
           "token_secret": "jk", "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    wait_for(lambda: fake.got("GET", "/ci/queue/item/31/api/json"), 20, "a queue poll")
    assert s.client().post(f"/runs/{run['id']}/cancel", {}).status_code == 202
    done = s.wait_run(run["id"])
    assert done["status"] == "canceled", done
    [c] = fake.got("POST", "/ci/queue/cancelItem")
    assert c["path"] == "/ci/queue/cancelItem?id=31"


def test_private_targets_refused_by_default(make_server, fake, pki):
    """Without webhook.allow_private_networks: a loopback literal is a 400,
    and a name that resolves to loopback ends the run in error with nothing
    sent."""
    s = make_server()
    pid = project(s)["id"]
    r = s.client().post(f"/projects/{pid}/jobs", {
        "name": "lit", "command": None, "execution_backend": "webhook",
        "execution_backend_config": {"url": fake.base + "/hook", "mode": "fire_and_forget"}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "execution_backend_config.url", r.text
    fake.route("POST", "/hook", lambda req: (200, {}, {}))
    for host in ("localhost", "localhost."):
        job = wh_job(s, {"url": f"https://{host}:{fake.port}/hook", "mode": "fire_and_forget",
                         "ca_cert": pki["ca"]}, pid=pid)
        done = s.wait_run(s.trigger(job["id"])["id"])
        assert done["status"] == "error", done
        # glibc may not resolve "localhost." at all: refused either way
        assert "private" in done["message"] or "resolve" in done["message"], done
    assert fake.got() == []


def test_allowed_hosts(make_server, fake, pki):
    s = make_server(lambda c: c.update({"webhook": {"allow_private_networks": True,
                                                    "allowed_hosts": ["*.example.com"]}}))
    pid = project(s)["id"]
    r = s.client().post(f"/projects/{pid}/jobs", {
        "name": "h", "command": None, "execution_backend": "webhook",
        "execution_backend_config": {"url": fake.base + "/hook", "mode": "fire_and_forget"}})
    assert r.status_code == 400 and "allowed_hosts" in r.json()["error"]["message"], r.text


def test_many_runs_at_once(wh_server, fake, pki):
    """Thirty poll-mode runs share the loop's curl multi: all end right."""
    s = wh_server
    n = {}

    def status(req):
        k = req["path"]
        n[k] = n.get(k, 0) + 1
        return 200, {}, {"state": "done" if n[k] >= 2 else "running"}
    fake.route("POST", "/start", lambda req: (201, {}, {"id": json.loads(req["body"])["run"]}))
    fake.route("GET", "/s/", status)
    cfg = {"url": fake.base + "/start", "mode": "poll", "ca_cert": pki["ca"], "external_id_path": "/id",
           "status_url": fake.base + "/s/{{external_id}}", "status_path": "/state", "success_values": ["done"],
           "poll_interval_seconds": 1, "body": {"run": "{{run.id}}"}}
    job = wh_job(s, cfg)
    runs = [s.trigger(job["id"]) for _ in range(30)]
    for r in runs:
        done = s.wait_run(r["id"], timeout=60)
        assert done["status"] == "succeeded", (done.get("reason"), done.get("message"), s.logs(r["id"]))
        assert done["external_id"] == r["id"]


# ---------------------------------------------------------------------------
# Re-attach after a daemon restart (SIGKILL): the remote job goes on, and so
# does uhub's following of it.

def wh_restartable(make_server):
    return make_server(lambda c: c.update({"webhook": {"allow_private_networks": True, "allowed_hosts": ["*"]}}))


@needs_secrets
def test_a_restart_re_attaches_a_gitlab_pipeline_and_cancels_it_remotely(make_server, fake, pki):
    s = wh_restartable(make_server)
    pid = project(s)["id"]
    put_secret(s, pid, "gl_trigger", "glptt-trigger-token-1234")
    put_secret(s, pid, "gl_api", "glpat-api-token-5678")
    state = {"finish": {}}

    def pipeline(req):
        n = req["path"].rsplit("/", 1)[1]
        return 200, {}, {"id": int(n), "status": state["finish"].get(n, "running")}
    ids = iter(range(301, 400))
    fake.route("POST", "/api/v4/projects/42/trigger/pipeline",
               lambda req: (201, {}, {"id": next(ids), "status": "created"}))
    for n in range(301, 304):
        fake.route("GET", f"/api/v4/projects/42/pipelines/{n}", pipeline)
        fake.route("POST", f"/api/v4/projects/42/pipelines/{n}/cancel", lambda req: (200, {}, {"status": "canceled"}))
    cfg = {"preset": "gitlab", "url": fake.base, "project": 42, "ref": "main", "token_secret": "gl_trigger",
           "headers": {"PRIVATE-TOKEN": "{{secrets.gl_api}}"}, "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    job = wh_job(s, cfg, pid=pid)
    a, b = s.trigger(job["id"]), s.trigger(job["id"])
    for n in ("301", "302"):
        wait_for(lambda: fake.got("GET", f"/api/v4/projects/42/pipelines/{n}"), 20, f"a poll of pipeline {n}")
    s.kill9()
    before = {n: len(fake.got("GET", f"/api/v4/projects/42/pipelines/{n}")) for n in ("301", "302")}
    s.start()
    c = s.client()
    pipe = {}  # run id -> its pipeline: the two triggers may reach GitLab in either order
    for run in (a, b):
        got = c.get(f"/runs/{run['id']}").json()
        assert got["status"] == "running" and got["external_id"] in ("301", "302"), got
        pipe[run["id"]] = got["external_id"]
    assert pipe[a["id"]] != pipe[b["id"]], pipe
    # Polling resumes, with the API token (a secret, re-read at the restart).
    for n in ("301", "302"):
        wait_for(lambda: len(fake.got("GET", f"/api/v4/projects/42/pipelines/{n}")) > before[n], 20,
                 f"pipeline {n} polled again after the restart")
    for g in fake.got("GET"):
        assert g["headers"].get("PRIVATE-TOKEN") == "glpat-api-token-5678"
    # One ends on its own, the other is canceled: the cancel reaches GitLab.
    state["finish"][pipe[a["id"]]] = "success"
    done = s.wait_run(a["id"])
    assert done["status"] == "succeeded" and done["external_id"] == pipe[a["id"]], done
    assert c.post(f"/runs/{b['id']}/cancel", {}).status_code == 202
    done = s.wait_run(b["id"])
    assert done["status"] == "canceled", done
    [cancel] = fake.got("POST", f"/api/v4/projects/42/pipelines/{pipe[b['id']]}/cancel")
    assert cancel["headers"].get("PRIVATE-TOKEN") == "glpat-api-token-5678"
    for run in (a, b):
        log = s.logs(run["id"])
        assert "re-attached after a daemon restart" in log, log
        assert "glptt-trigger-token-1234" not in log and "glpat-api-token-5678" not in log
    assert len(fake.got("POST", "/api/v4/projects/42/trigger/pipeline")) == 2, "a pipeline was triggered again"


def test_a_callback_run_takes_its_callback_after_a_restart(make_server, fake, pki):
    s = wh_restartable(make_server)
    fake.route("POST", "/cb", lambda req: (200, {}, {"id": "job-7"}))
    cfg = {"url": fake.base + "/cb", "mode": "callback", "ca_cert": pki["ca"], "external_id_path": "/id",
           "body": {"token": "{{callback.token}}"}}
    run = s.trigger(wh_job(s, cfg)["id"])
    wait_status(s, run["id"], {"running"})
    wait_for(lambda: s.client().get(f"/runs/{run['id']}").json().get("external_id") == "job-7", 20,
             "the external id to be stored")
    token = json.loads(fake.got("POST", "/cb")[0]["body"])["token"]
    s.kill9()
    s.start()
    body = json.dumps({"status": "succeeded", "exit_code": 0, "log": "deployed\n"}).encode()
    r = wait_for(lambda: (lambda x: x if x.status_code == 200 else None)(
        post_callback(s, run["id"], body, sign(token, body))), 20, "the callback to be taken after the restart")
    assert r.status_code == 200
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded" and done["exit_code"] == 0, done
    assert "deployed" in s.logs(run["id"])
    assert len(fake.got("POST", "/cb")) == 1, "the remote job was triggered again"


@needs_secrets
def test_a_jenkins_build_queued_before_a_restart_is_followed_to_its_result(make_server, fake, pki):
    s = wh_restartable(make_server)
    pid = project(s)["id"]
    put_secret(s, pid, "jk", "jenkins-api-token-abcdef")
    state = {"started": False}

    def queue(req):
        if not state["started"]:
            return 200, {}, {"id": 23, "cancelled": False, "executable": None, "why": "waiting"}
        return 200, {}, {"id": 23, "executable": {"number": 4, "url": fake.base + "/job/deploy/4/"}}
    fake.route("POST", "/job/deploy/build", lambda req: (201, {"Location": fake.base + "/queue/item/23/"}, b""))
    fake.route("GET", "/queue/item/23/api/json", queue)
    fake.route("GET", "/job/deploy/4/api/json", lambda req: (200, {}, {"building": False, "result": "SUCCESS"}))
    cfg = {"preset": "jenkins", "url": fake.base, "job": "deploy", "user": "robot", "token_secret": "jk",
           "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    wait_for(lambda: fake.got("GET", "/queue/item/23/api/json"), 20, "a poll of the queue item")
    s.kill9()
    s.start()
    state["started"] = True
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", (done, s.logs(run["id"]))
    assert done["external_id"] == fake.base + "/job/deploy/4/", done
    assert len(fake.got("POST", "/job/deploy/build")) == 1


@needs_secrets
def test_an_azure_run_caught_by_a_restart_ends_lost(make_server, fake, fake2, pki):
    """What cannot be followed again ends `lost` (daemon_restart), as before:
    an Azure Durable Functions instance, whose status URL carries the
    function's key and is not stored."""
    s = wh_restartable(make_server)
    pid = project(s)["id"]
    put_secret(s, pid, "fnkey", "azure-function-key-xyz123")
    fake.route("POST", "/api/orchestrators/Deploy", lambda req: (202, {}, {
        "id": "inst9", "statusQueryGetUri": fake2.base + "/runtime/webhooks/durabletask/instances/inst9?code=sys"}))
    fake2.route("GET", "/runtime/webhooks/durabletask/instances/inst9",
                lambda req: (202, {}, {"runtimeStatus": "Running"}))
    cfg = {"preset": "azure_function", "url": fake.base + "/api/orchestrators/Deploy", "token_secret": "fnkey",
           "ca_cert": pki["ca"], "poll_interval_seconds": 1}
    run = s.trigger(wh_job(s, cfg, pid=pid)["id"])
    wait_for(lambda: fake2.got("GET"), 20, "a status poll")
    s.kill9()
    s.start()
    done = s.wait_run(run["id"])
    assert done["status"] == "lost" and done["reason"] == "daemon_restart", done
