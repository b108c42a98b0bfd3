"""Fixtures and helpers for the tendd end-to-end suite.

Only the standard library, pytest and the tensorlake SDK are used.

* ``daemon``          session-scoped tendd on a free TCP port with a random token
* ``daemon_factory``  function-scoped: start extra daemons with extra flags
* ``Daemon.request``  one JSON/HTTP request over a fresh ``http.client`` connection
* ``RawConn``         raw socket client (pipelining, chunked bodies, malformed bytes,
                      slow senders, reading responses byte-exactly)
* ``SSEStream``       incremental SSE reader over a raw socket (chunked decoding and
                      a manual event parser; records comments, ids, the clean end)

Every socket has a timeout, and a per-test watchdog kills the daemons (which unblocks
any client stuck on them) if a test overruns its ``timeout`` marker, with a hard
process exit as the last resort, so a hung daemon cannot hang CI.
"""

from __future__ import annotations

import faulthandler
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

REPO = Path(__file__).resolve().parents[2]
TENDD_BIN = os.environ.get("TENDD_BIN", str(REPO / ".build" / "release" / "tendd"))
SOCK_TIMEOUT = 10.0
DEFAULT_TEST_TIMEOUT = 30.0
NO_SUCH_PID = 2_000_000_000  # far above any pid_max

# Marker the daemon gets in its environment; children must inherit it (env merge).
DAEMON_ENV_MARKER = ("TENDD_E2E_DAEMON_MARKER", "from-daemon")
DAEMON_ENV_OVERRIDE = ("TENDD_E2E_OVERRIDE_ME", "daemon-value")

_ALL_DAEMONS: list["Daemon"] = []


# --------------------------------------------------------------------------- pytest hooks


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): per-test watchdog (default 30 s)")
    config.addinivalue_line("markers", "last: run after every other test (leak checks)")


def pytest_collection_modifyitems(session, config, items):
    first = [i for i in items if i.get_closest_marker("last") is None]
    last = [i for i in items if i.get_closest_marker("last") is not None]
    items[:] = first + last


def _watchdog_fire(nodeid: str, seconds: float):
    sys.stderr.write(f"\n*** e2e watchdog: {nodeid} exceeded {seconds}s; killing daemons\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for d in list(_ALL_DAEMONS):
        d.hard_kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("timeout")
    seconds = float(m.args[0]) if m and m.args else DEFAULT_TEST_TIMEOUT
    timer = threading.Timer(seconds, _watchdog_fire, args=(item.nodeid, seconds))
    timer.daemon = True
    timer.start()
    # Last resort if even killing the daemons does not unblock the test.
    faulthandler.dump_traceback_later(seconds + 30, exit=True)
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


# --------------------------------------------------------------------------- HTTP helpers


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except Exception as e:  # pragma: no cover - diagnostic
            raise AssertionError(f"body is not JSON ({e}): {self.body[:500]!r}") from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __repr__(self) -> str:
        return f"Resp({self.status}, {self.headers}, {self.body[:300]!r})"


def assert_error(resp: Resp, status: int, code: str, *, mentions: str | None = None):
    """Assert the daemon's JSON error shape {"error": str, "code": str}."""
    assert resp.status == status, f"expected {status} {code}, got {resp!r}"
    ctype = resp.header("content-type") or ""
    assert "application/json" in ctype, f"error without JSON content type: {resp!r}"
    body = resp.json
    assert isinstance(body, dict), body
    assert body.get("code") == code, f"expected code {code}, got {body}"
    assert isinstance(body.get("error"), str) and body["error"], body
    if mentions is not None:
        assert mentions.lower() in body["error"].lower(), (
            f"error message should mention {mentions!r}: {body}"
        )
    return body


class RawConn:
    """A raw HTTP/1.1 client connection with a byte buffer."""

    def __init__(self, port: int | None = None, *, unix: str | None = None,
                 timeout: float = SOCK_TIMEOUT, rcvbuf: int | None = None):
        if unix is not None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(unix if unix is not None else ("127.0.0.1", port))
        self.sock = s
        self.buf = bytearray()
        self.eof = False

    # -- sending
    def send(self, data: bytes):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    # -- receiving
    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.sock.recv(65536)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until(self, delim: bytes, limit: int = 1 << 20) -> bytes:
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                break
            if len(self.buf) > limit:
                raise AssertionError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self._fill():
                raise EOFError(f"connection closed before {delim!r}; buffered {bytes(self.buf[:200])!r}")
        n = i + len(delim)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buf)}/{n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self) -> tuple[int, str, dict[str, str]]:
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0].startswith("HTTP/1."), f"bad status line {lines[0]!r}"
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            k = k.strip().lower()
            v = v.strip()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        return status, reason, headers

    def read_chunk(self) -> bytes:
        """One chunk of a chunked body; b"" for the terminating chunk (trailers consumed)."""
        size_line = self.read_until(b"\r\n").decode("latin-1").strip()
        size = int(size_line.split(";")[0], 16)
        if size == 0:
            while self.read_until(b"\r\n") != b"\r\n":
                pass
            return b""
        data = self.read_exact(size)
        assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"
        return data

    def read_response(self, method: str = "GET") -> Resp:
        status, _reason, headers = self.read_head()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Resp(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                c = self.read_chunk()
                if not c:
                    break
                body += c
            return Resp(status, headers, body)
        if "content-length" in headers:
            return Resp(status, headers, self.read_exact(int(headers["content-length"])))
        while self._fill():
            pass
        body = bytes(self.buf)
        self.buf.clear()
        return Resp(status, headers, body)

    def is_closed(self, wait: float = 2.0) -> bool:
        """True if the peer closed (EOF or reset) within `wait` seconds; any pending
        bytes are kept in the buffer."""
        deadline = time.monotonic() + wait
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    self.eof = True
                    return True
                if not chunk:
                    self.eof = True
                    return True
                self.buf += chunk
        finally:
            try:
                self.sock.settimeout(old)
            except OSError:
                pass


def build_request(method: str, path: str, *, token: str | None, body: bytes | None = None,
                  headers: dict[str, str] | None = None, host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    h = dict(headers or {})
    if token is not None:
        h.setdefault("Authorization", f"Bearer {token}")
    if body is not None and "Transfer-Encoding" not in h:
        h.setdefault("Content-Length", str(len(body)))
        if body and "Content-Type" not in h and body[:1] in (b"{", b"["):
            h["Content-Type"] = "application/json"
    for k, v in h.items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*pieces: bytes) -> bytes:
    out = b""
    for p in pieces:
        if p:
            out += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    return out + b"0\r\n\r\n"


# --------------------------------------------------------------------------- SSE


@dataclass
class SSEEvent:
    kind: str  # "event" or "comment"
    event: str | None = None
    id: int | None = None
    raw_id: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data) if self.data is not None else None

    @property
    def line(self) -> str:
        return self.json["line"]


class SSEStream:
    """Incremental reader of one SSE response over a raw socket."""

    def __init__(self, port: int, path: str, token: str | None, *,
                 headers: dict[str, str] | None = None, timeout: float = SOCK_TIMEOUT,
                 rcvbuf: int | None = None):
        self.conn = RawConn(port, timeout=timeout, rcvbuf=rcvbuf)
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        self.conn.send(build_request("GET", path, token=token, headers=h))
        self.status, _, self.headers = self.conn.read_head()
        self.error: Resp | None = None
        if self.status != 200:
            if "content-length" in self.headers:
                body = self.conn.read_exact(int(self.headers["content-length"]))
            elif "chunked" in self.headers.get("transfer-encoding", ""):
                body = b""
                while (c := self.conn.read_chunk()):
                    body += c
            else:
                body = b""
            self.error = Resp(self.status, self.headers, body)
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.text = bytearray()
        self.ended = False        # no more body bytes will come
        self.clean_end = False    # body ended with the terminating chunk
        self._pending: dict[str, Any] = {}

    def _more(self) -> bool:
        if self.ended:
            return False
        if self.chunked:
            c = self.conn.read_chunk()
            if not c:
                self.ended = True
                self.clean_end = True
                return False
            self.text += c
            return True
        if self.conn.buf:
            self.text += self.conn.buf
            self.conn.buf.clear()
            return True
        if not self.conn._fill():
            self.ended = True
            return False
        self.text += self.conn.buf
        self.conn.buf.clear()
        return True

    def next_event(self, *, include_comments: bool = True) -> SSEEvent | None:
        """Next dispatched event (or comment block); None when the body ended."""
        p = self._pending
        while True:
            i = self.text.find(b"\n")
            while i < 0:
                start = len(self.text)
                if not self._more():
                    return None
                i = self.text.find(b"\n", start)
            line = self.text[:i].decode("utf-8")
            del self.text[:i + 1]
            if line.endswith("\r"):
                line = line[:-1]
            if line == "":
                self._pending = {}
                if any(k in p for k in ("event", "data", "id")):
                    ev = SSEEvent("event", event=p.get("event", "message"), raw_id=p.get("id"),
                                  data="\n".join(p["data"]) if "data" in p else None,
                                  comments=p.get("comments", []))
                    if ev.raw_id is not None and ev.raw_id.isdigit():
                        ev.id = int(ev.raw_id)
                    return ev
                if p.get("comments") is not None:
                    ev = SSEEvent("comment", comments=p["comments"])
                    if include_comments:
                        return ev
                p = self._pending
                continue
            if line.startswith(":"):
                p.setdefault("comments", []).append(line[1:])
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "data":
                p.setdefault("data", []).append(value)
            elif name in ("event", "id", "retry"):
                p[name] = value

    def collect(self, *, max_seconds: float = 20.0) -> "Collected":
        """Read until the body ends. Returns every event (comments dropped)."""
        out = Collected()
        deadline = time.monotonic() + max_seconds
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"stream did not end within {max_seconds}s; got {len(out.events)} events")
            ev = self.next_event(include_comments=False)
            if ev is None:
                break
            out.events.append(ev)
        out.clean_end = self.clean_end
        return out

    def close(self):
        self.conn.close()


@dataclass
class Collected:
    events: list[SSEEvent] = field(default_factory=list)
    clean_end: bool = False

    @property
    def outputs(self) -> list[SSEEvent]:
        return [e for e in self.events if e.event == "output"]

    @property
    def lines(self) -> list[str]:
        return [e.json["line"] for e in self.outputs]

    @property
    def ids(self) -> list[int | None]:
        return [e.id for e in self.outputs]

    def assert_eof_terminated(self):
        assert self.events, "no events at all"
        names = [e.event for e in self.events]
        assert names[-1] == "eof", f"last event is {names[-1]!r}, not eof; tail={names[-5:]}"
        assert names.count("eof") == 1, "more than one eof"
        assert self.events[-1].json == {}, f"eof data should be {{}}: {self.events[-1].data!r}"
        assert self.clean_end, "body did not end with the terminating chunk after eof"


# --------------------------------------------------------------------------- daemon



def parse_sse(buf: bytes) -> list[tuple[str | None, Any]]:
    """(event, data) of every event in a whole SSE body (`data:` parsed as JSON)."""
    events = []
    for block in buf.decode().split("\n\n"):
        ev, data = None, None
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        if data is not None:
            events.append((ev, data))
    return events


def procs_with(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `marker` (a unique test argument)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state != "Z":
            out.append(int(d))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_state(pid: int) -> str | None:
    """Single-letter state from /proc/<pid>/stat, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2]


def gone_or_zombie(pid: int) -> bool:
    return proc_state(pid) in (None, "Z", "X")


def children_of(ppid: int) -> list[tuple[int, str, str]]:
    """(pid, state, comm) of every process whose PPid is ppid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                st = f.read()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in st.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(ppid):
            out.append((int(name), fields.get("State", "?").strip(), fields.get("Name", "?").strip()))
    return out


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")


class Daemon:
    def __init__(self, extra_args: Iterable[str] = (), *, tmpdir: str | None = None,
                 unix_socket: bool = False, env: dict[str, str] | None = None):
        if not os.path.exists(TENDD_BIN):
            pytest.fail(f"tendd binary not found at {TENDD_BIN} (set TENDD_BIN)")
        self.dir = tempfile.mkdtemp(prefix="tendd-e2e-", dir=tmpdir)
        self.token = secrets.token_hex(24)
        self.token_file = os.path.join(self.dir, "token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, self.token.encode())
        os.close(fd)
        self.log_path = os.path.join(self.dir, "tendd.log")
        self.unix_path = os.path.join(self.dir, "tendd.sock") if unix_socket else None
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env[DAEMON_ENV_MARKER[0]] = DAEMON_ENV_MARKER[1]
        self.env[DAEMON_ENV_OVERRIDE[0]] = DAEMON_ENV_OVERRIDE[1]
        self.env.pop("TENSORLAKE_API_KEY", None)
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.started: list[int] = []
        self.baseline_fds: int | None = None
        self._start()
        _ALL_DAEMONS.append(self)

    # ---------------------------------------------------------------- lifecycle
    def _start(self):
        last_log = ""
        for _attempt in range(3):
            self.port = free_port()
            args = [TENDD_BIN, "--listen", f"127.0.0.1:{self.port}", "--token-file", self.token_file,
                    "--log-level", "debug"]
            if self.unix_path:
                args += ["--listen", f"unix:{self.unix_path}"]
            args += self.extra_args
            self.args = args
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, env=self.env, close_fds=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = self.request("GET", "/api/v1/health", timeout=1.0)
                    if r.status == 200:
                        time.sleep(0.1)
                        self.baseline_fds = fd_count(self.proc.pid)
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            last_log = self.log_text()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
                pytest.fail(f"tendd did not answer /api/v1/health within 10s\nargs={args}\n--- log ---\n{last_log}")
        pytest.fail(f"tendd exited during startup (rc={self.proc.returncode})\nargs={self.args}\n--- log ---\n{last_log}")

    def log_text(self, tail: int = 8000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "<no log>"
        return data[-tail:].decode("utf-8", "replace")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def hard_kill(self):
        if self.alive():
            try:
                self.proc.kill()
            except OSError:
                pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait; returns the exit code (None if it had to be SIGKILLed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None
        finally:
            self._log.close()

    def cleanup(self):
        """Remove the temp dir (token, log, socket) once the daemon is gone."""
        if self.proc is not None and self.proc.poll() is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------------- requests
    NO_TOKEN = object()

    def request(self, method: str, path: str, *, json_body: Any = None, body: bytes | None = None,
                headers: dict[str, str] | None = None, token: Any = None,
                timeout: float = SOCK_TIMEOUT) -> Resp:
        h = dict(headers or {})
        if token is None:
            token = self.token
        if token is not Daemon.NO_TOKEN:
            h.setdefault("Authorization", f"Bearer {token}")
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Resp:
        return self.request("GET", path, **kw)

    def post(self, path: str, json_body: Any = None, **kw) -> Resp:
        return self.request("POST", path, json_body=json_body, **kw)

    # ---------------------------------------------------------------- process helpers
    def start_raw(self, spec: dict) -> Resp:
        r = self.post("/api/v1/processes", spec)
        if r.status == 201:
            self.started.append(r.json["pid"])
        return r

    def start(self, command: str, args: list[str] | None = None, **spec) -> dict:
        body = {"command": command}
        if args is not None:
            body["args"] = args
        body.update(spec)
        r = self.start_raw(body)
        assert r.status == 201, f"start {body} failed: {r!r}"
        info = r.json
        assert isinstance(info.get("pid"), int) and info["pid"] > 0, info
        return info

    def sh(self, script: str, **spec) -> dict:
        return self.start("/bin/sh", ["-c", script], **spec)

    def info(self, pid: int) -> dict:
        r = self.get(f"/api/v1/processes/{pid}")
        assert r.status == 200, r
        return r.json

    def wait_exit(self, pid: int, timeout: float = 10.0) -> dict:
        def done():
            i = self.info(pid)
            return i if i["status"] != "running" else None
        return wait_for(done, timeout, what=f"process {pid} to end")

    def lines(self, pid: int, which: str = "stdout") -> list[str]:
        r = self.get(f"/api/v1/processes/{pid}/{which}")
        assert r.status == 200, r
        return r.json["lines"]

    def wait_output(self, pid: int, pred: Callable[[list[str]], bool], which: str = "stdout",
                    timeout: float = 10.0) -> list[str]:
        return wait_for(lambda: (lambda ls: ls if pred(ls) else None)(self.lines(pid, which)),
                        timeout, what=f"{which} of {pid}")

    def follow(self, pid: int, which: str = "stdout", **kw) -> SSEStream:
        return SSEStream(self.port, f"/api/v1/processes/{pid}/{which}/follow", self.token, **kw)

    def kill_started(self):
        for pid in self.started:
            try:
                self.request("DELETE", f"/api/v1/processes/{pid}", timeout=3)
            except OSError:
                pass
        self.started.clear()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def daemon():
    d = Daemon()
    yield d
    d.kill_started()
    alive_before = d.alive()
    rc = d.stop()
    if d in _ALL_DAEMONS:
        _ALL_DAEMONS.remove(d)
    log = d.log_text()
    d.cleanup()
    if alive_before:
        assert d.proc.poll() is not None, "tendd still running after SIGTERM"
        assert rc is not None, f"tendd ignored SIGTERM for 10s\n--- log ---\n{log}"


@pytest.fixture
def daemon_factory():
    made: list[Daemon] = []

    def make(*extra_args: str, **kw) -> Daemon:
        d = Daemon(extra_args, **kw)
        made.append(d)
        return d

    yield make
    problems = []
    for d in made:
        d.kill_started()
        was_alive = d.alive()
        rc = d.stop()
        if d in _ALL_DAEMONS:
            _ALL_DAEMONS.remove(d)
        if was_alive and rc is None:
            problems.append(f"daemon {d.args} ignored SIGTERM\n{d.log_text()}")
        d.cleanup()
    assert not problems, "\n".join(problems)


@pytest.fixture(autouse=True)
def _kill_leftovers(request):
    yield
    if "daemon" in request.fixturenames:
        d = request.getfixturevalue("daemon")
        if d.alive():
            d.kill_started()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for d in _ALL_DAEMONS:
            rep.sections.append((f"tendd log ({' '.join(d.extra_args) or 'default'})", d.log_text(4000)))
