"""Run logs (SPEC §8): plain text, live follow, SSE with resume, NDJSON, the
per-run cap, invalid UTF-8, and stdout/stderr order."""
import json
import re
import time

import pytest

from conftest import HostDir, Gate, LineReader, error_of, parse_time, sse_events


@pytest.fixture(scope="module")
def proj(server):
    return server.project()


@pytest.fixture(scope="module")
def gates():
    d = HostDir()
    yield d
    d.cleanup()


def finished_run(server, proj, command, **fields):
    job = server.job(proj["id"], command, **fields)
    run = server.trigger(job["id"])
    done = server.wait_run(run["id"])
    return done


def status_of(server, run_id):
    return server.client().ok("GET", f"/runs/{run_id}")["status"]


def sse_text(ev):
    """The text of a `log` event. SPEC §8 does not fix the encoding of the
    data field: plain text (split over data lines, SSE's rule) or a JSON
    object / string carrying it are both taken."""
    d = ev["data"] or ""
    if d[:1] in ("{", '"'):
        try:
            v = json.loads(d)
            if isinstance(v, str):
                return v
            if isinstance(v, dict) and isinstance(v.get("text"), str):
                return v["text"]
        except ValueError:
            pass
    return d


def test_plain_log_is_text_plain_utf8_with_output_as_written(server, proj):
    done = finished_run(server, proj, ["/bin/sh", "-c", "printf 'line one\\nno newline at end'"])
    assert done["status"] == "succeeded", done
    r = server.client().get(f"/runs/{done['id']}/logs")
    assert r.status_code == 200, r.text
    ctype = r.headers.get("Content-Type", "").replace(" ", "").lower()
    assert ctype == "text/plain;charset=utf-8", f"Content-Type {r.headers.get('Content-Type')!r}"
    assert r.content == b"line one\nno newline at end", r.content


def test_log_of_unknown_run_is_404(server):
    error_of(server.client().get("/runs/does-not-exist/logs"), 404, "not_found")


def test_stdout_and_stderr_both_kept_in_arrival_order(server, proj):
    script = "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2"
    done = finished_run(server, proj, ["/bin/sh", "-c", script])
    assert done["status"] == "succeeded", done
    assert server.logs(done["id"]) == "out1\nerr1\nout2\nerr2\n"


def test_invalid_utf8_is_replaced_by_u_fffd(server, proj):
    done = finished_run(server, proj, ["/bin/sh", "-c", "printf 'a\\377b\\n\\303\\n\\342\\202\\254ok\\n'"])
    assert done["status"] == "succeeded", done
    r = server.client().get(f"/runs/{done['id']}/logs")
    assert r.status_code == 200
    body = r.content
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AssertionError(f"the log is not valid UTF-8: {body!r}")
    assert text.startswith("a\ufffdb\n\ufffd"), f"invalid bytes not replaced by U+FFFD: {body!r}"
    assert text.endswith("\u20acok\n"), f"valid multi-byte UTF-8 must be kept: {body!r}"


def test_utf8_character_split_across_writes_is_kept_whole(server, proj):
    """Output that is valid UTF-8 as a whole stays as written, even when a
    character arrives in two writes (and two chunks)."""
    done = finished_run(server, proj, ["/bin/sh", "-c", "printf 'x\\342'; sleep 0.3; printf '\\202\\254y\\n'"])
    assert done["status"] == "succeeded", done
    assert server.logs(done["id"]) == "x\u20acy\n", f"split character mangled: {server.logs(done['id'])!r}"
    r = server.client().get(f"/runs/{done['id']}/logs?format=ndjson")
    text = "".join(json.loads(l)["text"] for l in r.content.decode("utf-8").split("\n") if l)
    assert text == "x\u20acy\n", f"NDJSON view of a split character: {text!r}"
    with server.client().get(f"/runs/{done['id']}/logs", headers={"Accept": "text/event-stream"},
                             stream=True, timeout=(5, 30)) as r:
        text = "".join(sse_text(e) for e in sse_events(r) if e["event"] == "log")
    assert text == "x\u20acy\n", f"SSE view of a split character: {text!r}"


def test_follow_streams_output_while_running_and_ends_when_terminal(server, proj, gates):
    gate = Gate(gates)
    job = server.job(proj["id"], ["/bin/sh", "-c", f"echo first; {gate.wait_cmd}; echo second"])
    run = server.trigger(job["id"])
    c = server.client()
    with c.get(f"/runs/{run['id']}/logs?follow=1", stream=True, timeout=(5, 30)) as r:
        assert r.status_code == 200, r.text
        rd = LineReader(r)
        line = rd.readline()
        assert line == b"first\n", f"follow gave {line!r} first"
        # The job cannot end before the gate opens: the line arrived live.
        st = status_of(server, run["id"])
        assert st == "running", f"first line read, run should still be running, is {st}"
        gate.open()
        rest = rd.read_rest()
    assert rest == b"second\n", f"follow, after the first line: {rest!r}"
    st = status_of(server, run["id"])
    assert st == "succeeded", f"follow ended but the run is {st}"
    # follow on a terminal run: everything, then the end
    r = c.get(f"/runs/{run['id']}/logs?follow=1", timeout=10)
    assert r.status_code == 200 and r.content == b"first\nsecond\n", r.content


def test_large_output_is_served_whole_and_in_order_by_every_view(server, proj, gates):
    """600 KB (under the 1 MiB cap), followed live from the first byte."""
    gate = Gate(gates)
    n = 8000
    script = f'{gate.wait_cmd}; i=0; while [ $i -lt {n} ]; do echo "row $i of {n} ........................................................"; i=$((i+1)); done'
    full = "".join(f"row {i} of {n} ........................................................\n" for i in range(n))
    job = server.job(proj["id"], ["/bin/sh", "-c", script])
    run = server.trigger(job["id"])
    c = server.client()
    with c.get(f"/runs/{run['id']}/logs?follow=1", stream=True, timeout=(5, 60)) as r:
        assert r.status_code == 200
        gate.open()
        body = b"".join(r.iter_content(chunk_size=65536)).decode()
    assert body == full, f"follow delivered {len(body)} B, expected {len(full)} B (first difference at " \
                         f"{next((i for i, (a, b) in enumerate(zip(body, full)) if a != b), min(len(body), len(full)))})"
    done = server.wait_run(run["id"])
    assert done["status"] == "succeeded" and done["log_truncated"] is False, done
    assert server.logs(run["id"]) == full
    r = c.get(f"/runs/{run['id']}/logs?format=ndjson")
    assert "".join(json.loads(l)["text"] for l in r.content.decode().split("\n") if l) == full
    with c.get(f"/runs/{run['id']}/logs", headers={"Accept": "text/event-stream"}, stream=True,
               timeout=(5, 60)) as r:
        events = list(sse_events(r))
    logs = [e for e in events if e["event"] == "log"]
    assert events[-1]["event"] == "end" and "".join(sse_text(e) for e in logs) == full
    check_ids_are_byte_offsets(logs, full)


def test_follow_of_a_queued_run_waits_for_it(server, proj, gates):
    gate = Gate(gates)
    job = server.job(proj["id"], ["/bin/sh", "-c", f"{gate.wait_cmd}; echo from-first"], max_concurrent=1)
    first = server.trigger(job["id"])
    second = server.trigger(job["id"])
    assert second["status"] == "queued", second
    c = server.client()
    with c.get(f"/runs/{second['id']}/logs?follow=1", stream=True, timeout=(5, 30)) as r:
        assert r.status_code == 200, r.text
        gate.open()
        body = LineReader(r).read_rest()
    assert body == b"from-first\n", f"follow of a queued run: {body!r}"
    assert status_of(server, second["id"]) == "succeeded"
    assert server.wait_run(first["id"])["status"] == "succeeded"


def check_ids_are_byte_offsets(events, full):
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"log event ids must increase: {ids}"
    starts, ends, pos = [], [], 0
    for e in events:
        n = len(sse_text(e).encode())
        starts.append(pos)
        pos += n
        ends.append(pos)
    assert ids == starts or ids == ends, \
        f"log event ids {ids} are not byte offsets (starts {starts}, ends {ends})"
    assert pos == len(full.encode())


def test_sse_live_events_with_offsets_resume_and_end_event(server, proj, gates):
    gate = Gate(gates)
    script = f"echo alpha; {gate.wait_cmd}; echo beta; sleep 0.2; echo gamma"
    job = server.job(proj["id"], ["/bin/sh", "-c", script])
    run = server.trigger(job["id"])
    c = server.client()
    hdr = {"Accept": "text/event-stream"}
    events = []
    with c.get(f"/runs/{run['id']}/logs?follow=1", headers=hdr, stream=True, timeout=(5, 30)) as r:
        assert r.status_code == 200, r.text
        assert r.headers.get("Content-Type", "").startswith("text/event-stream"), r.headers
        it = sse_events(r)
        ev = next(it)
        assert ev["event"] == "log", f"first event: {ev}"
        assert sse_text(ev) == "alpha\n", f"first log event: {ev}"
        assert ev["id"] is not None and ev["id"].isdigit(), f"log event without a numeric id: {ev}"
        assert status_of(server, run["id"]) == "running", "the first event must arrive while the job runs"
        events.append(ev)
        gate.open()
        for ev in it:
            events.append(ev)
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "end", f"the stream must end with an `end` event: {kinds}"
    assert all(k == "log" for k in kinds[:-1]), f"unexpected events: {kinds}"
    end = json.loads(events[-1]["data"])
    assert end["id"] == run["id"] and end["status"] == "succeeded", f"end event data: {end}"
    logs = events[:-1]
    full = "".join(sse_text(e) for e in logs)
    assert full == "alpha\nbeta\ngamma\n" == server.logs(run["id"]), f"SSE text: {full!r}"
    check_ids_are_byte_offsets(logs, full)

    # Resume after the first event: only the rest, then end.
    first_id = logs[0]["id"]
    with c.get(f"/runs/{run['id']}/logs", headers={**hdr, "Last-Event-ID": first_id},
               stream=True, timeout=(5, 30)) as r:
        assert r.status_code == 200, r.text
        resumed = list(sse_events(r))
    assert resumed and resumed[-1]["event"] == "end", f"resumed stream: {resumed}"
    rest = "".join(sse_text(e) for e in resumed if e["event"] == "log")
    assert rest == full[len(sse_text(logs[0])):], \
        f"Last-Event-ID {first_id} should give only what follows the first event, got {rest!r}"

    # Resume after the last event: nothing but the end.
    with c.get(f"/runs/{run['id']}/logs", headers={**hdr, "Last-Event-ID": logs[-1]["id"]},
               stream=True, timeout=(5, 30)) as r:
        tail = list(sse_events(r))
    assert [e["event"] for e in tail] == ["end"], f"resume after the last event: {tail}"


def test_sse_quiet_follow_gets_a_heartbeat_comment(server, proj, gates):
    """A quiet run's SSE follower gets a comment line within ~15 s (SPEC §8),
    so proxies do not cut it; the stream then still ends with `end`."""
    gate = Gate(gates)
    job = server.job(proj["id"], ["/bin/sh", "-c", f"{gate.wait_cmd}; echo woke"])
    run = server.trigger(job["id"])
    try:
        with server.client().get(f"/runs/{run['id']}/logs?follow=1", headers={"Accept": "text/event-stream"},
                                 stream=True, timeout=(5, 30)) as r:
            assert r.status_code == 200
            rd = LineReader(r)
            t0 = time.time()
            line = rd.readline()
            took = time.time() - t0
            assert line.startswith(b":"), f"a quiet SSE follow sent {line!r} first, expected a comment"
            # every 15 s (SPEC §8); 2 s of slack for scheduling
            assert took < 17, f"the first heartbeat of a quiet SSE follow came after {took:.1f}s, not 15 s"
            gate.open()
            rest = rd.read_rest().decode()
    finally:
        gate.open()
    assert "data: woke" in rest and "event: end" in rest, rest


def test_ndjson_chunks_carry_time_stream_and_text(server, proj):
    script = "echo to-stdout; sleep 0.2; echo to-stderr >&2"
    done = finished_run(server, proj, ["/bin/sh", "-c", script])
    assert done["status"] == "succeeded", done
    r = server.client().get(f"/runs/{done['id']}/logs?format=ndjson")
    assert r.status_code == 200, r.text
    lines = [l for l in r.content.decode("utf-8").split("\n") if l]
    recs = []
    for l in lines:
        try:
            recs.append(json.loads(l))
        except ValueError:
            raise AssertionError(f"not one JSON object per line: {l!r}")
    assert recs, "no NDJSON records"
    for rec in recs:
        assert set(rec) >= {"t", "stream", "text"}, f"NDJSON record lacks t/stream/text: {rec}"
        parse_time(rec["t"])
    assert "".join(rec["text"] for rec in recs) == "to-stdout\nto-stderr\n"
    out = [rec["stream"] for rec in recs if "to-stdout" in rec["text"]]
    err = [rec["stream"] for rec in recs if "to-stderr" in rec["text"]]
    # SPEC §8 names the field, not its values: they must tell the two apart.
    assert len(out) == 1 and len(err) == 1 and out[0] != err[0], \
        f"stream must tell stdout from stderr: stdout chunk {out}, stderr chunk {err}"
    times = [parse_time(rec["t"]) for rec in recs]
    assert times == sorted(times), f"chunk times go backwards: {[rec['t'] for rec in recs]}"


CAP = 4096
MARKER = re.compile(r"\[uhub: (\d+) bytes omitted\]\n")


def test_log_cap_keeps_head_and_tail_marks_truncated_and_job_goes_on(make_server):
    s = make_server(lambda cfg: cfg["logs"].update(max_bytes_per_run=CAP))
    p = s.project()
    n = 3000
    fill = "x" * 60
    script = f'i=0; while [ $i -lt {n} ]; do echo "line-$i-{fill}"; i=$((i+1)); done; echo done-marker'
    full = "".join(f"line-{i}-{fill}\n" for i in range(n)) + "done-marker\n"
    job = s.job(p["id"], ["/bin/sh", "-c", script])
    run = s.trigger(job["id"])
    done = s.wait_run(run["id"], timeout=60)
    assert done["status"] == "succeeded", f"the job must go on past the cap: {done}"
    assert done["log_truncated"] is True, f"log_truncated not set: {done}"
    log = s.logs(run["id"])
    assert log.startswith("line-0-"), f"the head is not kept: {log[:100]!r}"
    assert log.endswith(f"line-{n - 1}-{fill}\ndone-marker\n"), f"the tail is not kept: {log[-200:]!r}"
    marks = list(MARKER.finditer(log))
    assert len(marks) == 1, f"expected one '[uhub: N bytes omitted]' line, found {len(marks)}"
    m = marks[0]
    assert m.start() == 0 or log[m.start() - 1] == "\n", "the marker must be a line of its own"
    omitted = int(m.group(1))
    tail = log[m.end():]
    # The head may have been cut mid-line, in which case uhub may have ended it
    # with a newline of its own before the marker: try both readings.
    readings = [log[:m.start()]]
    if log[:m.start()].endswith("\n"):
        readings.append(log[:m.start() - 1])
    ok = [h for h in readings if full.startswith(h) and full.endswith(tail)
          and len(h) + omitted + len(tail) == len(full)]
    assert ok, (f"head ({len(readings[0])} B) + omitted ({omitted}) + tail ({len(tail)} B) "
                f"does not add up to the {len(full)} B written, or head/tail are not the output's")
    # the NDJSON and SSE views agree with the plain one
    r = s.client().get(f"/runs/{run['id']}/logs?format=ndjson")
    assert r.status_code == 200
    # (the views may differ in the line break uhub adds before the gap line)
    gap = re.compile(r"\n?\[uhub: (\d+) bytes omitted\]\n")
    body = "".join(json.loads(l)["text"] for l in r.content.decode().split("\n") if l)
    assert gap.sub("", body) == gap.sub("", log), "NDJSON view of a truncated log differs from the plain one"
    assert [m.group(1) for m in gap.finditer(body)] == [m.group(1) for m in gap.finditer(log)], body[:3000]
    hdr = {"Accept": "text/event-stream"}
    with s.client().get(f"/runs/{run['id']}/logs", headers=hdr, stream=True, timeout=(5, 30)) as r:
        events = [e for e in sse_events(r) if e["event"] == "log"]
    sse_full = "".join(sse_text(e) for e in events)
    assert gap.sub("", sse_full) == gap.sub("", log), "SSE view of a truncated log differs from the plain one"
    assert [m.group(1) for m in gap.finditer(sse_full)] == [m.group(1) for m in gap.finditer(log)]
    # resuming after the first event gives exactly the rest, gap line included
    with s.client().get(f"/runs/{run['id']}/logs", headers={**hdr, "Last-Event-ID": events[0]["id"]},
                        stream=True, timeout=(5, 30)) as r:
        rest = "".join(sse_text(e) for e in sse_events(r) if e["event"] == "log")
    assert rest == sse_full[len(sse_text(events[0])):], "SSE resume across the omitted part"


def test_log_cap_bounds_what_is_stored_when_output_comes_in_small_writes(make_server):
    """40 writes of 1 KiB, apart in time (so each arrives as its own chunk),
    against a 4 KiB cap: the run is log_truncated and what is kept stays
    near the cap (2x allowed for chunk granularity), whatever the buffering."""
    s = make_server(lambda cfg: cfg["logs"].update(max_bytes_per_run=CAP))
    p = s.project()
    line = "y" * 1023
    script = f'i=0; while [ $i -lt 40 ]; do echo "{line}"; sleep 0.01; i=$((i+1)); done'
    written = 40 * 1024
    run = s.trigger(s.job(p["id"], ["/bin/sh", "-c", script])["id"])
    done = s.wait_run(run["id"], timeout=60)
    assert done["status"] == "succeeded", done
    log = s.logs(run["id"])
    body = MARKER.sub("", log)
    assert done["log_truncated"] is True, \
        f"{written} B written with logs.max_bytes_per_run={CAP}: log_truncated is false, {len(body)} B kept"
    assert len(body) <= 2 * CAP, f"{len(body)} B of output kept with logs.max_bytes_per_run={CAP}"
    m = MARKER.search(log)
    assert m and int(m.group(1)) + len(body) == written, \
        f"kept {len(body)} + omitted {m and m.group(1)} != written {written}"
