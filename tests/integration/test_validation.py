"""Input validation and the API's framing (SPEC §3, §4.3, §5, §9): unknown
keys, backend config keys and caps, unknown / unbuilt backends, malformed
bodies, content types, size limits, the error shape, /healthz, /metrics and
the OpenAPI document."""
import json
import re
import secrets
import shutil
import socket
import tempfile
from urllib.parse import urlparse

import pytest
import requests

from conftest import Server, base_config, error_of


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


def pbody(**over):
    b = {"name": "p-" + secrets.token_hex(4), "environment": "dev", "execution_backend": "local",
         "execution_backend_config": {}}
    b.update(over)
    return b


def jbody(**over):
    b = {"name": "j-" + secrets.token_hex(4), "command": ["/bin/true"]}
    b.update(over)
    return b


def test_unknown_key_in_project_body_is_400_naming_it(server):
    c = server.client()
    error_of(c.post("/projects", pbody(colour="blue")), 400, field="colour", what="unknown project key")
    p = server.project()
    error_of(c.patch(f"/projects/{p['id']}", {"colour": "blue"}), 400, field="colour",
             what="unknown key in a project PATCH")


def test_unknown_key_in_job_body_is_400_naming_it(server, proj):
    c = server.client()
    error_of(c.post(f"/projects/{proj['id']}/jobs", jbody(timeout=5)), 400, field="timeout",
             what="unknown job key")


@pytest.mark.parametrize("where", ["project", "job"])
def test_unknown_backend_config_key_is_400_naming_it(server, proj, where):
    c = server.client()
    cfg = {"timeout_seconds": 5, "colour": "blue"}
    if where == "project":
        r = c.post("/projects", pbody(execution_backend_config=cfg))
    else:
        r = c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend_config=cfg))
    error_of(r, 400, field="execution_backend_config.colour", what=f"unknown {where} config key")
    if where == "job":  # the same through a PATCH of a valid job
        j = server.job(proj["id"], ["/bin/true"])
        r = c.patch(f"/jobs/{j['id']}", {"execution_backend_config": {"colour": "blue"}})
        error_of(r, 400, field="execution_backend_config.colour", what="unknown config key in a job PATCH")


@pytest.mark.parametrize("key,value,cap", [("timeout_seconds", 601, "600"),
                                           ("mem_limit", "3Gi", None),
                                           ("cpu_limit", "64", None)])
def test_value_above_server_cap_is_400_naming_key_and_cap(server, proj, key, value, cap):
    c = server.client()
    r = c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend_config={key: value}))
    e = error_of(r, 400, field=f"execution_backend_config.{key}", what=f"{key} above the cap")
    if cap:
        assert cap in e["message"], f"the message must name the cap {cap}: {e['message']}"
    assert "max_" in e["message"], f"the message must name the server cap's key: {e['message']}"
    # a project cannot raise it either, and a job merged over a project is capped too
    r = c.post("/projects", pbody(execution_backend_config={key: value}))
    error_of(r, 400, field=f"execution_backend_config.{key}", what=f"project {key} above the cap")


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, None, True])
def test_bad_timeout_values_are_400(server, proj, value):
    c = server.client()
    r = c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend_config={"timeout_seconds": value}))
    if value is None and r.status_code == 201:
        return  # null may mean "the server default"
    error_of(r, 400, field="execution_backend_config.timeout_seconds", what=f"timeout_seconds={value!r}")


def test_bad_local_config_values_are_400(server, proj):
    c = server.client()
    r = c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend_config={"network": "bridge"}))
    error_of(r, 400, field="execution_backend_config.network", what="network=bridge")
    r = c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend_config={"working_dir": "/etc"}))
    error_of(r, 400, field="execution_backend_config.working_dir", what="working_dir outside allowed_workdirs")


@pytest.mark.parametrize("env", ["production", "", "PROD", 1, None])
def test_bad_environment_is_400(server, env):
    r = server.client().post("/projects", pbody(environment=env))
    error_of(r, 400, field="environment", what=f"environment={env!r}")


def test_unknown_backend_is_400_and_unbuilt_backend_is_unsupported(server, proj):
    c = server.client()
    e = error_of(c.post("/projects", pbody(execution_backend="mainframe")), 400, what="unknown backend")
    assert e.get("field") == "execution_backend", e
    assert e["code"] in ("invalid_request", "invalid_config"), e
    for b in ("kubernetes", "serverless"):
        error_of(c.post("/projects", pbody(execution_backend=b)), 400, "unsupported_backend",
                 what=f"project on unbuilt backend {b}")
        error_of(c.post(f"/projects/{proj['id']}/jobs", jbody(execution_backend=b, command=None)), 400,
                 "unsupported_backend", what=f"job on unbuilt backend {b}")


@pytest.mark.parametrize("command", [[], ["echo", "hi"], ["bin/echo"], [""], [1], "/bin/echo", [None]])
def test_bad_commands_are_400_naming_command(server, proj, command):
    r = server.client().post(f"/projects/{proj['id']}/jobs", jbody(command=command))
    e = error_of(r, 400, what=f"command={command!r}")
    assert (e.get("field") or "").startswith("command"), f"error must name 'command': {e}"


def raw(server, method, path, body, ctype="application/json", extra=None):
    h = {"Authorization": "Bearer " + server.admin_token}
    if ctype is not None:
        h["Content-Type"] = ctype
    h.update(extra or {})
    return requests.request(method, server.url + "/api/v1" + path, data=body, headers=h, timeout=15)


@pytest.mark.parametrize("body", [b"{", b"{\"name\": }", b"[1,2]", b"\"str\"", b"null", b"{}garbage",
                                  b"\xff\xfe{}", b"[" * 100000, b"{\"name\":\"\xc3(\"}"],
                         ids=["open", "no-value", "array", "string", "null", "trailing", "bom-ish", "deep",
                              "bad-utf8"])
def test_malformed_json_is_400(server, body):
    r = raw(server, "POST", "/projects", body)
    error_of(r, 400, what=f"body {body!r}")


def test_duplicate_keys_are_refused(server):
    name = "p-" + secrets.token_hex(4)
    body = ('{"name":"%s","environment":"prod","environment":"dev","execution_backend":"local"}' % name).encode()
    error_of(raw(server, "POST", "/projects", body), 400, what="duplicate key")
    found = server.client().ok("GET", f"/projects?name={name}")["items"]
    assert found == [], f"a body with duplicate keys created {found}"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None,
                                   "application/jsonx"])
def test_wrong_content_type_is_415(server, ctype):
    body = json.dumps(pbody()).encode()
    r = raw(server, "POST", "/projects", body, ctype=ctype)
    error_of(r, 415, what=f"Content-Type {ctype!r}")


def test_merge_patch_content_type_and_null_removes_a_key(server):
    p = server.project(config={"timeout_seconds": 30, "network": "none"})
    r = raw(server, "PATCH", f"/projects/{p['id']}", json.dumps({"execution_backend_config": {"network": None}}),
            ctype="application/merge-patch+json")
    assert r.status_code == 200, f"merge-patch+json PATCH: {r.status_code} {r.text}"
    assert r.json()["execution_backend_config"] == {"timeout_seconds": 30}, \
        f"RFC 7396: null removes the key, the rest stays: {r.json()}"
    error_of(raw(server, "PATCH", f"/projects/{p['id']}", b"{}", ctype="text/plain"), 415,
             what="PATCH as text/plain")


def post_over_limit(url, path, token, size, chunked):
    """POST a body of `size` bytes on a raw socket and return (status, body)."""
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=15)
    try:
        head = (f"POST /api/v1{path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\n")
        payload = b'{"name":"' + b"a" * (size - 11) + b'"}'
        if chunked:
            head += "Transfer-Encoding: chunked\r\n\r\n"
            data = b""
            for i in range(0, len(payload), 512):
                part = payload[i:i + 512]
                data += b"%x\r\n" % len(part) + part + b"\r\n"
            data += b"0\r\n\r\n"
        else:
            head += f"Content-Length: {len(payload)}\r\n\r\n"
            data = payload
        try:
            s.sendall(head.encode() + data)
        except OSError:
            pass  # the server may answer and close before reading everything
        resp = b""
        while True:
            try:
                b = s.recv(65536)
            except OSError:
                break
            if not b:
                break
            resp += b
    finally:
        s.close()
    status_line, _, rest = resp.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1."), f"no HTTP answer to an oversized body: {resp[:200]!r}"
    hdrs, _, body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in hdrs.lower():
        out, b = b"", body
        while b:
            n, _, b = b.partition(b"\r\n")
            n = int(n.split(b";")[0], 16)
            if n == 0:
                break
            out, b = out + b[:n], b[n + 2:]
        body = out
    return int(status_line.split()[1]), body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_max_body_bytes_is_413(make_server, chunked):
    s = make_server(lambda cfg: cfg.setdefault("api", {}).update(max_body_bytes=1024))
    status, body = post_over_limit(s.url, "/projects", s.admin_token, 8192, chunked)
    assert status == 413, f"oversized body: HTTP {status} {body[:200]!r}"
    e = json.loads(body)["error"]
    assert e["code"] == "payload_too_large" and e["message"], e
    # under the limit is fine, and the daemon carries on
    assert s.client().post("/projects", pbody()).status_code == 201
    assert requests.get(s.url + "/healthz", timeout=5).status_code == 200


def test_unknown_route_404_and_wrong_method_405_are_json(server):
    c = server.client()
    error_of(c.get("/nothing-here"), 404, "not_found", what="unknown route")
    r = c.req("PUT", "/projects")
    error_of(r, 405, what="PUT /projects")
    allow = r.headers.get("Allow", "")
    assert "GET" in allow and "POST" in allow, f"405 without a proper Allow header: {allow!r}"


def test_healthz_without_token(server):
    r = requests.get(server.url + "/healthz", timeout=5)
    assert r.status_code == 200, r.text


def test_metrics_have_the_families_and_no_project_or_job_names(server):
    pname = "metricsprobe-" + secrets.token_hex(4)
    jname = "metricsjob-" + secrets.token_hex(4)
    p = server.project(name=pname)
    j = server.job(p["id"], ["/bin/true"], name=jname)
    run = server.trigger(j["id"])
    assert server.wait_run(run["id"])["status"] == "succeeded"
    r = requests.get(server.url + "/metrics", timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type")
    text = r.text
    for family in ("uhub_runs", "uhub_http_requests_total", "uhub_dispatch_latency_seconds"):
        assert re.search(rf"^{family}[{{ _]", text, re.M), f"/metrics lacks {family}"
    m = re.search(r'^uhub_dispatch_latency_seconds_count (\d+)', text, re.M)
    assert m and int(m.group(1)) >= 1, "the dispatch histogram did not count the run"
    for secret_name in (pname, jname, p["id"], j["id"], run["id"]):
        assert secret_name not in text, f"/metrics leaks {secret_name!r}"
    succeeded = [l for l in text.splitlines() if l.startswith("uhub_runs") and "succeeded" in l]
    assert succeeded, "uhub_runs has no succeeded series although a run succeeded"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+(Inf|NaN)?$', line), \
                f"not a Prometheus sample line: {line!r}"


ROUTES = [("get", "/me"), ("post", "/users"), ("get", "/users"), ("patch", "/users/{}"),
          ("post", "/users/{}/tokens"), ("delete", "/tokens/{}"), ("post", "/projects"), ("get", "/projects"),
          ("get", "/projects/{}"), ("patch", "/projects/{}"), ("delete", "/projects/{}"),
          ("post", "/projects/{}/members"), ("get", "/projects/{}/members"),
          ("post", "/projects/{}/jobs"), ("get", "/projects/{}/jobs"), ("get", "/jobs/{}"),
          ("patch", "/jobs/{}"), ("delete", "/jobs/{}"), ("post", "/jobs/{}/runs"), ("get", "/runs"),
          ("get", "/runs/{}"), ("get", "/runs/{}/logs"), ("post", "/runs/{}/cancel"), ("get", "/audit"),
          ("get", "/audit/verify"), ("get", "/openapi.json")]


def test_openapi_document_is_openapi3_with_every_exercised_route(server):
    r = requests.get(server.url + "/api/v1/openapi.json", timeout=5)
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert str(doc.get("openapi", "")).startswith("3."), f"openapi: {doc.get('openapi')!r}"
    assert isinstance(doc.get("info"), dict) and doc["info"].get("title") and doc["info"].get("version"), \
        "an OpenAPI document needs info.title and info.version"
    paths = {}
    for p, ops in doc.get("paths", {}).items():
        norm = re.sub(r"\{[^}]+\}", "{}", p)
        if norm.startswith("/api/v1"):
            norm = norm[len("/api/v1"):]
        paths[norm] = {m.lower() for m in ops}
    missing = [f"{m.upper()} {p}" for m, p in ROUTES if m not in paths.get(p, set())]
    assert not missing, f"the OpenAPI document lacks {missing}"
    # every $ref resolves
    refs = set(re.findall(r'"\$ref":\s*"([^"]+)"', r.text))
    for ref in refs:
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
            node = node[part]


def test_rate_limit_answers_429_rate_limited(make_server):
    s = make_server(lambda cfg: cfg.setdefault("api", {}).update(rate_limit_per_minute=20))
    c = s.client()
    statuses = [c.get("/me").status_code for _ in range(40)]
    assert 429 in statuses, f"40 requests at rate_limit_per_minute=20 were never limited: {statuses}"
    assert statuses[:20].count(200) >= 15, f"the first requests must pass: {statuses}"
    r = c.get("/me")
    error_of(r, 429, "rate_limited", what="over the rate limit")
    assert requests.get(s.url + "/healthz", timeout=5).status_code == 200, "/healthz must not be rate limited"


@pytest.mark.parametrize("mutate,name", [
    (lambda cfg: cfg.update(bogus_key=1), "bogus_key"),
    (lambda cfg: cfg["local"].update(pids_limit="many"), "local.pids_limit"),
    (lambda cfg: cfg["local"].update(uid_range=[0, 100]), "local.uid_range"),
    (lambda cfg: cfg["guardrails"].update(max_timeout_seconds=10, default_timeout_seconds=60),
     "guardrails.default_timeout_seconds"),
], ids=["unknown-key", "bad-pids-limit", "root-uid-range", "default-above-max"])
def test_bad_server_config_stops_the_start_naming_the_key(uhub_bin, mutate, name):
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    try:
        cfg = base_config(tmp)
        mutate(cfg)
        with pytest.raises(RuntimeError) as ei:
            Server(tmp, cfg).stop()
        assert name in str(ei.value), f"the start-up error must name {name}: {ei.value}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("query,field", [("limit=0", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
                                         ("status=finished", "status"), ("before=%01%02", "before")])
def test_bad_list_queries_are_400_naming_the_parameter(server, query, field):
    error_of(server.client().get(f"/runs?{query}"), 400, field=field, what=f"/runs?{query}")


def test_unknown_key_in_trigger_body_is_400_naming_it(server, proj):
    j = server.job(proj["id"], ["/bin/true"], parameters=["X"])
    c = server.client()
    error_of(c.post(f"/jobs/{j['id']}/runs", {"params": {"X": "1"}}), 400, field="params",
             what="unknown trigger key")
    assert c.ok("GET", f"/runs?job={j['id']}")["items"] == []


def test_daemon_still_serves_after_all_this(server):
    assert server.proc.poll() is None, "the daemon died:\n" + server.read_log()[-3000:]
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
