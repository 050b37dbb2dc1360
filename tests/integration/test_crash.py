"""Crash recovery: SIGKILL the daemon at the moments that matter (right after
a trigger answered 201, in the middle of a burst of triggers, while a run
floods output to a follower, while runs wait for approval) and check, after
a restart, what a user relies on: every acknowledged run exists, none is left
`running`, no process of the dead daemon's runs survives, the audit chain
verifies, and every log byte a follower had received is still in the stored
log (the store is written before followers are woken)."""
import os
import secrets
import threading

import requests

from conftest import TERMINAL, audit_verify, proc_status, wait_for


def marker():
    return "crashmark" + secrets.token_hex(6)


def our_processes(mark, run_ids):
    """Live host processes of these runs: the run's init names it as run=ID in
    its argv, and every job here carries `mark` in its own argv."""
    ids = {"run=" + r for r in run_ids}
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        st = proc_status(int(pid))
        if not st or st.get("state") == "Z":
            continue
        argv = st.get("cmdline", [])
        if any(mark in a for a in argv) or any(a in ids for a in argv):
            found[int(pid)] = argv
    return found


def check_after_restart(s, acked, mark, timeout=60):
    """The common checks once the daemon is back: each acknowledged run exists
    and ends (a run that was running is settled `lost`; a queued one is
    dispatched), no process of them remains, the audit chain verifies."""
    c = s.client()
    for rid in acked:
        r = c.get(f"/runs/{rid}")
        assert r.status_code == 200, f"acknowledged run {rid} lost by the crash: {r.status_code} {r.text}"

    def all_terminal():
        st = {rid: c.get(f"/runs/{rid}").json()["status"] for rid in acked}
        return st if all(v in TERMINAL for v in st.values()) else None

    done = wait_for(all_terminal, timeout, "every acknowledged run to end after the restart", interval=0.2)
    wait_for(lambda: not our_processes(mark, acked), 10, "no process of the runs to remain")
    v = audit_verify(s)
    assert v.get("ok") is True, f"audit chain after a SIGKILL: {v}"
    return done


def kill_and_check_orphans(s, acked, mark):
    s.kill9()
    # The runs' inits see EOF on the daemon's pipe and end their namespaces:
    # nothing of them may outlive the daemon, even before a restart.
    left = wait_for(lambda: not our_processes(mark, acked) and "gone", 10,
                    "the dead daemon's run processes to end")
    assert left


def test_kill_right_after_a_201_keeps_the_run(fresh_server):
    s = fresh_server
    mark = marker()
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", f"echo ok # {mark}"])
    run = s.trigger(job["id"])
    kill_and_check_orphans(s, [run["id"]], mark)
    s.start()
    done = check_after_restart(s, [run["id"]], mark)
    # Either it had not started (queued, then dispatched after the restart)
    # or it was running when the daemon died (settled lost).
    assert done[run["id"]] in ("succeeded", "lost"), done


def test_kill_during_a_burst_of_20_triggers_loses_none(fresh_server):
    s = fresh_server
    mark = marker()
    p = s.project()
    job = s.job(p["id"], ["/bin/sh", "-c", f"echo burst; sleep 0.3 # {mark}"])
    c = s.client()
    acked = []
    for _ in range(20):
        r = c.post(f"/jobs/{job['id']}/runs", {})
        assert r.status_code == 201, r.text
        acked.append(r.json()["id"])
    kill_and_check_orphans(s, acked, mark)
    s.start()
    done = check_after_restart(s, acked, mark)
    assert set(done.values()) <= {"succeeded", "lost"}, done
    for rid, st in done.items():
        if st == "succeeded":
            assert s.logs(rid) == "burst\n"


def test_kill_mid_flood_keeps_every_byte_a_follower_saw(fresh_server):
    s = fresh_server
    mark = marker()
    p = s.project()
    # Numbered lines as fast as the shell can write them, for ever.
    job = s.job(p["id"], ["/bin/sh", "-c", f"i=0; while :; do i=$((i+1)); echo line-$i; done # {mark}"])
    run = s.trigger(job["id"])
    rid = run["id"]
    got = bytearray()
    enough = threading.Event()
    failed = []

    def follow():
        try:
            with s.client().get(f"/runs/{rid}/logs?follow=1", stream=True, timeout=30) as r:
                assert r.status_code == 200
                for chunk in r.iter_content(chunk_size=None):
                    got.extend(chunk)
                    if len(got) >= 200_000:
                        enough.set()
        except (requests.RequestException, AssertionError) as e:
            # the daemon dies under us: that is the point
            if not enough.is_set():
                failed.append(repr(e))
        finally:
            enough.set()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert enough.wait(30), "the follower got no flood"
    assert not failed, failed
    kill_and_check_orphans(s, [rid], mark)
    t.join(10)
    seen = bytes(got)
    assert len(seen) >= 200_000
    s.start()
    done = check_after_restart(s, [rid], mark)
    assert done[rid] == "lost", done
    stored = s.client().get(f"/runs/{rid}/logs").content
    assert stored[:len(seen)] == seen, (
        f"the stored log lost bytes a follower had received: followed {len(seen)} bytes, "
        f"stored {len(stored)}, first difference at "
        f"{next((i for i, (a, b) in enumerate(zip(seen, stored)) if a != b), min(len(seen), len(stored)))}")


def test_kill_while_runs_wait_for_approval(fresh_server):
    s = fresh_server
    paths = s.client().ok("GET", "/openapi.json")["paths"]
    if "/api/v1/runs/{id}/approve" not in paths and "/runs/{id}/approve" not in paths:
        import pytest
        pytest.skip("no approval route in this build")
    mark = marker()
    admin = s.client()
    p = admin.ok("POST", "/projects", {"name": "prod-" + secrets.token_hex(4), "environment": "prod",
                                       "execution_backend": "local", "execution_backend_config": {}})
    admin.ok("POST", "/exceptions", {"project_id": p["id"], "reason": "crash suite",
                                     "expires_at": "2099-01-01T00:00:00Z"})
    job = s.job(p["id"], ["/bin/sh", "-c", f"echo approved # {mark}"], critical=True)
    pending = []
    for _ in range(3):
        run = s.trigger(job["id"])
        assert run["status"] == "pending_approval", run
        pending.append(run["id"])
    kill_and_check_orphans(s, pending, mark)
    s.start()
    c = s.client()
    for rid in pending:
        run = c.ok("GET", f"/runs/{rid}")
        assert run["status"] == "pending_approval", f"a pending run changed across the crash: {run}"
    # A member who neither triggered nor wrote the job approves one: it runs.
    uid, tok = s.make_user("projets")
    admin = s.client()
    admin.ok("POST", f"/projects/{p['id']}/members", {"user_id": uid})
    s.client(tok).ok("POST", f"/runs/{pending[0]}/approve", {}, status=200)
    done = s.wait_run(pending[0])
    assert done["status"] == "succeeded", done
    assert s.logs(pending[0]) == "approved\n"
    v = audit_verify(s)
    assert v.get("ok") is True, v


def test_kill_at_random_moments_under_load_loses_nothing(fresh_server):
    """Eight SIGKILLs at random moments while three clients trigger short runs
    and follow their logs: the kill lands wherever the daemon happens to be
    (answering a trigger, dispatching, spawning, storing output, finishing a
    run, cleaning up). The moment is a random count of acknowledged triggers,
    a condition rather than a timer. After each restart: every acknowledged run
    exists and ends (`succeeded`, or `lost` if it was running), a run that
    succeeded has its whole log, every byte a follower had received is stored,
    nothing of the runs is left on the host, the audit chain verifies."""
    import random
    s = fresh_server
    mark = marker()
    p = s.project()
    want = "".join(f"line{i}\n" for i in range(5))
    job = s.job(p["id"], ["/bin/sh", "-c", f"for i in 0 1 2 3 4; do echo line$i; done # {mark}"])
    rng = random.Random(int.from_bytes(secrets.token_bytes(4), "big"))
    all_acked = []
    for round_ in range(8):
        acked, seen, errors = [], {}, []
        lock = threading.Lock()
        target = rng.randint(3, 40)
        reached, stop = threading.Event(), threading.Event()

        def client():
            c = s.client()
            while not stop.is_set():
                try:
                    r = c.post(f"/jobs/{job['id']}/runs", {})
                    if r.status_code != 201:
                        errors.append(f"trigger answered {r.status_code}: {r.text}")
                        return
                    rid = r.json()["id"]
                    with lock:
                        acked.append(rid)
                        if len(acked) >= target:
                            reached.set()
                    got = bytearray()
                    seen[rid] = got
                    with c.get(f"/runs/{rid}/logs?follow=1", stream=True, timeout=30) as lr:
                        for chunk in lr.iter_content(chunk_size=None):
                            got.extend(chunk)
                except requests.RequestException:
                    return  # the daemon died under us: that is the point

        ts = [threading.Thread(target=client, daemon=True) for _ in range(3)]
        for t in ts:
            t.start()
        assert reached.wait(60), f"round {round_}: only {len(acked)} triggers acknowledged: {errors}"
        s.kill9()
        stop.set()
        for t in ts:
            t.join(30)
        assert not errors, errors
        wait_for(lambda: not our_processes(mark, acked) and "gone", 10,
                 "the dead daemon's run processes to end")
        s.start()
        done = check_after_restart(s, acked, mark)
        assert set(done.values()) <= {"succeeded", "lost"}, done
        for rid in acked:
            stored = s.client().get(f"/runs/{rid}/logs").content
            if done[rid] == "succeeded":
                assert stored == want.encode(), f"run {rid} succeeded with log {stored!r}"
            got = bytes(seen.get(rid, b""))
            assert stored[:len(got)] == got, f"run {rid}: a follower saw {got!r}, the store has {stored!r}"
        all_acked += acked
    # Nothing of any run is left on the host: no scratch dir of a run, no cgroup.
    from conftest import cgroup_dirs_of
    wait_for(lambda: not any(cgroup_dirs_of(r) for r in all_acked), 10, "the runs' cgroups to be removed")
