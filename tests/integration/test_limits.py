"""Runs past what the host's descriptor limit allows wait `queued` (and
start as others end) instead of failing with EMFILE or taking the daemon
down. The daemon raises its soft RLIMIT_NOFILE to the hard limit, keeps a
reserve of 512 and counts one descriptor per Local run in flight (its
channel to the run's init)."""
import resource
import shutil
import tempfile

from conftest import Gate, Server, base_config, wait_for


class LimitedServer(Server):
    # soft and hard 560: 560 - 512 = 48 Local runs in flight
    preexec = staticmethod(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (560, 560)))


def test_runs_past_the_descriptor_limit_wait_queued_and_all_succeed(uhub_bin, host_dir):
    tmp = tempfile.mkdtemp(prefix="uhub-it-")
    s = LimitedServer(tmp, base_config(tmp))
    gate = Gate(host_dir)
    try:
        p = s.project()
        job = s.job(p["id"], ["/bin/sh", "-c", gate.wait_cmd])
        ids = [s.trigger(job["id"])["id"] for _ in range(56)]
        c = s.client()

        def statuses():
            return [r["status"] for r in c.ok("GET", f"/runs?job={job['id']}&limit=100")["items"]]
        wait_for(lambda: statuses().count("running") == 48, 60, "48 runs running", interval=0.2)
        st = statuses()
        assert st.count("running") == 48 and st.count("queued") == 8, st
        assert "descriptor limit" in s.read_log()
        gate.open()
        wait_for(lambda: statuses().count("succeeded") == 56, 90, "all 56 runs succeeded", interval=0.2)
    finally:
        gate.open()
        s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
