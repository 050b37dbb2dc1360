"""Run control (issue 9): rerun through every guardrail again, automatic
retries of `error`/`lost` runs linked by `retry_of` with a backoff, the
`queue_position` of queued runs, and max_concurrent slots freed by cancel,
timeout and a daemon killed with SIGKILL. SIGTERM drain and the SIGHUP
whitelist reload are in test_recovery.py and test_local_security.py."""
import json
import os
import shutil
import signal

import pytest

from conftest import Gate, audit_verify, error_of, job_uid, parse_time, wait_for


def status_of(s, run_id):
    return s.client().ok("GET", f"/runs/{run_id}")["status"]


def runs_of(s, job_id):
    return s.client().ok("GET", f"/runs?job={job_id}&limit=100")["items"]


def audit_of(s, target, action):
    items = s.client().ok("GET", f"/audit?target={target}&limit=100")["items"]
    return [e for e in items if e["action"] == action]


def settle(s, project_id):
    """A run of another job started and ended after everything before: the
    supervisor has handled every earlier event (one loop, in order)."""
    done = s.wait_run(s.trigger(s.job(project_id, ["/bin/true"])["id"])["id"])
    assert done["status"] == "succeeded", done


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


# ---- rerun ----

def test_rerun_is_a_new_run_with_the_same_parameters_and_is_audited(server, proj):
    s = server
    job = s.job(proj["id"], ["/bin/sh", "-c", 'echo "x=$UHUB_PARAM_X"'], parameters=["X"])
    first = s.wait_run(s.trigger(job["id"], params={"X": "hello world"})["id"])
    assert first["status"] == "succeeded", first
    r = s.client().post(f"/runs/{first['id']}/rerun", {})
    assert r.status_code == 201, r.text
    again = r.json()
    assert again["id"] != first["id"] and again["job_id"] == job["id"], again
    assert again["parameters"] == {"X": "hello world"}, again
    assert again["retry_of"] is None, "a rerun is not a retry"
    done = s.wait_run(again["id"])
    assert done["status"] == "succeeded", done
    assert s.logs(again["id"]) == "x=hello world\n"
    ev = audit_of(s, again["id"], "run.rerun")
    assert len(ev) == 1 and ev[0]["details"]["rerun_of"] == first["id"], ev
    # a rerun without a body, and of a failed run, works the same
    failed = s.wait_run(s.trigger(s.job(proj["id"], ["/bin/false"])["id"])["id"])
    assert failed["status"] == "failed"
    r = s.client().post(f"/runs/{failed['id']}/rerun")
    assert r.status_code == 201, r.text
    assert s.wait_run(r.json()["id"])["status"] == "failed"
    assert audit_verify(s).get("ok") is True


def test_rerun_takes_no_body_fields(server, proj):
    run = server.wait_run(server.trigger(server.job(proj["id"], ["/bin/true"])["id"])["id"])
    assert run["status"] == "succeeded"
    error_of(server.client().post(f"/runs/{run['id']}/rerun", {"parameters": {}}), 400, what="rerun with a body")


def test_rerun_policy_is_operator_and_up(server, proj):
    s = server
    run = s.wait_run(s.trigger(s.job(proj["id"], ["/bin/true"])["id"])["id"])
    c = s.client()
    viewer_id, viewer = s.make_user("viewer")
    operator_id, operator = s.make_user("operator")
    outsider_id, outsider = s.make_user("operator")
    for uid in (viewer_id, operator_id):
        c.ok("POST", f"/projects/{proj['id']}/members", {"user_id": uid})
    # role in the project is the user's role (SPEC §1)
    assert s.client(viewer).post(f"/runs/{run['id']}/rerun", {}).status_code == 403
    assert s.client(outsider).post(f"/runs/{run['id']}/rerun", {}).status_code == 404
    r = s.client(operator).post(f"/runs/{run['id']}/rerun", {})
    assert r.status_code == 201, r.text
    assert r.json()["requested_by"] == operator_id
    assert s.wait_run(r.json()["id"])["status"] == "succeeded"


def test_rerun_meets_the_guardrails_as_they_stand_now(server):
    s = server
    p = s.project()
    job = s.job(p["id"], ["/bin/echo", "hi"])
    run = s.wait_run(s.trigger(job["id"])["id"])
    assert run["status"] == "succeeded"
    s.client().ok("PATCH", f"/projects/{p['id']}", {"environment": "prod"}, status=200)
    e = error_of(s.client().post(f"/runs/{run['id']}/rerun", {}), 403, code="guardrail",
                 what="rerun of a local run whose project became prod")
    assert "local" in e["message"], e
    assert len(runs_of(s, job["id"])) == 1, "a refused rerun must not create a run"
    assert audit_of(s, job["id"], "run.refused"), "the refused rerun must be audited"


def test_cli_rerun_waits_for_the_new_run(server, proj):
    s = server
    run = s.wait_run(s.trigger(s.job(proj["id"], ["/bin/echo", "again"])["id"])["id"])
    cp = s.cli("rerun", run["id"], "--wait")
    assert cp.returncode == 0, cp.stderr.decode()
    runs = runs_of(s, run["job_id"])
    assert len(runs) == 2 and runs[0]["id"] != run["id"], runs
    assert runs[0]["status"] == "succeeded" and s.logs(runs[0]["id"]) == "again\n"


# ---- retries ----

def chain_of(s, job_id, n, timeout):
    """Wait for n terminal runs of the job and return them oldest first."""
    def all_ended():
        rs = runs_of(s, job_id)
        return len(rs) >= n and all(r["status"] not in ("queued", "running") for r in rs) and rs
    return list(reversed(wait_for(all_ended, timeout, f"{n} ended runs of job {job_id}", interval=0.2)))


def test_backend_error_is_retried_exactly_retries_times_with_backoff(server):
    s = server
    p = s.project()
    s.client().ok("PATCH", f"/projects/{p['id']}", {"max_concurrent": 1}, status=200)
    wd = os.path.join(s.dir, "workdirs", "vanishing")
    os.makedirs(wd, exist_ok=True)
    os.chmod(wd, 0o755)
    blocker = s.job(p["id"], ["/bin/sleep", "1000"])
    job = s.job(p["id"], ["/bin/true"], retries=2, execution_backend_config={"working_dir": wd})
    hold = s.trigger(blocker["id"])
    wait_for(lambda: status_of(s, hold["id"]) == "running", 15, "the blocker to run")
    first = s.trigger(job["id"])
    got = s.client().ok("GET", f"/runs/{first['id']}")
    assert got["status"] == "queued" and got["queue_position"] == 1, \
        f"a run held by the project's max_concurrent is first in the queue: {got}"
    shutil.rmtree(wd)  # the working dir vanishes between trigger and start
    s.client().ok("POST", f"/runs/{hold['id']}/cancel", {}, status=202)
    runs = chain_of(s, job["id"], 3, 30)
    assert [r["status"] for r in runs] == ["error"] * 3, runs
    assert runs[0]["id"] == first["id"] and runs[0]["retry_of"] is None
    assert runs[1]["retry_of"] == runs[0]["id"] and runs[2]["retry_of"] == runs[1]["id"], runs
    for prev, nxt, backoff in ((runs[0], runs[1], 1), (runs[1], runs[2], 2)):
        gap = parse_time(nxt["started_at"]) - parse_time(prev["finished_at"])
        assert gap >= backoff - 0.05, f"retry {nxt['id']} started {gap:.2f}s after its predecessor ended"
    for r in runs[1:]:
        ev = audit_of(s, r["id"], "run.retry")
        assert len(ev) == 1 and ev[0]["actor"] == "system", ev
    settle(s, p["id"])
    assert len(runs_of(s, job["id"])) == 3, "retries: 2 means two retries, no more"
    assert audit_verify(s).get("ok") is True


def test_non_zero_exit_timeout_and_cancel_are_never_retried(server):
    s = server
    p = s.project()
    failed = s.job(p["id"], ["/bin/false"], retries=3)
    slow = s.job(p["id"], ["/bin/sleep", "1000"], retries=3, execution_backend_config={"timeout_seconds": 1})
    canceled = s.job(p["id"], ["/bin/sleep", "1000"], retries=3)
    a = s.wait_run(s.trigger(failed["id"])["id"])
    b = s.wait_run(s.trigger(slow["id"])["id"])
    c = s.trigger(canceled["id"])
    wait_for(lambda: status_of(s, c["id"]) == "running", 15, "the run to cancel to run")
    s.client().ok("POST", f"/runs/{c['id']}/cancel", {}, status=202)
    c = s.wait_run(c["id"])
    assert (a["status"], b["status"], c["status"]) == ("failed", "timed_out", "canceled")
    settle(s, p["id"])
    for j in (failed, slow, canceled):
        assert len(runs_of(s, j["id"])) == 1, f"job {j['name']} was retried: {runs_of(s, j['id'])}"


def test_a_lost_run_is_retried_after_the_restart(fresh_server, host_dir):
    s = fresh_server
    p = s.project()
    gate = Gate(host_dir)
    job = s.job(p["id"], ["/bin/sh", "-c", f"id -u; {gate.wait_cmd}; echo passed"], retries=1)
    first = s.trigger(job["id"])
    job_uid(s, first["id"])
    s.kill9()
    gate.open()
    s.restart()
    got = s.client().ok("GET", f"/runs/{first['id']}")
    assert got["status"] == "lost" and got["reason"] == "daemon_restart", got
    runs = chain_of(s, job["id"], 2, 30)
    assert runs[1]["retry_of"] == first["id"] and runs[1]["status"] == "succeeded", runs
    assert s.logs(runs[1]["id"]).endswith("passed\n")
    assert audit_verify(s).get("ok") is True


def test_a_delayed_retry_survives_a_restart(fresh_server, host_dir):
    """A retry waiting out its backoff is a stored queued run: a restart in
    the meantime neither loses it nor starts it early."""
    s = fresh_server
    p = s.project()
    gate = Gate(host_dir)
    job = s.job(p["id"], ["/bin/sh", "-c", f"id -u; {gate.wait_cmd}; echo passed"], retries=1)
    first = s.trigger(job["id"])
    job_uid(s, first["id"])
    s.kill9()
    gate.open()
    s.restart()
    retry = wait_for(lambda: [r for r in runs_of(s, job["id"]) if r["retry_of"] == first["id"]], 10,
                     "the retry of the lost run")[0]
    s.restart()
    done = s.wait_run(retry["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert len(runs_of(s, job["id"])) == 2
    ev = audit_of(s, retry["id"], "run.retry")
    assert len(ev) == 1, ev
    not_before = ev[0]["details"]["not_before"] / 1e6
    assert parse_time(done["started_at"]) >= not_before - 0.01, \
        f"the retry started before its backoff ended: {done['started_at']} < {not_before}"


# ---- queue position and slots ----

def test_queue_positions_and_the_slot_freed_by_cancel(server, proj):
    s = server
    job = s.job(proj["id"], ["/bin/sh", "-c", 'sleep "$UHUB_PARAM_SECS"; echo slept'], parameters=["SECS"],
                max_concurrent=1)
    first = s.trigger(job["id"], params={"SECS": "1000"})
    wait_for(lambda: status_of(s, first["id"]) == "running", 15, "the first run to run")
    second = s.trigger(job["id"], params={"SECS": "0"})
    third = s.trigger(job["id"], params={"SECS": "0"})
    c = s.client()
    assert c.ok("GET", f"/runs/{first['id']}")["queue_position"] is None
    assert c.ok("GET", f"/runs/{second['id']}")["queue_position"] == 1
    assert c.ok("GET", f"/runs/{third['id']}")["queue_position"] == 2
    listed = {r["id"]: r["queue_position"] for r in runs_of(s, job["id"])}
    assert listed == {first["id"]: None, second["id"]: 1, third["id"]: 2}, listed
    c.ok("POST", f"/runs/{first['id']}/cancel", {}, status=202)
    assert s.wait_run(first["id"])["status"] == "canceled"
    assert s.wait_run(second["id"])["status"] == "succeeded"
    done = s.wait_run(third["id"])
    assert done["status"] == "succeeded" and done["queue_position"] is None, done


def test_the_slot_is_freed_after_a_timeout(server, proj):
    s = server
    job = s.job(proj["id"], ["/bin/sh", "-c", 'sleep "$UHUB_PARAM_SECS"; echo slept'], parameters=["SECS"],
                max_concurrent=1, execution_backend_config={"timeout_seconds": 1})
    first = s.trigger(job["id"], params={"SECS": "1000"})
    second = s.trigger(job["id"], params={"SECS": "0"})
    got = s.client().ok("GET", f"/runs/{second['id']}")
    if got["status"] == "queued":
        assert got["queue_position"] == 1, got
    assert s.wait_run(first["id"])["status"] == "timed_out"
    assert s.wait_run(second["id"])["status"] == "succeeded"


def test_the_slot_is_freed_after_the_daemon_is_killed(fresh_server):
    s = fresh_server
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", 'id -u; sleep "$UHUB_PARAM_SECS"; echo slept'], parameters=["SECS"],
                max_concurrent=1)
    first = s.trigger(job["id"], params={"SECS": "1000"})
    job_uid(s, first["id"])
    second = s.trigger(job["id"], params={"SECS": "0"})
    got = s.client().ok("GET", f"/runs/{second['id']}")
    assert got["status"] == "queued" and got["queue_position"] == 1, got
    s.kill9()
    s.restart()
    assert s.client().ok("GET", f"/runs/{first['id']}")["status"] == "lost"
    assert s.wait_run(second["id"])["status"] == "succeeded"


# ---- SIGHUP with a bad config ----

def test_sighup_with_a_bad_config_keeps_the_running_one(make_server):
    s = make_server()
    p = s.project()
    with open(s.config_path, "w") as f:
        f.write('{"listen": "127.0.0.1:0", "db": ')  # cut short
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in s.read_log(), 10, "the reload to be refused in the log")
    assert s.proc.poll() is None, "a bad config on SIGHUP must not stop the daemon"
    done = s.wait_run(s.trigger(s.job(p["id"], ["/bin/echo", "still"])["id"])["id"])
    assert done["status"] == "succeeded" and s.logs(done["id"]) == "still\n"
    with open(s.config_path, "w") as f:
        json.dump(s.config, f)


# ---- retention ----

DAY_US = 86400 * 1000000


def test_retention_prunes_old_runs_in_batches_while_clients_read(make_server):
    """Runs finished more than logs.retention_days ago go with their logs, in
    batches of 500 each with a run.prune event; readers keep getting answers;
    the audit chain is untouched and still verifies."""
    import sqlite3
    import threading
    import time

    def mutate(cfg):
        cfg["logs"]["retention_days"] = 1
        cfg["api"] = {"rate_limit_per_minute": 100000000}  # the readers poll hard
    s = make_server(mutate)
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", 'echo "out $UHUB_RUN_ID"'])
    old = [s.wait_run(s.trigger(job["id"])["id"]) for _ in range(3)]
    keep = s.wait_run(s.trigger(job["id"])["id"])
    assert all(r["status"] == "succeeded" for r in old + [keep])
    s.stop()

    db = sqlite3.connect(s.db)
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2, "a new store must use auto_vacuum=INCREMENTAL"
    cols = [r[1] for r in db.execute("PRAGMA table_info(runs)") if r[1] != "n"]
    src = dict(zip(cols, db.execute(f"SELECT {', '.join(cols)} FROM runs WHERE id = ?", (old[0]["id"],)).fetchone()))
    fake = [f"r_old{i:05d}" for i in range(1100)]  # three batches: 500, 500, 100 + the 3 real ones
    for rid in fake:
        row = dict(src, id=rid)
        db.execute(f"INSERT INTO runs({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                   [row[c] for c in cols])
        db.execute("INSERT INTO logs(run_id, off, t, stream, data) VALUES (?, 0, 0, 1, ?)", (rid, b"x" * 2000))
    old_ids = [r["id"] for r in old] + fake
    db.execute(f"UPDATE runs SET finished_at = finished_at - {2 * DAY_US} WHERE id IN "
               f"({', '.join('?' * len(old_ids))})", old_ids)
    db.commit()
    db.close()

    s.start()
    c = s.client()
    errors, latencies, stop = [], [], threading.Event()

    def reader():
        rc = s.client()
        while not stop.is_set():
            t0 = time.time()
            for path in ("/runs?limit=100", f"/runs/{keep['id']}", f"/runs/{keep['id']}/logs"):
                r = rc.get(path)
                if r.status_code != 200:
                    errors.append((path, r.status_code, r.text))
            latencies.append(time.time() - t0)
    th = threading.Thread(target=reader)
    th.start()
    try:
        gone = lambda: all(c.get(f"/runs/{rid}").status_code == 404 for rid in (old_ids[0], old_ids[-1])) and \
            c.get(f"/runs?job={job['id']}&limit=100").json()["items"] == [c.ok("GET", f"/runs/{keep['id']}")]
        try:
            wait_for(gone, 30, "the old runs to be pruned", interval=0.1)
        except AssertionError:
            print(s.read_log()[-3000:])
            raise
    finally:
        stop.set()
        th.join()
    assert not errors, f"readers got errors during the prune: {errors[:3]}"
    assert latencies and max(latencies) < 2, f"a reader waited {max(latencies):.2f}s during the prune"
    for r in old:
        assert c.get(f"/runs/{r['id']}/logs").status_code == 404
    assert s.logs(keep["id"]) == f"out {keep['id']}\n"
    db = sqlite3.connect(f"file:{s.db}?mode=ro", uri=True)
    left = db.execute(f"SELECT count(*) FROM logs WHERE run_id IN ({', '.join('?' * len(old_ids))})",
                      old_ids).fetchone()[0]
    db.close()
    assert left == 0, f"{left} log chunks of pruned runs are left"
    events = [e for e in c.ok("GET", "/audit?limit=100")["items"] if e["action"] == "run.prune"]
    assert sorted(e["details"]["count"] for e in events) == [103, 500, 500], events
    assert all(e["actor"] == "system" and e["details"]["oldest"] and e["details"]["newest"] for e in events)
    # the events themselves survive (the trigger events of pruned runs too)
    assert c.ok("GET", f"/audit?target={old[0]['id']}")["items"], "audit events of pruned runs must stay"
    assert audit_verify(s).get("ok") is True
