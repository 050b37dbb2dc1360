"""The built-in secret store's routes (SPEC §1, §5, §9): a project's secrets
(projets members, admins) and shared secrets (admin) are write-only; the
8-byte rule; who may touch what (a member of one project never reaches
another's secrets); no value in any answer, error, audit event, the daemon's
log or the SQLite files; key rotation re-seals everything under a new key
file (0600)."""
import json
import os
import secrets
import sqlite3
import stat

import pytest

from conftest import error_of, me


def canary():
    return "CANARY-" + secrets.token_hex(12)


def names(c, path):
    r = c.get(path + "?limit=100")
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["items"]}


def file_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def assert_nowhere(server, values):
    """None of `values` in the SQLite files, the audit trail, or the log."""
    db = file_bytes(server.db) + file_bytes(server.db + "-wal")
    assert db, "no database bytes to look at"
    log = file_bytes(server.log_path)
    audit = server.client().get("/audit?limit=100").text
    for v in values:
        b = v.encode()
        assert b not in db, "a secret value is in the SQLite files in clear"
        assert b not in log, "a secret value is in the daemon's log"
        assert v not in audit, "a secret value is in the audit trail"


@pytest.fixture(scope="module")
def two(server):
    """Projects A and B, each with a projets member, an operator and a viewer of A."""
    admin = server.client()
    a, b = server.project(), server.project()
    users = {}
    for key, role, pid in (("a_projets", "projets", a["id"]), ("b_projets", "projets", b["id"]),
                           ("a_operator", "operator", a["id"]), ("a_viewer", "viewer", a["id"])):
        uid, tok = server.make_user(role)
        admin.ok("POST", f"/projects/{pid}/members", {"user_id": uid})
        users[key] = (uid, tok)
    return {"a": a, "b": b, "users": users}


def tok(two, who):
    return two["users"][who][1]


def test_project_secret_lifecycle(server, two):
    c = server.client(tok(two, "a_projets"))
    pid = two["a"]["id"]
    v1, v2 = canary(), canary()
    r = c.put(f"/projects/{pid}/secrets/DB_PASSWORD", {"value": v1})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["name"] == "DB_PASSWORD" and s["scope"] == pid, s
    assert s["updated_by"] == two["users"]["a_projets"][0], s
    assert {"created_at", "updated_at"} <= set(s) and "value" not in s and "projects" not in s, s
    assert v1 not in r.text

    r = c.put(f"/projects/{pid}/secrets/DB_PASSWORD", {"value": v2})
    assert r.status_code == 200, f"replacing answers 200: {r.status_code} {r.text}"
    assert r.json()["created_at"] == s["created_at"], r.json()
    assert v2 not in r.text

    listed = names(c, f"/projects/{pid}/secrets")
    assert "DB_PASSWORD" in listed and listed["DB_PASSWORD"]["scope"] == pid, listed
    assert v1 not in str(listed) and v2 not in str(listed)

    # a name with dots and dashes; pages
    for i in range(3):
        assert c.put(f"/projects/{pid}/secrets/page.key-{i}", {"value": canary()}).status_code == 201
    r = c.get(f"/projects/{pid}/secrets?limit=2")
    assert r.status_code == 200 and len(r.json()["items"]) == 2 and r.json()["next"], r.text
    r2 = c.get(f"/projects/{pid}/secrets?limit=2&before={r.json()['next']}")
    assert r2.status_code == 200 and r2.json()["items"], r2.text
    assert not {i["name"] for i in r.json()["items"]} & {i["name"] for i in r2.json()["items"]}

    assert c.delete(f"/projects/{pid}/secrets/DB_PASSWORD").status_code == 204
    assert "DB_PASSWORD" not in names(c, f"/projects/{pid}/secrets")
    e = error_of(c.delete(f"/projects/{pid}/secrets/DB_PASSWORD"), 404, "not_found", what="deleting twice")
    assert "DB_PASSWORD" in e["message"]
    assert_nowhere(server, [v1, v2])

    events = server.client().ok("GET", f"/audit?target={pid}&limit=100")["items"]
    acts = [(ev["action"], ev["details"].get("name")) for ev in events]
    assert ("secret.put", "DB_PASSWORD") in acts and ("secret.delete", "DB_PASSWORD") in acts, acts


def test_value_rules(server, two):
    c = server.client(tok(two, "a_projets"))
    base = f"/projects/{two['a']['id']}/secrets"
    e = error_of(c.put(base + "/SHORT", {"value": "seven77"}), 400, "invalid_request", "value", "7 bytes")
    assert "8" in e["message"] and "mask" in e["message"], e
    assert "seven77" not in e["message"]
    assert c.put(base + "/EIGHT", {"value": "eight888"}).status_code == 201
    # 8 bytes counted as bytes: 4 two-byte characters are enough
    assert c.put(base + "/UTF8", {"value": "éééé"}).status_code == 201
    error_of(c.put(base + "/X", {}), 400, "invalid_request", "value", "no value")
    error_of(c.put(base + "/X", {"value": 12345678}), 400, "invalid_request", "value", "a number")
    error_of(c.put(base + "/X", {"value": None}), 400, "invalid_request", "value", "null")
    error_of(c.put(base + "/X", {"value": "x" * 65537}), 400, "invalid_request", "value", "too long")
    assert c.put(base + "/BIG", {"value": "x" * 65536}).status_code == 201
    v = canary()
    e = error_of(c.put(base + "/X", {"value": v, "extra": 1}), 400, "invalid_request", "extra", "unknown key")
    assert v not in str(e)
    e = error_of(c.put(base + "/X", {"value": v, "projects": []}), 400, "invalid_request", "projects",
                 "projects on a project's secret")
    assert v not in str(e)
    # NUL: refused, and the message quotes nothing of the value
    r = c.req("PUT", base + "/X", data='{"value":"' + v + '\\u0000tail"}',
              headers={"Content-Type": "application/json"})
    e = error_of(r, 400, "invalid_request", what="a NUL in the value")
    assert v not in r.text and "tail" not in r.text, r.text
    # malformed JSON: the parser's quote of the text is dropped
    r = c.req("PUT", base + "/X", data='{"value":"' + v, headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_request", what="an unterminated value")
    assert v not in r.text and v[:12] not in r.text, r.text
    r = c.req("PUT", base + "/X", data='{"value":"' + v + '" "x"}', headers={"Content-Type": "application/json"})
    error_of(r, 400, "invalid_request", what="garbage after the value")
    assert v not in r.text, r.text
    error_of(c.req("PUT", base + "/X", data="", headers={"Content-Type": "application/json"}), 400,
             "invalid_request", what="no body")
    # names: the rules of every uhub name; others do not even route
    for bad in (".hidden", "a%20b", "x" * 64):
        r = c.put(base + "/" + bad, {"value": canary()})
        assert r.status_code == 404, f"name {bad!r}: {r.status_code} {r.text}"
    assert "X" not in names(c, base)
    assert_nowhere(server, [v])


def test_roles_and_projects(server, two):
    a, b = two["a"]["id"], two["b"]["id"]
    admin = server.client()
    va, vb = canary(), canary()
    assert server.client(tok(two, "a_projets")).put(f"/projects/{a}/secrets/ONLY_A", {"value": va}).status_code \
        == 201
    assert server.client(tok(two, "b_projets")).put(f"/projects/{b}/secrets/ONLY_B", {"value": vb}).status_code \
        == 201
    # admin manages any project's secrets
    assert admin.put(f"/projects/{b}/secrets/BY_ADMIN", {"value": canary()}).status_code == 201
    assert "BY_ADMIN" in names(admin, f"/projects/{b}/secrets")

    # viewer and operator members: 403, nothing listed or changed
    for who in ("a_viewer", "a_operator"):
        c = server.client(tok(two, who))
        error_of(c.get(f"/projects/{a}/secrets"), 403, "forbidden", what=f"{who} list")
        error_of(c.put(f"/projects/{a}/secrets/ONLY_A", {"value": canary()}), 403, "forbidden", what=f"{who} put")
        error_of(c.delete(f"/projects/{a}/secrets/ONLY_A"), 403, "forbidden", what=f"{who} delete")

    # a member of A reaches nothing of B's: 404 as for any hidden object
    c = server.client(tok(two, "a_projets"))
    for r, what in ((c.get(f"/projects/{b}/secrets"), "list B"),
                    (c.put(f"/projects/{b}/secrets/ONLY_B", {"value": canary()}), "overwrite B's"),
                    (c.put(f"/projects/{b}/secrets/NEW_IN_B", {"value": canary()}), "create in B"),
                    (c.delete(f"/projects/{b}/secrets/ONLY_B"), "delete B's")):
        error_of(r, 404, "not_found", what=f"A's projets: {what}")
    listed = names(admin, f"/projects/{b}/secrets")
    assert "ONLY_B" in listed and "NEW_IN_B" not in listed, listed
    assert listed["ONLY_B"]["updated_by"] == two["users"]["b_projets"][0], listed["ONLY_B"]
    # the same name in two projects is two secrets
    assert c.put(f"/projects/{a}/secrets/ONLY_B", {"value": canary()}).status_code == 201
    assert names(admin, f"/projects/{b}/secrets")["ONLY_B"]["updated_by"] == two["users"]["b_projets"][0]

    # shared secrets and rotation: admin only
    for who in ("a_projets", "a_operator", "a_viewer"):
        c = server.client(tok(two, who))
        error_of(c.put("/secrets/SHARED_X", {"value": canary(), "projects": [a]}), 403, "forbidden",
                 what=f"{who} shared put")
        error_of(c.get("/secrets"), 403, "forbidden", what=f"{who} shared list")
        error_of(c.delete("/secrets/SHARED_X"), 403, "forbidden", what=f"{who} shared delete")
        error_of(c.post("/secrets/rotate-key", {}), 403, "forbidden", what=f"{who} rotate-key")
    assert "SHARED_X" not in names(admin, "/secrets")
    assert_nowhere(server, [va, vb])


def test_shared_secrets(server, two):
    admin = server.client()
    a, b = two["a"]["id"], two["b"]["id"]
    v1, v2 = canary(), canary()
    r = admin.put("/secrets/GITLAB_TOKEN", {"value": v1, "projects": [a, b]})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["scope"] == "shared" and sorted(s["projects"]) == sorted([a, b]), s
    assert v1 not in r.text
    # replace without projects keeps the grants; with them replaces
    r = admin.put("/secrets/GITLAB_TOKEN", {"value": v2})
    assert r.status_code == 200 and sorted(r.json()["projects"]) == sorted([a, b]), r.text
    r = admin.put("/secrets/GITLAB_TOKEN", {"value": v2, "projects": [b]})
    assert r.status_code == 200 and r.json()["projects"] == [b], r.text
    listed = names(admin, "/secrets")
    assert listed["GITLAB_TOKEN"]["projects"] == [b], listed
    # unknown project: 400 naming projects, nothing changed
    e = error_of(admin.put("/secrets/GITLAB_TOKEN", {"value": canary(), "projects": [a, "p_nosuchproject"]}),
                 400, "invalid_request", "projects", "an unknown project")
    assert "p_nosuchproject" in e["message"], e
    error_of(admin.put("/secrets/GITLAB_TOKEN", {"value": canary(), "projects": "p_x"}), 400, "invalid_request",
             "projects", "projects not an array")
    error_of(admin.put("/secrets/GITLAB_TOKEN", {"value": canary(), "projects": [1]}), 400, "invalid_request",
             "projects", "a number in projects")
    assert names(admin, "/secrets")["GITLAB_TOKEN"]["projects"] == [b]
    error_of(admin.put("/secrets/SHORTY", {"value": "1234567", "projects": [a]}), 400, "invalid_request", "value",
             "shared 7 bytes")
    # a shared secret is not in a project's list, nor the other way round
    assert "GITLAB_TOKEN" not in names(admin, f"/projects/{b}/secrets")
    assert not any(i["scope"] != "shared" for i in names(admin, "/secrets").values())
    # an archived project drops out of the grants
    p = server.project()
    assert admin.put("/secrets/ARCH", {"value": canary(), "projects": [p["id"], a]}).status_code == 201
    assert admin.delete(f"/projects/{p['id']}").status_code == 204
    assert names(admin, "/secrets")["ARCH"]["projects"] == [a]
    error_of(admin.put("/secrets/ARCH", {"value": canary(), "projects": [p["id"]]}), 400, "invalid_request",
             "projects", "granting an archived project")

    assert admin.delete("/secrets/GITLAB_TOKEN").status_code == 204
    error_of(admin.delete("/secrets/GITLAB_TOKEN"), 404, "not_found", what="deleting a shared secret twice")
    assert "GITLAB_TOKEN" not in names(admin, "/secrets")
    # a new one of the same name starts with no grants
    r = admin.put("/secrets/GITLAB_TOKEN", {"value": canary()})
    assert r.status_code == 201 and r.json()["projects"] == [], r.text

    events = admin.ok("GET", "/audit?target=shared&limit=100")["items"]
    puts = [ev for ev in events if ev["action"] == "secret.put" and ev["details"].get("name") == "GITLAB_TOKEN"]
    assert puts and all(ev["actor"] == me(server)["id"] for ev in puts), events
    assert any(ev["details"].get("projects") == [b] for ev in puts), puts
    assert_nowhere(server, [v1, v2])


def test_rotate_key(make_server):
    s = make_server()
    admin = s.client()
    p = s.project()
    values = [canary() for _ in range(5)]
    for i, v in enumerate(values[:4]):
        assert admin.put(f"/projects/{p['id']}/secrets/K{i}", {"value": v}).status_code == 201
    assert admin.put("/secrets/SHARED", {"value": values[4], "projects": [p["id"]]}).status_code == 201
    key = s.config["secrets"]["key_file"]
    assert os.path.exists(key), "no key file after start-up"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, oct(os.stat(key).st_mode)
    before = file_bytes(key)
    db_before = file_bytes(s.db) + file_bytes(s.db + "-wal")

    r = admin.post("/secrets/rotate-key", {})
    assert r.status_code == 200, r.text
    assert r.json() == {"resealed": 5, "unreadable": []}, r.json()
    after = file_bytes(key)
    assert after and after != before, "the key file did not change"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600, oct(os.stat(key).st_mode)
    assert not os.path.exists(key + ".next"), "a finished rotation left KEY_FILE.next"
    ev = admin.ok("GET", "/audit?limit=1")["items"][0]
    assert ev["action"] == "secret.rotate_key" and ev["details"].get("count") == 5, ev
    assert before.hex() not in str(ev) and after.hex() not in str(ev)

    # the lists still work, the values are still nowhere in clear
    assert set(names(admin, f"/projects/{p['id']}/secrets")) == {"K0", "K1", "K2", "K3"}
    assert names(admin, "/secrets")["SHARED"]["projects"] == [p["id"]]
    assert_nowhere(s, values)
    # old key bytes are not in the database either
    db_after = file_bytes(s.db) + file_bytes(s.db + "-wal")
    assert before not in db_after and after not in db_after and before not in db_before

    # a second rotation, then a restart: the new key loads, rows still list,
    # new writes work, and the chain is intact
    assert admin.post("/secrets/rotate-key").json()["resealed"] == 5
    third = file_bytes(key)
    assert third != after
    s.restart()
    admin = s.client()
    assert file_bytes(key) == third
    assert admin.put(f"/projects/{p['id']}/secrets/K0", {"value": canary()}).status_code == 200
    assert admin.post("/secrets/rotate-key", {}).json()["resealed"] == 5
    v = admin.ok("GET", "/audit/verify")
    assert v.get("ok") is True, v
    error_of(admin.post("/secrets/rotate-key", {"x": 1}), 400, "invalid_request", what="a body with keys")

    # the CLI: `uhub secret rotate-key` (admin; others exit 77, not permitted)
    k = file_bytes(key)
    r = s.cli("secret", "rotate-key")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("5 secrets re-sealed"), r.stdout
    r = s.cli("secret", "rotate-key", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["resealed"] == 5, (r.stdout, r.stderr)
    assert file_bytes(key) != k
    _, viewer = s.make_user("projets")
    r = s.cli("secret", "rotate-key", token=viewer)
    assert r.returncode == 77, (r.returncode, r.stderr)


def test_wrong_media_and_method(server, two):
    c = server.client()
    pid = two["a"]["id"]
    r = c.req("PUT", f"/projects/{pid}/secrets/MEDIA", data='{"value":"abcdefgh"}',
              headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    r = c.post(f"/projects/{pid}/secrets/MEDIA", {"value": "abcdefgh"})
    assert r.status_code == 405 and "PUT" in r.headers.get("Allow", ""), r.text
    r = c.get("/secrets/MEDIA")
    assert r.status_code == 405, r.text


def test_rotate_key_leaves_an_unreadable_row_and_carries_on(make_server):
    """A row altered or moved in the database opens under no key: the
    rotation keeps it as it is and says so, instead of failing for good."""
    s = make_server()
    admin = s.client()
    a, b = s.project(), s.project()
    assert admin.put(f"/projects/{a['id']}/secrets/GOOD", {"value": canary()}).status_code == 201
    assert admin.put(f"/projects/{a['id']}/secrets/MOVED", {"value": canary()}).status_code == 201
    db = sqlite3.connect(s.db, timeout=10)
    try:
        db.execute("INSERT INTO secrets (scope, name, blob, created_at, updated_at, updated_by)"
                   " SELECT ?, name, blob, created_at, updated_at, updated_by FROM secrets"
                   " WHERE scope = ? AND name = 'MOVED'", (b["id"], a["id"]))
        db.commit()
        moved_before = db.execute("SELECT blob FROM secrets WHERE scope = ?", (b["id"],)).fetchone()[0]
    finally:
        db.close()
    r = admin.post("/secrets/rotate-key", {})
    assert r.status_code == 200, r.text
    assert r.json() == {"resealed": 2, "unreadable": [{"scope": b["id"], "name": "MOVED"}]}, r.json()
    ev = admin.ok("GET", "/audit?limit=1")["items"][0]
    assert ev["action"] == "secret.rotate_key", ev
    assert ev["details"] == {"count": 2, "unreadable": [{"scope": b["id"], "name": "MOVED"}]}, ev
    db = sqlite3.connect(s.db, timeout=10)
    try:
        assert db.execute("SELECT blob FROM secrets WHERE scope = ?", (b["id"],)).fetchone()[0] == moved_before
        good = db.execute("SELECT blob FROM secrets WHERE scope = ? AND name = 'GOOD'", (a["id"],)).fetchone()[0]
    finally:
        db.close()
    # the good row is under the new key: a second rotation still re-seals it
    r = admin.post("/secrets/rotate-key", {})
    assert r.status_code == 200 and r.json()["resealed"] == 2, r.text
    assert "does not open" in s.read_log() and "MOVED" in s.read_log()
    assert good
