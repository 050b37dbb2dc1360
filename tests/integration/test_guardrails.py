"""Guardrails (SPEC §4) against the real daemon: the Local backend in prod
only under a live admin exception (refused without one, after its expiry,
and at dispatch once it is deleted), who may manage exceptions, the
approval of critical prod runs (who may approve or reject, expiry, an
approval voided by a job edited before dispatch, allow_self_approval), the
CLI commands for all of it, and the audit trail of every decision."""
import datetime
import json
import secrets

import pytest

from conftest import error_of, me, wait_for


def rfc3339(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prod_project(server, **extra):
    body = {"name": "prod-" + secrets.token_hex(4), "environment": "prod", "execution_backend": "local",
            "execution_backend_config": {}}
    body.update(extra)
    return server.client().ok("POST", "/projects", body)


def exception(server, project_id, job_id=None, seconds=3600, reason="legacy host, see ticket OPS-1"):
    body = {"project_id": project_id, "reason": reason, "expires_at": rfc3339(seconds)}
    if job_id:
        body["job_id"] = job_id
    return server.client().ok("POST", "/exceptions", body)


def audit_actions(server, target):
    items = server.client().ok("GET", f"/audit?target={target}&limit=100")["items"]
    return [e["action"] for e in items]


def status_of(server, run_id):
    return server.client().ok("GET", f"/runs/{run_id}")["status"]


def wait_status(server, run_id, status, timeout=20):
    return wait_for(lambda: status_of(server, run_id) == status, timeout, f"run {run_id} {status}")


# ---- Local in prod and exceptions ------------------------------------------------------------


def test_local_in_prod_is_refused_without_an_exception(server):
    p = prod_project(server)
    job = server.job(p["id"], ["/bin/echo", "hi"])
    r = server.client().post(f"/jobs/{job['id']}/runs", {})
    error_of(r, 403, "guardrail", what="local in prod without an exception")
    assert "run.refused" in audit_actions(server, job["id"])
    assert server.client().ok("GET", f"/runs?job={job['id']}")["items"] == []


def test_a_live_project_exception_lets_local_run_in_prod(server):
    p = prod_project(server)
    job = server.job(p["id"], ["/bin/echo", "allowed"])
    x = exception(server, p["id"])
    assert x["project_id"] == p["id"] and x["job_id"] is None and x["live"] is True
    run = server.trigger(job["id"])
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert "allowed" in server.logs(run["id"])
    assert "guardrail.exception_used" in audit_actions(server, job["id"])
    assert "exception.create" in audit_actions(server, x["id"])


def test_a_job_exception_covers_that_job_only(server):
    p = prod_project(server)
    covered = server.job(p["id"], ["/bin/echo", "covered"])
    other = server.job(p["id"], ["/bin/echo", "other"])
    x = exception(server, p["id"], covered["id"])
    assert x["job_id"] == covered["id"]
    assert server.wait_run(server.trigger(covered["id"])["id"])["status"] == "succeeded"
    error_of(server.client().post(f"/jobs/{other['id']}/runs", {}), 403, "guardrail", what="uncovered job")


def test_an_expired_exception_no_longer_counts(server):
    p = prod_project(server)
    job = server.job(p["id"], ["/bin/echo", "short"])
    x = exception(server, p["id"], seconds=2)
    assert server.wait_run(server.trigger(job["id"])["id"])["status"] == "succeeded"

    def expired():
        items = server.client().ok("GET", "/exceptions?limit=100")["items"]
        return [i for i in items if i["id"] == x["id"] and i["live"] is False]

    wait_for(expired, 10, "the exception to expire")
    error_of(server.client().post(f"/jobs/{job['id']}/runs", {}), 403, "guardrail", what="after expiry")


def test_an_exception_deleted_before_dispatch_rejects_the_run(server):
    p = prod_project(server)
    job = server.job(p["id"], ["/bin/sleep", "30"], max_concurrent=1)
    x = exception(server, p["id"])
    admin = server.client()
    first = server.trigger(job["id"])
    wait_status(server, first["id"], "running")
    second = server.trigger(job["id"])
    assert second["status"] == "queued"
    assert status_of(server, second["id"]) == "queued"  # held by max_concurrent
    admin.ok("DELETE", f"/exceptions/{x['id']}", status=204)
    admin.ok("POST", f"/runs/{first['id']}/cancel", {}, status=202)
    assert server.wait_run(first["id"])["status"] == "canceled"
    done = server.wait_run(second["id"])
    assert done["status"] == "rejected" and done["reason"] == "exception_revoked", done
    assert done["started_at"] is None and done["exit_code"] is None, done
    assert "exception.delete" in audit_actions(server, x["id"])
    assert "run.finish" in audit_actions(server, second["id"])


def test_only_admin_manages_exceptions(server):
    p = prod_project(server)
    job = server.job(p["id"], ["/bin/echo", "x"])
    x = exception(server, p["id"], reason="only admins")
    admin = server.client()
    for role in ("projets", "operator", "viewer"):
        uid, tok = server.make_user(role)
        admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
        c = server.client(tok)
        error_of(c.post("/exceptions", {"project_id": p["id"], "reason": "mine", "expires_at": rfc3339(60)}),
                 403, "forbidden", what=f"{role} creates")
        error_of(c.get("/exceptions"), 403, "forbidden", what=f"{role} lists")
        error_of(c.delete(f"/exceptions/{x['id']}"), 403, "forbidden", what=f"{role} deletes")

    listed = admin.ok("GET", "/exceptions?limit=100")
    assert set(listed) == {"items", "next"}
    mine = [i for i in listed["items"] if i["id"] == x["id"]]
    assert len(mine) == 1
    assert mine[0]["created_by"] == me(server)["id"] and mine[0]["reason"] == "only admins"
    assert mine[0]["expires_at"] and mine[0]["created_at"]

    bad = [
        ({"project_id": p["id"], "reason": "", "expires_at": rfc3339(60)}, 400, "reason"),
        ({"project_id": p["id"], "expires_at": rfc3339(60)}, 400, "reason"),
        ({"project_id": p["id"], "reason": "r", "expires_at": rfc3339(-60)}, 400, "expires_at"),
        ({"project_id": p["id"], "reason": "r", "expires_at": "tomorrow"}, 400, "expires_at"),
        ({"project_id": "p_missing", "reason": "r", "expires_at": rfc3339(60)}, 404, "project_id"),
        ({"project_id": p["id"], "job_id": "j_missing", "reason": "r", "expires_at": rfc3339(60)}, 404, "job_id"),
        ({"project_id": p["id"], "reason": "r", "expires_at": rfc3339(60), "extra": 1}, 400, None),
    ]
    for body, status, field in bad:
        error_of(admin.post("/exceptions", body), status, field=field, what=json.dumps(body))
    other = server.project()
    error_of(admin.post("/exceptions", {"project_id": other["id"], "job_id": job["id"], "reason": "r",
                                        "expires_at": rfc3339(60)}), 404, "not_found", field="job_id",
             what="a job of another project")

    admin.ok("DELETE", f"/exceptions/{x['id']}", status=204)
    error_of(admin.delete(f"/exceptions/{x['id']}"), 404, "not_found", what="deleted twice")
    assert x["id"] not in [i["id"] for i in admin.ok("GET", "/exceptions?limit=100")["items"]]


# ---- approvals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aw(server):
    """A prod project (local, under an exception) with a critical job written
    by one projets member, and callers of every kind."""
    admin = server.client()
    p = prod_project(server)
    exception(server, p["id"])
    users = {}
    for name, role, member in (("editor", "projets", True), ("approver", "projets", True),
                               ("outsider", "projets", False), ("operator", "operator", True),
                               ("viewer", "viewer", True)):
        uid, tok = server.make_user(role)
        if member:
            admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
        users[name] = (uid, tok)
    editor = server.client(users["editor"][1])
    job = editor.ok("POST", f"/projects/{p['id']}/jobs",
                    {"name": "deploy-" + secrets.token_hex(3), "command": ["/bin/echo", "deployed"],
                     "critical": True})
    assert job["updated_by"] == users["editor"][0]
    return {"project": p, "job": job, "users": users}


def pending_run(server, aw, by="operator"):
    run = server.trigger(aw["job"]["id"], token=aw["users"][by][1] if by != "admin" else None)
    assert run["status"] == "pending_approval", run
    return run


def as_(server, aw, who):
    return server.client(None if who == "admin" else aw["users"][who][1])


def test_critical_prod_run_waits_and_nobody_unfit_may_approve(server, aw):
    run = pending_run(server, aw, by="approver")
    rid = run["id"]
    for who, status in (("approver", 403), ("editor", 403), ("operator", 403), ("viewer", 403),
                        ("outsider", 404)):
        for action in ("approve", "reject"):
            r = as_(server, aw, who).post(f"/runs/{rid}/{action}", {"comment": "me"})
            error_of(r, status, "forbidden" if status == 403 else "not_found", what=f"{who} {action}")
    assert status_of(server, rid) == "pending_approval"
    actions = audit_actions(server, rid)
    assert "run.approve_refused" in actions and "run.reject_refused" in actions
    # an admin who neither asked nor wrote the job may
    got = server.client().ok("POST", f"/runs/{rid}/approve", {"comment": "admin ok"}, status=200)
    assert got["approved_by"] == me(server)["id"]
    assert server.wait_run(rid)["status"] == "succeeded"


def test_projets_member_approves_and_the_run_succeeds(server, aw):
    run = pending_run(server, aw)
    assert run["started_at"] is None
    got = as_(server, aw, "approver").ok("POST", f"/runs/{run['id']}/approve", {"comment": "looks fine"},
                                         status=200)
    assert got["status"] in ("queued", "running", "succeeded"), got
    assert got["approved_by"] == aw["users"]["approver"][0]
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    c = done["comments"][-1]
    assert c["by"] == aw["users"]["approver"][0] and c["action"] == "approve" and c["comment"] == "looks fine"
    assert c["at"]
    assert "deployed" in server.logs(run["id"])
    assert "run.approve" in audit_actions(server, run["id"])
    # decided once: a second decision is a conflict
    error_of(as_(server, aw, "approver").post(f"/runs/{run['id']}/approve", {}), 409, "conflict")
    error_of(as_(server, aw, "approver").post(f"/runs/{run['id']}/reject", {}), 409, "conflict")


def test_the_requester_admin_cannot_approve_its_own_run(server, aw):
    run = pending_run(server, aw, by="admin")
    error_of(server.client().post(f"/runs/{run['id']}/approve", {}), 403, "forbidden", what="admin requester")
    as_(server, aw, "approver").ok("POST", f"/runs/{run['id']}/reject", {"comment": "not now"}, status=200)


def test_reject_stores_the_comment(server, aw):
    run = pending_run(server, aw)
    got = as_(server, aw, "approver").ok("POST", f"/runs/{run['id']}/reject", {"comment": "wrong window"},
                                         status=200)
    assert got["status"] == "rejected" and got["reason"] == "approval_rejected", got
    assert got["rejected_by"] == aw["users"]["approver"][0] and got["approved_by"] is None
    assert got["comments"][-1]["comment"] == "wrong window" and got["comments"][-1]["action"] == "reject"
    assert got["started_at"] is None and got["finished_at"]
    assert "run.reject" in audit_actions(server, run["id"])


def test_a_bad_decision_body_is_400(server, aw):
    run = pending_run(server, aw)
    c = as_(server, aw, "approver")
    error_of(c.post(f"/runs/{run['id']}/approve", {"comment": 5}), 400, "invalid_request", field="comment")
    error_of(c.post(f"/runs/{run['id']}/approve", {"other": "x"}), 400, "invalid_request")
    assert status_of(server, run["id"]) == "pending_approval"
    c.ok("POST", f"/runs/{run['id']}/reject", {}, status=200)


def test_an_approval_covers_the_job_as_it_stands_when_approved(server, aw):
    """The job changed between trigger and approval: what is approved, and
    what runs, is the job as it stands at the approval."""
    p = aw["project"]
    editor = as_(server, aw, "editor")
    job = editor.ok("POST", f"/projects/{p['id']}/jobs", {"name": "chg-" + secrets.token_hex(3),
                                                           "command": ["/bin/echo", "v1"], "critical": True})
    run = server.trigger(job["id"])
    editor.ok("PATCH", f"/jobs/{job['id']}", {"command": ["/bin/echo", "v2"],
                                              "execution_backend_config": {"timeout_seconds": 30}}, status=200)
    got = as_(server, aw, "approver").ok("POST", f"/runs/{run['id']}/approve", {}, status=200)
    assert got["effective_config"]["timeout_seconds"] == 30, got
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    out = server.logs(run["id"])
    assert "v2" in out and "v1" not in out
    ev = [e for e in server.client().ok("GET", f"/audit?target={run['id']}&limit=100")["items"]
          if e["action"] == "run.approve"]
    assert ev and ev[0]["details"]["refreshed"] is True and len(ev[0]["details"]["hash"]) == 64


def test_an_approval_is_refused_when_the_job_now_breaks_a_guardrail(server, aw):
    """The exception that let the run be triggered is gone: the approval is a
    403 guardrail and the run keeps waiting."""
    p = prod_project(server)
    x = exception(server, p["id"])
    job = server.job(p["id"], ["/bin/echo", "x"], critical=True)
    run = server.trigger(job["id"])
    server.client().ok("DELETE", f"/exceptions/{x['id']}", status=204)
    approver_id, approver_tok = server.make_user("projets")
    server.client().ok("POST", f"/projects/{p['id']}/members", {"user_id": approver_id})
    error_of(server.client(approver_tok).post(f"/runs/{run['id']}/approve", {}), 403, "guardrail")
    assert status_of(server, run["id"]) == "pending_approval"
    assert "run.approve_refused" in audit_actions(server, run["id"])
    server.client(approver_tok).ok("POST", f"/runs/{run['id']}/reject", {}, status=200)


def test_a_job_edited_after_approval_voids_it(server):
    admin = server.client()
    p = prod_project(server, max_concurrent=1)
    exception(server, p["id"])
    editor_id, editor_tok = server.make_user("projets")
    approver_id, approver_tok = server.make_user("projets")
    for uid in (editor_id, approver_id):
        admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
    editor = server.client(editor_tok)
    sleeper = server.job(p["id"], ["/bin/sleep", "30"])
    job = editor.ok("POST", f"/projects/{p['id']}/jobs", {"name": "void-" + secrets.token_hex(3),
                                                           "command": ["/bin/echo", "v1"], "critical": True})
    blocker = server.trigger(sleeper["id"])
    wait_status(server, blocker["id"], "running")
    run = server.trigger(job["id"])
    assert run["status"] == "pending_approval"
    server.client(approver_tok).ok("POST", f"/runs/{run['id']}/approve", {"comment": "v1 ok"}, status=200)
    assert status_of(server, run["id"]) == "queued"  # held by the project's max_concurrent
    editor.ok("PATCH", f"/jobs/{job['id']}", {"command": ["/bin/echo", "v2"]}, status=200)
    admin.ok("POST", f"/runs/{blocker['id']}/cancel", {}, status=202)
    assert server.wait_run(blocker["id"])["status"] == "canceled"

    def back():
        r = admin.ok("GET", f"/runs/{run['id']}")
        return r if r["status"] == "pending_approval" else None

    again = wait_for(back, 20, "the run back in pending_approval")
    assert again["approved_by"] is None and again["started_at"] is None, again
    assert "run.approval_void" in audit_actions(server, run["id"])
    assert "v1" not in server.logs(run["id"]) and "v2" not in server.logs(run["id"])
    # approved again, it runs the job as it stands now
    server.client(approver_tok).ok("POST", f"/runs/{run['id']}/approve", {"comment": "v2 ok"}, status=200)
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert "v2" in server.logs(run["id"]) and "v1" not in server.logs(run["id"])
    assert [c["comment"] for c in done["comments"]] == ["v1 ok", "v2 ok"]


def test_a_pending_run_expires(make_server):
    s = make_server(lambda c: c["guardrails"].update({"approval_ttl_seconds": 2}))
    p = prod_project(s)
    exception(s, p["id"])
    job = s.job(p["id"], ["/bin/echo", "late"], critical=True)
    run = s.trigger(job["id"])
    assert run["status"] == "pending_approval"
    done = s.wait_run(run["id"], timeout=20)
    assert done["status"] == "rejected" and done["reason"] == "approval_expired", done
    assert done["started_at"] is None
    assert "run.approval_expired" in audit_actions(s, run["id"])
    error_of(s.client().post(f"/runs/{run['id']}/approve", {}), 409, "conflict")


def test_allow_self_approval_lets_the_requester_approve(make_server):
    s = make_server(lambda c: c["guardrails"].update({"allow_self_approval": True}))
    p = prod_project(s)
    exception(s, p["id"])
    job = s.job(p["id"], ["/bin/echo", "self"], critical=True)
    run = s.trigger(job["id"])
    got = s.client().ok("POST", f"/runs/{run['id']}/approve", {"comment": "mine"}, status=200)
    assert got["approved_by"] == me(s)["id"] == got["requested_by"]
    assert s.wait_run(run["id"])["status"] == "succeeded"


# ---- the CLI against the real server ---------------------------------------------------------


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout.decode().strip()


def test_cli_exceptions_and_decisions(server):
    admin = server.client()
    name = "cli-guard-" + secrets.token_hex(3)
    p = prod_project(server, name=name)
    eid = ok(server.cli("exception", "create", name, "--reason", "cli exception", "--expires", "1h"))
    listed = ok(server.cli("exception", "list"))
    assert eid in listed and "cli exception" in listed
    as_json = json.loads(ok(server.cli("exception", "list", "--json")))
    assert any(i["id"] == eid for i in as_json["items"])

    appr_id, appr_tok = server.make_user("projets")
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": appr_id})
    job = server.job(p["id"], ["/bin/echo", "cli"], name="deploy", critical=True)
    first = server.trigger(job["id"])
    second = server.trigger(job["id"])
    pending = ok(server.cli("runs", "--pending", "--project", name))
    assert first["id"] in pending and second["id"] in pending
    out = ok(server.cli("approve", first["id"], "-m", "x", token=appr_tok))
    assert out.split()[0] == first["id"]
    assert server.wait_run(first["id"])["status"] == "succeeded"
    assert server.wait_run(first["id"])["comments"][-1]["comment"] == "x"
    ok(server.cli("reject", second["id"], "-m", "no", token=appr_tok))
    done = server.wait_run(second["id"])
    assert done["status"] == "rejected" and done["reason"] == "approval_rejected"
    assert done["comments"][-1]["comment"] == "no"
    pending = json.loads(ok(server.cli("runs", "--pending", "--project", name, "--json")))
    assert pending["items"] == []
    # the requester (admin here) may not approve: not permitted, 77
    third = server.trigger(job["id"])
    assert server.cli("approve", third["id"], "-m", "self").returncode == 77
    ok(server.cli("reject", third["id"], token=appr_tok))

    ok(server.cli("exception", "delete", eid))
    assert eid not in ok(server.cli("exception", "list"))
    error_of(admin.post(f"/jobs/{job['id']}/runs", {}), 403, "guardrail", what="after the CLI deleted it")


# ---- the audit trail -------------------------------------------------------------------------


def test_every_decision_is_audited_and_the_chain_verifies(server):
    """Runs last in this module: the modules' decisions are all in the chain."""
    items, before = [], None
    admin = server.client()
    while True:
        page = admin.ok("GET", "/audit?limit=100" + (f"&before={before}" if before else ""))
        items += page["items"]
        before = page["next"]
        if not before:
            break
    actions = {e["action"] for e in items}
    for want in ("run.refused", "exception.create", "exception.delete", "guardrail.exception_used", "run.approve",
                 "run.reject", "run.approve_refused", "run.reject_refused", "run.approval_void"):
        assert want in actions, f"no {want} event in the audit"
    v = admin.ok("GET", "/audit/verify")
    assert v["ok"] is True, v


def test_a_retry_keeps_its_approval_only_while_the_job_is_unchanged(server):
    """A retry of an approved critical run needs no second approval only if
    the approved hash still matches: a job edited before the retry starts
    sends the retry back to pending_approval."""
    import os
    admin = server.client()
    p = prod_project(server, max_concurrent=1)
    exception(server, p["id"])
    approver_id, approver_tok = server.make_user("projets")
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": approver_id})
    wd = os.path.join(server.dir, "workdirs", "gone-" + secrets.token_hex(3))
    os.makedirs(wd)
    os.chmod(wd, 0o755)
    sleeper = server.job(p["id"], ["/bin/sleep", "1000"])
    job = server.job(p["id"], ["/bin/echo", "v1"], critical=True, retries=1,
                     execution_backend_config={"working_dir": wd})
    b1 = server.trigger(sleeper["id"])
    wait_status(server, b1["id"], "running")
    run = server.trigger(job["id"])
    server.client(approver_tok).ok("POST", f"/runs/{run['id']}/approve", {"comment": "ok"}, status=200)
    os.chmod(wd, 0o700)  # the run's uid cannot enter it: the first attempt fails at start, and is retried
    admin.ok("POST", f"/runs/{b1['id']}/cancel", {}, status=202)
    first = server.wait_run(run["id"])
    assert first["status"] == "error", f"{first} {server.logs(run['id'])!r}"
    b2 = server.trigger(sleeper["id"])  # holds the slot before the retry's 1 s backoff ends

    def retry():
        items = admin.ok("GET", f"/runs?job={job['id']}")["items"]
        return next((r for r in items if r["retry_of"] == run["id"]), None)

    r2 = wait_for(retry, 10, "the retry of the failed approved run")
    wait_status(server, b2["id"], "running")
    assert status_of(server, r2["id"]) == "queued", "the retry must wait behind max_concurrent"
    admin.ok("PATCH", f"/jobs/{job['id']}", {"command": ["/bin/echo", "v2"]}, status=200)
    admin.ok("POST", f"/runs/{b2['id']}/cancel", {}, status=202)
    wait_status(server, r2["id"], "pending_approval")
    assert "run.approval_void" in audit_actions(server, r2["id"])
    assert "v2" not in server.logs(r2["id"]), "nothing of the edited job ran without an approval"
    server.client(approver_tok).ok("POST", f"/runs/{r2['id']}/reject", {"comment": "not now"}, status=200)
