"""Runs with `vault:PATH#KEY` secrets, against a fake Vault that speaks the
KV v2, token and AppRole HTTP API as documented (Vault cannot be installed on
these machines; tests/integration/fake_vault.py). The daemon's Vault client
is the real one (libcurl): a value reaches the job and is masked; a deleted
or destroyed version, a refused token, a path outside the project's
vault_prefix and a Vault that is down each end the run error /
secret_unavailable before anything executes, with a message naming the
reference and never the token."""
import hashlib
import os
import secrets
import shutil
import tempfile

import pytest

from conftest import HostDir, Server, base_config
from fake_vault import FakeVault

SHA_CMD = ["/usr/bin/python3", "-c",
           "import os,hashlib;print('sha', hashlib.sha256(os.environ['S'].encode()).hexdigest());"
           "print('raw', os.environ['S'])"]


@pytest.fixture(scope="module")
def vault():
    v = FakeVault().start()
    yield v
    v.stop()


@pytest.fixture(scope="module")
def vserver(uhub_bin, vault):
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    token = vault.add_token(policies=["team/app/"])
    tf = os.path.join(tmp, "vault-token")
    with open(tf, "w") as f:
        f.write(token + "\n")
    os.chmod(tf, 0o600)
    cfg = base_config(tmp)
    cfg["secrets"]["vault"] = {"addr": vault.url, "token_file": tf, "kv_mount": "secret"}
    s = Server(tmp, cfg)
    s.vault_token = token
    yield s
    s.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def proj(vserver):
    p = vserver.project()
    vserver.client().ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app"})
    return p


def run_with(server, proj, ref, command=SHA_CMD):
    job = server.job(proj["id"], command, secrets={"S": ref})
    return server.wait_run(server.trigger(job["id"])["id"])


def test_a_vault_value_reaches_the_job_masked(vserver, vault, proj):
    value = "vault-" + secrets.token_hex(16)
    vault.put_secret("team/app/db", {"password": value, "user": "svc-app"})
    done = run_with(vserver, proj, "vault:team/app/db#password")
    assert done["status"] == "succeeded", done
    log = vserver.logs(done["id"])
    assert "sha " + hashlib.sha256(value.encode()).hexdigest() in log, log
    assert value not in log and "raw [MASKED]" in log, log
    assert vault.count("/v1/secret/data/team/app/db") >= 1
    # the token is nowhere the daemon writes
    for path in (vserver.log_path, vserver.db):
        with open(path, "rb") as f:
            assert vserver.vault_token.encode() not in f.read()


def test_a_new_version_is_read_at_each_run(vserver, vault, proj):
    v1, v2 = "first-" + secrets.token_hex(8), "second-" + secrets.token_hex(8)
    vault.put_secret("team/app/rot", {"k": v1})
    a = run_with(vserver, proj, "vault:team/app/rot#k")
    vault.put_secret("team/app/rot", {"k": v2})
    b = run_with(vserver, proj, "vault:team/app/rot#k")
    assert hashlib.sha256(v1.encode()).hexdigest() in vserver.logs(a["id"])
    assert hashlib.sha256(v2.encode()).hexdigest() in vserver.logs(b["id"])


@pytest.mark.parametrize("what", ["deleted", "destroyed", "missing_key", "missing_path", "forbidden"])
def test_unreadable_vault_secrets_fail_before_anything_executes(vserver, vault, proj, what):
    hd = HostDir()
    try:
        marker = os.path.join(hd.sub("m", 0o777), "ran")
        path, key = "team/app/" + what, "k"
        vault.put_secret(path, {"k": "value-" + secrets.token_hex(8)})
        if what == "deleted":
            vault.delete_latest(path)
        elif what == "destroyed":
            vault.destroy_latest(path)
        elif what == "missing_key":
            key = "nope"
        elif what == "missing_path":
            path = "team/app/never-written"
        ref = f"vault:{path}#{key}"
        if what != "forbidden":
            done = run_with(vserver, proj, ref, ["/bin/sh", "-c", f"touch {marker}"])
        else:
            # the token's policy allows team/app/ only: use another project
            # whose prefix is outside it
            p2 = vserver.project()
            vserver.client().ok("PATCH", f"/projects/{p2['id']}", {"vault_prefix": "team/other"})
            vault.put_secret("team/other/x", {"k": "value-" + secrets.token_hex(8)})
            ref = "vault:team/other/x#k"
            done = run_with(vserver, p2, ref, ["/bin/sh", "-c", f"touch {marker}"])
        assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
        assert ref in done["message"], done
        assert vserver.vault_token not in done["message"]
        assert not os.path.exists(marker)
    finally:
        hd.cleanup()


def test_vault_down_or_failing_gives_a_clear_error_and_the_daemon_carries_on(vserver, vault, proj):
    vault.put_secret("team/app/flaky", {"k": "flaky-" + secrets.token_hex(8)})
    vault.fail_next(10, status=503)
    done = run_with(vserver, proj, "vault:team/app/flaky#k")
    assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
    assert "vault:team/app/flaky#k" in done["message"]
    vault.failures.clear()
    ok = run_with(vserver, proj, "vault:team/app/flaky#k")
    assert ok["status"] == "succeeded", ok


def test_a_path_outside_the_vault_prefix_is_refused_at_save(vserver, proj):
    r = vserver.client().post(f"/projects/{proj['id']}/jobs", {
        "name": "j-" + secrets.token_hex(4), "command": ["/bin/true"],
        "secrets": {"S": "vault:team/other/db#password"}})
    assert r.status_code == 400 and r.json()["error"]["field"] == "secrets.S", r.text


def test_a_prefix_narrowed_after_save_refuses_the_trigger(vserver, vault):
    p = vserver.project()
    c = vserver.client()
    c.ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app"})
    vault.put_secret("team/app/narrow", {"k": "narrow-" + secrets.token_hex(8)})
    job = vserver.job(p["id"], SHA_CMD, secrets={"S": "vault:team/app/narrow#k"})
    c.ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app/sub"})
    r = c.post(f"/jobs/{job['id']}/runs", {})
    assert r.status_code == 400 and r.json()["error"]["field"] == "secrets.S", r.text


def test_approle_login(make_server, vault, tmp_path):
    role, sid = "role-" + secrets.token_hex(4), "sid-" + secrets.token_hex(8)
    vault.add_approle(role, sid, policies=["team/app/"])
    (tmp_path / "role").write_text(role)
    (tmp_path / "sid").write_text(sid)
    for f in ("role", "sid"):
        os.chmod(tmp_path / f, 0o600)

    def mutate(cfg):
        cfg["secrets"]["vault"] = {"addr": vault.url, "approle": {
            "role_id_file": str(tmp_path / "role"), "secret_id_file": str(tmp_path / "sid")}}
    s = make_server(mutate)
    p = s.project()
    s.client().ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app"})
    value = "approle-" + secrets.token_hex(12)
    vault.put_secret("team/app/ar", {"k": value})
    before = vault.count("/v1/auth/approle/login")
    done = run_with(s, p, "vault:team/app/ar#k")
    assert done["status"] == "succeeded", done
    assert hashlib.sha256(value.encode()).hexdigest() in s.logs(done["id"])
    assert vault.count("/v1/auth/approle/login") > before
    assert sid not in s.read_log()


def test_plain_http_vault_off_loopback_is_a_start_up_error(uhub_bin, tmp_path):
    import json
    import subprocess
    cfg = base_config(str(tmp_path))
    cfg["secrets"]["vault"] = {"addr": "http://192.0.2.10:8200", "token_file": str(tmp_path / "t")}
    (tmp_path / "t").write_text("x")
    with open(tmp_path / "c.json", "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([uhub_bin, "serve", "--config", str(tmp_path / "c.json")], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"secrets.vault.addr" in r.stderr, r.stderr


def test_a_daemon_killed_while_vault_answers_slowly_runs_the_job_after_restart(make_server, vault, tmp_path):
    """Killed while a run's secrets are being fetched (the run is still
    queued): after the restart the run is dispatched again, fetches its
    secret and succeeds; it is never left queued or running."""
    import time
    token = vault.add_token(policies=["team/app/"])
    (tmp_path / "t").write_text(token)
    os.chmod(tmp_path / "t", 0o600)

    def mutate(cfg):
        cfg["secrets"]["vault"] = {"addr": vault.url, "token_file": str(tmp_path / "t")}
    s = make_server(mutate)
    p = s.project()
    s.client().ok("PATCH", f"/projects/{p['id']}", {"vault_prefix": "team/app"})
    value = "slow-" + secrets.token_hex(12)
    vault.put_secret("team/app/slow", {"k": value})
    job = s.job(p["id"], SHA_CMD, secrets={"S": "vault:team/app/slow#k"})
    path = "/v1/secret/data/team/app/slow"
    before = vault.count(path)
    vault.delay = 3.0
    try:
        run = s.trigger(job["id"])
        deadline = time.time() + 10
        while vault.count(path) == before:  # the read is in flight
            assert time.time() < deadline, "uhub never asked Vault"
            time.sleep(0.01)
        assert s.client().ok("GET", f"/runs/{run['id']}")["status"] == "queued"
        s.kill9()
    finally:
        vault.delay = 0.0
    s.url = None
    s.start()
    done = s.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert hashlib.sha256(value.encode()).hexdigest() in s.logs(done["id"])
