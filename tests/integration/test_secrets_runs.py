"""Secrets given to runs (issue "secrets", SPEC §5, §8, §9): a project's or a
granted shared secret reaches the job as an env var, and nowhere else — not
the store's files, the work dirs, the daemon's log or environment, any API
answer, the audit trail — and every form of it the job prints is masked in
the log. A reference that cannot be resolved ends the run error /
secret_unavailable before anything executes."""
import base64
import glob
import hashlib
import json
import os
import secrets
import sqlite3
import urllib.parse

import pytest

from conftest import HostDir, error_of


def canary():
    # letters only in the middle so every encoded form differs from the value
    return "CANARY-" + secrets.token_hex(12) + "-\"q/\\x+y=z"


PRINT_FORMS = r"""
import base64, hashlib, json, os, sys, urllib.parse
v = os.environ["TOKEN"].encode()
print("sha", hashlib.sha256(v).hexdigest())
out = sys.stdout.buffer
out.write(b"plain " + v + b"\n")
for k in range(3):
    out.write(b"b64 " + base64.b64encode(b"x" * k + v + b"yz") + b"\n")
out.write(b"url " + urllib.parse.quote(v, safe="").encode() + b"\n")
out.write(b"json " + json.dumps(v.decode()).encode() + b"\n")
half = len(v) // 2
out.write(b"split " + v[:half]); out.flush()
os.write(1, v[half:] + b"\n")
sys.stderr.buffer.write(b"err " + v + b"\n")
"""


def forms(value):
    v = value.encode()
    out = [v, urllib.parse.quote(v, safe="").encode(), json.dumps(value)[1:-1].encode()]
    for k in range(3):
        enc = base64.b64encode(b"x" * k + v + b"yz")
        lo = (8 * k + 5) // 6
        hi = (8 * (k + len(v))) // 6
        out.append(enc[lo:hi])
    return out


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


def put_secret(server, project_id, name, value, token=None):
    return server.client(token).put(f"/projects/{project_id}/secrets/{name}", {"value": value})


def everything_the_daemon_wrote(server):
    """Bytes of every file under the daemon's directory (store, WAL, keys'
    neighbours, work dirs, its log)."""
    blobs = []
    for path in glob.glob(os.path.join(server.dir, "**"), recursive=True):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as f:
                blobs.append((path, f.read()))
    return blobs


def test_a_secret_reaches_the_job_env_and_every_printed_form_is_masked(server, proj):
    value = canary()
    r = put_secret(server, proj["id"], "deploy_token", value)
    assert r.status_code in (200, 201), r.text
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", PRINT_FORMS], secrets={"TOKEN": "deploy_token"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    log = server.logs(done["id"])
    # the job had the exact value
    assert f"sha {hashlib.sha256(value.encode()).hexdigest()}" in log, log
    for form in forms(value):
        assert form.decode() not in log, f"form {form!r} leaked into the log:\n{log}"
    assert log.count("[MASKED]") >= 8, log
    for line in ("plain [MASKED]", "split [MASKED]", "err [MASKED]", "url [MASKED]"):
        assert line in log, f"{line!r} not in\n{log}"
    # ndjson and SSE are built from the same stored log
    nd = server.client().get(f"/runs/{done['id']}/logs?format=ndjson").text
    assert value not in nd and "[MASKED]" in nd


def test_the_canary_is_nowhere_but_in_the_job(server, proj):
    value = canary()
    assert put_secret(server, proj["id"], "canary", value).status_code in (200, 201)
    job = server.job(proj["id"], ["/bin/sh", "-c", 'echo "$CANARY"; echo "$CANARY" >&2; echo "$CANARY" > "$HOME/f"'],
                     secrets={"CANARY": "canary"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    c = server.client()
    answers = [c.get(p).content for p in (
        f"/runs/{done['id']}", f"/runs/{done['id']}/logs", f"/runs/{done['id']}/logs?format=ndjson",
        f"/jobs/{job['id']}", f"/projects/{proj['id']}", f"/projects/{proj['id']}/secrets",
        "/audit?limit=500", "/runs?limit=100", "/metrics")]
    needle = value.encode()
    for a in answers:
        assert needle not in a
    for path, data in everything_the_daemon_wrote(server):
        assert needle not in data, f"canary found in {path}"
    with open(f"/proc/{server.pid}/environ", "rb") as f:
        assert needle not in f.read()
    with open(f"/proc/{server.pid}/cmdline", "rb") as f:
        assert needle not in f.read()


def test_a_missing_secret_fails_before_anything_executes(server, proj):
    hd = HostDir()
    try:
        marker = os.path.join(hd.sub("m", 0o777), "ran")
        job = server.job(proj["id"], ["/bin/sh", "-c", f"touch {marker}"], secrets={"X": "no_such_secret"})
        done = server.wait_run(server.trigger(job["id"])["id"])
        assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
        assert "no_such_secret" in done["message"] and "X" in done["message"], done
        assert not os.path.exists(marker)
        assert done["started_at"] is None, done
    finally:
        hd.cleanup()


def test_a_project_cannot_reach_another_projects_secret(server):
    a, b = server.project(), server.project()
    value = canary()
    assert put_secret(server, b["id"], "only_b", value).status_code in (200, 201)
    job = server.job(a["id"], ["/bin/sh", "-c", 'echo "$S"'], secrets={"S": "only_b"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
    assert value not in server.logs(done["id"])


def test_shared_secret_reaches_granted_projects_only_and_a_revoked_grant_stops_it(server):
    a, b = server.project(), server.project()
    value = canary()
    c = server.client()
    r = c.put("/secrets/ci_shared", {"value": value, "projects": [a["id"]]})
    assert r.status_code in (200, 201), r.text
    cmd = ["/usr/bin/python3", "-c", "import os,hashlib;print(hashlib.sha256(os.environ['S'].encode()).hexdigest())"]
    ja = server.job(a["id"], cmd, secrets={"S": "shared:ci_shared"})
    jb = server.job(b["id"], cmd, secrets={"S": "shared:ci_shared"})
    da = server.wait_run(server.trigger(ja["id"])["id"])
    db = server.wait_run(server.trigger(jb["id"])["id"])
    assert da["status"] == "succeeded", da
    assert hashlib.sha256(value.encode()).hexdigest() in server.logs(da["id"])
    assert db["status"] == "error" and db["reason"] == "secret_unavailable", db
    # revoke: grant only b now
    r = c.put("/secrets/ci_shared", {"value": value, "projects": [b["id"]]})
    assert r.status_code in (200, 201), r.text
    da2 = server.wait_run(server.trigger(ja["id"])["id"])
    assert da2["status"] == "error" and da2["reason"] == "secret_unavailable", da2


def test_a_row_moved_to_another_project_does_not_open(server):
    a, b = server.project(), server.project()
    value = canary()
    assert put_secret(server, a["id"], "moved", value).status_code in (200, 201)
    db = sqlite3.connect(server.db, timeout=10)
    try:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        assert "secrets" in tables, tables
        cols = [r[1] for r in db.execute("pragma table_info(secrets)") if not r[5]]  # not the rowid key
        assert "scope" in cols, cols
        sel = ", ".join("?" if c == "scope" else c for c in cols)
        db.execute(f"insert into secrets ({', '.join(cols)}) select {sel} from secrets "
                   "where scope=? and name='moved'", (b["id"], a["id"]))
        db.commit()
    finally:
        db.close()
    job = server.job(b["id"], ["/bin/sh", "-c", 'echo "$S"'], secrets={"S": "moved"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
    assert value not in json.dumps(done)


def test_key_rotation_keeps_every_value_and_changes_the_key(server, proj):
    value = canary()
    assert put_secret(server, proj["id"], "rotated", value).status_code in (200, 201)
    key_file = server.config["secrets"]["key_file"]
    with open(key_file, "rb") as f:
        before = f.read()
    r = server.cli("secret", "rotate-key")
    assert r.returncode == 0, r.stderr
    with open(key_file, "rb") as f:
        after = f.read()
    assert after != before and len(after) == 32
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    assert not os.path.exists(key_file + ".next")
    cmd = ["/usr/bin/python3", "-c", "import os,hashlib;print(hashlib.sha256(os.environ['S'].encode()).hexdigest())"]
    job = server.job(proj["id"], cmd, secrets={"S": "rotated"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert hashlib.sha256(value.encode()).hexdigest() in server.logs(done["id"])


def test_a_rotation_interrupted_by_a_crash_is_finished_at_start_up(make_server):
    s = make_server()
    p = s.project()
    value = canary()
    assert put_secret(s, p["id"], "survivor", value).status_code in (200, 201)
    key_file = s.config["secrets"]["key_file"]
    s.stop()
    # the state a crash leaves after writing the new key, before the re-seal
    with open(key_file + ".next", "wb") as f:
        f.write(os.urandom(32))
    os.chmod(key_file + ".next", 0o600)
    s.start()
    assert not os.path.exists(key_file + ".next")
    cmd = ["/usr/bin/python3", "-c", "import os,hashlib;print(hashlib.sha256(os.environ['S'].encode()).hexdigest())"]
    job = s.job(p["id"], cmd, secrets={"S": "survivor"})
    done = s.wait_run(s.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert hashlib.sha256(value.encode()).hexdigest() in s.logs(done["id"])


def test_a_multiline_key_is_masked_line_by_line(server, proj):
    lines = ["-----BEGIN TEST KEY-----"] + [secrets.token_urlsafe(48) for _ in range(3)] + ["-----END TEST KEY-----"]
    value = "\n".join(lines) + "\n"
    assert put_secret(server, proj["id"], "pem", value).status_code in (200, 201)
    job = server.job(proj["id"], ["/bin/sh", "-c", 'printf "%s" "$K" | while read -r l; do echo "line: $l"; done'],
                     secrets={"K": "pem"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    log = server.logs(done["id"])
    for l in lines[1:4]:
        assert l not in log, log
    assert log.count("line: [MASKED]") >= 3, log
