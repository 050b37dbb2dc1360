"""Run lifecycle through the real daemon and the Local backend (SPEC §2, §3, §5):
trigger, success, failure, timeout, cancel, parameters, the run's
environment, Idempotency-Key, run lists and archiving."""
import secrets
import time

import pytest

from conftest import (RUN_KEYS, TERMINAL, Gate, error_of, me, parse_time, wait_for)


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


@pytest.fixture(scope="module")
def gates():
    from conftest import HostDir
    d = HostDir()
    yield d
    d.cleanup()


def run_get(server, run_id):
    return server.client().ok("GET", f"/runs/{run_id}")


def test_trigger_answers_201_with_every_run_key_and_echo_succeeds(server, proj):
    job = server.job(proj["id"], ["/bin/echo", "hello"])
    c = server.client()
    r = c.post(f"/jobs/{job['id']}/runs", {})
    assert r.status_code == 201, f"trigger: {r.status_code} {r.text}"
    run = r.json()
    missing = [k for k in RUN_KEYS if k not in run]
    assert not missing, f"run object lacks SPEC §5 keys {missing}: {run}"
    assert isinstance(run["id"], str) and run["id"], run
    assert run["job_id"] == job["id"] and run["project_id"] == proj["id"], run
    assert run["status"] in ("queued", "running", "succeeded"), f"fresh run in status {run['status']}"
    assert run["backend"] == "local", run
    assert run["requested_by"] == me(server)["id"], f"requested_by is not the caller: {run}"
    for k in ("approved_by", "rejected_by", "canceled_by", "retry_of"):
        assert run[k] is None, f"{k} should be null on a fresh run: {run}"
    parse_time(run["created_at"])
    eff = run["effective_config"]
    assert isinstance(eff, dict), f"effective_config is not an object: {run}"
    assert eff.get("timeout_seconds") == 60, \
        f"effective_config must carry the forced timeout (server default 60): {eff}"

    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", f"echo run ended {done['status']}: {done}"
    assert done["exit_code"] == 0, done
    assert done["reason"] is None, f"a succeeded run has no reason: {done}"
    assert done["log_truncated"] is False, done
    t0, t1, t2 = parse_time(done["created_at"]), parse_time(done["started_at"]), parse_time(done["finished_at"])
    assert t0 <= t1 <= t2, f"created_at <= started_at <= finished_at broken: {done}"
    assert server.logs(run["id"]) == "hello\n"
    # GET answers the same terminal object, and it never changes again
    again = run_get(server, run["id"])
    assert again["status"] == "succeeded" and again["finished_at"] == done["finished_at"]


def test_failing_job_is_failed_with_exit_code_and_stderr_kept(server, proj):
    job = server.job(proj["id"], ["/bin/sh", "-c", "echo oops >&2; exit 3"])
    run = server.trigger(job["id"])
    done = server.wait_run(run["id"])
    assert done["status"] == "failed", done
    assert done["reason"] == "exit_code", done
    assert done["exit_code"] == 3, done
    assert isinstance(done["message"], str) and done["message"], f"failed run without a message: {done}"
    assert server.logs(run["id"]) == "oops\n"


def test_timeout_ends_run_timed_out_within_timeout_plus_grace(server, proj):
    job = server.job(proj["id"], ["/bin/sleep", "30"], execution_backend_config={"timeout_seconds": 1})
    t0 = time.time()
    run = server.trigger(job["id"])
    assert run["effective_config"]["timeout_seconds"] == 1, run["effective_config"]
    done = server.wait_run(run["id"], timeout=20)
    elapsed = time.time() - t0
    assert done["status"] == "timed_out", done
    assert done["reason"] == "timeout", done
    # timeout 1 s + grace_seconds 2 (base config) + 4 s of slack for a loaded machine
    assert elapsed < 1 + 2 + 4, f"timed_out only after {elapsed:.1f}s (timeout 1 s, grace 2 s)"
    assert done["exit_code"] is None or done["exit_code"] > 128, \
        f"a run killed by a signal has exit_code 128+signal: {done}"


def test_job_killed_by_a_signal_is_failed_with_128_plus_signal(server, proj):
    job = server.job(proj["id"], ["/bin/sh", "-c", "echo before; kill -KILL $$; echo never"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "failed", done
    assert done["reason"] == "signal", f"a run ended by SIGKILL has reason signal: {done}"
    assert done["exit_code"] == 128 + 9, f"exit_code must be 128 + signal number: {done}"
    assert server.logs(done["id"]) == "before\n"


def test_cancel_answers_202_stays_running_until_kill_lands_then_canceled(server, proj, gates):
    gate = Gate(gates)
    # The job traps TERM, says so, and only exits (0) once the test opens the gate:
    # "cancel wins over a late exit 0" and "it stays running until the kill lands".
    script = (f"trap 'echo got-term; {gate.wait_cmd}; exit 0' TERM; echo started; "
              "while :; do sleep 0.05; done")
    job = server.job(proj["id"], ["/bin/sh", "-c", script])
    run = server.trigger(job["id"])
    c = server.client()
    wait_for(lambda: "started" in server.logs(run["id"]), 15, "the job to start")
    r = c.post(f"/runs/{run['id']}/cancel", {})
    assert r.status_code == 202, f"cancel: {r.status_code} {r.text}"
    body = r.json()
    assert body["id"] == run["id"] and body["status"] == "running", \
        f"cancel answers the run still running (SPEC §5): {body}"
    wait_for(lambda: "got-term" in server.logs(run["id"]), 10, "the job to receive SIGTERM")
    mid = run_get(server, run["id"])
    assert mid["status"] == "running", f"run left running before its process ended: {mid}"
    gate.open()
    done = server.wait_run(run["id"], timeout=20)
    assert done["status"] == "canceled", f"cancel must win over a late exit 0: {done}"
    assert done["reason"] == "canceled", done
    assert done["canceled_by"] == me(server)["id"], done


def test_cancel_of_sleep_is_prompt_and_cancel_of_terminal_run_is_409(server, proj):
    job = server.job(proj["id"], ["/bin/sleep", "60"])
    run = server.trigger(job["id"])
    c = server.client()
    wait_for(lambda: run_get(server, run["id"])["status"] == "running", 15, "the run to be running")
    r = c.post(f"/runs/{run['id']}/cancel", {})
    assert r.status_code == 202, r.text
    done = server.wait_run(run["id"], timeout=15)
    assert done["status"] == "canceled" and done["reason"] == "canceled", done
    r = c.post(f"/runs/{run['id']}/cancel", {})
    error_of(r, 409, "conflict", what="cancel of a canceled run")
    # a succeeded run cannot be canceled either, and stays succeeded
    ok = server.wait_run(server.trigger(server.job(proj["id"], ["/bin/true"])["id"])["id"])
    assert ok["status"] == "succeeded", ok
    error_of(c.post(f"/runs/{ok['id']}/cancel", {}), 409, "conflict", what="cancel of a succeeded run")
    assert run_get(server, ok["id"])["status"] == "succeeded"


def test_cancel_of_unknown_run_is_404(server):
    error_of(server.client().post("/runs/no-such-run/cancel", {}), 404, "not_found")


def parse_env(text):
    env = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            env[k] = v
    return env


def test_parameters_and_uhub_variables_reach_the_environment(server, proj):
    name = "envjob-" + secrets.token_hex(3)
    job = server.job(proj["id"], ["/usr/bin/env"], name=name, parameters=["TARGET"],
                     env={"GREETING": "hi there", "EMPTY": ""})
    run = server.trigger(job["id"], params={"TARGET": "web-1 and more"})
    assert run["parameters"] == {"TARGET": "web-1 and more"}, run
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    env = parse_env(server.logs(run["id"]))
    expected = {"UHUB_PARAM_TARGET": "web-1 and more", "UHUB_RUN_ID": run["id"], "UHUB_JOB": name,
                "UHUB_JOB_ID": job["id"], "UHUB_PROJECT": proj["name"], "UHUB_PROJECT_ID": proj["id"],
                "GREETING": "hi there", "EMPTY": ""}
    for k, v in expected.items():
        assert env.get(k) == v, f"{k}: expected {v!r}, the job saw {env.get(k)!r} (env: {env})"
    # a run without the parameter does not get the variable
    other = server.wait_run(server.trigger(job["id"])["id"])
    assert "UHUB_PARAM_TARGET" not in parse_env(server.logs(other["id"]))


def test_parameter_values_reach_the_job_verbatim_without_shell_interpretation(server, proj):
    nasty = "'; touch /tmp/pwned #$(id) `id` \\n\nsecond line \u00e9\u20ac " + "z" * 1000
    code = "import os; print(repr(os.environ['UHUB_PARAM_ARG']))"
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", code], parameters=["ARG"])
    done = server.wait_run(server.trigger(job["id"], params={"ARG": nasty})["id"])
    assert done["status"] == "succeeded", done
    assert server.logs(done["id"]) == repr(nasty) + "\n", "a parameter value was altered on its way to the job"


def test_job_env_cannot_spoof_uhub_variables(server, proj):
    r = server.client().post(f"/projects/{proj['id']}/jobs", {
        "name": "spoof-" + secrets.token_hex(3), "command": ["/usr/bin/env"],
        "env": {"UHUB_RUN_ID": "spoofed", "UHUB_PROJECT": "spoofed"}})
    if r.status_code == 201:
        done = server.wait_run(server.trigger(r.json()["id"])["id"])
        env = parse_env(server.logs(done["id"]))
        assert env.get("UHUB_RUN_ID") == done["id"] and env.get("UHUB_PROJECT") == proj["name"], \
            f"a job's env overrode uhub's own variables: {env}"
    else:
        e = error_of(r, 400, what="job env naming UHUB_ variables")
        assert (e.get("field") or "").startswith("env.UHUB_"), e


def test_undeclared_parameter_is_400_naming_it(server, proj):
    job = server.job(proj["id"], ["/bin/true"], parameters=["TARGET"])
    c = server.client()
    before = c.ok("GET", f"/runs?job={job['id']}")["items"]
    r = c.post(f"/jobs/{job['id']}/runs", {"parameters": {"TARGET": "a", "OTHER": "b"}})
    error_of(r, 400, field="parameters.OTHER", what="undeclared parameter")
    r = c.post(f"/jobs/{job['id']}/runs", {"parameters": {"TARGET": 5}})
    error_of(r, 400, field="parameters.TARGET", what="non-string parameter")
    after = c.ok("GET", f"/runs?job={job['id']}")["items"]
    assert len(after) == len(before), f"a refused trigger created a run: {after}"


def test_idempotency_key_same_body_same_run_other_body_409(server, proj):
    job = server.job(proj["id"], ["/bin/true"], parameters=["X"])
    c = server.client()
    key = "idem-" + secrets.token_hex(8)
    r1 = c.post(f"/jobs/{job['id']}/runs", {"parameters": {"X": "1"}}, headers={"Idempotency-Key": key})
    assert r1.status_code == 201, r1.text
    r2 = c.post(f"/jobs/{job['id']}/runs", {"parameters": {"X": "1"}}, headers={"Idempotency-Key": key})
    assert r2.status_code == 200, f"same key + same body must answer the first run with 200: {r2.status_code} {r2.text}"
    assert r2.json()["id"] == r1.json()["id"], "same key + same body made a second run"
    r3 = c.post(f"/jobs/{job['id']}/runs", {"parameters": {"X": "2"}}, headers={"Idempotency-Key": key})
    error_of(r3, 409, "conflict", what="same Idempotency-Key, other body")
    items = c.ok("GET", f"/runs?job={job['id']}")["items"]
    assert [i["id"] for i in items] == [r1.json()["id"]], f"exactly one run expected: {items}"
    # the key is per user: another user with the same key gets its own run
    _, tok = server.make_user("operator")
    c.ok("POST", f"/projects/{proj['id']}/members", {"user_id": me(server, tok)["id"]})
    r4 = server.client(tok).post(f"/jobs/{job['id']}/runs", {"parameters": {"X": "1"}},
                                 headers={"Idempotency-Key": key})
    assert r4.status_code == 201 and r4.json()["id"] != r1.json()["id"], \
        f"Idempotency-Key must be per user: {r4.status_code} {r4.text}"


def test_runs_list_newest_first_limit_before_and_filters(server):
    p = server.project()
    c = server.client()
    ok_job = server.job(p["id"], ["/bin/true"])
    bad_job = server.job(p["id"], ["/bin/false"])
    ids = []
    for jid in (ok_job["id"], bad_job["id"], ok_job["id"], ok_job["id"], bad_job["id"]):
        run = server.trigger(jid)
        ids.append(run["id"])
        server.wait_run(run["id"])
    newest_first = list(reversed(ids))

    page = c.ok("GET", f"/runs?project={p['id']}")
    assert [i["id"] for i in page["items"]] == newest_first, "runs must be listed newest first"
    assert page["next"] is None, f"a complete page has next null: {page['next']}"
    for it in page["items"]:
        assert all(k in it for k in RUN_KEYS), f"list item lacks run keys: {it}"

    seen, before, pages = [], None, 0
    while True:
        q = f"/runs?project={p['id']}&limit=2" + (f"&before={before}" if before else "")
        page = c.ok("GET", q)
        assert len(page["items"]) <= 2, f"limit=2 answered {len(page['items'])} items"
        seen += [i["id"] for i in page["items"]]
        pages += 1
        before = page["next"]
        if not before:
            break
        assert pages < 10, "pagination does not end"
    assert seen == newest_first, f"limit/before pagination lost or repeated runs: {seen} vs {newest_first}"
    assert pages == 3, f"5 runs at limit=2 should take 3 pages, took {pages}"

    by_job = [i["id"] for i in c.ok("GET", f"/runs?job={bad_job['id']}")["items"]]
    assert by_job == [ids[4], ids[1]], f"job filter: {by_job}"
    failed = c.ok("GET", f"/runs?project={p['id']}&status=failed")["items"]
    assert [i["id"] for i in failed] == [ids[4], ids[1]] and all(i["status"] == "failed" for i in failed), failed
    succ = c.ok("GET", f"/runs?job={ok_job['id']}&status=succeeded")["items"]
    assert [i["id"] for i in succ] == [ids[3], ids[2], ids[0]], succ
    assert c.ok("GET", f"/runs?job={ok_job['id']}&status=failed")["items"] == []
    error_of(c.get(f"/runs?project={p['id']}&status=bogus"), 400, what="unknown status filter")
    r = c.get(f"/runs?project={p['id']}&limit=101")
    assert r.status_code == 400 or len(r.json()["items"]) <= 100, f"limit above 100: {r.status_code} {r.text[:200]}"


def test_archive_job_and_project_409_while_run_in_flight_then_works(server, gates):
    p = server.project()
    c = server.client()
    gate = Gate(gates)
    job = server.job(p["id"], ["/bin/sh", "-c", gate.wait_cmd])
    run = server.trigger(job["id"])
    wait_for(lambda: run_get(server, run["id"])["status"] == "running", 15, "the run to be running")
    error_of(c.delete(f"/jobs/{job['id']}"), 409, "conflict", what="archive a job with a running run")
    error_of(c.delete(f"/projects/{p['id']}"), 409, "conflict", what="archive a project with a running run")
    assert c.get(f"/jobs/{job['id']}").status_code == 200, "a refused archive must leave the job"
    gate.open()
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded", done

    r = c.delete(f"/jobs/{job['id']}")
    assert r.status_code in (200, 204), f"archive job after the run ended: {r.status_code} {r.text}"
    error_of(c.get(f"/jobs/{job['id']}"), 404, "not_found", what="an archived job")
    error_of(c.post(f"/jobs/{job['id']}/runs", {}), 404, "not_found", what="trigger of an archived job")
    assert run_get(server, run["id"])["status"] == "succeeded", "the runs of an archived job stay"
    assert server.logs(run["id"]) == ""

    kept = server.job(p["id"], ["/bin/true"])
    r = c.delete(f"/projects/{p['id']}")
    assert r.status_code in (200, 204), f"archive project: {r.status_code} {r.text}"
    error_of(c.get(f"/projects/{p['id']}"), 404, "not_found", what="an archived project")
    r = c.post(f"/jobs/{kept['id']}/runs", {})
    assert r.status_code in (404, 409), \
        f"a job of an archived project must not run: {r.status_code} {r.text[:300]}"
    error_of(r, r.status_code, what="trigger of a job of an archived project")
    assert run_get(server, run["id"])["id"] == run["id"], "the runs of an archived project stay"


def test_queued_run_then_running_when_max_concurrent_allows(server, gates):
    """max_concurrent: the rest wait queued, and start once a slot frees."""
    p = server.project()
    gate = Gate(gates)
    job = server.job(p["id"], ["/bin/sh", "-c", gate.wait_cmd], max_concurrent=1)
    first = server.trigger(job["id"])
    try:
        wait_for(lambda: run_get(server, first["id"])["status"] == "running", 15, "the first run to start")
        second = server.trigger(job["id"])
        assert second["status"] == "queued", second
        # A run of another job queued after it has been dispatched and finished:
        # the dispatcher has had its chance at the second run, which must still
        # wait, since the first holds the only slot.
        other = server.trigger(server.job(p["id"], ["/bin/true"])["id"])
        assert server.wait_run(other["id"])["status"] == "succeeded"
        assert run_get(server, first["id"])["status"] == "running"
        assert run_get(server, second["id"])["status"] == "queued", \
            f"max_concurrent=1 let a second run start: {run_get(server, second['id'])}"
    finally:
        gate.open()
    assert server.wait_run(first["id"])["status"] == "succeeded"
    done = server.wait_run(second["id"], timeout=30)
    assert done["status"] == "succeeded", done


def test_every_run_of_this_module_is_terminal(server):
    """A run that stays running after its process is gone is never allowed."""
    items = server.client().ok("GET", "/runs?limit=100")["items"]
    stuck = []
    for i in items:
        if i["status"] not in TERMINAL:
            try:
                server.wait_run(i["id"], timeout=10)
            except AssertionError:
                stuck.append(i)
    if stuck:
        for i in stuck:
            server.client().post(f"/runs/{i['id']}/cancel", {})
    assert not stuck, f"runs left non-terminal: {[(i['id'], i['status']) for i in stuck]}"


def test_a_run_needing_a_secret_fails_before_anything_executes(server):
    """Until a secret store is configured, a secret reference cannot be
    resolved: the run ends `error`/`secret_unavailable`, naming the
    reference, and the job never runs without its secret."""
    p = server.project()
    job = server.job(p["id"], ["/bin/echo", "ran-without-its-secret"], secrets={"DB_PASSWORD": "db-password"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "error" and done["reason"] == "secret_unavailable", done
    assert "db-password" in done["message"] and "DB_PASSWORD" in done["message"], done
    assert done["started_at"] is None and done["exit_code"] is None, done
    assert "ran-without-its-secret" not in server.logs(done["id"])
