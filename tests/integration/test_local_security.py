"""The Local backend against hostile jobs, through the API (SPEC §3 `local`,
§9): the executable whitelist (relative paths, `..`, symlinks, copies, hard
links, writable files and directories), process-tree teardown, the pids
limit, the environment, private /proc, isolation between runs, identity,
network "none", and the scratch directories."""
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time

import pytest
import requests

from conftest import (UID_MIN, UID_MAX, TERMINAL, Gate, HostDir, Server, assert_no_procs, base_config,
                      cgroup_dirs_of, error_of, job_uid, run_procs, wait_for)

# ---- fixtures -----------------------------------------------------------------

TOOL = """#!/bin/sh
touch "{marks}/$1"
echo "tool ran $1"
"""


class Adv:
    """A daemon whose whitelist holds only a few Debian files and scripts of
    ours, started with a canary in its environment."""

    def __init__(self):
        self.h = HostDir()
        h = self.h
        self.marks = h.sub("marks", 0o1777)
        self.bin = h.sub("bin")
        self.bin2 = h.sub("bin2")
        self.elsewhere = h.sub("elsewhere")
        script = TOOL.format(marks=self.marks)
        self.tool = self._script(os.path.join(self.bin, "tool"), script)
        self.tool_ow = self._script(os.path.join(self.bin, "tool-ow"), script)
        self.tool_gw = self._script(os.path.join(self.bin, "tool-gw"), script)
        self.tool_dir = self._script(os.path.join(self.bin2, "tool-dir"), script)
        self.copy = self._script(os.path.join(self.elsewhere, "tool-copy"), script)
        self.hard = os.path.join(self.elsewhere, "tool-hardlink")
        os.link(self.tool, self.hard)
        self.sym_sh = os.path.join(self.elsewhere, "link-to-sh")
        os.symlink("/bin/sh", self.sym_sh)
        self.sym_tool = os.path.join(self.elsewhere, "link-to-tool")
        os.symlink(self.tool, self.sym_tool)
        self.canary = "uhub-canary-" + secrets.token_hex(8)
        self.tmp = tempfile.mkdtemp(prefix="uhub-it-")
        cfg = base_config(self.tmp)
        cfg["local"]["allowed_executables"] = ["/bin/echo", "/usr/bin/env", "/bin/cat", "/bin/ls",
                                               self.tool, self.tool_ow, self.tool_gw, self.tool_dir]
        self.server = Server(self.tmp, cfg, env={"UHUB_IT_CANARY": self.canary})
        self.project = self.server.project()

    @staticmethod
    def _script(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        return path

    def marker(self, name):
        return os.path.exists(os.path.join(self.marks, name))

    def close(self):
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.h.cleanup()


@pytest.fixture(scope="module")
def adv(uhub_bin):
    a = Adv()
    yield a
    a.close()


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


@pytest.fixture(scope="module")
def hd():
    d = HostDir()
    yield d
    d.cleanup()


def run_get(server, run_id):
    return server.client().ok("GET", f"/runs/{run_id}")


def refused_and_not_run(s, project, command, marker_of, what):
    """Creating a job with `command` must be a 400 naming `command`; should it
    be accepted anyway, a run of it must not execute anything."""
    c = s.client()
    r = c.post(f"/projects/{project['id']}/jobs", {"name": "j-" + secrets.token_hex(4), "command": command})
    if r.status_code == 201:
        run = s.trigger(r.json()["id"])
        done = s.wait_run(run["id"])
        ran = marker_of()
        raise AssertionError(f"{what}: job accepted (201); its run ended {done['status']} "
                             f"({done['reason']}); the file {'WAS' if ran else 'was not'} executed")
    e = error_of(r, 400, what=what)
    assert (e.get("field") or "").startswith("command"), f"{what}: the error must name 'command': {e}"
    assert not marker_of(), f"{what}: the file was executed at job creation"
    return e


# ---- the whitelist ------------------------------------------------------------

def test_relative_command_is_refused(server, proj):
    for cmd in (["echo", "hi"], ["./echo"], ["bin/echo"]):
        refused_and_not_run(server, proj, cmd, lambda: False, f"relative command {cmd[0]!r}")


def test_patch_to_a_refused_command_is_400_and_leaves_the_job(server, proj):
    job = server.job(proj["id"], ["/bin/echo", "fine"])
    for cmd in (["echo", "x"], ["/usr/bin/../../tmp/nothing"], ["/usr/sbin/nologin"]):
        e = error_of(server.client().patch(f"/jobs/{job['id']}", {"command": cmd}), 400, what=f"PATCH command {cmd}")
        assert (e.get("field") or "").startswith("command"), e
    assert server.client().ok("GET", f"/jobs/{job['id']}")["command"] == ["/bin/echo", "fine"]


def test_dotdot_resolving_to_an_allowed_file_works(server, proj):
    job = server.job(proj["id"], ["/bin/../bin/echo", "via-dotdot"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert server.logs(done["id"]) == "via-dotdot\n"


def test_dotdot_escaping_to_an_unlisted_file_is_refused(server, proj, hd):
    marks = hd.sub("marks", 0o1777)
    name = "x-" + secrets.token_hex(4)
    path = os.path.join("/tmp", name)
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marks}/{name}\n")
    os.chmod(path, 0o755)
    try:
        refused_and_not_run(server, proj, [f"/usr/bin/../../tmp/{name}"],
                            lambda: os.path.exists(os.path.join(marks, name)), "/usr/bin/../../tmp/x")
    finally:
        os.unlink(path)


def test_control_whitelisted_script_runs_and_leaves_its_marker(adv):
    """Proves the marker mechanism of the refusals below can see a run."""
    s = adv.server
    job = s.job(adv.project["id"], [adv.tool, "control"])
    done = s.wait_run(s.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", f"a whitelisted script (interpreted) must run: {done} {s.logs(done['id'])}"
    assert s.logs(done["id"]) == "tool ran control\n"
    assert adv.marker("control"), "the control run did not leave its marker"


def test_symlink_to_a_whitelisted_file_is_followed(adv):
    s = adv.server
    job = s.job(adv.project["id"], [adv.sym_tool, "via-symlink"])
    done = s.wait_run(s.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert adv.marker("via-symlink")


def test_symlink_to_an_unlisted_binary_is_refused(adv):
    name = "sym-sh-" + secrets.token_hex(3)
    refused_and_not_run(adv.server, adv.project, [adv.sym_sh, "-c", f"touch {adv.marks}/{name}"],
                        lambda: adv.marker(name), "symlink to /bin/sh (not whitelisted)")


def test_unlisted_binary_is_refused(adv):
    name = "sh-" + secrets.token_hex(3)
    refused_and_not_run(adv.server, adv.project, ["/bin/sh", "-c", f"touch {adv.marks}/{name}"],
                        lambda: adv.marker(name), "/bin/sh (not whitelisted here)")


def test_copy_of_a_whitelisted_file_is_refused(adv):
    name = "copy-" + secrets.token_hex(3)
    refused_and_not_run(adv.server, adv.project, [adv.copy, name], lambda: adv.marker(name),
                        "a copy of a whitelisted script")


def test_hard_link_to_a_whitelisted_file_is_refused(adv):
    name = "hard-" + secrets.token_hex(3)
    refused_and_not_run(adv.server, adv.project, [adv.hard, name], lambda: adv.marker(name),
                        "a hard link to a whitelisted script")


@pytest.mark.parametrize("kind", ["file-o+w", "file-g+w", "dir-o+w"])
def test_whitelisted_file_that_becomes_writable_is_refused_at_create_and_at_run(adv, kind):
    s = adv.server
    path, target, mode = {"file-o+w": (adv.tool_ow, adv.tool_ow, 0o757),
                          "file-g+w": (adv.tool_gw, adv.tool_gw, 0o775),
                          "dir-o+w": (adv.tool_dir, adv.bin2, 0o777)}[kind]
    before = "before-" + secrets.token_hex(3)
    job = s.job(adv.project["id"], [path, before])
    assert s.wait_run(s.trigger(job["id"])["id"])["status"] == "succeeded"
    assert adv.marker(before), "control: the script ran while root-only writable"
    old = os.stat(target).st_mode & 0o7777
    os.chmod(target, mode)
    try:
        after = "after-" + secrets.token_hex(3)
        refused_and_not_run(s, adv.project, [path, after], lambda: adv.marker(after), f"whitelisted, {kind}")
        # the job saved earlier: its trigger or its run must refuse it now
        stamp = os.stat(os.path.join(adv.marks, before)).st_mtime_ns
        r = s.client().post(f"/jobs/{job['id']}/runs", {})
        if r.status_code == 201:
            done = s.wait_run(r.json()["id"])
            assert done["status"] == "error" and done["reason"] == "not_whitelisted", \
                f"{kind}: a run of a now-writable executable must end error/not_whitelisted: {done}"
            assert done["exit_code"] is None, f"nothing ran, so no exit code: {done}"
        else:
            error_of(r, 400, what=f"trigger, {kind}")
        assert os.stat(os.path.join(adv.marks, before)).st_mtime_ns == stamp, \
            f"{kind}: the saved job's script ran again after it became writable"
    finally:
        os.chmod(target, old)


def test_whitelist_entry_writable_by_others_at_start_is_refused(uhub_bin):
    h = HostDir()
    made = []
    try:
        marks = h.sub("marks", 0o1777)
        d = h.sub("bin")
        tool = os.path.join(d, "echo-copy")
        with open(tool, "w") as f:
            f.write(TOOL.format(marks=marks))
        os.chmod(tool, 0o757)

        def mutate(cfg):
            cfg["local"]["allowed_executables"] = ["/bin/echo", tool]
        tmp = tempfile.mkdtemp(prefix="uhub-it-")
        cfg = base_config(tmp)
        mutate(cfg)
        try:
            s = Server(tmp, cfg)
        except RuntimeError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            assert tool in str(e), f"the daemon refused to start without naming {tool}: {e}"
            return
        made.append((s, tmp))
        p = s.project()
        refused_and_not_run(s, p, [tool, "x"], lambda: os.path.exists(os.path.join(marks, "x")),
                            "whitelisted file writable by others")
    finally:
        for s, tmp in made:
            s.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        h.cleanup()


# ---- the process tree ----------------------------------------------------------

def test_term_ignoring_setsid_grandchild_is_gone_after_timeout(server, proj):
    script = 'id -u; trap "" TERM; setsid /bin/sh -c "trap \\"\\" TERM; sleep 1000" & sleep 1000'
    job = server.job(proj["id"], ["/bin/sh", "-c", script], execution_backend_config={"timeout_seconds": 2})
    t0 = time.time()
    run = server.trigger(job["id"])
    uid = job_uid(server, run["id"])

    # the escapee exists before the timeout fires: two shells and two sleeps
    def both_sleeps():
        p = run_procs(uid, [run["id"]])
        return p if sum(x["cmdline"][:1] == ["sleep"] for x in p.values()) >= 2 else None
    procs = wait_for(both_sleeps, 10, "the job's two sleeps to start")
    done = server.wait_run(run["id"], timeout=30)
    elapsed = time.time() - t0
    assert done["status"] == "timed_out", done
    assert elapsed < 2 + 2 + 5, f"timed_out after {elapsed:.1f}s (timeout 2 s + grace 2 s)"
    assert_no_procs([uid], 1,
                    f"a TERM-ignoring setsid tree ({len(procs)} processes seen while running)", [run["id"]])


def test_background_child_holding_stdout_does_not_keep_the_run_alive(server, proj):
    """The main process exits 0 while a background child keeps the output
    pipe open: the run ends (succeeded) right away and the child goes too."""
    job = server.job(proj["id"], ["/bin/sh", "-c", "id -u; sleep 1000 & setsid sleep 1000 & echo done"])
    t0 = time.time()
    run = server.trigger(job["id"])
    done = server.wait_run(run["id"], timeout=30)
    assert done["status"] == "succeeded", done
    assert time.time() - t0 < 10, f"the run waited {time.time() - t0:.1f}s for children of an ended main process"
    uid = int(server.logs(run["id"]).split()[0])
    assert_no_procs([uid], 1, "children of a run whose main process ended", [run["id"]])


def test_processes_in_a_nested_user_and_pid_namespace_are_gone_after_timeout(server, proj):
    script = "id -u; unshare -Urpf --kill-child sleep 1000 & unshare -Urf sh -c 'trap \"\" TERM; sleep 1000' & sleep 1000"
    job = server.job(proj["id"], ["/bin/sh", "-c", script], execution_backend_config={"timeout_seconds": 2})
    run = server.trigger(job["id"])
    uid = job_uid(server, run["id"])
    wait_for(lambda: sum(st["cmdline"][:1] == ["sleep"] for st in run_procs(uid, [run["id"]]).values()) >= 3, 10,
             "the three sleeps (two in nested namespaces) to start")
    done = server.wait_run(run["id"], timeout=30)
    assert done["status"] == "timed_out", f"{done} {server.logs(run['id'])!r}"
    assert_no_procs([uid], 1, "processes in nested namespaces", [run["id"]])


def test_output_flood_keeps_the_daemon_responsive_and_bounded(server, proj):
    cap = server.config["logs"]["max_bytes_per_run"]
    job = server.job(proj["id"], ["/usr/bin/yes", "flooding the log"], execution_backend_config={"timeout_seconds": 3})
    run = server.trigger(job["id"])
    wait_for(lambda: run_get(server, run["id"])["status"] == "running", 10, "the flood to start")
    worst = 0.0
    while run_get(server, run["id"])["status"] == "running":
        t = time.time()
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        worst = max(worst, time.time() - t)
        time.sleep(0.2)
    assert worst < 1.0, f"/healthz took {worst:.2f}s while a run floods its output"
    done = run_get(server, run["id"])
    assert done["status"] == "timed_out", done
    assert done["log_truncated"] is True, done
    body = server.client().get(f"/runs/{run['id']}/logs").content
    assert len(body) <= 2 * cap, f"{len(body)} B of log kept with logs.max_bytes_per_run={cap}"
    assert body.startswith(b"flooding the log\n") and b"bytes omitted]" in body
    with open(f"/proc/{server.pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    # AddressSanitizer keeps freed memory in quarantine and adds its shadow:
    # the bound is the product's own only in a plain build.
    bound = 1024 if os.environ.get("UH_SANITIZED") else 256
    assert rss < bound * 1024, f"the daemon holds {rss // 1024} MiB after an output flood"


FLOOD = """
import os, time
print(os.getuid(), flush=True)
n = 0
for i in range(500):
    try:
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
        n += 1
    except OSError as e:
        print("fork failed after", n, "children:", e, flush=True)
        break
else:
    print("forked all", n, flush=True)
time.sleep(120)
"""


def test_fork_flood_is_bounded_by_pids_limit_and_leaves_nothing(server, proj):
    """A job that forks until refused and then holds on: the run's process
    count stays within local.pids_limit, the daemon keeps answering, a
    cancel ends it and nothing is left."""
    limit = server.config["local"]["pids_limit"]
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", FLOOD], execution_backend_config={"timeout_seconds": 30})
    run = server.trigger(job["id"])
    try:
        uid = job_uid(server, run["id"])
        peak = [0]

        def flooded():
            peak[0] = max(peak[0], len(run_procs(uid, [run["id"]])))
            return "fork" in server.logs(run["id"])

        wait_for(flooded, 20, "the flood to report how it ended", interval=0.1)
        for _ in range(10):
            peak[0] = max(peak[0], len(run_procs(uid, [run["id"]])))
        log = server.logs(run["id"])
        assert "fork failed" in log, f"500 forks went through with local.pids_limit={limit}: {log!r}"
        assert peak[0] <= limit, f"{peak[0]} processes in one run with local.pids_limit={limit}"
        t = time.time()
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        assert time.time() - t < 1.0, f"/healthz took {time.time() - t:.2f}s during a fork flood"
        assert run_get(server, run["id"])["status"] == "running"
    finally:
        server.client().post(f"/runs/{run['id']}/cancel", {})
    done = server.wait_run(run["id"], timeout=20)
    assert done["status"] == "canceled", done
    assert_no_procs([uid], 3, "the flood's processes", [run["id"]])


def test_shell_fork_flood_ends_and_leaves_nothing(server, proj):
    """The same with a shell that gives up at its first fork failure: the run
    ends by itself (failed), within its timeout, leaving nothing."""
    script = "id -u; for i in $(seq 1 500); do sleep 30 & done; wait"
    job = server.job(proj["id"], ["/bin/sh", "-c", script], execution_backend_config={"timeout_seconds": 10})
    run = server.trigger(job["id"])
    try:
        uid = job_uid(server, run["id"])
        done = server.wait_run(run["id"], timeout=30)
    finally:
        server.client().post(f"/runs/{run['id']}/cancel", {})
    assert done["status"] in ("failed", "timed_out"), done
    assert "fork" in server.logs(run["id"]).lower(), server.logs(run["id"])
    assert_no_procs([uid], 3, "the shell flood's processes", [run["id"]])


# ---- environment, /proc, isolation ------------------------------------------------

def test_daemon_environment_not_visible_to_the_job(adv):
    s = adv.server
    job = s.job(adv.project["id"], ["/usr/bin/env"])
    done = s.wait_run(s.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    out = s.logs(done["id"])
    assert adv.canary not in out and "UHUB_IT_CANARY" not in out, "the daemon's environment leaks into the job"
    daemon_env = dict(os.environ)
    leaked = []
    for line in out.splitlines():
        k, _, v = line.partition("=")
        if k in ("PATH", "LANG", "LC_ALL", "TZ", "TERM", "PWD", "SHLVL", "_"):
            continue
        if daemon_env.get(k) == v:
            leaked.append(k)
    assert not leaked, f"the job inherited the daemon's variables {leaked}"
    assert "UHUB_RUN_ID=" + done["id"] in out


def test_private_proc_hides_the_daemon(adv):
    s = adv.server
    job = s.job(adv.project["id"], ["/bin/cat", f"/proc/{s.pid}/environ"])
    done = s.wait_run(s.trigger(job["id"])["id"])
    out = s.logs(done["id"])
    assert adv.canary not in out, "a job read the daemon's environment"
    assert done["status"] == "failed" and done["exit_code"] != 0, \
        f"reading /proc/<daemon pid>/environ must fail: {done} {out!r}"
    job = s.job(adv.project["id"], ["/bin/ls", "/proc"])
    done = s.wait_run(s.trigger(job["id"])["id"])
    pids = sorted(int(x) for x in s.logs(done["id"]).split() if x.isdigit())
    assert str(s.pid) not in s.logs(done["id"]).split(), "the daemon's pid is visible in the job's /proc"
    assert len(pids) <= 3 and all(p < 100 for p in pids), f"the job's /proc shows foreign processes: {pids}"


def test_a_run_cannot_kill_another_runs_process(server, proj):
    secs = str(900 + secrets.randbelow(90))
    a_job = server.job(proj["id"], ["/bin/sh", "-c", f"id -u; exec /bin/sleep {secs}"])
    a = server.trigger(a_job["id"])
    try:
        uid = job_uid(server, a["id"])

        def sleep_pid():
            return next((p for p, st in run_procs(uid, [a["id"]]).items() if st["cmdline"] == ["/bin/sleep", secs]), None)
        pid = wait_for(sleep_pid, 10, "run A's sleep on the host")
        for cmd in (["/bin/kill", "-9", str(pid)], ["/bin/kill", "-9", "-1"], ["/bin/kill", "-9", "1"]):
            b = server.wait_run(server.trigger(server.job(proj["id"], cmd)["id"])["id"])
            assert b["status"] in ("failed", "succeeded"), b
            st = run_get(server, a["id"])
            assert st["status"] == "running", f"run A ended after run B ran {cmd}: {st}"
            assert os.path.exists(f"/proc/{pid}"), f"run A's process {pid} died after run B ran {cmd}"
        b = server.wait_run(server.trigger(server.job(proj["id"], ["/bin/kill", "-9", str(pid)])["id"])["id"])
        assert b["status"] == "failed" and b["exit_code"] != 0, \
            f"kill of another run's host pid must fail inside the run: {b} {server.logs(b['id'])!r}"
    finally:
        server.client().post(f"/runs/{a['id']}/cancel", {})
        server.wait_run(a["id"], timeout=20)


def proc_status_fields(text):
    f = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        f[k.strip()] = v.split()
    return f


def test_identity_uid_in_range_not_root_no_groups_no_capabilities(server, proj):
    job = server.job(proj["id"], ["/bin/cat", "/proc/self/status"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    f = proc_status_fields(server.logs(done["id"]))
    uids, gids = [int(x) for x in f["Uid"]], [int(x) for x in f["Gid"]]
    assert len(set(uids)) == 1 and UID_MIN <= uids[0] <= UID_MAX, f"Uid (real, eff, saved, fs): {uids}"
    assert 0 not in gids, f"Gid: {gids}"
    assert f.get("Groups", []) == [], f"supplementary groups: {f.get('Groups')}"
    for cap in ("CapEff", "CapPrm", "CapAmb"):
        assert int(f[cap][0], 16) == 0, f"{cap} = {f[cap][0]}: the job holds capabilities"
    job = server.job(proj["id"], ["/usr/bin/id"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    out = server.logs(done["id"]).strip()
    m = re.match(r"uid=(\d+)\S* gid=(\d+)\S* groups=(.*)$", out)
    assert m, out
    groups = set(re.findall(r"(\d+)", m.group(3)))
    assert UID_MIN <= int(m.group(1)) <= UID_MAX and groups <= {m.group(2)}, f"id: {out}"


def test_concurrent_runs_get_distinct_uids(server, proj, hd):
    gate = Gate(hd)
    job = server.job(proj["id"], ["/bin/sh", "-c", f"id -u; {gate.wait_cmd}"])
    a = server.trigger(job["id"])
    b = server.trigger(job["id"])
    try:
        la = wait_for(lambda: server.logs(a["id"]).strip(), 10, "run A's uid")
        lb = wait_for(lambda: server.logs(b["id"]).strip(), 10, "run B's uid")
        assert la != lb, f"two concurrent runs share uid {la}"
    finally:
        gate.open()
    assert server.wait_run(a["id"])["status"] == "succeeded"
    assert server.wait_run(b["id"])["status"] == "succeeded"


def interfaces(text):
    return {line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line}


def test_network_none_leaves_only_loopback(server, proj):
    job = server.job(proj["id"], ["/bin/cat", "/proc/net/dev"], execution_backend_config={"network": "none"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert interfaces(server.logs(done["id"])) == {"lo"}, server.logs(done["id"])
    with open("/proc/net/dev") as f:
        host = interfaces(f.read())
    if len(host) > 1:  # control: without "none" the run sees the host's interfaces
        job = server.job(proj["id"], ["/bin/cat", "/proc/net/dev"])
        done = server.wait_run(server.trigger(job["id"])["id"])
        assert interfaces(server.logs(done["id"])) == host


def test_working_dir_under_allowed_workdirs_is_the_cwd(server, proj):
    wd = os.path.join(server.dir, "workdirs")
    job = server.job(proj["id"], ["/bin/sh", "-c", "pwd"], execution_backend_config={"working_dir": wd})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    assert server.logs(done["id"]) == os.path.realpath(wd) + "\n"


def test_home_and_tmpdir_are_private_scratch_removed_after_without_following_symlinks(server, proj, hd):
    victim = hd.sub("victim")
    precious = os.path.join(victim, "precious")
    with open(precious, "w") as f:
        f.write("keep\n")
    script = (f'echo "HOME=$HOME"; echo "TMPDIR=$TMPDIR"; echo "UID=$(id -u)"; '
              f'stat -c "MODE=%a OWNER=%u" "$HOME"; '
              f'echo x > "$HOME/file"; echo y > "$TMPDIR/file"; '
              f'ln -s {victim} "$HOME/link"; ln -s {victim} "$TMPDIR/link"; mkdir "$HOME/sub"; '
              f'ln -s {precious} "$HOME/sub/plink"')
    job = server.job(proj["id"], ["/bin/sh", "-c", script])
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", f"{done} {server.logs(done['id'])!r}"
    kv = dict(l.split("=", 1) for l in server.logs(done["id"]).replace(" OWNER=", "\nOWNER=").splitlines()
              if "=" in l)
    home, tmpdir = kv.get("HOME", ""), kv.get("TMPDIR", "")
    assert home.startswith("/") and tmpdir.startswith("/"), f"HOME / TMPDIR not set: {kv}"
    assert int(kv["MODE"], 8) & 0o077 == 0 and kv["OWNER"] == kv["UID"], \
        f"HOME must be private to the run: mode {kv['MODE']} owner {kv['OWNER']} (run uid {kv['UID']})"
    assert os.path.exists(precious) and os.path.isdir(victim), "removing the scratch dir followed a symlink"
    # Clean-up follows the report (the whole process tree is gone by then).
    wait_for(lambda: not any(os.path.lexists(d) for d in (home, tmpdir)), 5,
             f"the run's scratch dirs {home} and {tmpdir} to be removed after the run")
    wait_for(lambda: not cgroup_dirs_of(done["id"]), 5, "the run's cgroups to be removed after the run")
    assert os.path.exists(precious) and os.path.isdir(victim), "removing the scratch dir followed a symlink"


def test_only_the_standard_descriptors_reach_the_job_and_stdin_is_empty(server, proj):
    job = server.job(proj["id"], ["/bin/ls", "-l", "/proc/self/fd/"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert done["status"] == "succeeded", done
    out = server.logs(done["id"])
    fds = dict((int(n), t) for n, t in re.findall(r"\s(\d+) -> (\S+)", out))
    assert sorted(fds)[:3] == [0, 1, 2], out
    # Beyond 0-2, ls holds one descriptor on the directory it lists, and the
    # run may keep the O_PATH descriptor of its own checked executable (an
    # interpreter of a #! script needs it as /dev/fd/N). Nothing else.
    extra = {n: t for n, t in fds.items() if n > 2 and not t.startswith("/proc/")
             and t != os.path.realpath("/bin/ls")}
    assert not extra, f"descriptors of the daemon leak into the job: {extra}\n{out}"
    stdin = re.search(r"\s0 -> (\S+)", out).group(1)
    assert stdin == "/dev/null", f"stdin of a run is {stdin}"
    job = server.job(proj["id"], ["/bin/cat"])
    done = server.wait_run(server.trigger(job["id"])["id"], timeout=15)
    assert done["status"] == "succeeded" and server.logs(done["id"]) == "", done


def test_no_core_dumps_and_bounded_open_files(server, proj):
    job = server.job(proj["id"], ["/bin/sh", "-c", "ulimit -c; ulimit -n"])
    done = server.wait_run(server.trigger(job["id"])["id"])
    core, nofile = server.logs(done["id"]).split()
    assert core == "0", f"core dumps allowed: ulimit -c = {core}"
    assert nofile != "unlimited" and int(nofile) <= 1048576, f"ulimit -n = {nofile}"


def test_mem_limit_ends_the_run_failed_with_reason_oom(server, proj):
    code = "import sys; print('start', flush=True); b = b'x' * (768 << 20); print('survived', len(b), flush=True)"
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", code],
                     execution_backend_config={"mem_limit": "64Mi"})
    done = server.wait_run(server.trigger(job["id"])["id"], timeout=30)
    out = server.logs(done["id"])
    assert "survived" not in out, f"768 MiB allocated under mem_limit 64Mi: {done}"
    assert done["status"] == "failed" and done["reason"] == "oom", \
        f"a run killed by its memory limit is failed with reason oom: {done} {out!r}"


def test_a_run_cannot_read_another_runs_home(server, proj, hd):
    gate = Gate(hd)
    a_job = server.job(proj["id"], ["/bin/sh", "-c",
                                    f'echo "$HOME"; echo s3cr3t > "$HOME/secret"; echo s3cr3t > "$TMPDIR/secret"; '
                                    f'echo written; {gate.wait_cmd}'])
    a = server.trigger(a_job["id"])
    try:
        wait_for(lambda: "written" in server.logs(a["id"]), 15, "run A to write its secret")
        home = server.logs(a["id"]).split("\n")[0]
        b_job = server.job(proj["id"], ["/bin/sh", "-c", f'cat "{home}/secret"; ls "{home}"; cat /tmp/secret'])
        b = server.wait_run(server.trigger(b_job["id"])["id"])
        assert "s3cr3t" not in server.logs(b["id"]), "run B read run A's files"
        assert b["status"] == "failed", b
    finally:
        gate.open()
    assert server.wait_run(a["id"])["status"] == "succeeded"


def test_two_daemons_sharing_a_uid_range_never_give_one_uid_to_two_runs(make_server, hd):
    """Two uhubs on one host whose local.uid_range overlap (here: the same
    two uids) and whose work roots are outside /tmp: a run of the second,
    started while a run of the first holds one uid, gets the other, so it
    cannot read the first run's HOME (0700: sharing the uid, it could). With
    both uids held, a third run is refused, not given a uid in use."""
    first = 3_900_000 + (os.getpid() % 4999) * 2
    gate, gate2 = Gate(hd), Gate(hd)

    def mutate(name):
        def m(cfg):
            cfg["local"]["uid_range"] = [first, first + 1]
            cfg["local"]["work_root"] = hd.sub("work-" + name + "-" + secrets.token_hex(4))
        return m
    a, b = make_server(mutate("a")), make_server(mutate("b"))
    a_job = a.job(a.project()["id"], ["/bin/sh", "-c",
                                      f'id -u; echo "$HOME"; echo s3cr3t > "$HOME/secret"; echo written; '
                                      f'{gate.wait_cmd}'])
    ra = a.trigger(a_job["id"])
    rb = None
    try:
        wait_for(lambda: "written" in a.logs(ra["id"]), 15, "run A to write its secret")
        uid_a, home = a.logs(ra["id"]).split("\n")[:2]
        pb = b.project()
        b_job = b.job(pb["id"], ["/bin/sh", "-c", f'id -u; cat "{home}/secret"; echo read=$?; {gate2.wait_cmd}'])
        rb = b.trigger(b_job["id"])
        wait_for(lambda: "read=" in b.logs(rb["id"]), 15, "run B to try")
        log_b = b.logs(rb["id"])
        uid_b = log_b.split("\n")[0]
        assert {int(uid_a), int(uid_b)} == {first, first + 1}, (uid_a, uid_b)
        assert "s3cr3t" not in log_b and "read=0" not in log_b, f"run B read run A's HOME: {log_b!r}"
        # Both uids are held now, one by each daemon: a third run is refused.
        third = b.wait_run(b.trigger(b.job(pb["id"], ["/bin/true"])["id"])["id"])
        assert (third["status"], third["reason"]) == ("error", "backend_unavailable"), third
        assert "another uhub" in third["message"], third
    finally:
        gate.open()
        gate2.open()
    assert a.wait_run(ra["id"])["status"] == "succeeded"
    if rb:
        assert b.wait_run(rb["id"])["status"] == "succeeded"
    # Freed, the uids serve either daemon again.
    again = b.wait_run(b.trigger(b.job(b.project()["id"], ["/usr/bin/id", "-u"])["id"])["id"])
    assert again["status"] == "succeeded" and int(b.logs(again["id"]).strip()) in (first, first + 1), again


def test_working_dir_symlink_escaping_allowed_workdirs_is_refused(server, proj):
    wd = os.path.join(server.dir, "workdirs")
    link = os.path.join(wd, "escape-" + secrets.token_hex(3))
    os.symlink("/root", link)
    r = server.client().post(f"/projects/{proj['id']}/jobs", {
        "name": "j-" + secrets.token_hex(4), "command": ["/bin/sh", "-c", "pwd"],
        "execution_backend_config": {"working_dir": link}})
    error_of(r, 400, field="execution_backend_config.working_dir", what="working_dir symlink to /root")
    # swapped for a symlink after the job was saved: checked again before the run starts
    sub = os.path.join(wd, "sub-" + secrets.token_hex(3))
    os.mkdir(sub)
    job = server.job(proj["id"], ["/bin/sh", "-c", "pwd; ls"], execution_backend_config={"working_dir": sub})
    os.rmdir(sub)
    os.symlink("/root", sub)
    r = server.client().post(f"/jobs/{job['id']}/runs", {})
    if r.status_code == 201:
        done = server.wait_run(r.json()["id"])
        out = server.logs(done["id"])
        assert "/root" not in out and done["status"] == "error", \
            f"a working_dir swapped for a symlink to /root after the job was saved: {done} {out!r}"
    else:
        error_of(r, 400, field="execution_backend_config.working_dir", what="trigger with a swapped working_dir")


def test_network_none_cannot_reach_the_daemon(server, proj):
    port = server.url.rsplit(":", 1)[1]
    code = ("import socket\ntry:\n socket.create_connection(('127.0.0.1', %s), timeout=3); print('connected')\n"
            "except OSError as e:\n print('refused', e)" % port)
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", code], execution_backend_config={"network": "none"})
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert server.logs(done["id"]).startswith("refused"), server.logs(done["id"])
    job = server.job(proj["id"], ["/usr/bin/python3", "-c", code])  # control: host network reaches it
    done = server.wait_run(server.trigger(job["id"])["id"])
    assert server.logs(done["id"]).startswith("connected"), server.logs(done["id"])


def test_sighup_reloads_the_whitelist_and_caps(make_server):
    s = make_server(lambda cfg: cfg["local"].update(allowed_executables=["/bin/echo"]))
    p = s.project()
    c = s.client()
    body = {"name": "t", "command": ["/bin/true"]}
    error_of(c.post(f"/projects/{p['id']}/jobs", body), 400, what="/bin/true before the reload")
    s.config["local"]["allowed_executables"] = ["/bin/echo", "/bin/true"]
    s.config["guardrails"]["max_timeout_seconds"] = 100
    with open(s.config_path, "w") as f:
        json.dump(s.config, f)
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: c.post(f"/projects/{p['id']}/jobs", body).status_code == 201, 5,
                 "SIGHUP to reload local.allowed_executables")
    e = error_of(c.post(f"/projects/{p['id']}/jobs", {"name": "u", "command": ["/bin/echo"],
                                                         "execution_backend_config": {"timeout_seconds": 200}}),
                 400, field="execution_backend_config.timeout_seconds", what="timeout above the reloaded cap")
    assert "100" in e["message"], e
    assert s.proc.poll() is None


def test_nothing_of_this_module_is_left_running(server):
    items = server.client().ok("GET", "/runs?limit=100")["items"]
    assert all(i["status"] in TERMINAL for i in items), [(i["id"], i["status"]) for i in items
                                                          if i["status"] not in TERMINAL]
