"""Issue 5: a daemon crash or upgrade loses no process and no byte of output, under a real systemd.

Same private ``systemd --user`` manager and repo-generated units as test_systemd.py (its Manager).
Scenario: a managed process that keeps failing, a process printing numbered lines, one waiting on
stdin, one that exits while the daemon is down; a follower reads the numbered lines. Then tendd is
SIGKILLed; systemd restarts it; everything must be re-adopted and the follower, reconnecting with
Last-Event-ID, must see every line exactly once. Then the same through `systemctl reload` (re-exec)
with requests fired continuously, none refused.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from test_systemd import Manager, TENDD_BIN, alive, wait_for


class Follow:
    """A raw SSE follower that records (id, line) and the last id, and survives a dropped connection."""

    def __init__(self, mgr: Manager, pid: int, after: int | None = None):
        self.mgr, self.pid = mgr, pid
        self.events: list[tuple[int, str]] = []
        self.gaps: list[dict] = []
        self.eof = False
        self.last_id = after
        self.buf = b""

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.mgr.port), timeout=20)
        extra = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id is not None else ""
        s.sendall(f"GET /api/v1/processes/{self.pid}/stdout/follow HTTP/1.1\r\nHost: t\r\n"
                  f"Authorization: Bearer {self.mgr.token}\r\n{extra}\r\n".encode())
        self.sock = s
        self.buf = b""
        self.raw = b""
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(1)
            if not c:
                raise AssertionError("closed before the response head")
            head += c
        assert head.startswith(b"HTTP/1.1 200"), head

    def read(self, until_eof: bool, seconds: float) -> bool:
        """Reads chunks; returns False when the connection dropped (crash), True at eof."""
        end = time.monotonic() + seconds
        self.sock.settimeout(1.0)
        while time.monotonic() < end:
            try:
                c = self.sock.recv(65536)
            except socket.timeout:
                if not until_eof:
                    return False
                continue
            except OSError:
                return False
            if not c:
                return False
            self.raw += c
            # de-chunk what is complete
            while True:
                raw = self.raw
                i = raw.find(b"\r\n")
                if i < 0:
                    break
                size = int(raw[:i].split(b";")[0], 16)
                if len(raw) < i + 2 + size + 2:
                    break
                self.buf += raw[i + 2:i + 2 + size]
                self.raw = raw[i + 2 + size + 2:]
                if size == 0:
                    self._parse()
                    return True
            self._parse()
            if self.eof:
                return True
        return False

    def _parse(self):
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            ev, data, eid = "message", None, None
            for line in block.decode().split("\n"):
                if line.startswith("id:"):
                    eid = int(line[3:])
                elif line.startswith("event:"):
                    ev = line[6:]
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
            if ev == "output":
                self.events.append((eid, data["line"]))
                self.last_id = eid
            elif ev == "gap":
                self.gaps.append(data)
            elif ev == "eof":
                self.eof = True


@pytest.fixture(scope="module")
def mgr():
    assert os.access(TENDD_BIN, os.X_OK), f"no tendd binary at {TENDD_BIN}"
    m = Manager()
    try:
        m.start()
        m.ctl("enable", "--now", "tendd.socket")
        yield m
    finally:
        m.stop()


def req(mgr, method, path, body=None, raw: bytes | None = None):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", mgr.port, timeout=20)
    try:
        headers = {"Authorization": f"Bearer {mgr.token}"}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        out = r.read()
        return r.status, (json.loads(out) if out else None)
    finally:
        c.close()


def metrics_text(mgr) -> str:
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", mgr.port, timeout=20)
    try:
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {mgr.token}"})
        r = c.getresponse()
        assert r.status == 200
        return r.read().decode()
    finally:
        c.close()


def start(mgr, body):
    st, info = req(mgr, "POST", "/api/v1/processes", body)
    assert st == 201, (st, info, mgr.tail())
    return info


N_LINES = 30_000


def test_crash_loses_nothing(mgr):
    st, _ = req(mgr, "GET", "/api/v1/health")
    assert st == 200
    daemon = mgr.main_pid()
    # The numbered-lines process: 30 bursts of 1000 lines, 0.1 s apart (~3 s, ~170 KB: under the journal bound).
    flood = start(mgr, {"command": "sh", "args": ["-c", "for b in $(seq 0 29); do seq $((b*1000+1)) $((b*1000+1000)); sleep 0.1; done"]})
    waiter = start(mgr, {"command": "sh", "args": ["-c", "read a; echo got $a; read b; echo got $b"], "stdin_mode": "pipe"})
    short = start(mgr, {"command": "sh", "args": ["-c", "sleep 1.2; exit 7"]})
    svc = start(mgr, {"command": "sh", "args": ["-c", "echo up $$; sleep 0.7; exit 3"], "name": "crashy",
                      "restart": {"policy": "on_failure", "initial_backoff_ms": 100, "max_backoff_ms": 200}})
    assert req(mgr, "POST", f"/api/v1/processes/{waiter['pid']}/stdin", raw=b"one\n")[0] == 204
    f = Follow(mgr, flood["pid"])
    f.connect()
    f.read(until_eof=False, seconds=0.8)
    assert f.events, "no output before the crash"
    before = len(f.events)
    restarts_before = req(mgr, "GET", "/api/v1/processes/crashy")[1]["managed"]["restart_count"]

    os.kill(daemon, signal.SIGKILL)
    t_crash = time.monotonic()
    f.read(until_eof=False, seconds=0.5)          # the stream drops with the daemon
    # Children keep running while the daemon is down.
    assert alive(flood["pid"]) and alive(waiter["pid"])

    # The first answered request after the crash (systemd restarts tendd; the socket queues meanwhile).
    st, body = req(mgr, "GET", "/api/v1/processes")
    recovery_ms = (time.monotonic() - t_crash) * 1000
    assert st == 200, mgr.tail()
    new_daemon = mgr.main_pid()
    assert new_daemon not in (0, daemon)
    print(f"\n  crash -> first answered request: {recovery_ms:.0f} ms (RestartSec=100ms)")
    log = mgr.log.read_text()
    assert "msg=\"restore\" adopted=4" in log, mgr.tail()
    # metrics (issue 16): the restarted daemon counts one crash restore and the four processes it adopted.
    m = metrics_text(mgr)
    assert 'tendd_restores_total{kind="crash"} 1\n' in m and "tendd_adopted_processes_total 4\n" in m, m[-2000:]
    pids = {p["pid"] for p in body["processes"]}
    assert {flood["pid"], waiter["pid"], short["pid"]} <= pids

    # The follower resumes exactly where it was: no gap, no duplicate, every line 1..N once.
    f.connect()
    assert f.read(until_eof=True, seconds=30), f"follow did not end: {len(f.events)} events"
    lines = [l for _, l in f.events]
    assert f.gaps == []
    assert lines == [str(i) for i in range(1, N_LINES + 1)], (len(lines), before, lines[:3], lines[-3:])
    ids = [i for i, _ in f.events]
    assert ids == sorted(set(ids))

    # The process that exited while tendd was down reports its real exit code.
    info = wait_for(lambda: (lambda r: r[1] if r[1]["status"] != "running" else None)(req(mgr, "GET", f"/api/v1/processes/{short['pid']}")),
                    5, "the short process's exit")
    assert info["status"] == "exited" and info["exit_code"] == 7, info

    # stdin is still writable; the output from before the crash is still there.
    assert req(mgr, "POST", f"/api/v1/processes/{waiter['pid']}/stdin", raw=b"two\n")[0] == 204
    wait_for(lambda: req(mgr, "GET", f"/api/v1/processes/{waiter['pid']}/stdout")[1]["lines"] == ["got one", "got two"],
             5, "the stdin waiter's output")

    # The managed one still restarts on failure, by name, and its journal spans the crash.
    wait_for(lambda: req(mgr, "GET", "/api/v1/processes/crashy")[1]["managed"]["restart_count"] >= restarts_before + 2,
             10, "managed restarts after the crash")
    out = req(mgr, "GET", "/api/v1/processes/crashy/stdout")[1]["lines"]
    assert len(out) >= 3 and all(l.startswith("up ") for l in out)


N_FLOOD = 400_000


def test_crash_during_flood_replays_exactly_from_disk(mgr):
    """Issue 13: kill -9 while a process floods past its 1 MiB memory journal into the disk tier
    (CacheDirectory=, here ~/.cache/tendd of the user manager): after the restart, a replay from the start
    yields every line exactly once, no gap, none torn or duplicated."""
    st, _ = req(mgr, "GET", "/api/v1/health")
    assert st == 200
    daemon = mgr.main_pid()
    cache = mgr.home / ".cache" / "tendd"
    flood = start(mgr, {"command": "sh", "args": ["-c", "for b in $(seq 0 199); do seq $((b*2000+1)) $((b*2000+2000)); sleep 0.01; done"]})
    wait_for(lambda: cache.is_dir() and any(n.endswith(".seg") for n in os.listdir(cache)), 20, "lines spilled to disk")
    os.kill(daemon, signal.SIGKILL)
    assert alive(flood["pid"]), "the flood ended before the crash"
    st, _ = req(mgr, "GET", "/api/v1/processes")
    assert st == 200, mgr.tail()
    assert mgr.main_pid() not in (0, daemon)
    f = Follow(mgr, flood["pid"])
    f.connect()
    assert f.read(until_eof=True, seconds=90), f"follow did not end: {len(f.events)} events"
    assert f.gaps == []
    lines = [l for _, l in f.events]
    assert lines == [str(i) for i in range(1, N_FLOOD + 1)], (len(lines), lines[:2], lines[-2:])
    assert [i for i, _ in f.events] == list(range(1, N_FLOOD + 1))
    st, body = req(mgr, "GET", f"/api/v1/processes/{flood['pid']}/stdout")
    assert st == 200 and body["line_count"] == N_FLOOD


def test_upgrade_refuses_no_connection(mgr):
    daemon = mgr.main_pid()
    p = start(mgr, {"command": "sh", "args": ["-c", "for i in $(seq 1 40); do echo $i; sleep 0.05; done"]})
    f = Follow(mgr, p["pid"])
    f.connect()
    f.read(until_eof=False, seconds=0.5)
    results: list[int] = []
    stop = threading.Event()

    def hammer():
        while not stop.is_set() and len(results) < 50000:
            try:
                results.append(req(mgr, "GET", "/api/v1/info")[0])
            except OSError as e:
                results.append(-1)
    t = threading.Thread(target=hammer)
    t.start()
    time.sleep(0.3)
    mgr.ctl("reload", "tendd.service")
    time.sleep(1.0)
    stop.set()
    t.join(20)
    assert mgr.main_pid() == daemon, "an upgrade keeps the pid"
    assert results and all(r == 200 for r in results), (len(results), [r for r in results if r != 200][:5], mgr.tail())
    assert "msg=\"upgrade: re-executing\"" in mgr.log.read_text()
    f.read(until_eof=False, seconds=0.3)       # the stream was closed by the exec
    f.connect()
    assert f.read(until_eof=True, seconds=20)
    assert [l for _, l in f.events] == [str(i) for i in range(1, 41)]
    print(f"\n  {len(results)} requests during the upgrade, none refused")


def test_stop_still_stops_everything(mgr):
    daemon = mgr.main_pid()
    start(mgr, {"command": "sleep", "args": ["300"]})
    start(mgr, {"command": "sh", "args": ["-c", "setsid sleep 300 & exec sleep 300"]})
    mgr.ctl("stop", "tendd.service")
    assert not alive(daemon)
    wait_for(lambda: mgr.marked_pids() == [], 5, "every child to be gone after stop")
    st, body = req(mgr, "GET", "/api/v1/processes")    # socket activation starts a clean daemon
    assert st == 200 and body["processes"] == [], body


class _WS:
    """A minimal WebSocket client for the PTY session (masked frames out, frames in)."""

    def __init__(self, mgr: Manager, path: str, pty_token: str):
        import base64
        s = socket.create_connection(("127.0.0.1", mgr.port), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {mgr.token}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                  f"X-PTY-Token: {pty_token}\r\n\r\n".encode())
        self.sock, self.buf = s, b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self):
        c = self.sock.recv(65536)
        if not c:
            raise EOFError("closed")
        self.buf += c

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, payload: bytes):
        n = len(payload)
        head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(head + b"\0\0\0\0" + payload)          # mask key 0: the payload as is

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(8), "big")
        return b0 & 0x0F, self._exact(n)

    def output_until(self, needle: bytes) -> tuple[bytes, int | None]:
        out = b""
        while needle not in out:
            op, p = self.recv()
            if op == 8:
                return out, None
            if p[:1] == b"\x00":
                out += p[1:]
            elif p[:1] == b"\x03":
                return out, int.from_bytes(p[1:5], "big", signed=True)
        return out, None


def test_pty_session_survives_a_crash(mgr, tmp_path):
    """The pty master and the unread output (the backlog's memfd) are in the fd store: after a SIGKILL and
    systemd's restart, a client reconnects with the same token and continues the same terminal."""
    st, _ = req(mgr, "GET", "/api/v1/health")
    assert st == 200
    daemon = mgr.main_pid()
    flag = tmp_path / "flag"
    st, s = req(mgr, "POST", "/api/v1/pty", {"command": "/bin/sh", "args": ["-c",
                "stty -echo; echo started; read x; head -c 300000 /dev/zero | tr -c z z; echo pending-$x;"
                f" touch {flag}; read y; echo after-$y; exit 6"]})
    assert st == 201, (s, mgr.tail())
    path = f"/api/v1/pty/{s['session_id']}/ws"
    a = _WS(mgr, path, s["token"])
    a.send(b"\x02")
    assert b"started" in a.output_until(b"started")[0]
    a.send(b"\x00one\n")
    a.sock.close()
    wait_for(flag.exists, 10, "the child to print while no client is attached")

    os.kill(daemon, signal.SIGKILL)
    st, info = req(mgr, "GET", f"/api/v1/pty/{s['session_id']}")     # systemd restarts tendd
    assert st == 200 and info["is_alive"] is True, (st, info, mgr.tail())
    assert mgr.main_pid() not in (0, daemon)
    assert "msg=\"pty session adopted\"" in mgr.log.read_text(), mgr.tail()
    b = _WS(mgr, path, s["token"])
    b.send(b"\x02")
    out, _ = b.output_until(b"pending-one")
    assert out.count(b"z") == 300000, out.count(b"z")
    b.send(b"\x00two\n")
    out, code = b.output_until(b"\x00never")
    assert b"after-two" in out and code == 6
    b.sock.close()
