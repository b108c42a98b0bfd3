"""Issue 12: the lifecycle edges users hit (each of these failed against 7185f41).

1. A one-shot run is lossless: its one reader's back-pressure holds the child (the pipes are not read
   while the reader is behind by more than a bound), so nothing is dropped however slow the reader.
2. A streaming connection notices its peer's close whether or not it has output to write: a silent
   run's tree dies with its client (FIN or RST); a follower that leaves is freed at once.
3. A request in progress answers whatever its duration: the idle timeout applies to idle connections
   only (a DELETE or restart of a managed process that ignores SIGTERM outlasts it).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time

import pytest

from conftest import RawConn, build_request, parse_sse, procs_with, wait_for

from tensorlake.sandbox import Sandbox


def sleep_marker() -> str:
    return f"1000.{secrets.randbelow(10**9):09d}"


def server_side_inode(d, client: socket.socket) -> str:
    """The inode of the daemon's end of `client`'s TCP connection, from /proc/net/tcp."""
    cport = client.getsockname()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == d.port and int(parts[2].split(":")[1], 16) == cport:
                return parts[9]
    raise AssertionError("no server side for the connection in /proc/net/tcp")


def daemon_holds(d, inode: str) -> bool:
    """Whether the daemon still has an fd for socket `inode` (exact, whatever other fds come and go)."""
    want = f"socket:[{inode}]"
    for fd in os.listdir(f"/proc/{d.pid}/fd"):
        try:
            if os.readlink(f"/proc/{d.pid}/fd/{fd}") == want:
                return True
        except OSError:
            pass
    return False


def sdk(d) -> Sandbox:
    return Sandbox(identifier="e2e", proxy_url=f"http://127.0.0.1:{d.port}", api_key=d.token)


def unwrap(x):
    return getattr(x, "result", x)


def start_run(d, body: dict) -> RawConn:
    c = RawConn(d.port)
    c.sock.settimeout(60)
    c.send(build_request("POST", "/api/v1/processes/run", token=d.token, body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"}))
    status, _, _ = c.read_head()
    assert status == 200
    return c


def read_all_chunks(c: RawConn) -> bytes:
    buf = bytearray()
    while True:
        chunk = c.read_chunk()
        if chunk == b"":
            return bytes(buf)
        buf += chunk


# ---------------------------------------------------------------- 1. lossless runs


@pytest.mark.timeout(120)
def test_sdk_run_of_400000_lines_loses_nothing(daemon):
    r = unwrap(sdk(daemon).run("seq", args=["1", "400000"], timeout=100))
    assert r.exit_code == 0, r
    lines = r.stdout.split("\n")
    assert len(lines) == 400000, f"got {len(lines)} of 400000 lines"
    assert lines[0] == "1" and lines[-1] == "400000"
    assert lines == [str(i) for i in range(1, 400001)]


@pytest.mark.timeout(90)
def test_run_with_a_stalled_reader_holds_the_child_and_keeps_memory_bounded(daemon_factory):
    # A 256 KiB journal, 12 MB of output, and a reader that stops for a while: every line arrives, in
    # order, with no gap event, and the exit event comes last.
    d = daemon_factory("--journal-bytes", "262144")
    n = 150_000
    c = start_run(d, {"command": "sh", "args": ["-c", f"seq -w 1 {n} | sed 's/$/ padding-padding-padding-padding-padding-padding-padding/'; echo done >&2"]})
    first = c.read_chunk()
    assert b"started" in first
    # Stop reading: the child must block on its pipe, not run ahead into dropped lines.
    time.sleep(1.5)
    rss_kib = int([l for l in open(f"/proc/{d.pid}/status") if l.startswith("VmRSS:")][0].split()[1])
    events = parse_sse(first + read_all_chunks(c))
    c.close()
    assert not [e for e in events if e[0] == "gap"], "a run's stream dropped lines"
    out = [data["line"] for ev, data in events if ev == "output" and data.get("stream") == "stdout"]
    assert len(out) == n, f"got {len(out)} of {n} lines"
    assert out[0].startswith("000001 ") and out[-1].startswith(f"{n} ")
    assert [int(l.split()[0]) for l in out] == list(range(1, n + 1))
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 0
    err = [data["line"] for ev, data in events if ev == "output" and data.get("stream") == "stderr"]
    assert err == ["done"]
    assert rss_kib < 64 * 1024, f"daemon RSS {rss_kib} KiB while a run's reader stalled"


# ---------------------------------------------------------------- 2. peer close while streaming


@pytest.fixture(params=["fin", "rst"])
def close_kind(request):
    return request.param


def _leave(c: RawConn, how: str):
    if how == "fin":
        c.sock.shutdown(socket.SHUT_RDWR)
        c.sock.close()
    else:
        c.abort()


@pytest.mark.timeout(30)
def test_silent_run_dies_with_its_client(daemon, close_kind):
    m1, m2 = sleep_marker(), sleep_marker()
    c = start_run(daemon, {"command": "sh", "args": ["-c", f"sleep {m1} & sleep {m2}"]})
    assert b"started" in c.read_chunk()
    wait_for(lambda: procs_with(m1) and procs_with(m2), 5, what="both sleeps to run")
    _leave(c, close_kind)
    t0 = time.monotonic()
    wait_for(lambda: not procs_with(m1) and not procs_with(m2), 5, what="the run's tree to die with its client")
    # Within 1 s on an idle machine; the deadline above is generous for a busy CI machine.
    print(f"tree gone {time.monotonic() - t0:.3f} s after the client left")


@pytest.mark.timeout(30)
def test_follower_that_leaves_is_freed_at_once(daemon_factory, close_kind):
    d = daemon_factory("--sse-keepalive-ms", "60000")
    p = d.start("sleep", ["30"])
    s = d.follow(p["pid"])
    assert s.status == 200
    inode = server_side_inode(d, s.conn.sock)
    assert daemon_holds(d, inode), "the daemon has no fd for the follower's connection"
    _leave(s.conn, close_kind)
    wait_for(lambda: not daemon_holds(d, inode), 5, what="the follower to be freed (not at the next keep-alive)")


# ---------------------------------------------------------------- 3. long requests outlive the idle timeout


def _stubborn(d, name: str, grace_ms: int) -> dict:
    return d.start("sh", ["-c", "trap '' TERM; echo up; while :; do sleep 0.2; done"],
                   name=name, restart={"policy": "always", "initial_backoff_ms": 50}, stop_grace_ms=grace_ms)


@pytest.mark.timeout(40)
def test_delete_longer_than_the_idle_timeout_answers(daemon_factory):
    d = daemon_factory("--idle-timeout-ms", "1000")
    name = f"stubborn-{secrets.token_hex(3)}"
    p = _stubborn(d, name, 3000)
    d.wait_output(p["pid"], lambda ls: "up" in ls)
    t0 = time.monotonic()
    r = d.request("DELETE", f"/api/v1/processes/{name}", timeout=20)
    took = time.monotonic() - t0
    assert r.status == 204, r
    assert took >= 2.5, f"answered after {took:.2f} s, before the grace period"
    i = d.info(p["pid"])
    assert i["status"] == "signaled" and i["signal"] == 9 and i["managed"]["status"] == "stopped"


@pytest.mark.timeout(40)
def test_restart_longer_than_the_idle_timeout_answers(daemon_factory):
    d = daemon_factory("--idle-timeout-ms", "1000")
    name = f"stubborn-{secrets.token_hex(3)}"
    p = _stubborn(d, name, 3000)
    d.wait_output(p["pid"], lambda ls: "up" in ls)
    r = d.request("POST", f"/api/v1/processes/{name}/restart", timeout=20)
    assert r.status == 200, r
    assert r.json["pid"] != p["pid"] and r.json["status"] == "running"
    assert r.json["managed"]["restart_count"] == 1
    r = d.request("DELETE", f"/api/v1/processes/{name}", timeout=20)
    assert r.status == 204, r
