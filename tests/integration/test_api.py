"""The HTTP API's own behaviour through the real daemon (SPEC §5, §8, §9):
TLS, the rate limit, query checks and pagination, ids that never reach the
store, read-only and guardrail-loosening fields, membership edge cases,
followers whose clients vanish, and /metrics counting answers."""
import os
import re
import secrets
import socket
import subprocess
import time

import pytest
import requests

from conftest import Gate, HostDir, error_of, me, wait_for


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


# ---- TLS ----------------------------------------------------------------------

def test_tls_when_cert_and_key_are_set(make_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    s = make_server(lambda cfg: cfg.update(tls={"cert": str(cert), "key": str(key)}))
    assert s.url.startswith("https://"), s.url
    r = requests.get(s.url + "/healthz", verify=str(cert), timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    r = requests.get(s.url + "/api/v1/me", headers={"Authorization": "Bearer " + s.admin_token},
                     verify=str(cert), timeout=10)
    assert r.status_code == 200, r.text
    # plain HTTP on the TLS port gets no answer in clear
    http_url = s.url.replace("https://", "http://")
    try:
        r = requests.get(http_url + "/healthz", timeout=5)
        assert r.status_code != 200, "plain HTTP answered on the TLS port"
    except requests.RequestException:
        pass


# ---- rate limit ---------------------------------------------------------------

def test_rate_limit_per_user_is_429_with_retry_after(make_server):
    s = make_server(lambda cfg: cfg.update(api={"rate_limit_per_minute": 5}))
    c = s.client()
    statuses = [c.get("/me").status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:], statuses
    r = c.get("/me")
    e = error_of(r, 429, "rate_limited", what="over the rate limit")
    assert int(r.headers.get("Retry-After", "0")) >= 1, r.headers
    assert "rate_limit_per_minute" in e["message"], e
    # /healthz and /metrics take no token and are not limited
    assert requests.get(s.url + "/healthz", timeout=5).status_code == 200


# ---- query parameters and pagination ------------------------------------------

def test_unknown_and_repeated_query_parameters_are_400_naming_them(server):
    c = server.client()
    error_of(c.get("/runs?stauts=running"), 400, "invalid_request", field="stauts", what="typo in a filter")
    error_of(c.get("/projects?limit=1&limit=100"), 400, "invalid_request", field="limit", what="limit twice")
    for bad in ("0", "101", "-1", "ten", "1.5"):
        error_of(c.get(f"/projects?limit={bad}"), 400, "invalid_request", field="limit", what=f"limit={bad}")
    error_of(c.get("/audit?since=yesterday"), 400, "invalid_request", field="since", what="bad since")
    error_of(c.get("/runs/r_x/logs?format=xml"), 404, "not_found", what="logs of a missing run")
    error_of(c.get("/me?verbose=1"), 400, "invalid_request", field="verbose", what="query on /me")


def test_pagination_walks_every_item_once_newest_first(server):
    c = server.client()
    prefix = "pg-" + secrets.token_hex(3)
    made = [server.project(name=f"{prefix}-{i}")["id"] for i in range(5)]
    seen, before = [], None
    for _ in range(100):
        q = "/projects?limit=2" + (f"&before={before}" if before else "")
        page = c.ok("GET", q)
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        before = page["next"]
        if before is None:
            break
    assert len(seen) == len(set(seen)), "a page repeated an item"
    mine = [i for i in seen if i in made]
    assert mine == list(reversed(made)), f"newest first: {mine} vs {made}"
    # an empty filter filters nothing; a name finds one
    assert len(c.ok("GET", "/projects?name=&limit=100")["items"]) >= 5
    found = c.ok("GET", f"/projects?name={prefix}-3")["items"]
    assert [p["id"] for p in found] == [made[3]]


# ---- ids, methods, bodies ---------------------------------------------------------

@pytest.mark.parametrize("path", ["/runs/a.b", "/runs/" + "r" * 200, "/jobs/j%20x", "/projects/p_1/members/u.1",
                                  "/runs/r_1/logs/extra", "/runs//logs"])
def test_odd_ids_and_paths_are_404_json(server, path):
    error_of(server.client().get(path), 404, "not_found", what=path)


def test_bodies_where_none_is_taken_and_empty_where_one_is_needed(server, proj):
    c = server.client()
    r = c.req("GET", "/me", data=b"{}", headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_request", what="GET with a body")
    r = c.req("POST", "/projects", data=b"", headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_request", what="POST without a body")
    r = c.req("POST", "/projects", data=b'{"name":"a\\u0000b","environment":"dev","execution_backend":"local"}',
              headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_request", what="an escaped NUL")
    # a trigger takes no body, an empty object, or parameters; nothing else
    job = server.job(proj["id"], ["/bin/true"])
    assert c.req("POST", f"/jobs/{job['id']}/runs").status_code == 201
    error_of(c.post(f"/jobs/{job['id']}/runs", {"params": {}}), 400, field="params", what="unknown trigger key")
    error_of(c.post(f"/jobs/{job['id']}/runs", {}, headers={"Idempotency-Key": "has space"}), 400,
             field="Idempotency-Key", what="bad Idempotency-Key")


def test_patch_over_the_limit_is_413_before_the_body_is_read(make_server):
    s = make_server(lambda cfg: cfg.setdefault("api", {}).update(max_body_bytes=1024))
    p = s.project()
    body = b'{"execution_backend_config":{"x":"' + b"a" * 4096 + b'"}}'
    r = requests.patch(s.url + f"/api/v1/projects/{p['id']}", data=body, timeout=10,
                       headers={"Authorization": "Bearer " + s.admin_token, "Content-Type": "application/json"})
    error_of(r, 413, "payload_too_large", what="PATCH over max_body_bytes")
    assert s.client().ok("GET", f"/projects/{p['id']}")["execution_backend_config"] == {}


# ---- fields: read-only, loosening, references ---------------------------------

def test_read_only_fields_cannot_be_patched(server, proj):
    c = server.client()
    for key in ("id", "created_at", "updated_at"):
        error_of(c.patch(f"/projects/{proj['id']}", {key: "x"}), 400, "invalid_request", field=key,
                 what=f"PATCH {key}")
    job = server.job(proj["id"], ["/bin/true"])
    for key in ("id", "project_id", "updated_by"):
        error_of(c.patch(f"/jobs/{job['id']}", {key: "x"}), 400, "invalid_request", field=key,
                 what=f"PATCH job {key}")


def test_vault_references_must_lie_under_the_projects_prefix(server):
    c = server.client()
    p = server.project()
    error_of(c.post(f"/projects/{p['id']}/jobs", {"name": "v", "command": ["/bin/true"],
                                                  "secrets": {"DB": "vault:team/app/db#password"}}),
             400, field="secrets.DB", what="vault ref without a vault_prefix")
    c.ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app"}, status=200)
    ok = c.post(f"/projects/{p['id']}/jobs", {"name": "v", "command": ["/bin/true"],
                                              "secrets": {"DB": "vault:team/app/db#password"}})
    assert ok.status_code == 201, ok.text
    for ref in ("vault:team/other#k", "vault:team/application/x#k", "vault:team/app/../x#k", "vault:team/app/x"):
        error_of(c.post(f"/projects/{p['id']}/jobs", {"name": "w", "command": ["/bin/true"],
                                                      "secrets": {"DB": ref}}),
                 400, field="secrets.DB", what=ref)
    error_of(c.post(f"/projects/{p['id']}/jobs", {"name": "w", "command": ["/bin/true"],
                                                  "env": {"UHUB_RUN_ID": "forged"}}),
             400, field="env.UHUB_RUN_ID", what="a job setting uhub's own variables")


def test_projets_member_cannot_give_a_prod_job_the_local_backend(server):
    admin = server.client()
    r = admin.post("/projects", {"name": "p-" + secrets.token_hex(4), "environment": "prod",
                                 "execution_backend": "docker", "execution_backend_config": {"image": "busybox"}})
    if r.status_code == 400 and r.json()["error"]["code"] == "unsupported_backend":
        pytest.skip("needs a second built backend (docker)")
    assert r.status_code == 201, r.text
    p = r.json()
    uid, tok = server.make_user("projets")
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
    c = server.client(tok)
    body = {"name": "j-" + secrets.token_hex(3), "command": ["/bin/true"], "execution_backend": "local"}
    e = error_of(c.post(f"/projects/{p['id']}/jobs", body), 403, "forbidden", field="execution_backend",
                 what="projets: local job in a prod project")
    assert "admin" in e["message"], e
    r = c.patch(f"/projects/{p['id']}", {"execution_backend": "local"})
    error_of(r, 403, "forbidden", field="execution_backend", what="projets: prod project to local")
    assert admin.ok("GET", f"/projects/{p['id']}")["execution_backend"] == "docker"


def test_admin_cannot_lock_itself_out(server):
    c = server.client()
    admin_id = me(server)["id"]
    error_of(c.patch(f"/users/{admin_id}", {"disabled": True}), 409, "conflict", field="disabled")
    error_of(c.patch(f"/users/{admin_id}", {"role": "viewer"}), 409, "conflict", field="role")
    assert me(server)["role"] == "admin"


def test_members_unknown_user_and_removal(server, proj):
    c = server.client()
    error_of(c.post(f"/projects/{proj['id']}/members", {"user_id": "u_nobody"}), 404, "not_found",
             field="user_id", what="adding a user that does not exist")
    uid, tok = server.make_user("viewer")
    c.ok("POST", f"/projects/{proj['id']}/members", {"user_id": uid})
    assert server.client(tok).get(f"/projects/{proj['id']}").status_code == 200
    r = c.delete(f"/projects/{proj['id']}/members/{uid}")
    assert r.status_code == 204, r.text
    error_of(server.client(tok).get(f"/projects/{proj['id']}"), 404, "not_found", what="after removal")
    error_of(c.delete(f"/projects/{proj['id']}/members/{uid}"), 404, "not_found", what="removing twice")


# ---- followers ------------------------------------------------------------------

def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_followers_whose_clients_vanish_are_released(server, proj):
    h = HostDir()
    gate = Gate(h)
    try:
        job = server.job(proj["id"], ["/bin/sh", "-c", f"{gate.wait_cmd}; echo done"])
        run = server.trigger(job["id"])
        u = re.match(r"https?://([^:/]+):(\d+)", server.url)
        socks = []
        for i in range(20):
            s = socket.create_connection((u.group(1), int(u.group(2))), timeout=10)
            accept = "Accept: text/event-stream\r\n" if i % 2 else ""
            s.sendall(f"GET /api/v1/runs/{run['id']}/logs?follow=1 HTTP/1.1\r\nHost: x\r\n{accept}"
                      f"Authorization: Bearer {server.admin_token}\r\n\r\n".encode())
            socks.append(s)
        for s in socks:
            assert s.recv(12).startswith(b"HTTP/1.1 200"), "a follower was not answered"
        peak = fd_count(server.pid)
        for s in socks:
            s.close()
        # the peer check runs every few seconds on idle followers
        wait_for(lambda: fd_count(server.pid) <= peak - 18, 15, "the vanished followers' sockets to close")
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        gate.open()
        assert server.wait_run(run["id"])["status"] == "succeeded"
    finally:
        gate.open()
        h.cleanup()


def test_ndjson_follow_and_sse_without_follow(server, proj):
    done = server.trigger(server.job(proj["id"], ["/bin/echo", "one"])["id"])
    server.wait_run(done["id"])
    c = server.client()
    r = c.get(f"/runs/{done['id']}/logs?follow=1&format=ndjson", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson"), r.headers
    assert [l for l in r.text.split("\n") if l] and r.text.endswith("\n")
    r = c.get(f"/runs/{done['id']}/logs?follow=0", headers={"Accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 200 and "event: end" in r.text and "data: one" in r.text, r.text
    error_of(c.get(f"/runs/{done['id']}/logs", headers={"Accept": "text/event-stream", "Last-Event-ID": "-1"}),
             400, "invalid_request", field="Last-Event-ID")
    error_of(c.get(f"/runs/{done['id']}/logs?follow=maybe"), 400, "invalid_request", field="follow")


# ---- metrics ------------------------------------------------------------------------

def test_metrics_count_every_answer_by_method_and_code(server):
    def count(method, code):
        text = requests.get(server.url + "/metrics", timeout=5).text
        m = re.search(rf'^uhub_http_requests_total{{method="{method}",code="{code}"}} (\d+)$', text, re.M)
        return int(m.group(1)) if m else 0
    before = count("GET", 404)
    for _ in range(3):
        server.client().get("/nothing-here")
    assert count("GET", 404) >= before + 3
    before = count("DELETE", 405)
    server.client().delete("/projects")
    assert count("DELETE", 405) == before + 1
