"""Daemon crash, stop and restart (SPEC §2, §3 `local`, §7, §9): runs die
with a killed daemon and come back `lost` (`daemon_restart`), the audit chain
stays whole, queued runs survive a restart, SIGTERM lets short runs finish,
refuses new ones, and cancels what still runs after the grace (`shutdown`)."""
import os
import time

from conftest import (Gate, assert_no_procs, audit_verify, cgroup_dirs_of, job_uid, run_procs, wait_for)


def running(server, run_id):
    return server.client().ok("GET", f"/runs/{run_id}")["status"] == "running"


def test_kill9_ends_the_runs_and_restart_marks_them_lost(fresh_server):
    s = fresh_server
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", 'id -u; echo "$HOME"; sleep 1000 & sleep 1000'])
    runs = [s.trigger(job["id"]) for _ in range(2)]
    uids = [job_uid(s, r["id"]) for r in runs]
    homes = [wait_for(lambda: (s.logs(r["id"]).split("\n") + [""])[1], 10, "the run's HOME") for r in runs]
    for r in runs:
        assert running(s, r["id"]), f"run {r['id']} is not running"
    ids = [r["id"] for r in runs]
    for u in uids:
        wait_for(lambda: sum(st["cmdline"][:1] == ["sleep"] for st in run_procs(u, ids).values()) >= 2, 10,
                 f"the two sleeps of uid {u} on the host")
    seen = sum(len(run_procs(u, ids)) for u in uids)

    s.kill9()
    assert_no_procs(uids, 5, f"of the {seen} processes of runs of a daemon killed with SIGKILL, after 5 s",
                    [r["id"] for r in runs])

    s.restart()
    for r, u in zip(runs, uids):
        got = s.client().ok("GET", f"/runs/{r['id']}")
        assert got["status"] == "lost", f"a run of the killed daemon must be lost after the restart: {got}"
        assert got["reason"] == "daemon_restart", got
        assert got["finished_at"] is not None and got["exit_code"] is None, got
    for r, u, home in zip(runs, uids, homes):
        assert s.logs(r["id"]) == f"{u}\n{home}\n", "the output a lost run wrote before the crash must be kept"
        # a follower of a lost run is not left waiting
        f = s.client().get(f"/runs/{r['id']}/logs?follow=1", timeout=10)
        assert f.status_code == 200 and f.text == f"{u}\n{home}\n"
        # "ended lost with nothing of it left": scratch dir and cgroups too
        assert home.startswith("/") and not os.path.lexists(home), f"scratch dir {home} of a lost run is left"
        assert not cgroup_dirs_of(r["id"]), f"cgroups of a lost run are left: {cgroup_dirs_of(r['id'])}"
    v = audit_verify(s)
    assert v.get("ok") is True, f"the audit chain after a kill -9 and restart: {v}"
    done = s.wait_run(s.trigger(s.job(p["id"], ["/bin/echo", "after"])["id"])["id"])
    assert done["status"] == "succeeded", done
    assert s.logs(done["id"]) == "after\n"


def test_sigterm_cancels_a_run_still_running_after_the_grace_with_reason_shutdown(fresh_server):
    """SIGTERM: no new runs; a run still running after shutdown_grace_seconds
    (5 here) is canceled with reason `shutdown`; the daemon exits 0 and
    leaves no process of it."""
    s = fresh_server
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", "id -u; sleep 1000"])
    run = s.trigger(job["id"])
    uid = job_uid(s, run["id"])
    t0 = time.time()
    s.stop()
    took = time.time() - t0
    assert s.proc.returncode == 0, f"uhub serve exited {s.proc.returncode} after SIGTERM:\n{s.read_log()[-2000:]}"
    assert 4.5 <= took < 5 + 2 + 8, f"SIGTERM with a running run took {took:.1f}s (grace 5 s + kill grace 2 s)"
    assert_no_procs([uid], 1, "processes of a run canceled at shutdown, after the daemon exited",
                    [run["id"]])
    s.start()
    got = s.client().ok("GET", f"/runs/{run['id']}")
    assert got["status"] == "canceled" and got["reason"] == "shutdown", \
        f"a run still running after shutdown_grace_seconds must be canceled (shutdown): {got}"
    assert got["finished_at"] is not None
    assert audit_verify(s).get("ok") is True


def test_queued_run_survives_a_restart_and_runs(fresh_server):
    """A run queued behind another (max_concurrent 1) when the daemon is
    killed: after the restart the running one is lost and the queued one runs."""
    s = fresh_server
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", 'id -u; sleep "$UHUB_PARAM_SECS"; echo slept "$UHUB_PARAM_SECS"'],
                parameters=["SECS"], max_concurrent=1)
    first = s.trigger(job["id"], params={"SECS": "1000"})
    uid = job_uid(s, first["id"])
    assert running(s, first["id"])
    second = s.trigger(job["id"], params={"SECS": "0"})
    assert second["status"] == "queued", second
    # an unrelated run goes through: the dispatcher saw the queue, the second still waits
    other = s.wait_run(s.trigger(s.job(p["id"], ["/bin/true"])["id"])["id"])
    assert other["status"] == "succeeded"
    try:
        assert s.client().ok("GET", f"/runs/{second['id']}")["status"] == "queued", \
            "max_concurrent=1 let a second run start (needed to hold a run queued across the restart)"
    finally:
        s.kill9()
        assert_no_procs([uid], 5, "processes of a run of a daemon killed with SIGKILL", [first["id"]])
    s.restart()
    got = s.client().ok("GET", f"/runs/{first['id']}")
    assert got["status"] == "lost" and got["reason"] == "daemon_restart", got
    done = s.wait_run(second["id"], timeout=30)
    assert done["status"] == "succeeded", f"the queued run must run after the restart: {done}"
    assert s.logs(second["id"]).endswith("\nslept 0\n"), s.logs(second["id"])
    assert audit_verify(s).get("ok") is True


def test_sigterm_lets_a_short_run_finish(fresh_server, host_dir):
    """Runs that end within shutdown_grace_seconds finish normally, and no new
    run is taken while draining."""
    s = fresh_server
    p = s.project()
    gate = Gate(host_dir)
    job = s.job(p["id"], ["/bin/sh", "-c", f"{gate.wait_cmd}; echo finished"])
    run = s.trigger(job["id"])
    wait_for(lambda: running(s, run["id"]), 15, "the run to be running")
    s.proc.send_signal(15)
    # the daemon drains: new triggers are refused with 503 while the run goes on
    answers = []

    def refused():
        r = s.client().post(f"/jobs/{job['id']}/runs", {})
        answers.append(r)
        return r.status_code == 503
    try:
        wait_for(refused, 3, "a trigger to be refused while draining")
        assert answers[-1].json()["error"]["code"] == "unavailable", answers[-1].text
        assert running(s, run["id"]), "the draining daemon must let the running run go on"
    finally:
        gate.open()
    assert s.proc.wait(15) == 0
    s.log.close()
    s.start()
    got = s.client().ok("GET", f"/runs/{run['id']}")
    assert got["status"] == "succeeded", f"a run ending within the grace must finish normally: {got}"
    assert s.logs(run["id"]) == "finished\n"
    early = [r.json()["id"] for r in answers if r.status_code == 201]  # sent before SIGTERM landed
    for rid in early:
        assert s.wait_run(rid)["status"] == "succeeded"
