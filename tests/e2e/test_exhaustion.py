"""Resource exhaustion: each pressure gives a clear, documented behaviour (JSON error with the right
status, a log line) and the daemon recovers once the pressure is gone. README: "Hardening and limits".

Limits are made small so the tests stay fast: RLIMIT_NOFILE is lowered on the running daemon with
prlimit(2), the process limit comes from a cgroup v1 pids controller, timeouts from flags.
"""

from __future__ import annotations

import json
import os
import re
import resource
import select
import socket
import threading
import time

import pytest

from conftest import (RawConn, SSEStream, assert_error, build_request, fd_count, wait_for)

P = "/api/v1/processes"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Under AddressSanitizer (scripts/sanitize.sh) memory figures and speeds differ: scale the thresholds.
ASAN = os.environ.get("TEND_ASAN") == "1"
FLOOD_BYTES = int(os.environ.get("TEND_FLOOD_BYTES", str((256 if ASAN else 1024) << 20)))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def settled_fd_count(pid: int, timeout: float = 5.0) -> int:
    """The daemon's fd count once it stopped changing (closing a finished client connection is
    asynchronous, and slower under ASan)."""
    last = fd_count(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def parse_error_bytes(buf: bytes) -> tuple[int, dict, dict]:
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, json.loads(body.decode()) if body else {}


def request_on(c: RawConn, method: str, path: str, token: str, body: bytes | None = None):
    c.send(build_request(method, path, token=token, body=body))
    return c.read_response(method)


# --------------------------------------------------------------------------- open-file limit


@pytest.mark.timeout(60)
def test_fd_limit_accept_spawn_follow_and_recovery(daemon_factory):
    """RLIMIT_NOFILE reached: new connections get 503 LIMIT_REACHED through the reserved fd (the daemon
    stays reachable and does not spin), spawning gets 503 LIMIT_REACHED with nothing left behind, an
    existing connection can still follow and feed a process; everything works again afterwards."""
    d = daemon_factory("--max-connections", "10000")
    cat = d.start("cat", stdin_mode="pipe")
    ctl = RawConn(d.port)                       # accepted before the limit: keeps working
    assert request_on(ctl, "GET", "/api/v1/health", d.token).status == 200
    fol = RawConn(d.port)
    assert request_on(fol, "GET", "/api/v1/health", d.token).status == 200
    time.sleep(0.2)
    base = fd_count(d.pid)
    limit = base + 12
    resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (limit, limit))
    flood: list[RawConn] = []
    try:
        for _ in range(40):
            flood.append(RawConn(d.port, timeout=5))
        # Connections the daemon refused are answered and closed at once; the others were accepted.
        refused, accepted = [], []
        deadline = time.monotonic() + 5
        pending = list(flood)
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select([c.sock for c in pending], [], [], 0.5)
            for c in [c for c in pending if c.sock in r]:
                assert c.is_closed(2.0), "a refused connection was not closed"
                refused.append(c)
                pending.remove(c)
            if not r:
                break
        accepted = pending
        assert refused, "no connection was refused at the fd limit"
        assert accepted, "no connection was accepted before the fd limit"
        assert fd_count(d.pid) <= limit
        for c in refused:
            status, headers, body = parse_error_bytes(bytes(c.buf))
            assert status == 503 and body["code"] == "LIMIT_REACHED", (status, body)
            assert "file descriptors" in body["error"]
            assert headers.get("retry-after") == "1"
            assert headers.get("connection") == "close"
        # Still at the limit (the accepted flood holds it): a new client is answered, not left hanging.
        late = RawConn(d.port, timeout=5)
        assert late.is_closed(3.0), "a client at the fd limit was left hanging"
        status, _, body = parse_error_bytes(bytes(late.buf))
        assert (status, body["code"]) == (503, "LIMIT_REACHED")
        # No busy loop while the limit holds and a client keeps knocking.
        cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
        for _ in range(5):
            RawConn(d.port, timeout=5).is_closed(1.0)
            time.sleep(0.1)
        spent = cpu_seconds(d.pid) - cpu0
        wall = time.monotonic() - t0
        assert spent < 0.5 * wall, f"daemon used {spent:.2f}s CPU in {wall:.2f}s at the fd limit"
        # Spawning needs pipes: 503 LIMIT_REACHED (safe to retry), nothing started, no fd leaked.
        before = fd_count(d.pid)
        r = request_on(ctl, "POST", P, d.token, json.dumps({"command": "true"}).encode())
        assert_error(r, 503, "LIMIT_REACHED", mentions="file descriptors")
        assert fd_count(d.pid) == before
        assert 'msg="spawn refused" reason=fd_limit' in d.log_text(200000)
        listing = request_on(ctl, "GET", P, d.token)
        assert [x["pid"] for x in listing.json["processes"]] == [cat["pid"]], "a refused start left a record"
        # Following on a connection accepted earlier works at the limit, and stdin reaches the child.
        fol.send(build_request("GET", f"{P}/{cat['pid']}/stdout/follow", token=d.token))
        status, _, headers = fol.read_head()
        assert status == 200 and "chunked" in headers.get("transfer-encoding", "")
        r = request_on(ctl, "POST", f"{P}/{cat['pid']}/stdin", d.token, b"at the limit\n")
        assert r.status == 204, r
        chunk = fol.read_chunk()
        while b"at the limit" not in chunk:
            chunk += fol.read_chunk()
        assert b'"line":"at the limit"' in chunk
        log = d.log_text(200000)
        assert 'msg="fd limit reached"' in log and "Too many open files" in log, log[-2000:]
    finally:
        for c in flood:
            c.close()
    # Recovery: the flood is gone; new connections and spawns work again.
    wait_for(lambda: fd_count(d.pid) <= base + 2, 10, what="fds to be released")

    def served():
        try:
            return d.get("/api/v1/health", timeout=2).status == 200
        except OSError:
            return False
    wait_for(served, 5, what="a new connection after the flood")
    info = d.start("sh", ["-c", "exit 7"])
    assert d.wait_exit(info["pid"])["exit_code"] == 7
    assert 'msg="fd limit cleared"' in d.log_text(200000)
    ctl.close()
    fol.close()


# --------------------------------------------------------------------------- process limit


def _pids_cgroup_root() -> str | None:
    root = "/sys/fs/cgroup/pids"
    return root if os.path.isdir(root) and os.access(root, os.W_OK) else None


@pytest.mark.timeout(60)
@pytest.mark.skipif(_pids_cgroup_root() is None, reason="needs a writable cgroup v1 pids controller")
def test_process_limit_pids_cgroup(daemon_factory):
    """fork/clone fails with EAGAIN (pids.max reached): 503 LIMIT_REACHED, nothing half-started, a log
    line; once processes end, starts work again."""
    d = daemon_factory()
    cg = os.path.join(_pids_cgroup_root(), f"tendd-e2e-{os.getpid()}-{d.port}")
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("6\n")                       # the daemon itself + 5 children
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(d.pid))
        started = []
        refused = None
        for _ in range(10):
            r = d.start_raw({"command": "sleep", "args": ["60"]})
            if r.status == 201:
                started.append(r.json["pid"])
                continue
            refused = r
            break
        assert len(started) == 5, started
        assert refused is not None
        assert_error(refused, 503, "LIMIT_REACHED", mentions="cannot create a process")
        assert "Resource temporarily unavailable" in refused.json["error"]
        assert 'msg="spawn refused" reason=process_limit' in d.log_text(200000)
        running = [p for p in d.get(P).json["processes"] if p["status"] == "running"]
        assert len(running) == 5, "a refused start left a record behind"
        fds = settled_fd_count(d.pid)
        assert d.start_raw({"command": "sleep", "args": ["60"]}).status == 503
        assert settled_fd_count(d.pid) == fds, "a refused start leaked fds"
        # Recovery.
        assert d.request("DELETE", f"{P}/{started[0]}").status == 204
        info = d.start("sh", ["-c", "exit 3"])
        assert d.wait_exit(info["pid"])["exit_code"] == 3
    finally:
        d.kill_started()
        wait_for(lambda: not [p for p in d.get(P).json["processes"] if p["status"] == "running"], 10,
                 what="children to end")
        with open(os.path.join(_pids_cgroup_root(), "cgroup.procs"), "w") as f:
            f.write(str(d.pid))
        wait_for(lambda: open(os.path.join(cg, "cgroup.procs")).read().strip() == "", 5, what="cgroup empty")
        os.rmdir(cg)


# --------------------------------------------------------------------------- connections


@pytest.mark.timeout(60)
def test_too_many_connections_then_recovery(daemon_factory):
    d = daemon_factory("--max-connections", "8")
    held = []
    for _ in range(8):
        c = RawConn(d.port)
        assert request_on(c, "GET", "/api/v1/health", d.token).status == 200
        held.append(c)
    for _ in range(5):
        extra = RawConn(d.port, timeout=5)
        assert extra.is_closed(3.0)
        status, headers, body = parse_error_bytes(bytes(extra.buf))
        assert (status, body["code"]) == (503, "LIMIT_REACHED")
        assert headers["retry-after"] == "1"
    assert 'msg="connection refused" reason=limit' in d.log_text(100000)
    # the held connections are still served
    for c in held:
        assert request_on(c, "GET", "/api/v1/health", d.token).status == 200
    for c in held[:4]:
        c.close()
    wait_for(lambda: d.get("/api/v1/health", timeout=2).status == 200, 5, what="a free slot")
    for c in held[4:]:
        c.close()


# --------------------------------------------------------------------------- slow or stuck clients


@pytest.mark.timeout(40)
def test_headers_one_byte_per_second(daemon_factory):
    """Twenty clients each sending their request head one byte per second get 408 REQUEST_TIMEOUT
    after --header-timeout-ms and are closed; others are served meanwhile."""
    d = daemon_factory("--header-timeout-ms", "1500")
    data = build_request("GET", "/api/v1/health", token=d.token)
    conns = [RawConn(d.port) for _ in range(20)]
    t0 = time.monotonic()
    closed_at: dict[int, float] = {}
    i = 0
    while len(closed_at) < len(conns) and time.monotonic() - t0 < 6:
        for k, c in enumerate(conns):
            if k in closed_at:
                continue
            try:
                c.send(data[i:i + 1])
            except OSError:
                pass
            if c.is_closed(0.02):
                closed_at[k] = time.monotonic() - t0
        assert d.get("/api/v1/health", timeout=2).status == 200
        i += 1
        time.sleep(1.0)
    assert len(closed_at) == len(conns), f"only {len(closed_at)} slow clients were dropped"
    assert all(1.0 <= t <= 4.5 for t in closed_at.values()), closed_at
    for c in conns:
        if c.buf:
            status, _, body = parse_error_bytes(bytes(c.buf))
            assert (status, body["code"]) == (408, "REQUEST_TIMEOUT")
    assert 'msg="header timeout"' in d.log_text(100000)
    wait_for(lambda: fd_count(d.pid) <= d.baseline_fds + 1, 5, what="fds back to baseline")


@pytest.mark.timeout(40)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_that_never_finishes(daemon_factory, framing):
    d = daemon_factory("--idle-timeout-ms", "1500")
    c = RawConn(d.port)
    if framing == "chunked":
        c.send(build_request("POST", P, token=d.token, headers={"Transfer-Encoding": "chunked",
                                                                "Content-Type": "application/json"}) + b"4\r\n{\"co")
    else:
        c.send(build_request("POST", P, token=d.token, headers={"Content-Length": "100"}) + b'{"command":')
    t0 = time.monotonic()
    r = c.read_response()
    elapsed = time.monotonic() - t0
    assert_error(r, 408, "REQUEST_TIMEOUT", mentions="body")
    assert 1.0 <= elapsed <= 4.0, elapsed
    assert c.is_closed(2.0)
    assert d.get(P).json["processes"] == [], "a partial body started something"
    wait_for(lambda: fd_count(d.pid) <= d.baseline_fds + 1, 5, what="fds back to baseline")


@pytest.mark.timeout(60)
def test_sse_reader_that_stops_reading_is_dropped(daemon_factory):
    """A follower that stops reading: its queue stays bounded, the child is not slowed, and after
    --idle-timeout-ms without progress the daemon closes the stream (log line) and frees its fd."""
    d = daemon_factory("--idle-timeout-ms", "1500", "--sse-keepalive-ms", "500")
    info = d.sh("yes 0123456789012345678901234567890123456789 | head -c 200000000")
    s = d.follow(info["pid"], rcvbuf=4096)          # never reads past the response head
    assert s.status == 200
    t0 = time.monotonic()
    ended = d.wait_exit(info["pid"], 60)
    assert ended["exit_code"] == 0
    child_secs = time.monotonic() - t0
    rss = status_kb(d.pid, "VmRSS")
    assert rss < (400 if ASAN else 64) * 1024, f"daemon RSS {rss} KiB with a stuck reader"
    wait_for(lambda: 'msg="stream reader stalled, closing"' in d.log_text(200000), 10,
             what="the stalled reader to be dropped")
    wait_for(lambda: fd_count(d.pid) <= d.baseline_fds + 1, 5, what="the stalled reader's fd to close")
    # The output is still there for a reader that resumes.
    again = d.follow(info["pid"], headers={"Last-Event-ID": "1"})
    got = again.collect(max_seconds=30)
    got.assert_eof_terminated()
    print(f"200 MB child with a stuck follower ran {child_secs:.1f}s")
    s.close()


@pytest.mark.timeout(120)
def test_gigabyte_stdin_into_process_that_never_reads(daemon_factory):
    """A 1 GiB stdin body into a child that never reads: back-pressure (the sender is slowed, daemon
    memory stays bounded by --max-stdin-queue); when the child dies the rest of the body is discarded
    and the request ends with 400 STDIN_NOT_WRITABLE; the daemon is fine afterwards."""
    d = daemon_factory("--max-stdin-queue", str(1 << 20))
    info = d.start("sleep", ["120"], stdin_mode="pipe")
    rss0 = status_kb(d.pid, "VmRSS")
    total = 1 << 30
    c = RawConn(d.port, timeout=60)
    c.send(build_request("POST", f"{P}/{info['pid']}/stdin", token=d.token,
                         headers={"Content-Length": str(total)}))
    sent = [0]
    err: list[BaseException] = []

    def pump():
        block = b"x" * (1 << 20)
        try:
            while sent[0] < total:
                n = c.sock.send(block[:min(len(block), total - sent[0])])
                sent[0] += n
        except BaseException as e:   # noqa: BLE001 - reported below
            err.append(e)
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    time.sleep(3)
    stalled_at = sent[0]
    time.sleep(1)
    assert sent[0] - stalled_at < (4 << 20), "the sender was not slowed down"
    assert sent[0] < (64 << 20), f"{sent[0]} bytes accepted for a child that never reads"
    grown = status_kb(d.pid, "VmRSS") - rss0
    assert grown < (256 if ASAN else 32) * 1024, f"daemon RSS grew {grown} KiB"
    assert d.get("/api/v1/health").status == 200       # the loop is not blocked
    assert d.request("DELETE", f"{P}/{info['pid']}").status == 204
    t.join(90)
    assert not t.is_alive() and not err, err
    assert sent[0] == total
    assert_error(c.read_response(), 400, "STDIN_NOT_WRITABLE")
    c.close()
    assert d.get("/api/v1/health").status == 200


# --------------------------------------------------------------------------- output flood


class RawFollower(threading.Thread):
    """Reads one SSE follow stream with minimal Python work per event; `rate` bytes/s (None: as fast
    as possible; 0: never reads). Checks that every seq is delivered once, in order, or covered by a
    gap event whose counts match exactly."""

    EV = re.compile(rb"id:(\d+)\nevent:output\ndata:\{\"line\":\"(x*)\"|event:gap\ndata:\{\"dropped_lines\":(\d+),\"dropped_bytes\":(\d+)\}|event:(eof)")

    def __init__(self, d, pid: int, rate: float | None, line_len: int):
        super().__init__(daemon=True)
        self.d, self.pid, self.rate, self.line_len = d, pid, rate, line_len
        self.conn = RawConn(d.port, timeout=60, rcvbuf=(8192 if rate == 0 else None))
        self.conn.send(build_request("GET", f"{P}/{pid}/stdout/follow", token=d.token))
        status, _, _ = self.conn.read_head()
        assert status == 200
        self.next = 1
        self.lines = 0
        self.gap_lines = 0
        self.gap_events = 0
        self.eof = False
        self.bytes = 0
        self.problems: list[str] = []
        self.stop = False

    def run(self):
        if self.rate == 0:
            return
        buf = bytearray()
        t0 = time.monotonic()
        try:
            while not self.eof and not self.stop:
                data = self.conn.sock.recv(1 << 20 if self.rate is None else 16384)
                if not data:
                    break
                self.bytes += len(data)
                buf += data
                self._dechunk(buf)
                if self.rate:
                    ahead = self.bytes / self.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except Exception as e:   # noqa: BLE001
            self.problems.append(f"reader error: {e!r}")

    def _dechunk(self, buf: bytearray):
        while True:
            i = buf.find(b"\r\n")
            if i < 0:
                return
            size = int(buf[:i], 16)
            if len(buf) < i + 2 + size + 2:
                return
            payload = bytes(buf[i + 2:i + 2 + size])
            del buf[:i + 2 + size + 2]
            if size == 0:
                return
            self._events(payload)

    def _events(self, payload: bytes):
        for m in self.EV.finditer(payload):
            seq, text, gl, gb, eof = m.groups()
            if seq is not None:
                s = int(seq)
                if s != self.next:
                    self.problems.append(f"seq {s}, expected {self.next}")
                    self.next = s
                if len(text) != self.line_len:
                    self.problems.append(f"seq {s}: line of {len(text)} bytes")
                self.next += 1
                self.lines += 1
            elif gl is not None:
                self.gap_events += 1
                self.gap_lines += int(gl)
                if int(gb) != int(gl) * self.line_len:
                    self.problems.append(f"gap bytes {gb} != {gl} lines x {self.line_len}")
                self.next += int(gl)
            else:
                self.eof = True


@pytest.mark.timeout(240)
def test_flood_with_ten_followers_at_different_speeds(daemon_factory):
    """A child writes FLOOD_BYTES (1 GiB; 256 MiB under ASan) as fast as it can while ten followers
    read at different speeds, one never reading. The child is never blocked, daemon memory stays
    bounded, and every reading follower accounts for every line: delivered in order or reported by
    a gap event with exact counts, then eof."""
    line_len = 999
    d = daemon_factory()
    rss0 = status_kb(d.pid, "VmRSS")
    flood = FLOOD_BYTES // (line_len + 1) * (line_len + 1)     # whole lines only
    # Wait for all followers before the output starts: the child blocks on its stdin until told.
    info = d.sh(f'read go; yes "$(head -c {line_len} /dev/zero | tr "\\0" x)" | head -c {flood}',
                stdin_mode="pipe")
    pid = info["pid"]
    rates = [None, None, None, None, None, 64 << 20, 16 << 20, 4 << 20, 1 << 20, 0]
    fs = [RawFollower(d, pid, r, line_len) for r in rates]
    for f in fs:
        f.start()
    t0 = time.monotonic()
    assert d.request("POST", f"{P}/{pid}/stdin", body=b"go\n").status == 204
    hwm_samples = []
    # Blocked means no progress: the fastest follower's count must keep moving (a slow, busy or
    # sanitizer machine only makes the flood take longer).
    progress, last_move = -1, time.monotonic()
    while True:
        i = d.info(pid)
        hwm_samples.append(status_kb(d.pid, "VmRSS"))
        if i["status"] != "running":
            break
        seen = max(f.lines + f.gap_lines for f in fs[:5])
        if seen != progress:
            progress, last_move = seen, time.monotonic()
        assert time.monotonic() - last_move < 30, f"the flooding child made no progress for 30 s: blocked? (at {progress} lines)"
        time.sleep(0.2)
    child_secs = time.monotonic() - t0
    assert i["exit_code"] == 0, i
    total_lines = flood // (line_len + 1)
    readers = fs[:-1]
    for f in readers:
        f.join(120)
    stuck = fs[-1]
    # The reader that never reads is still connected (bounded), the daemon is responsive.
    assert d.get("/api/v1/health").status == 200
    peak = max(hwm_samples)
    mb = flood / (1 << 20)
    summary = []
    for k, f in enumerate(readers):
        summary.append(f"f{k} rate={rates[k]} lines={f.lines} gaps={f.gap_events}/{f.gap_lines} eof={f.eof}")
        assert not f.is_alive(), f"follower {k} did not finish"
        assert not f.problems, (k, f.problems[:5])
        assert f.eof, f"follower {k}: no eof"
        assert f.next == total_lines + 1, f"follower {k}: ended at seq {f.next}, expected {total_lines + 1}"
        assert f.lines + f.gap_lines == total_lines
    print(f"\nflood: {mb:.0f} MiB in {child_secs:.1f}s ({mb / child_secs:.0f} MiB/s), daemon RSS {rss0} -> peak {peak} KiB")
    print("\n".join(summary))
    # The slowest readers must have been told about loss (1 MiB journal, far less than the flood).
    assert fs[8].gap_lines > 0
    assert peak - rss0 < (512 if ASAN else 64) * 1024, f"daemon RSS grew {peak - rss0} KiB"
    for f in fs:
        f.conn.close()
    wait_for(lambda: fd_count(d.pid) <= d.baseline_fds + 1, 10, what="fds back to baseline")
