"""Output capture, line framing and the SSE follow routes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from conftest import Collected, SSEStream, assert_error, gone_or_zombie, wait_for

P = "/api/v1/processes"


def _nums(col: Collected) -> list[int]:
    return [int(x) for x in col.lines]


def _assert_strictly_increasing(xs, what="ids"):
    assert all(isinstance(x, int) for x in xs), f"non-integer {what}: {xs[:10]}"
    bad = [(a, b) for a, b in zip(xs, xs[1:]) if b <= a]
    assert not bad, f"{what} not strictly increasing: {bad[:5]}"


# =========================================================================== basics


def test_follow_response_headers(daemon):
    p = daemon.start("true")
    daemon.wait_exit(p["pid"])
    s = daemon.follow(p["pid"], "stdout")
    assert s.status == 200
    assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
    assert s.headers.get("cache-control") == "no-cache", s.headers
    assert "chunked" in s.headers.get("transfer-encoding", ""), s.headers
    assert "content-length" not in s.headers
    col = s.collect()
    assert col.outputs == []
    col.assert_eof_terminated()


def test_follow_after_exit_replays_everything(daemon):
    p = daemon.start("seq", ["1", "100"])
    i = daemon.wait_exit(p["pid"])
    for which in ("stdout", "output"):
        col = daemon.follow(p["pid"], which).collect()
        col.assert_eof_terminated()
        assert col.lines == [str(n) for n in range(1, 101)], which
        _assert_strictly_increasing(col.ids)
        for ev in col.outputs:
            d = ev.json
            assert isinstance(d["timestamp"], int)
            assert p["started_at"] - 1000 <= d["timestamp"] <= i["ended_at"] + 1000, d
            if which == "output":
                assert d["stream"] == "stdout"
            else:
                assert "stream" not in d, d
    col = daemon.follow(p["pid"], "stderr").collect()
    col.assert_eof_terminated()
    assert col.outputs == []


def test_replay_then_live_no_gap_no_duplicate(daemon):
    n = 40
    p = daemon.sh(f'i=1; while [ $i -le {n} ]; do echo line$i; i=$((i+1)); sleep 0.03; done')
    early = daemon.follow(p["pid"], "stdout")
    time.sleep(0.5)  # some lines are produced before the second follower connects
    late = daemon.follow(p["pid"], "stdout")
    first = late.next_event()
    assert first is not None and first.event == "output"
    cols = []
    for s in (early, late):
        cols.append(s.collect())
    late_col = Collected([first] + cols[1].events, cols[1].clean_end)
    expected = [f"line{i}" for i in range(1, n + 1)]
    for col in (cols[0], late_col):
        col.assert_eof_terminated()
        assert col.lines == expected
        _assert_strictly_increasing(col.ids)
        ts = [e.json["timestamp"] for e in col.outputs]
        assert ts == sorted(ts), "timestamps go backwards"
        assert ts[0] > 1_600_000_000_000, "replayed events must carry real ms timestamps"
    assert cols[0].ids == late_col.ids, "the same line must carry the same id in every follow"
    # the lines really were produced over time (so replay and live both happened)
    ts = [e.json["timestamp"] for e in cols[0].outputs]
    assert ts[-1] - ts[0] >= 500


def test_concurrent_followers_identical(daemon):
    p = daemon.sh('i=1; while [ $i -le 30 ]; do echo x$i; echo y$i >&2; i=$((i+1)); sleep 0.01; done')
    streams = [daemon.follow(p["pid"], "output") for _ in range(5)]
    cols = [s.collect() for s in streams]
    ref = [(e.id, e.json["line"], e.json["stream"]) for e in cols[0].outputs]
    assert len(ref) == 60
    for c in cols:
        c.assert_eof_terminated()
        assert [(e.id, e.json["line"], e.json["stream"]) for e in c.outputs] == ref


def test_follow_running_silent_process_then_delete(daemon):
    p = daemon.start("sleep", ["30"])
    s = daemon.follow(p["pid"], "output")
    assert s.status == 200
    time.sleep(0.3)
    assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
    t0 = time.monotonic()
    col = s.collect(max_seconds=5)
    col.assert_eof_terminated()
    assert col.outputs == []
    assert time.monotonic() - t0 < 3.5


def test_eof_only_after_all_output(daemon):
    p = daemon.start("seq", ["1", "10000"])
    col = daemon.follow(p["pid"], "stdout").collect(max_seconds=20)
    col.assert_eof_terminated()
    assert _nums(col) == list(range(1, 10001))
    _assert_strictly_increasing(col.ids)


def test_eof_after_both_streams(daemon):
    p = daemon.sh("seq 1 5000; seq 5001 10000 >&2")
    col = daemon.follow(p["pid"], "output").collect(max_seconds=20)
    col.assert_eof_terminated()
    out = [int(e.json["line"]) for e in col.outputs if e.json["stream"] == "stdout"]
    err = [int(e.json["line"]) for e in col.outputs if e.json["stream"] == "stderr"]
    assert out == list(range(1, 5001))
    assert err == list(range(5001, 10001))
    _assert_strictly_increasing(col.ids)


def test_descendant_output_before_leader_exit_is_captured(daemon):
    p = daemon.sh("(echo from-bg) & sleep 0.3; echo leader")
    col = daemon.follow(p["pid"], "stdout").collect(max_seconds=10)
    col.assert_eof_terminated()
    assert col.lines == ["from-bg", "leader"]


def test_drain_bounded_when_descendant_keeps_pipe(daemon_factory):
    """A descendant holding the pipes must not keep the stream open past --drain-ms
    (whether the daemon kills it with its leader or just stops waiting)."""
    d = daemon_factory("--drain-ms", "500")
    p = d.sh("sleep 30 & echo $!; echo leader-done")
    t0 = time.monotonic()
    try:
        col = d.follow(p["pid"], "stdout").collect(max_seconds=8)
        elapsed = time.monotonic() - t0
        col.assert_eof_terminated()
        assert col.lines[1:] == ["leader-done"]
        assert elapsed <= 2.5, f"follow ended {elapsed:.2f}s after start (drain 500 ms)"
        assert d.info(p["pid"])["status"] == "exited"
    finally:
        try:
            os.killpg(p["pid"], signal.SIGKILL)
        except OSError:
            pass


# =========================================================================== ids / resume


def test_resume_with_last_event_id_and_after(daemon):
    p = daemon.start("seq", ["1", "50"])
    daemon.wait_exit(p["pid"])
    for which in ("stdout", "output"):
        full = daemon.follow(p["pid"], which).collect()
        ids = full.ids
        k = ids[19]  # id of line "20"
        by_header = daemon.follow(p["pid"], which, headers={"Last-Event-ID": str(k)}).collect()
        by_query = SSEStream(daemon.port, f"{P}/{p['pid']}/{which}/follow?after={k}", daemon.token).collect()
        for col in (by_header, by_query):
            col.assert_eof_terminated()
            assert col.lines == [str(n) for n in range(21, 51)], which
            assert col.ids == ids[20:]
        tail = SSEStream(daemon.port, f"{P}/{p['pid']}/{which}/follow?after={ids[-1]}", daemon.token).collect()
        tail.assert_eof_terminated()
        assert tail.outputs == []
        assert not [e for e in tail.events if e.event == "gap"]


def test_resume_live_after_disconnect(daemon):
    p = daemon.sh('i=1; while [ $i -le 60 ]; do echo r$i; i=$((i+1)); sleep 0.02; done')
    s = daemon.follow(p["pid"], "stdout")
    got = []
    while len(got) < 10:
        ev = s.next_event(include_comments=False)
        assert ev is not None
        if ev.event == "output":
            got.append(ev)
    s.conn.abort()
    last = got[-1].id
    rest = daemon.follow(p["pid"], "stdout", headers={"Last-Event-ID": str(last)}).collect()
    rest.assert_eof_terminated()
    lines = [e.line for e in got] + rest.lines
    assert lines == [f"r{i}" for i in range(1, 61)]
    _assert_strictly_increasing([e.id for e in got] + rest.ids)


def test_ids_shared_between_streams(daemon):
    p = daemon.sh("echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2; sleep 0.1; echo e2 >&2")
    daemon.wait_exit(p["pid"])
    out = daemon.follow(p["pid"], "stdout").collect()
    err = daemon.follow(p["pid"], "stderr").collect()
    both = daemon.follow(p["pid"], "output").collect()
    for c in (out, err, both):
        c.assert_eof_terminated()
    assert out.lines == ["o1", "o2"]
    assert err.lines == ["e1", "e2"]
    assert both.lines == ["o1", "e1", "o2", "e2"]
    assert [e.json["stream"] for e in both.outputs] == ["stdout", "stderr", "stdout", "stderr"]
    ids = dict(zip(both.lines, both.ids))
    assert out.ids == [ids["o1"], ids["o2"]]
    assert err.ids == [ids["e1"], ids["e2"]]
    _assert_strictly_increasing(both.ids)
    for e in out.outputs + err.outputs:
        assert "stream" not in e.json


def test_get_output_matches_follow_order(daemon):
    p = daemon.sh('i=1; while [ $i -le 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done')
    daemon.wait_exit(p["pid"])
    fol = daemon.follow(p["pid"], "output").collect()
    fol.assert_eof_terminated()
    got = daemon.get(f"{P}/{p['pid']}/output").json
    assert got["lines"] == fol.lines, "GET /output order differs from /output/follow"
    assert got["line_count"] == 600
    assert [l for l in got["lines"] if l.startswith("o")] == [f"o{i}" for i in range(1, 301)]
    assert [l for l in got["lines"] if l.startswith("e")] == [f"e{i}" for i in range(1, 301)]
    tagged = [(e.json["stream"], e.line[0]) for e in fol.outputs]
    assert all((s == "stdout") == (c == "o") for s, c in tagged)


# =========================================================================== framing


FRAMING = [
    ("crlf", r"printf 'a\r\nb\r\n'", ["a", "b"]),
    ("lone-cr", r"printf 'x\ry\n'", ["x\ry"]),
    ("cr-only-line", r"printf '\r\n'", [""]),
    ("no-trailing-newline", r"printf 'a\nlast'", ["a", "last"]),
    ("only-partial", r"printf 'partial'", ["partial"]),
    ("empty-lines", r"printf 'a\n\n\nb\n'", ["a", "", "", "b"]),
    ("invalid-utf8", r"printf 'ok\377bad\n'", ["ok\ufffdbad"]),
    ("truncated-utf8", r"printf 'a\342\202z\n'", ["a\ufffdz"]),
    ("valid-utf8", "printf 'h\\303\\251llo \\342\\202\\254 \\360\\237\\230\\200\\n'", ["héllo € 😀"]),
    ("nul", r"printf 'a\000b\n'", ["a\x00b"]),
    ("controls", r"""printf 'tab\there\033[0m "q" \\ /\n'""", ['tab\there\x1b[0m "q" \\ /']),
]


@pytest.mark.parametrize("script,expected", [(s, e) for _, s, e in FRAMING], ids=[n for n, _, _ in FRAMING])
def test_line_framing(daemon, script, expected):
    p = daemon.sh(script)
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"]) == expected
    col = daemon.follow(p["pid"], "stdout").collect()
    col.assert_eof_terminated()
    assert col.lines == expected
    assert daemon.lines(p["pid"], "output") == expected


def test_invalid_utf8_does_not_stop_capture(daemon):
    p = daemon.sh(r"printf '\377\376\n'; echo after; printf '\200' >&2; echo err-after >&2")
    daemon.wait_exit(p["pid"])
    out = daemon.lines(p["pid"])
    assert len(out) == 2 and out[1] == "after" and set(out[0]) == {"\ufffd"}, out
    err = daemon.lines(p["pid"], "stderr")
    assert err == ["\ufffderr-after"], err


def test_long_line_split_default_limit(daemon):
    n = 200_000
    p = daemon.sh(f"head -c {n} /dev/zero | tr '\\000' x; echo; echo next")
    daemon.wait_exit(p["pid"])
    lines = daemon.lines(p["pid"])
    assert lines[-1] == "next"
    pieces = lines[:-1]
    assert "".join(pieces) == "x" * n
    assert all(0 < len(x) <= 65536 for x in pieces), [len(x) for x in pieces]
    assert len(pieces) == 4, [len(x) for x in pieces]
    col = daemon.follow(p["pid"], "stdout").collect()
    assert col.lines == lines


def test_long_line_split_keeps_utf8_intact(daemon_factory):
    d = daemon_factory("--max-line-bytes", "1000")
    # 3-byte characters: 1000 is not a multiple of 3, so a naive byte split would cut one
    p = d.sh("i=0; while [ $i -lt 1000 ]; do printf '\\342\\202\\254'; i=$((i+1)); done; echo; echo ok")
    d.wait_exit(p["pid"])
    lines = d.lines(p["pid"])
    assert lines[-1] == "ok"
    pieces = lines[:-1]
    assert "\ufffd" not in "".join(pieces), "line split broke a UTF-8 sequence"
    assert "".join(pieces) == "€" * 1000
    assert all(len(x.encode()) <= 1000 for x in pieces), [len(x.encode()) for x in pieces]
    assert len(pieces) >= 3


def test_line_exactly_at_limit_not_split(daemon_factory):
    d = daemon_factory("--max-line-bytes", "1000")
    p = d.sh("head -c 1000 /dev/zero | tr '\\000' a; echo; head -c 1001 /dev/zero | tr '\\000' b; echo")
    d.wait_exit(p["pid"])
    lines = d.lines(p["pid"])
    assert lines[0] == "a" * 1000
    assert "".join(lines[1:]) == "b" * 1001 and len(lines) == 3, [len(x) for x in lines]


# =========================================================================== keep-alive


def test_keepalive_comments(daemon_factory):
    d = daemon_factory("--sse-keepalive-ms", "300")
    p = d.sh("sleep 1.6; echo done")
    s = d.follow(p["pid"], "stdout")
    comments_before_output = 0
    events = []
    t0 = time.monotonic()
    while True:
        ev = s.next_event(include_comments=True)
        assert ev is not None, "stream ended before eof"
        if ev.kind == "comment":
            if not events:
                comments_before_output += 1
            continue
        events.append(ev)
        if ev.event == "eof":
            break
        assert time.monotonic() - t0 < 8
    assert 2 <= comments_before_output <= 10, comments_before_output
    assert [e.event for e in events] == ["output", "eof"]
    assert events[0].line == "done"
    assert s.next_event() is None and s.clean_end


def test_keepalive_raw_bytes(daemon_factory):
    d = daemon_factory("--sse-keepalive-ms", "300")
    p = d.start("sleep", ["30"])
    s = d.follow(p["pid"], "stdout")
    data = b""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.2:
        data += s.conn.read_chunk()
    assert b":\n\n" in data, data
    assert b"event:" not in data and b"data:" not in data, data


# =========================================================================== backpressure / journal bound


def _content_bytes(lo: int, hi: int) -> int:
    """Bytes of the decimal numbers lo..hi (inclusive), without newlines."""
    return sum(len(str(i)) for i in range(lo, hi + 1))


@pytest.mark.timeout(60)
def test_late_follower_after_journal_overflow_gets_gap(daemon_factory):
    d = daemon_factory("--journal-bytes", "65536")
    n = 100_000
    p = d.start("seq", ["1", str(n)])
    d.wait_exit(p["pid"], 20)
    for which in ("stdout", "output"):
        col = d.follow(p["pid"], which).collect(max_seconds=20)
        col.assert_eof_terminated()
        assert col.events[0].event == "gap", [e.event for e in col.events[:3]]
        gap = col.events[0].json
        nums = _nums(col)
        assert nums == list(range(nums[0], n + 1)), "retained tail not contiguous"
        assert gap["dropped_lines"] == nums[0] - 1, (gap, nums[0])
        cb = _content_bytes(1, nums[0] - 1)
        assert cb <= gap["dropped_bytes"] <= cb + gap["dropped_lines"], (gap, cb)
        retained = sum(len(x) + 1 for x in col.lines)
        assert 8_192 <= retained <= 65536 + 1024, retained
        _assert_strictly_increasing(col.ids)
        offs = {i - v for i, v in zip(col.ids, nums)}
        assert len(offs) == 1, "ids are not one per captured line"
    got = d.get(f"{P}/{p['pid']}/stdout").json
    assert got["lines"] == [str(x) for x in range(int(got["lines"][0]), n + 1)]
    assert got["line_count"] == len(got["lines"])
    # ?after= a position older than the head also gets the gap first
    s = SSEStream(d.port, f"{P}/{p['pid']}/stdout/follow?after={col.ids[0] - 50}", d.token).collect()
    assert s.events[0].event == "gap"
    assert s.lines == col.lines


@pytest.mark.timeout(90)
def test_flood_with_slow_follower(daemon_factory):
    d = daemon_factory("--journal-bytes", "65536")
    n = 1_000_000  # ~6.9 MB
    p = d.sh(f"sleep 0.3; seq 1 {n}")
    s = d.follow(p["pid"], "output", rcvbuf=4096)
    first = s.next_event(include_comments=False)
    assert first is not None
    # Stop reading. The child must not be blocked, and the daemon must stay responsive.
    t0 = time.monotonic()
    lat = []
    while True:
        a = time.monotonic()
        r = d.get("/api/v1/health", timeout=3)
        lat.append(time.monotonic() - a)
        assert r.status == 200
        if d.info(p["pid"])["status"] != "running":
            break
        assert time.monotonic() - t0 < 30, "flooding child did not finish while the follower stalled"
        time.sleep(0.1)
    assert max(lat) < 1.0, f"daemon slow while flooding: {max(lat):.2f}s"
    other = d.start("echo", ["still-fine"])
    d.wait_exit(other["pid"])
    assert d.lines(other["pid"]) == ["still-fine"]
    time.sleep(0.5)
    # now read the rest slowly-but-surely
    s.conn.sock.settimeout(10)
    rest = s.collect(max_seconds=40)
    events = [first] + rest.events
    col = Collected(events, rest.clean_end)
    col.assert_eof_terminated()
    gaps = [e for e in events if e.event == "gap"]
    assert gaps, "slow follower fell behind a 64 KiB journal but got no gap event"
    nums = _nums(col)
    _assert_strictly_increasing(nums, "line numbers")
    assert nums[-1] == n, "the last line must arrive"
    _assert_strictly_increasing(col.ids)
    assert len({i - v for i, v in zip(col.ids, nums)}) == 1, "ids inconsistent with captured lines"
    # every gap accounts exactly for the lines this reader missed at that point
    prev = 0
    dropped_total = 0
    for idx, e in enumerate(events):
        if e.event == "output":
            prev = int(e.line)
        elif e.event == "gap":
            nxt = next(int(x.line) for x in events[idx + 1:] if x.event == "output")
            g = e.json
            assert g["dropped_lines"] == nxt - prev - 1, (g, prev, nxt)
            cb = _content_bytes(prev + 1, nxt - 1)
            assert cb <= g["dropped_bytes"] <= cb + g["dropped_lines"], (g, cb)
            dropped_total += g["dropped_lines"]
    assert len(nums) + dropped_total == n
    assert d.get("/api/v1/health").status == 200


def test_follower_disconnects_mid_stream(daemon):
    p = daemon.sh('i=1; while [ $i -le 150 ]; do echo d$i; i=$((i+1)); sleep 0.01; done')
    for k in range(12):
        s = daemon.follow(p["pid"], "output" if k % 2 else "stdout")
        for _ in range(3):
            assert s.next_event(include_comments=False) is not None
        if k % 3 == 0:
            s.conn.abort()
        else:
            s.close()
    # a connection that sends the request and vanishes before reading anything
    from conftest import RawConn, build_request
    c = RawConn(daemon.port)
    c.send(build_request("GET", f"{P}/{p['pid']}/stdout/follow", token=daemon.token))
    c.abort()
    assert daemon.get("/api/v1/health").status == 200
    col = daemon.follow(p["pid"], "stdout").collect(max_seconds=20)
    col.assert_eof_terminated()
    assert col.lines == [f"d{i}" for i in range(1, 151)]


def test_follow_of_discarded_stream(daemon):
    p = daemon.sh("echo hidden; echo shown >&2", stdout_mode="discard")
    col = daemon.follow(p["pid"], "stdout").collect()
    col.assert_eof_terminated()
    assert col.outputs == []
    col = daemon.follow(p["pid"], "output").collect()
    assert col.lines == ["shown"]
    assert col.outputs[0].json["stream"] == "stderr"


def test_follow_unknown_pid_is_json_404(daemon):
    s = daemon.follow(2_000_000_000, "output")
    assert s.status == 404
    assert_error(s.error, 404, "NOT_FOUND")


def test_many_lines_fast_get(daemon):
    p = daemon.start("seq", ["1", "50000"])
    daemon.wait_exit(p["pid"])
    got = daemon.get(f"{P}/{p['pid']}/stdout").json
    assert got["line_count"] == 50000
    assert got["lines"][0] == "1" and got["lines"][-1] == "50000"


def test_unterminated_long_line_emitted_while_running(daemon_factory):
    d = daemon_factory("--max-line-bytes", "1000")
    p = d.sh("head -c 5500 /dev/zero | tr '\\000' q; exec sleep 30")
    lines = d.wait_output(p["pid"], lambda ls: len(ls) >= 5, timeout=5)
    assert lines[:5] == ["q" * 1000] * 5
    assert d.info(p["pid"])["status"] == "running"
    assert d.request("DELETE", f"{P}/{p['pid']}").status == 204
    d.wait_exit(p["pid"])
    assert d.lines(p["pid"]) == ["q" * 1000] * 5 + ["q" * 500]


def test_partial_line_delivered_after_kill(daemon):
    p = daemon.sh("printf 'no-newline'; exec sleep 30")
    s = daemon.follow(p["pid"], "stdout")
    time.sleep(0.3)
    assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
    col = s.collect(max_seconds=8)
    col.assert_eof_terminated()
    assert col.lines == ["no-newline"]
