"""Faults under the daemon: the SQLite store's filesystem fills up (a small
tmpfs), and clients that open connections and never finish a request. What
a user relies on: requests get clean JSON 5xx errors rather than a crash or
a hang, the daemon stays up, and once space is freed everything works again
with an audit chain that verifies; a stuck client never blocks the others."""
import errno
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import ERROR_CODES, TERMINAL, Server, audit_verify, base_config, wait_for


def fill(path):
    """Write to path until the filesystem is full; return the bytes written."""
    n = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    # the last partial pages too
    with open(path, "ab", buffering=0) as f:
        for _ in range(64):
            try:
                f.write(b"\0" * 512)
            except OSError:
                break
    return n


def clean_or_ok(r, what):
    """A request under a full disk: success, or a JSON error -- never an
    HTML page, an empty answer or a dropped connection."""
    if r.status_code < 400:
        return True
    assert r.headers.get("Content-Type", "").startswith("application/json"), \
        f"{what}: {r.status_code} without a JSON body: {r.text[:200]}"
    e = r.json()["error"]
    assert e["code"] in ERROR_CODES and e["message"], f"{what}: {e}"
    assert r.status_code >= 500 or r.status_code == 409, f"{what}: {r.status_code} {e}"
    return False


@pytest.fixture
def small_store():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    mnt = os.path.join(tmp, "store")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt], check=True)
    cfg = base_config(tmp)
    cfg["db"] = "sqlite:" + os.path.join(mnt, "uhub.db")
    s = Server(tmp, cfg)
    yield s, mnt
    s.stop()
    subprocess.run(["umount", "-l", mnt], check=False)
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_full_disk_under_the_store_gives_clean_errors_and_recovers(small_store):
    s, mnt = small_store
    c = s.client()
    p = s.project()
    quiet = s.job(p["id"], ["/bin/echo", "after"])
    # 512 KiB of output per run: more than a full disk can take
    loud = s.job(p["id"], ["/bin/sh", "-c", "i=0; while [ $i -lt 8192 ]; do "
                                            "echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde; "
                                            "i=$((i+1)); done"])
    assert s.wait_run(s.trigger(quiet["id"])["id"])["status"] == "succeeded"

    # Fill the disk but for a little slack: triggers fit, the runs' output
    # (10 x 512 KiB) does not.
    slack = os.path.join(mnt, "slack")
    with open(slack, "wb") as f:
        f.write(b"\0" * 192 * 1024)
    filler = os.path.join(mnt, "filler")
    fill(filler)
    os.unlink(slack)
    acked, refused = [], 0
    for i in range(10):
        r = c.post(f"/jobs/{loud['id']}/runs", {})
        if clean_or_ok(r, f"trigger {i} on a full disk"):
            acked.append(r.json()["id"])
            if len(acked) == 1:
                # Let the first one be dispatched (its `running` commit)
                # before the requests below take the last of the space: a
                # run must end while the disk is full, not wait queued.
                first = acked[0]
                wait_for(lambda: c.get(f"/runs/{first}").json()["status"] != "queued", 10,
                         "the first run accepted on the nearly full disk to be dispatched", interval=0.02)
        else:
            refused += 1
        r = c.post("/projects", {"name": f"full-{i}", "environment": "dev", "execution_backend": "local",
                                 "execution_backend_config": {}})
        if not clean_or_ok(r, f"create project {i} on a full disk"):
            refused += 1
    for rid in acked:
        # Reads keep working while the disk is full.
        assert c.get(f"/runs/{rid}").status_code == 200

    # Let a run end while the disk is still full, so that its output and its
    # terminal status are refused by the store (the daemon logs the end of
    # each run it handles; a run whose dispatch was refused stays queued).
    def ended_on_full_disk():
        lines = [l for l in s.read_log().splitlines() if " finished: " in l]
        return [rid for rid in acked if any(f"run={rid} " in l for l in lines)]

    assert acked, f"no trigger fitted in the slack ({refused} refused):\n" + s.read_log()[-2000:]
    try:
        ended = wait_for(ended_on_full_disk, 30, "a run to end while the disk is full", interval=0.1)
    except AssertionError:
        statuses = [c.get(f"/runs/{rid}").json()["status"] for rid in acked]
        raise AssertionError(f"no run ended while the disk was full; runs {statuses}; log:\n"
                             + s.read_log()[-3000:])
    assert acked and refused, f"the full disk was not hit: {len(acked)} accepted, {refused} refused"
    assert s.proc.poll() is None, "the daemon died on a full disk:\n" + s.read_log()[-2000:]
    assert requests.get(s.url + "/healthz", timeout=10).status_code == 200

    os.unlink(filler)
    # Space is back: a trigger, its run, its output and the audit chain work.
    def works():
        r = c.post(f"/jobs/{quiet['id']}/runs", {})
        return r.json()["id"] if r.status_code == 201 else None

    rid = wait_for(works, 20, "triggers to work again once space is freed", interval=0.2)
    # The runs that ended while the store refused their output and their end
    # are recorded once it has room: each ends, with all of its output (kept
    # in memory, never dropped silently), none stays `running`.
    for old in acked:
        done = wait_for(lambda: (lambda r: r if r["status"] in TERMINAL else None)(c.get(f"/runs/{old}").json()),
                        30, f"run {old} to end once space is freed", interval=0.2)
        assert done["status"] == "succeeded", done
        assert len(s.logs(old)) == 8192 * 64, f"run {old} lost output on the full disk"
    run = s.wait_run(rid)
    assert run["status"] == "succeeded", run
    assert s.logs(rid) == "after\n"
    v = audit_verify(s)
    assert v.get("ok") is True, f"audit chain after a full disk: {v}"
    print(f"\nfull disk: {len(acked)} triggers accepted, {refused} requests refused cleanly, "
          f"{len(ended)} runs ended while full")


def test_hanging_clients_do_not_block_the_others(server):
    host, port = server.url.split("//")[1].rsplit(":", 1)
    hung = []
    try:
        for i in range(40):
            k = socket.create_connection((host, int(port)), timeout=5)
            # half a request line, half the headers: never finished
            k.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bea" if i % 2 else b"GE")
            hung.append(k)
        c = server.client()
        for _ in range(20):
            t0 = time.time()
            r = c.get("/me", timeout=5)
            assert r.status_code == 200, r.text
            assert time.time() - t0 < 2, "a request waited behind hanging clients"
    finally:
        for k in hung:
            k.close()
