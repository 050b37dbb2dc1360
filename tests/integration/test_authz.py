"""Authentication and authorization (SPEC §1, §5): tokens (missing, bad,
revoked, expired), disabled users, the role x membership matrix over the
project routes (non-members get 404, never 403), guardrail-loosening fields,
and who may delete a token."""
import datetime
import secrets

import pytest

from conftest import TERMINAL, error_of, me, wait_for

WHO = [("admin", None), ("projets", True), ("projets", False), ("operator", True), ("operator", False),
       ("viewer", True), ("viewer", False)]
WHO_IDS = [r if m is None else f"{r}-{'member' if m else 'outsider'}" for r, m in WHO]
RANK = {"viewer": 1, "operator": 2, "projets": 3, "admin": 4}


@pytest.fixture(scope="module")
def world(server):
    admin = server.client()
    p = server.project()
    quick = server.job(p["id"], ["/bin/echo", "authz"])
    run = server.trigger(quick["id"])
    assert server.wait_run(run["id"])["status"] == "succeeded"
    long_job = server.job(p["id"], ["/bin/sleep", "120"])
    users = {}
    for role, member in WHO:
        if role == "admin":
            users[(role, member)] = (me(server)["id"], server.admin_token)
            continue
        uid, tok = server.make_user(role)
        if member:
            admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
        users[(role, member)] = (uid, tok)
    secret = "AUTHZ_SECRET"
    admin.ok("PUT", f"/projects/{p['id']}/secrets/{secret}", {"value": "authz-" + secrets.token_hex(8)},
             status=201)
    admin.ok("PUT", f"/secrets/{secret}", {"value": "authz-" + secrets.token_hex(8), "projects": [p["id"]]},
             status=201)
    w = {"project": p, "job": quick, "long_job": long_job, "run": run, "users": users, "secret": secret}
    yield w
    # nothing of this module may be left running
    for it in admin.ok("GET", f"/runs?project={p['id']}&limit=100")["items"]:
        if it["status"] not in TERMINAL:
            admin.post(f"/runs/{it['id']}/cancel", {})


def expect(role, member, level):
    """The status a caller gets on a project route of `level` (read, operate,
    manage): allowed, 403 (member, role too low) or 404 (not a member)."""
    if role == "admin":
        return "ok"
    if not member:
        return 404
    need = {"read": 1, "operate": 2, "manage": 3}[level]
    return "ok" if RANK[role] >= need else 403


def check(r, want, ok_status, what):
    if want == "ok":
        assert r.status_code == ok_status, f"{what}: expected {ok_status}, got {r.status_code} {r.text[:300]}"
    else:
        error_of(r, want, "forbidden" if want == 403 else "not_found", what=what)


def caller(server, world, role, member):
    return server.client(world["users"][(role, member)][1])


READS = [
    ("GET project", lambda w: f"/projects/{w['project']['id']}"),
    ("GET job", lambda w: f"/jobs/{w['job']['id']}"),
    ("GET run", lambda w: f"/runs/{w['run']['id']}"),
    ("GET logs", lambda w: f"/runs/{w['run']['id']}/logs"),
    ("GET project jobs", lambda w: f"/projects/{w['project']['id']}/jobs"),
]


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
@pytest.mark.parametrize("name,path", READS, ids=[n for n, _ in READS])
def test_read_routes(server, world, role, member, name, path):
    r = caller(server, world, role, member).get(path(world))
    check(r, expect(role, member, "read"), 200, f"{role} member={member} {name}")
    if r.status_code == 200 and name == "GET logs":
        assert r.text == "authz\n"


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_patch_project(server, world, role, member):
    pid = world["project"]["id"]
    r = caller(server, world, role, member).patch(f"/projects/{pid}",
                                                  {"execution_backend_config": {"timeout_seconds": 120}})
    want = expect(role, member, "manage")
    check(r, want, 200, f"{role} member={member} PATCH project")
    if want == "ok":
        assert r.json()["execution_backend_config"].get("timeout_seconds") == 120, r.json()


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_create_job(server, world, role, member):
    pid = world["project"]["id"]
    name = "j-" + secrets.token_hex(4)
    r = caller(server, world, role, member).post(f"/projects/{pid}/jobs", {"name": name, "command": ["/bin/true"]})
    want = expect(role, member, "manage")
    check(r, want, 201, f"{role} member={member} POST job")
    names = [j["name"] for j in server.client().ok("GET", f"/projects/{pid}/jobs?limit=100")["items"]]
    assert (name in names) == (want == "ok"), f"job created={name in names} for {role} member={member}"


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_add_member(server, world, role, member):
    pid = world["project"]["id"]
    new_uid, _ = server.make_user("viewer")
    r = caller(server, world, role, member).post(f"/projects/{pid}/members", {"user_id": new_uid})
    want = expect(role, member, "manage")
    check(r, want, 201, f"{role} member={member} POST member")
    listed = [m["user_id"] for m in server.client().ok("GET", f"/projects/{pid}/members?limit=100")["items"]]
    assert (new_uid in listed) == (want == "ok"), f"member added={new_uid in listed} for {role} member={member}"


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_project_secret_routes(server, world, role, member):
    """PUT, DELETE and GET of a project's secrets: projets members and admins."""
    admin = server.client()
    c = caller(server, world, role, member)
    pid, name = world["project"]["id"], world["secret"]
    want = expect(role, member, "manage")
    who = f"{role} member={member}"
    before = admin.ok("GET", f"/projects/{pid}/secrets?limit=100")["items"]
    r = c.get(f"/projects/{pid}/secrets")
    check(r, want, 200, f"{who} GET secrets")
    if want == "ok":
        assert name in [i["name"] for i in r.json()["items"]], r.text
    value = "authz-" + secrets.token_hex(8)
    r = c.put(f"/projects/{pid}/secrets/{name}", {"value": value})
    check(r, want, 200, f"{who} PUT (replace) secret")
    assert value not in r.text
    new = "S_" + secrets.token_hex(4)
    check(c.put(f"/projects/{pid}/secrets/{new}", {"value": value}), want, 201, f"{who} PUT (create) secret")
    check(c.delete(f"/projects/{pid}/secrets/{new}"), want, 204,
          f"{who} DELETE secret")
    after = admin.ok("GET", f"/projects/{pid}/secrets?limit=100")["items"]
    assert new not in [i["name"] for i in after]
    mine = {i["name"]: i for i in after}[name]
    if want == "ok":
        assert mine["updated_by"] == world["users"][(role, member)][0], mine
    else:
        assert mine == {i["name"]: i for i in before}[name], f"a refused {who} changed the secret: {mine}"


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_shared_secret_routes(server, world, role, member):
    """PUT, DELETE, GET of shared secrets and the key rotation: admin only."""
    c = caller(server, world, role, member)
    want = "ok" if role == "admin" else 403
    who = f"{role} member={member}"
    name, pid = world["secret"], world["project"]["id"]
    check(c.get("/secrets"), want, 200, f"{who} GET /secrets")
    check(c.put(f"/secrets/{name}", {"value": "authz-" + secrets.token_hex(8)}), want, 200,
          f"{who} PUT (replace) shared secret")
    new = "S_" + secrets.token_hex(4)
    check(c.put(f"/secrets/{new}", {"value": "authz-" + secrets.token_hex(8), "projects": [pid]}), want, 201,
          f"{who} PUT (create) shared secret")
    check(c.delete(f"/secrets/{new}"), want, 204, f"{who} DELETE shared secret")
    check(c.post("/secrets/rotate-key", {}), want, 200, f"{who} POST /secrets/rotate-key")
    listed = {i["name"]: i for i in server.client().ok("GET", "/secrets?limit=100")["items"]}
    assert new not in listed and listed[name]["projects"] == [pid], listed


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_trigger(server, world, role, member):
    r = caller(server, world, role, member).post(f"/jobs/{world['job']['id']}/runs", {})
    want = expect(role, member, "operate")
    check(r, want, 201, f"{role} member={member} trigger")
    if want == "ok":
        run = r.json()
        assert run["requested_by"] == world["users"][(role, member)][0], run
        server.wait_run(run["id"])


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_cancel(server, world, role, member):
    admin = server.client()
    run = server.trigger(world["long_job"]["id"])
    wait_for(lambda: admin.ok("GET", f"/runs/{run['id']}")["status"] == "running", 15, "the run to start")
    r = caller(server, world, role, member).post(f"/runs/{run['id']}/cancel", {})
    want = expect(role, member, "operate")
    try:
        if want == "ok":
            assert r.status_code == 202, f"{role} member={member} cancel: {r.status_code} {r.text}"
            done = server.wait_run(run["id"], timeout=15)
            assert done["status"] == "canceled", done
            assert done["canceled_by"] == world["users"][(role, member)][0], done
        else:
            check(r, want, 202, f"{role} member={member} cancel")
            st = admin.ok("GET", f"/runs/{run['id']}")
            assert st["status"] == "running" and st["canceled_by"] is None, \
                f"a refused cancel touched the run: {st}"
    finally:
        admin.post(f"/runs/{run['id']}/cancel", {})
        server.wait_run(run["id"], timeout=15)


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
def test_list_runs_shows_only_the_callers_projects(server, world, role, member):
    c = caller(server, world, role, member)
    pid, rid = world["project"]["id"], world["run"]["id"]
    everything = c.ok("GET", "/runs?limit=100")["items"]
    mine = [i for i in everything if i["project_id"] == pid]
    r = c.get(f"/runs?project={pid}&limit=100")
    if role == "admin" or member:
        assert any(i["id"] == rid for i in mine), f"{role} member={member} does not see its project's runs"
        assert r.status_code == 200 and any(i["id"] == rid for i in r.json()["items"]), r.text[:300]
    else:
        assert not mine, f"a non-member sees another project's runs: {[i['id'] for i in mine]}"
        if r.status_code == 200:
            assert r.json()["items"] == [], f"?project= of a foreign project lists runs: {r.text[:300]}"
        else:
            error_of(r, 404, "not_found", what="?project= of a foreign project")
    r = c.get(f"/runs?job={world['job']['id']}&limit=100")
    if role == "admin" or member:
        assert r.status_code == 200 and any(i["id"] == rid for i in r.json()["items"]), r.text[:300]
    elif r.status_code == 200:
        assert r.json()["items"] == [], f"?job= of a foreign job lists runs: {r.text[:300]}"
    else:
        error_of(r, 404, "not_found", what="?job= of a foreign job")
    projects = [p["id"] for p in c.ok("GET", "/projects?limit=100")["items"]]
    assert (pid in projects) == (role == "admin" or bool(member)), \
        f"{role} member={member}: project listed={pid in projects}"


@pytest.mark.parametrize("role,member", WHO, ids=WHO_IDS)
@pytest.mark.parametrize("what", ["POST users", "GET audit", "GET audit/verify", "GET users", "GET exceptions",
                                  "GET secrets"])
def test_admin_only_routes(server, world, role, member, what):
    c = caller(server, world, role, member)
    if what == "POST users":
        r = c.post("/users", {"name": "u-" + secrets.token_hex(4), "role": "viewer"})
        ok = 201
    else:
        r = c.get("/" + what.split()[1])
        ok = 200
    check(r, "ok" if role == "admin" else 403, ok, f"{role} {what}")


def test_non_member_404_is_indistinguishable_from_missing(server, world):
    c = caller(server, world, "operator", False)
    for kind, real in (("projects", world["project"]["id"]), ("jobs", world["job"]["id"]),
                       ("runs", world["run"]["id"])):
        fake = real[:-4] + ("zzzz" if not real.endswith("zzzz") else "yyyy")
        a = error_of(c.get(f"/{kind}/{real}"), 404, "not_found", what=f"hidden {kind}")
        b = error_of(c.get(f"/{kind}/{fake}"), 404, "not_found", what=f"missing {kind}")
        assert a["message"].replace(real, "ID") == b["message"].replace(fake, "ID"), \
            f"hidden and missing {kind} answer differently: {a} vs {b}"


def test_role_change_and_member_removal_take_effect_at_once(server):
    admin = server.client()
    p = server.project()
    j = server.job(p["id"], ["/bin/true"])
    uid, tok = server.make_user("viewer")
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
    c = server.client(tok)
    error_of(c.post(f"/jobs/{j['id']}/runs", {}), 403, "forbidden", what="viewer trigger")
    assert admin.patch(f"/users/{uid}", {"role": "operator"}).status_code == 200
    r = c.post(f"/jobs/{j['id']}/runs", {})
    assert r.status_code == 201, f"promoted to operator, same token: {r.status_code} {r.text}"
    server.wait_run(r.json()["id"])
    assert admin.patch(f"/users/{uid}", {"role": "viewer"}).status_code == 200
    error_of(c.post(f"/jobs/{j['id']}/runs", {}), 403, "forbidden", what="demoted back to viewer")
    r = admin.delete(f"/projects/{p['id']}/members/{uid}")
    assert r.status_code in (200, 204), r.text
    error_of(c.get(f"/projects/{p['id']}"), 404, "not_found", what="a removed member reading the project")
    error_of(c.get(f"/jobs/{j['id']}"), 404, "not_found", what="a removed member reading a job")


# ---- tokens -----------------------------------------------------------------

def new_token(server, user_id, **body):
    r = server.client().post(f"/users/{user_id}/tokens", body)
    return r


def test_missing_malformed_and_unknown_tokens_are_401_json(server):
    url = server.url + "/api/v1"
    import requests
    for headers, what in (({}, "no token"),
                          ({"Authorization": "Bearer " + "x" * 40}, "unknown token"),
                          ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "Basic scheme"),
                          ({"Authorization": "Bearer"}, "empty bearer"),
                          ({"Authorization": "Bearer " + server.admin_token + "x"}, "token with a suffix"),
                          ({"Authorization": "Bearer " + server.admin_token[:-1]}, "truncated token")):
        for path in ("/me", "/projects", "/runs"):
            r = requests.get(url + path, headers=headers, timeout=10)
            error_of(r, 401, "unauthorized", what=f"{what} on {path}")


def test_revoked_token_is_401(server):
    uid, _ = server.make_user("viewer")
    r = new_token(server, uid)
    assert r.status_code == 201, r.text
    t = r.json()
    assert set(t) >= {"id", "token"} and len(t["token"]) >= 32, t
    assert me(server, t["token"])["id"] == uid
    r = server.client().delete(f"/tokens/{t['id']}")
    assert r.status_code in (200, 204), f"revoke: {r.status_code} {r.text}"
    error_of(server.client(t["token"]).get("/me"), 401, "unauthorized", what="revoked token")


def rfc3339(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_expired_token_is_401(server):
    import time
    uid, _ = server.make_user("viewer")
    r = new_token(server, uid, expires_at=rfc3339(time.time() - 3600))
    if r.status_code == 201:
        error_of(server.client(r.json()["token"]).get("/me"), 401, "unauthorized", what="token expired at birth")
    else:
        error_of(r, 400, field="expires_at", what="token expiring in the past")
    r = new_token(server, uid, expires_at=rfc3339(time.time() + 3))
    assert r.status_code == 201, r.text
    tok = r.json()["token"]
    assert server.client(tok).get("/me").status_code == 200, "a token before its expiry must work"
    wait_for(lambda: server.client(tok).get("/me").status_code == 401, 15, "the token to expire")
    error_of(server.client(tok).get("/me"), 401, "unauthorized", what="expired token")


def test_disabled_user_is_401_and_back_when_enabled(server):
    uid, tok = server.make_user("operator")
    assert me(server, tok)["id"] == uid
    r = server.client().patch(f"/users/{uid}", {"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    error_of(server.client(tok).get("/me"), 401, "unauthorized", what="disabled user")
    r = server.client().patch(f"/users/{uid}", {"disabled": False})
    assert r.status_code == 200, r.text
    assert me(server, tok)["id"] == uid


def test_user_deletes_own_token_not_anothers(server):
    uid, _ = server.make_user("viewer")
    t1 = new_token(server, uid).json()
    t2 = new_token(server, uid).json()
    other_uid, _ = server.make_user("projets")
    t3 = new_token(server, other_uid).json()
    c = server.client(t2["token"])
    r = c.delete(f"/tokens/{t3['id']}")
    assert r.status_code in (403, 404), f"deleting another user's token: {r.status_code} {r.text}"
    error_of(r, r.status_code, what="deleting another user's token")
    assert me(server, t3["token"])["id"] == other_uid, "the other user's token was revoked"
    r = c.delete(f"/tokens/{t1['id']}")
    assert r.status_code in (200, 204), f"deleting one's own token: {r.status_code} {r.text}"
    error_of(server.client(t1["token"]).get("/me"), 401, "unauthorized", what="own deleted token")
    assert me(server, t2["token"])["id"] == uid
    # and a non-admin cannot mint tokens, not even for itself
    error_of(c.post(f"/users/{uid}/tokens", {}), 403, "forbidden", what="non-admin token create")
    error_of(c.patch(f"/users/{uid}", {"role": "admin"}), 403, "forbidden", what="self-promotion")
    assert me(server, t2["token"])["role"] == "viewer"


# ---- guardrail-loosening fields are admin-only ---------------------------

def test_projets_member_cannot_loosen_prod_but_admin_can(server):
    admin = server.client()
    p = server.project(environment="prod")
    crit = admin.ok("POST", f"/projects/{p['id']}/jobs",
                    {"name": "crit", "command": ["/bin/true"], "critical": True})
    uid, tok = server.make_user("projets")
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
    c = server.client(tok)

    r = c.patch(f"/projects/{p['id']}", {"environment": "dev"})
    e = error_of(r, 403, what="projets moving a prod project to dev")
    assert e["code"] in ("forbidden", "guardrail"), e
    r = c.patch(f"/projects/{p['id']}", {"vault_prefix": "anything/"})
    error_of(r, 403, what="projets setting vault_prefix")
    r = c.patch(f"/jobs/{crit['id']}", {"critical": False})
    error_of(r, 403, what="projets setting critical false")
    assert admin.ok("GET", f"/projects/{p['id']}")["environment"] == "prod"
    assert admin.ok("GET", f"/jobs/{crit['id']}")["critical"] is True
    # a non-loosening change by the same member is fine
    r = c.patch(f"/projects/{p['id']}", {"execution_backend_config": {"timeout_seconds": 30}})
    assert r.status_code == 200, f"projets non-loosening change: {r.status_code} {r.text}"

    r = admin.patch(f"/projects/{p['id']}", {"environment": "dev"})
    assert r.status_code == 200 and r.json()["environment"] == "dev", r.text
    events = admin.ok("GET", f"/audit?target={p['id']}&limit=100")["items"]
    assert any(ev["actor"] == me(server)["id"] and "dev" in str(ev["details"]) for ev in events), \
        f"the admin's loosening change is not audited: {events}"


# ---- the whole matrix, generated from the route table ----------------------

# What each declared policy lets a caller do: "ok", or the status refused with.
# A policy this table does not know fails the test (default deny).
POLICY_RANK = {"project_read": 1, "project_operate": 2, "project_manage": 3}


def policy_verdict(policy, role, member, owner=False):
    if policy == "public":
        return "ok"
    if role is None:
        return 401
    if policy in ("user", "user_scoped"):
        return "ok"
    if policy == "admin":
        return "ok" if role == "admin" else 403
    if policy == "admin_or_owner":
        return "ok" if role == "admin" or owner else 404
    if policy in POLICY_RANK:
        if role == "admin":
            return "ok"
        if not member:
            return 404
        return "ok" if RANK[role] >= POLICY_RANK[policy] else 403
    raise AssertionError(f"policy {policy!r} has no expectation here: add one (default deny)")


def test_every_route_for_every_caller_follows_its_declared_policy(server, world):
    """Every operation of the served OpenAPI document (generated from the
    route table, with each route's policy) against every caller: no token,
    admin, and each role as a member and as an outsider of the project the
    objects belong to. A refused caller gets the policy's 401, 403 or 404
    (BOLA: an outsider learns nothing, not even that the object exists). An
    allowed one gets past authorization: 200 for a read, and for a write a 400
    for the malformed body it was sent (authorization is checked before the
    body is parsed, so nothing is changed by this test). Deletions are sent to
    refused callers only."""
    import requests as rq
    admin = server.client()
    doc = admin.ok("GET", "/openapi.json")
    p, job, run = world["project"], world["job"], world["run"]
    owner_uid, owner_tok = world["users"][("viewer", True)]
    extra_tok = admin.ok("POST", f"/users/{owner_uid}/tokens", {})
    ids = {"projects": p["id"], "jobs": job["id"], "runs": run["id"], "users": owner_uid,
           "tokens": extra_tok["id"], "exceptions": "x_authzmatrix0000000"}

    def concrete(path):
        segs = path.split("/")
        for i, seg in enumerate(segs):
            if seg == "{id}":
                assert segs[i - 1] in ids, f"no object to put in {path}"
                segs[i] = ids[segs[i - 1]]
            elif seg == "{name}":
                segs[i] = world["secret"]
            elif seg == "{user_id}":
                segs[i] = owner_uid
        out = "/".join(segs)
        assert "{" not in out, f"no object to put in {path}"
        return out

    callers = [(None, None, None)] + [(role, member, world["users"][(role, member)][1]) for role, member in WHO]
    checked = refused = 0
    for path, ops in doc["paths"].items():
        url = server.url + concrete(path)
        for method, op in ops.items():
            policy = op.get("x-uhub-policy")
            assert policy, f"{method.upper()} {path} declares no policy"
            if policy == "public":
                continue
            for role, member, tok in callers:
                owner = role == "viewer" and member is True and path == "/api/v1/tokens/{id}"
                want = policy_verdict(policy, role, member, owner)
                if want == "ok" and method == "delete":
                    continue
                what = f"{method.upper()} {path} as {role or 'no token'}{'' if member is None else (' member' if member else ' outsider')}"
                headers = {"Authorization": f"Bearer {tok}"} if tok else {}
                body = None
                if method in ("post", "put", "patch"):
                    headers["Content-Type"] = "application/json"
                    body = b"{"
                r = rq.request(method.upper(), url, data=body, headers=headers, timeout=30)
                checked += 1
                if want == "ok":
                    expect_status = 400 if body is not None else 200
                    assert r.status_code == expect_status, f"{what}: allowed, so {expect_status} expected, got {r.status_code} {r.text[:300]}"
                else:
                    refused += 1
                    code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}[want]
                    error_of(r, want, code, what=what)
    assert checked > 250 and refused > 100, (checked, refused)
    # Nothing was changed: the project, its job and run are as they were.
    assert admin.ok("GET", f"/projects/{p['id']}")["name"] == p["name"]
    assert admin.ok("GET", f"/jobs/{job['id']}")["name"] == job["name"]
    assert admin.ok("GET", f"/runs/{run['id']}")["status"] == "succeeded"
