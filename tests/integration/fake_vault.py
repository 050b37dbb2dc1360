#!/usr/bin/env python3
"""A fake of HashiCorp Vault's published HTTP API, for tests.

Vault itself cannot be installed here, so this speaks the documented subset
uhub uses (https://developer.hashicorp.com/vault/api-docs):

  GET  /v1/{mount}/data/{path}        KV v2 read of the latest version
  POST /v1/auth/approle/login         {"role_id","secret_id"} -> auth block
  GET  /v1/auth/token/lookup-self     data.ttl, data.renewable, ...
  POST /v1/auth/token/renew-self      auth block with the new lease_duration

with Vault's answer shapes: a KV read answers
{"data":{"data":{...},"metadata":{"created_time","custom_metadata",
"deletion_time","destroyed","version"}}}; a missing secret 404 {"errors":[]};
a soft-deleted or destroyed latest version 404 with data.data null and the
metadata (deletion_time set / destroyed true); a missing, expired, revoked or
unprivileged token 403 {"errors":["permission denied"]}.

Policies are simplified: a token carries a list of path prefixes (inside the
mount, e.g. "app/"; "*" for all) it may read.

Test control, either as a Python object (FakeVault(...).start(), .url,
.put_secret(), .delete_latest(), .destroy_latest(), .add_token(),
.add_approle(), .revoke(), .fail_next(), .count(), .counts) or over HTTP at
/__fake__/... (JSON bodies, see Handler._admin), e.g.

  POST /__fake__/secret   {"path":"app/db","data":{"password":"x"}}
  POST /__fake__/token    {"token":"t","policies":["app/"],"ttl":0,"renewable":true}
  GET  /__fake__/counts   {"/v1/secret/data/app/db": 3, ...}

Run alone: python3 fake_vault.py --port N [--tls CERT KEY]
[--exit-on-stdin-eof]; it prints "listening URL" on stdout once it accepts
connections (port 0: any free port, the URL says which).
"""

import argparse
import datetime
import json
import secrets as pysecrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def _now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Token:
    def __init__(self, token, policies, ttl, renewable, explicit_max_ttl=0):
        self.token = token
        self.policies = list(policies)
        self.ttl = int(ttl)  # 0: never expires
        self.renewable = bool(renewable)
        self.explicit_max_ttl = int(explicit_max_ttl)
        self.created = time.time()
        self.expires = self.created + self.ttl if self.ttl else None
        self.accessor = str(uuid.uuid4())

    def remaining(self):
        if self.expires is None:
            return 0
        return max(0, int(round(self.expires - time.time())))

    def valid(self):
        return self.expires is None or time.time() < self.expires

    def may_read(self, path):
        return any(p == "*" or path.startswith(p) for p in self.policies)


class FakeVault:
    """A fake Vault server. tls: None for plain HTTP, or (cert_file, key_file)."""

    def __init__(self, tls=None, host="127.0.0.1", port=0, mount="secret", admin=True):
        self.tls = tls
        self.host = host
        self.port = port
        self.mount = mount
        self.admin = admin
        self.lock = threading.Lock()
        self.kv = {}  # path -> list of versions {"data","created_time","deletion_time","destroyed"}
        self.tokens = {}  # token -> _Token
        self.approles = {}  # role_id -> {"secret_id","policies","token_ttl","renewable"}
        self.counts = {}  # request path -> count
        self.failures = []  # [remaining, status, path prefix or None]
        self.delay = 0.0  # seconds before answering (timeouts)
        self._server = None
        self._thread = None
        self._ctx = None

    # ---- life ----

    def start(self):
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def finish_request(self, request, client_address):
                # the TLS handshake happens here, in the request's own
                # thread, so a stuck or refusing client blocks no one
                if fake._ctx is not None:
                    try:
                        request = fake._ctx.wrap_socket(request, server_side=True)
                    except (ssl.SSLError, OSError):
                        try:
                            request.close()
                        except OSError:
                            pass
                        return
                super().finish_request(request, client_address)

            def handle_error(self, request, client_address):
                pass  # a client that went away is no news

        self._ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
            self._ctx = ctx
        # a Handler class per fake, so two fakes in one process stay apart
        handler = type("FakeVaultHandler", (Handler,), {"fake": fake})
        self._server = Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def url(self):
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # ---- control ----

    def put_secret(self, path, data):
        with self.lock:
            vs = self.kv.setdefault(path.strip("/"), [])
            vs.append({"data": dict(data), "created_time": _now_rfc3339(), "deletion_time": "", "destroyed": False})
            return len(vs)

    def delete_latest(self, path):
        with self.lock:
            self.kv[path.strip("/")][-1]["deletion_time"] = _now_rfc3339()

    def destroy_latest(self, path):
        with self.lock:
            v = self.kv[path.strip("/")][-1]
            v["destroyed"] = True
            v["data"] = None

    def add_token(self, token=None, policies=("*",), ttl=0, renewable=True, explicit_max_ttl=0):
        token = token or "hvs." + pysecrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = _Token(token, policies, ttl, renewable, explicit_max_ttl)
        return token

    def add_approle(self, role_id, secret_id, policies=("*",), token_ttl=0, renewable=True):
        # token_ttl 0: tokens that never expire (a real Vault would apply
        # the auth mount's default TTL instead)
        with self.lock:
            self.approles[role_id] = {
                "secret_id": secret_id,
                "policies": list(policies),
                "token_ttl": int(token_ttl),
                "renewable": bool(renewable),
            }

    def revoke(self, token=None):
        """Revoke one token, or every token when None."""
        with self.lock:
            if token is None:
                self.tokens.clear()
            else:
                self.tokens.pop(token, None)

    def fail_next(self, n, status=500, prefix=None):
        with self.lock:
            self.failures.append([int(n), int(status), prefix])

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def reset_counts(self):
        with self.lock:
            self.counts.clear()

    # ---- the API (called with the request's path, token, body) ----

    def _take_failure(self, path):
        with self.lock:
            for f in self.failures:
                if f[0] > 0 and (f[2] is None or path.startswith(f[2])):
                    f[0] -= 1
                    return f[1]
        return None

    def _token(self, tok):
        with self.lock:
            t = self.tokens.get(tok or "")
            if t and not t.valid():
                del self.tokens[tok]
                return None
            return t

    def handle(self, method, path, token, body):
        """Returns (status, json object)."""
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
        st = self._take_failure(path)
        if st is not None:
            return st, {"errors": ["fake failure"]}
        if self.delay:
            time.sleep(self.delay)
        denied = (403, {"errors": ["permission denied"]})
        if path == "/v1/auth/approle/login" and method in ("POST", "PUT"):
            try:
                role_id, secret_id = body["role_id"], body["secret_id"]
            except (TypeError, KeyError):
                return 400, {"errors": ["missing role_id or secret_id"]}
            with self.lock:
                role = self.approles.get(role_id)
            if not role:
                return 400, {"errors": ["invalid role ID"]}
            if role["secret_id"] != secret_id:
                return 400, {"errors": ["invalid secret id"]}
            tok = self.add_token(None, role["policies"], role["token_ttl"], role["renewable"])
            return 200, self._envelope(auth=self._auth(self._token(tok)))
        if path == "/v1/auth/token/lookup-self" and method == "GET":
            t = self._token(token)
            if not t:
                return denied
            return 200, self._envelope(
                data={
                    "accessor": t.accessor,
                    "creation_time": int(t.created),
                    "creation_ttl": t.ttl,
                    "display_name": "token",
                    "entity_id": "",
                    "expire_time": None,
                    "explicit_max_ttl": t.explicit_max_ttl,
                    "id": t.token,
                    "issue_time": _now_rfc3339(),
                    "meta": None,
                    "num_uses": 0,
                    "orphan": False,
                    "path": "auth/token/create",
                    "policies": ["default"],
                    "renewable": t.renewable,
                    "ttl": t.remaining(),
                    "type": "service",
                }
            )
        if path == "/v1/auth/token/renew-self" and method in ("POST", "PUT"):
            t = self._token(token)
            if not t:
                return denied
            if not t.renewable or t.ttl == 0:
                return 400, {"errors": ["lease is not renewable"]}
            with self.lock:
                new_exp = time.time() + t.ttl
                if t.explicit_max_ttl:
                    new_exp = min(new_exp, t.created + t.explicit_max_ttl)
                t.expires = new_exp
            return 200, self._envelope(auth=self._auth(t))
        prefix = f"/v1/{self.mount}/data/"
        if path.startswith(prefix) and method == "GET":
            t = self._token(token)
            kvpath = unquote(path[len(prefix):])
            if not t or not t.may_read(kvpath):
                return denied
            with self.lock:
                vs = self.kv.get(kvpath)
                if not vs:
                    return 404, {"errors": []}
                v = vs[-1]
                meta = {
                    "created_time": v["created_time"],
                    "custom_metadata": None,
                    "deletion_time": v["deletion_time"],
                    "destroyed": v["destroyed"],
                    "version": len(vs),
                }
                if v["deletion_time"] or v["destroyed"]:
                    return 404, self._envelope(data={"data": None, "metadata": meta})
                return 200, self._envelope(data={"data": dict(v["data"]), "metadata": meta})
        if path.startswith("/v1/"):
            return denied if not self._token(token) else (404, {"errors": []})
        return 404, {"errors": []}

    @staticmethod
    def _auth(t):
        return {
            "client_token": t.token,
            "accessor": t.accessor,
            "policies": ["default"],
            "token_policies": ["default"],
            "metadata": {},
            "lease_duration": t.remaining() if t.ttl else 0,
            "renewable": t.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
        }

    @staticmethod
    def _envelope(data=None, auth=None):
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": auth,
        }

    # ---- the HTTP control interface ----

    def admin_call(self, method, name, body):
        if name == "health":
            return 200, {"ok": True}
        if name == "counts" and method == "GET":
            with self.lock:
                return 200, dict(self.counts)
        if method != "POST":
            return 405, {"errors": ["use POST"]}
        b = body or {}
        if name == "secret":
            return 200, {"version": self.put_secret(b["path"], b["data"])}
        if name == "delete":
            self.delete_latest(b["path"])
        elif name == "destroy":
            self.destroy_latest(b["path"])
        elif name == "token":
            return 200, {
                "token": self.add_token(
                    b.get("token"), b.get("policies", ["*"]), b.get("ttl", 0), b.get("renewable", True),
                    b.get("explicit_max_ttl", 0)
                )
            }
        elif name == "approle":
            self.add_approle(
                b["role_id"], b["secret_id"], b.get("policies", ["*"]), b.get("token_ttl", 0),
                b.get("renewable", True)
            )
        elif name == "revoke":
            self.revoke(b.get("token"))
        elif name == "fail":
            self.fail_next(b.get("n", 1), b.get("status", 500), b.get("prefix"))
        elif name == "delay":
            self.delay = float(b.get("seconds", 0))
        elif name == "reset_counts":
            self.reset_counts()
        else:
            return 404, {"errors": ["no such control"]}
        return 200, {"ok": True}


class Handler(BaseHTTPRequestHandler):
    fake = None
    protocol_version = "HTTP/1.1"
    server_version = "fake-vault"

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _send(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _do(self, method):
        try:
            body = self._body()
            path = urlsplit(self.path).path
            if path.startswith("/__fake__/"):
                if not self.fake.admin:
                    return self._send(404, {"errors": []})
                try:
                    st, obj = self.fake.admin_call(method, path[len("/__fake__/"):], body)
                except (KeyError, TypeError, ValueError, IndexError) as e:
                    st, obj = 400, {"errors": [f"bad control request: {e!r}"]}
                return self._send(st, obj)
            st, obj = self.fake.handle(method, path, self.headers.get("X-Vault-Token"), body)
            self._send(st, obj)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self._do("GET")

    def do_POST(self):
        self._do("POST")

    def do_PUT(self):
        self._do("PUT")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--mount", default="secret")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when standard input closes (a parent that dies takes the fake with it)")
    a = ap.parse_args()
    fv = FakeVault(tls=tuple(a.tls) if a.tls else None, host=a.host, port=a.port, mount=a.mount).start()
    print(f"listening {fv.url}", flush=True)
    try:
        if a.exit_on_stdin_eof:
            while sys.stdin.buffer.read(4096):
                pass
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    fv.stop()


if __name__ == "__main__":
    main()
