"""Malformed HTTP on raw sockets: oversized headers, a Content-Length far above
the body sent, broken chunked encoding, NUL bytes in the path and headers,
invalid UTF-8 in query strings and header values, path traversal in ids,
deep JSON through a merge patch, and a slowloris client. Each gets a 4xx
(libmicrohttpd's own HTML page for what never reaches uhub's handler, uhub's
JSON error for what does), the daemon stays up, and another client is served
meanwhile. Malformed JSON bodies and oversized bodies are in
test_validation.py and not repeated here."""
import json
import socket
import threading
import time

import pytest
import requests


def addr(server):
    host, port = server.url.split("//")[1].rsplit(":", 1)
    return host, int(port)


def exchange(server, data, timeout=10, half_close=False):
    """Send raw bytes, return (status, headers bytes, body bytes) of the
    first answer; status None when the connection closed without one."""
    k = socket.create_connection(addr(server), timeout=timeout)
    try:
        k.sendall(data)
        if half_close:
            k.shutdown(socket.SHUT_WR)
        buf = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = k.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                clen = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if clen and len(body) >= int(clen[0].split(b":")[1]):
                    break
        if not buf.startswith(b"HTTP/1."):
            return None, b"", buf
        head, _, body = buf.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), head, body
    finally:
        k.close()


def still_serving(server):
    """The daemon is alive and answers another client promptly."""
    assert server.proc.poll() is None, "the daemon died:\n" + server.read_log()[-2000:]
    t0 = time.time()
    r = server.client().get("/me", timeout=5)
    assert r.status_code == 200, r.text
    assert time.time() - t0 < 2


def auth(server):
    return b"Authorization: Bearer " + server.admin_token.encode() + b"\r\n"


def req(server, line, headers=b"", body=b""):
    return line + b"\r\nHost: x\r\n" + auth(server) + headers + b"Connection: close\r\n\r\n" + body


def json_error(status, head, body, what):
    assert status is not None and 400 <= status < 500, f"{what}: status {status}: {body[:200]!r}"
    assert b"application/json" in head.lower(), f"{what}: not uhub's JSON error: {head!r}"
    e = json.loads(body)["error"]
    assert e["code"] and e["message"], e
    return e


def test_oversized_headers_are_refused(server):
    status, _, body = exchange(server, req(server, b"GET /api/v1/me HTTP/1.1", b"X-Big: " + b"a" * 200_000 + b"\r\n"))
    assert status is not None and 400 <= status < 500, f"oversized header: {status} {body[:200]!r}"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    status, _, body = exchange(server, req(server, b"GET /api/v1/me HTTP/1.1", many))
    assert status is not None and 400 <= status < 500, f"20000 headers: {status} {body[:200]!r}"
    still_serving(server)


def test_huge_content_length_with_a_small_body_is_413_at_once(server):
    t0 = time.time()
    status, head, body = exchange(server, req(server, b"POST /api/v1/projects HTTP/1.1",
                                              b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n",
                                              b"{\"name\":"), timeout=10)
    e = json_error(status, head, body, "Content-Length 99999999999")
    assert status == 413 and e["code"] == "payload_too_large", e
    assert time.time() - t0 < 5, "the daemon waited for a body it would refuse anyway"
    # A Content-Length that is not a number never reaches the handler.
    status, _, body = exchange(server, req(server, b"POST /api/v1/projects HTTP/1.1",
                                           b"Content-Type: application/json\r\nContent-Length: 12x\r\n", b"{}"))
    assert status is not None and 400 <= status < 500, f"bad Content-Length: {status} {body[:200]!r}"
    still_serving(server)


@pytest.mark.parametrize("chunks", [b"ZZZ\r\n{}\r\n0\r\n\r\n", b"-5\r\n{}\r\n0\r\n\r\n",
                                    b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"],
                         ids=["not-hex", "negative", "overflow", "no-crlf"])
def test_bad_chunked_encoding_is_refused(server, chunks):
    status, _, body = exchange(server, req(server, b"POST /api/v1/projects HTTP/1.1",
                                           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                                           chunks), half_close=True)
    assert status is not None and 400 <= status < 500, f"chunks {chunks!r}: {status} {body[:200]!r}"
    still_serving(server)


def test_nul_bytes_in_path_and_headers_are_refused(server):
    status, _, body = exchange(server, req(server, b"GET /api/v1/runs/r_a\x00b HTTP/1.1"))
    assert status is not None and 400 <= status < 500, f"NUL in path: {status} {body[:200]!r}"
    status, _, body = exchange(server, req(server, b"GET /api/v1/runs/r_a%00b HTTP/1.1"))
    assert status is not None and 400 <= status < 500, f"%00 in path: {status} {body[:200]!r}"
    # A NUL inside the token must not turn a wrong token into a right one.
    tok = server.admin_token.encode()
    line = (b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok[:12] + b"\x00" + tok[12:] +
            b"\r\nConnection: close\r\n\r\n")
    status, _, body = exchange(server, line)
    assert status is not None and 400 <= status < 500, f"NUL in Authorization: {status} {body[:200]!r}"
    status, _, body = exchange(server, req(server, b"GET /api/v1/me HTTP/1.1", b"X-N\x00ul: v\r\n"))
    assert status is None or status < 500, f"NUL in a header name: {status} {body[:200]!r}"
    still_serving(server)


def test_invalid_utf8_in_query_and_headers_is_a_clean_4xx(server):
    for q in (b"/api/v1/runs?job=%ff%fe", b"/api/v1/runs?limit=\xff", b"/api/v1/audit?since=2030-01-01T00:00:00%c3Z",
              b"/api/v1/runs?before=\xc3\x28"):
        status, head, body = exchange(server, req(server, b"GET " + q + b" HTTP/1.1"))
        assert status is not None and 400 <= status < 500, f"{q!r}: {status} {body[:200]!r}"
        if b"application/json" in head.lower():
            json_error(status, head, body, repr(q))
    status, head, body = exchange(server, req(server, b"GET /api/v1/runs/r_x/logs HTTP/1.1",
                                              b"Accept: text/event-stream\r\nLast-Event-ID: \xff\xfe12\r\n"))
    assert status is not None and 400 <= status < 500, f"Last-Event-ID: {status} {body[:200]!r}"
    still_serving(server)


@pytest.mark.parametrize("path", [b"/api/v1/runs/..%2f..%2fetc", b"/api/v1/runs/../../etc/passwd",
                                  b"/api/v1/runs/%2e%2e/%2e%2e/etc", b"/api/v1/projects/..%2F..%2Fuhub.db/jobs",
                                  b"/api/v1/runs/" + b"a" * 5000])
def test_path_traversal_in_ids_is_a_json_4xx(server, path):
    status, head, body = exchange(server, req(server, b"GET " + path + b" HTTP/1.1"))
    assert status in (400, 404), f"{path!r}: {status} {body[:200]!r}"
    if b"application/json" in head.lower():
        json_error(status, head, body, repr(path))
    assert b"root:" not in body and b"SQLite" not in body
    still_serving(server)


def test_deep_json_in_a_merge_patch_is_400(server):
    p = server.project()
    deep = b"{\"execution_backend_config\":" + b"{\"a\":" * 50_000 + b"1" + b"}" * 50_001
    status, head, body = exchange(server, req(server, b"PATCH /api/v1/projects/" + p["id"].encode() + b" HTTP/1.1",
                                              b"Content-Type: application/merge-patch+json\r\n"
                                              b"Content-Length: %d\r\n" % len(deep), deep))
    e = json_error(status, head, body, "deep merge patch")
    assert status in (400, 413), e
    assert server.client().ok("GET", f"/projects/{p['id']}")["execution_backend_config"] == {}
    still_serving(server)


def test_slowloris_does_not_hold_up_other_clients(server):
    stop = threading.Event()
    socks = []

    def drip(k):
        data = b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for b in data:
            if stop.is_set():
                return
            try:
                k.sendall(bytes([b]))
            except OSError:
                return
            stop.wait(0.1)

    threads = []
    for _ in range(20):
        k = socket.create_connection(addr(server), timeout=5)
        socks.append(k)
        t = threading.Thread(target=drip, args=(k,), daemon=True)
        t.start()
        threads.append(t)
    try:
        # 15 requests paced over ~3 s while the 20 slow clients drip
        for _ in range(15):
            still_serving(server)
            stop.wait(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for k in socks:
            k.close()
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
