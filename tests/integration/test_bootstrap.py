"""First admin on an empty store (SPEC §6): from UHUB_BOOTSTRAP_TOKEN, from
UHUB_BOOTSTRAP_TOKEN_FILE, or generated, written to a 0600 file and printed
once; never again on a store that has users."""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading

import pytest
import requests

from conftest import BIN, base_config


def start(tmp, env_extra):
    cfg = base_config(tmp)
    path = os.path.join(tmp, "uhub.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UHUB_")}
    env.update(env_extra)
    p = subprocess.Popen([BIN, "serve", "--config", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env, cwd=tmp)
    lines = []
    for raw in iter(p.stdout.readline, b""):
        line = raw.decode()
        lines.append(line)
        if "listening on" in line:
            url = line.strip().split("listening on ")[1]
            threading.Thread(target=lambda: [None for _ in iter(p.stdout.readline, b"")], daemon=True).start()
            return p, url, lines, cfg
    p.kill()
    raise AssertionError("uhub did not start: " + "".join(lines))


def stop(p):
    p.terminate()
    p.wait(30)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="uhub-boot-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def me(url, token):
    return requests.get(url + "/api/v1/me", headers={"Authorization": "Bearer " + token}, timeout=10)


def test_generated_token_is_printed_once_and_kept_in_a_0600_file(tmp):
    p, url, lines, cfg = start(tmp, {})
    try:
        printed = [l.strip() for l in lines if l.startswith("uht_")]
        assert len(printed) == 1, f"the generated token must be printed once: {lines}"
        token = printed[0]
        db = cfg["db"][len("sqlite:"):]
        path = db + ".admin-token"
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        with open(path) as f:
            assert f.read().strip() == token
        r = me(url, token)
        assert r.status_code == 200 and r.json()["role"] == "admin", r.text
    finally:
        stop(p)
    # A store with users: nothing generated, nothing printed.
    p, url, lines, _ = start(tmp, {})
    try:
        assert not [l for l in lines if l.startswith("uht_")], lines
        assert me(url, token).status_code == 200
    finally:
        stop(p)


def test_bootstrap_token_from_the_environment_is_not_left_in_the_daemons_environ(tmp):
    token = "uht_boot_" + "x" * 40
    p, url, lines, _ = start(tmp, {"UHUB_BOOTSTRAP_TOKEN": token})
    try:
        assert me(url, token).status_code == 200
        assert not [l for l in lines if token in l], "the given token must not be echoed"
        with open(f"/proc/{p.pid}/environ", "rb") as f:
            assert token.encode() not in f.read(), "the bootstrap token stays in /proc/PID/environ"
    finally:
        stop(p)


def test_bootstrap_token_file_and_short_tokens(tmp):
    tf = os.path.join(tmp, "boot.token")
    with open(tf, "w") as f:
        f.write("uht_file_" + "y" * 40 + "\n")
    p, url, _, _ = start(tmp, {"UHUB_BOOTSTRAP_TOKEN_FILE": tf})
    try:
        assert me(url, "uht_file_" + "y" * 40).status_code == 200
    finally:
        stop(p)
    other = tempfile.mkdtemp(prefix="uhub-boot-")
    try:
        cfg = base_config(other)
        path = os.path.join(other, "uhub.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith("UHUB_")}
        env["UHUB_BOOTSTRAP_TOKEN"] = "short"
        r = subprocess.run([BIN, "serve", "--config", path], env=env, cwd=other, capture_output=True, timeout=30)
        assert r.returncode != 0 and b"at least 32" in r.stderr, r.stderr
    finally:
        shutil.rmtree(other, ignore_errors=True)
