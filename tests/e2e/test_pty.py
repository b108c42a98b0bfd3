"""PTY sessions (protocol.md §2.15).

Through the official SDK: `create_pty` + `send_input` + `resize` + `wait()` returning the exit code,
`kill`, output produced before the client was READY, attaching after the exit. With a raw WebSocket client
(`wsclient.WSClient`) and raw HTTP for the edges: tokens (header, query, wrong, missing), unknown sessions,
validation and clamping, the session limit, several clients at once, the idle reaper, and leaks.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from conftest import assert_error, children_of, fd_count, wait_for
from wsclient import WSClient

P = "/api/v1/pty"


@pytest.fixture
def sdk(daemon):
    from tensorlake.sandbox import Sandbox
    sb = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=daemon.token)
    yield sb
    sb.close()


class Collector:
    def __init__(self):
        self.buf = bytearray()
        self.lock = threading.Lock()

    def __call__(self, b: bytes):
        with self.lock:
            self.buf.extend(b)

    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")

    def wait_for(self, s: str, timeout: float = 10.0):
        wait_for(lambda: s in self.text(), timeout, what=f"{s!r} in the terminal output (have {self.text()[-300:]!r})")


def _create(d, body: dict):
    r = d.post(P, body)
    assert r.status == 201, r
    return r.json


def _session(d, sid: str) -> dict:
    r = d.get(f"{P}/{sid}")
    assert r.status == 200, r
    return r.json


# ---------------------------------------------------------------------------- through the SDK

def test_sdk_pty_input_resize_and_exit_code(daemon, sdk):
    out = Collector()
    pty = sdk.create_pty("/bin/sh", rows=30, cols=100, on_data=out)
    try:
        pty.send_input("stty size; tty; echo TERM=$TERM\n")
        out.wait_for("30 100")
        out.wait_for("TERM=xterm-256color")
        assert "/dev/pts/" in out.text()
        pty.resize(120, 40)          # cols, rows
        pty.send_input("stty size; exit 7\n")
        assert pty.wait(10) == 7
        assert "40 120" in out.text()
    finally:
        pty.disconnect()
    sessions = daemon.get(P).json["sessions"]
    s = next(x for x in sessions if x["session_id"] == pty.session_id)
    assert s["is_alive"] is False and s["exit_code"] == 7 and isinstance(s["ended_at"], int)
    assert "token" not in s


def test_sdk_pty_child_owns_a_terminal_and_a_session(daemon, sdk):
    """The child leads a new session whose controlling terminal is the pty: job control works (Ctrl-C
    reaches the foreground job, not the shell)."""
    out = Collector()
    pty = sdk.create_pty("/bin/sh", on_data=out)
    try:
        pty.send_input("sleep 100\n")
        info = _session(daemon, pty.session_id)
        wait_for(lambda: any("sleep" in c[2] for c in children_of(info["pid"])), 10, what="sleep to start")
        pty.send_input(b"\x03")                      # ^C: SIGINT to the foreground process group
        wait_for(lambda: not any("sleep" in c[2] for c in children_of(info["pid"])), 10, what="sleep to be interrupted")
        pty.send_input("echo still-here; exit 3\n")
        assert pty.wait(10) == 3
        assert "still-here" in out.text()
    finally:
        pty.disconnect()


def test_sdk_kill(daemon, sdk):
    pty = sdk.create_pty("/bin/sh", args=["-c", "trap '' HUP; exec sleep 1000"])   # ignores the hang-up: KILL after the grace
    info = _session(daemon, pty.session_id)
    pid = info["pid"]
    t0 = time.monotonic()
    pty.kill()
    # SIGHUP is ignored: SIGKILL after the 5 s grace; the exit frame carries 128+9.
    assert pty.wait(20) == 128 + 9
    assert time.monotonic() - t0 >= 4.5
    s = wait_for(lambda: (lambda x: x if not x["is_alive"] else None)(_session(daemon, pty.session_id)), 15, what="session to end")
    assert s["exit_code"] == 128 + 9
    wait_for(lambda: daemon.info(pid)["status"] != "running", 10, what="process to be reaped")


def test_output_before_ready_and_attach_after_exit(daemon, sdk):
    sess = sdk.create_pty_session("/bin/sh", args=["-c", "echo early-marker; exit 5"]).value
    wait_for(lambda: not _session(daemon, sess["session_id"])["is_alive"], 10, what="session to end")
    out = Collector()
    pty = sdk.connect_pty(sess["session_id"], sess["token"], on_data=out)
    assert pty.wait(10) == 5
    assert "early-marker" in out.text()


# ---------------------------------------------------------------------------- raw edges

def test_tokens_and_unknown_sessions(daemon):
    s = _create(daemon, {"command": "/bin/sh", "args": ["-c", "sleep 30"]})
    sid, tok = s["session_id"], s["token"]
    assert len(sid) == 21 and len(tok) == 64
    path = f"{P}/{sid}/ws"
    c = WSClient(daemon, path, headers={"X-PTY-Token": "0" * 64})
    assert_error(c.resp, 403, "INVALID_TOKEN")
    c.close()
    c = WSClient(daemon, path)                                            # no session token
    assert_error(c.resp, 403, "INVALID_TOKEN")
    c.close()
    c = WSClient(daemon, path, token=None, headers={"X-PTY-Token": tok})  # session token without the bearer token
    assert_error(c.resp, 401, "UNAUTHORIZED")
    c.close()
    c = WSClient(daemon, f"{P}/nosuchsession/ws", headers={"X-PTY-Token": tok})
    assert_error(c.resp, 404, "SESSION_NOT_FOUND")
    c.close()
    c = WSClient(daemon, path + f"?token={tok[:-1]}")
    assert_error(c.resp, 403, "INVALID_TOKEN")
    c.close()
    for h, q in [({"X-PTY-Token": tok}, ""), ({}, f"?token={tok}")]:
        c = WSClient(daemon, path + q, headers=h)
        assert c.status == 101
        c.close()
    assert daemon.request("DELETE", f"{P}/{sid}").status == 204
    assert_error(daemon.get(f"{P}/nosuchsession"), 404, "SESSION_NOT_FOUND")
    assert_error(daemon.request("DELETE", f"{P}/nosuchsession"), 404, "SESSION_NOT_FOUND")
    assert_error(daemon.post(f"{P}/nosuchsession/resize", {"rows": 1, "cols": 1}), 404, "SESSION_NOT_FOUND")


def test_validation_and_clamping(daemon):
    assert_error(daemon.post(P, {}), 400, "INVALID_REQUEST", mentions="command")
    assert_error(daemon.post(P, {"command": "/bin/sh", "rows": "x"}), 400, "INVALID_REQUEST", mentions="rows")
    assert_error(daemon.post(P, {"command": "/nonexistent/x"}), 500, "SPAWN_FAILED")
    r = daemon.request("POST", P, body=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST")
    s = _create(daemon, {"command": "/bin/sh", "args": ["-c", "sleep 30"], "rows": 0, "cols": 5000})
    info = _session(daemon, s["session_id"])
    assert (info["rows"], info["cols"]) == (1, 1000)
    assert "token" not in info
    assert daemon.post(f"{P}/{s['session_id']}/resize", {"rows": 9999, "cols": -4}).status == 204
    info = _session(daemon, s["session_id"])
    assert (info["rows"], info["cols"]) == (500, 1)
    assert_error(daemon.post(f"{P}/{s['session_id']}/resize", {"rows": 10}), 400, "INVALID_REQUEST")
    assert daemon.request("DELETE", f"{P}/{s['session_id']}").status == 204


def _ws(d, s: dict) -> WSClient:
    c = WSClient(d, f"{P}/{s['session_id']}/ws", headers={"X-PTY-Token": s["token"]})
    assert c.status == 101
    return c


def _read_until(c: WSClient, needle: bytes, timeout: float = 10.0) -> tuple[bytes, int | None]:
    """Output bytes until `needle` appears or an exit frame arrives: (output, exit code or None)."""
    c.conn.sock.settimeout(timeout)
    out = b""
    while needle not in out:
        op, _fin, p = c.recv()
        if op == 8:
            return out, None
        assert op == 2, op
        if p[:1] == b"\x00":
            out += p[1:]
        elif p[:1] == b"\x03":
            return out, struct.unpack(">i", p[1:5])[0]
    return out, None


def test_several_clients_see_the_same_terminal(daemon):
    s = _create(daemon, {"command": "/bin/sh"})
    a, b = _ws(daemon, s), _ws(daemon, s)
    for c in (a, b):
        c.send_binary(b"\x02")
    a.send_binary(b"\x00echo from-$((6*7))\n")
    for c in (a, b):
        out, _ = _read_until(c, b"from-42")
        assert b"from-42" in out
    b.send_binary(b"\x00exit 4\n")
    for c in (a, b):
        _, code = _read_until(c, b"\x00never")
        assert code == 4
        assert c.recv_close() == (1000, "exit:4")
        c.close()


def test_client_vanishing_mid_frame_keeps_the_session(daemon):
    s = _create(daemon, {"command": "/bin/sh"})
    c = _ws(daemon, s)
    c.send_binary(b"\x02")
    c.conn.send(c.frame(0x2, b"\x00" + b"x" * 1000)[:300])
    c.conn.abort()
    c2 = _ws(daemon, s)
    c2.send_binary(b"\x02")
    c2.send_binary(b"\x00echo alive-$((1+1))\n")
    out, _ = _read_until(c2, b"alive-2")
    assert b"alive-2" in out
    c2.send(0x9, b"pp")
    while True:
        op, _fin, p = c2.recv()
        if op == 0xA:
            assert p == b"pp"
            break
    c2.send_binary(b"\x00exit 0\n")
    assert _read_until(c2, b"\x00never")[1] == 0
    c2.close()


@pytest.mark.timeout(120)
def test_session_limit_idle_reaper_and_no_leaks(daemon_factory):
    d = daemon_factory("--pty-idle-s", "1", "--pty-keep-exited-s", "2")
    base = fd_count(d.pid)
    made = [_create(d, {"command": "/bin/sh", "args": ["-c", "sleep 60"]}) for _ in range(64)]
    assert_error(d.post(P, {"command": "/bin/true"}), 429, "TOO_MANY_SESSIONS")
    # Nobody attaches: the idle reaper hangs every session up.
    wait_for(lambda: all(not x["is_alive"] for x in d.get(P).json["sessions"]), 30, what="idle sessions to be reaped")
    # Exited sessions are forgotten after --pty-keep-exited-s.
    wait_for(lambda: d.get(P).json["sessions"] == [], 30, what="exited sessions to be forgotten")
    assert_error(d.get(f"{P}/{made[0]['session_id']}"), 404, "SESSION_NOT_FOUND")
    # A full round of attach / output / exit, then: no fd, child or session left.
    for i in range(10):
        s = _create(d, {"command": "/bin/sh", "args": ["-c", f"echo round-{i}; read x; exit {i}"]})
        c = _ws(d, s)
        c.send_binary(b"\x02")
        out, _ = _read_until(c, f"round-{i}".encode())
        c.send_binary(b"\x00go\n")
        assert _read_until(c, b"\x00never")[1] == i
        c.close()
    wait_for(lambda: fd_count(d.pid) <= base, 15, what=f"fds back to {base} (now {fd_count(d.pid)})")
    wait_for(lambda: children_of(d.pid) == [], 15, what="no children left")


def test_raw_kill_sends_exit_then_session_terminated(daemon):
    s = _create(daemon, {"command": "/bin/sh", "args": ["-c", "sleep 100"]})
    c = _ws(daemon, s)
    c.send_binary(b"\x02")
    assert daemon.request("DELETE", f"{P}/{s['session_id']}").status == 204
    _, code = _read_until(c, b"\x00never")
    assert code == 128 + 1                       # SIGHUP ended it, no need for the KILL
    assert c.recv_close() == (1001, "session terminated")
    c.close()


def test_session_survives_an_upgrade_with_its_pending_output(daemon_factory, tmp_path):
    """SIGUSR2 re-exec with a state directory: the master and the backlog go to the new image; a client
    reconnects with the same token, gets what was produced while nobody was attached, and continues."""
    import os
    import signal
    state = tmp_path / "state"
    state.mkdir()
    flag = tmp_path / "flag"
    d = daemon_factory("--state-dir", str(state))
    s = _create(d, {"command": "/bin/sh", "args": ["-c",
                    f"stty -echo; echo started; read x; head -c 300000 /dev/zero | tr -c z z; echo pending-$x; touch {flag};"
                    " read y; echo after-$y; exit 6"]})
    a = _ws(d, s)
    a.send_binary(b"\x02")
    assert b"started" in _read_until(a, b"started")[0]
    a.send_binary(b"\x00one\n")
    a.close()                                              # gone before the answer is printed
    wait_for(flag.exists, 10, what="the child to print while no client is attached")
    pid_before = d.pid
    os.kill(d.pid, signal.SIGUSR2)
    wait_for(lambda: "msg=\"pty session adopted\"" in d.log_text(), 10, what="the re-exec to adopt the session")
    assert d.pid == pid_before and d.alive()
    info = _session(d, s["session_id"])
    assert info["is_alive"] is True and "token" not in info
    # The child could only finish printing once tendd had read most of it (a pty buffers far less than
    # 300 kB): those bytes were in the backlog's memfd during the exec.
    import re
    kept = int(re.search(r'pty session adopted.* backlog=(\d+)', d.log_text()).group(1))
    assert kept >= 300000 - (128 << 10), kept
    b = _ws(d, s)
    b.send_binary(b"\x02")
    out, _ = _read_until(b, b"pending-one")
    assert out.count(b"z") == 300000 and b"pending-one" in out
    b.send_binary(b"\x00two\n")
    out, code = _read_until(b, b"\x00never")
    assert b"after-two" in out and code == 6
    c = WSClient(d, f"{P}/{s['session_id']}/ws", headers={"X-PTY-Token": "f" * 64})
    assert_error(c.resp, 403, "INVALID_TOKEN")                   # the token check survived too
    c.close()


@pytest.mark.timeout(60)
def test_slow_client_holds_the_terminal_back(daemon, tmp_path):
    """A READY client that reads nothing: the daemon stops reading the master once its queue is full, so the
    program blocks on its terminal (bounded memory); once the client reads, output flows again."""
    import socket
    progress = tmp_path / "progress"
    flood = ("import os\nn = 0\nb = b'z' * 65536\nwhile True:\n    n += os.write(1, b)\n"
             f"    open({str(progress)!r}, 'w').write(str(n))\n")
    s = _create(daemon, {"command": "python3", "args": ["-c", flood]})
    c = WSClient(daemon, f"{P}/{s['session_id']}/ws", headers={"X-PTY-Token": s["token"]})
    c.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    assert c.status == 101
    c.send_binary(b"\x02")

    def written():
        try:
            return int(progress.read_text() or 0)
        except (OSError, ValueError):
            return 0
    wait_for(lambda: written() > (1 << 20), 20, what="the flood to start")

    def settled():
        a = written()
        time.sleep(0.3)    # poll interval of this condition
        return a if written() == a else None
    total = wait_for(settled, 20, what="the program to be held back by its terminal")
    assert total < (32 << 20), f"{total} bytes printed while the client read nothing"
    got = 0
    c.conn.sock.settimeout(10)
    while got < (4 << 20):                                   # reading again: the flood resumes
        op, _fin, p = c.recv()
        assert op == 2 and p[:1] == b"\x00"
        got += len(p) - 1
    wait_for(lambda: written() > total, 10, what="the flood to resume")
    assert daemon.request("DELETE", f"{P}/{s['session_id']}").status == 204
    c.conn.abort()


def test_client_limit_per_session(daemon):
    s = _create(daemon, {"command": "/bin/sh", "args": ["-c", "sleep 30"]})
    clients = [_ws(daemon, s) for _ in range(16)]
    c = WSClient(daemon, f"{P}/{s['session_id']}/ws", headers={"X-PTY-Token": s["token"]})
    assert_error(c.resp, 429, "TOO_MANY_CLIENTS")
    c.close()
    clients.pop().close()
    wait_for(lambda: (lambda w: (w.close(), True)[1] if w.status == 101 else None)(
        WSClient(daemon, f"{P}/{s['session_id']}/ws", headers={"X-PTY-Token": s["token"]})), 10,
        what="a free client slot once one left")
    for x in clients:
        x.close()
    assert daemon.request("DELETE", f"{P}/{s['session_id']}").status == 204
