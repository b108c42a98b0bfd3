"""The raw byte view (issue 6): GET /api/v1/processes/{p}/{stdout,stderr}/raw[?offset=N][&follow=true].
Bytes exactly as written (binary, CR, NUL, invalid UTF-8), resumable by byte offset, bounded by the
per-stream ring, and never silently lossy: a reader that fell behind gets a `X-Tend-End: gap` trailer
and a later X-Tend-Offset when it resumes."""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from conftest import RawConn, assert_error, build_request, wait_for

P = "/api/v1/processes"


def _py(daemon, code: str, **spec) -> dict:
    return daemon.start("python3", ["-c", code], **spec)


# Deterministic binary data the child and the test can both make (argv cannot carry megabytes).
GEN = "import hashlib\ndef gen(n, seed):\n    out = bytearray(); k = 0\n    while len(out) < n:\n        out += hashlib.sha256(f'{seed}:{k}'.encode()).digest(); k += 1\n    return bytes(out[:n])\n"
exec(GEN)


def _raw_follow(d, pid: int, which: str = "stdout", offset: int | None = None, *, rcvbuf: int | None = None,
                timeout: float = 20.0):
    """Opens a follow stream; returns (conn, status, headers)."""
    q = "follow=true" + (f"&offset={offset}" if offset is not None else "")
    c = RawConn(d.port, rcvbuf=rcvbuf, timeout=timeout)
    c.send(build_request("GET", f"{P}/{pid}/{which}/raw?{q}", token=d.token))
    status, _, headers = c.read_head()
    return c, status, headers


def _read_stream(c: RawConn) -> tuple[bytes, dict[str, str]]:
    """Reads a chunked body to its end; returns (body, trailers)."""
    body = bytearray()
    while True:
        size = int(c.read_until(b"\r\n").decode().strip().split(";")[0], 16)
        if size == 0:
            trailers = {}
            while True:
                line = c.read_until(b"\r\n")
                if line == b"\r\n":
                    return bytes(body), trailers
                k, _, v = line.decode("latin-1").partition(":")
                trailers[k.strip().lower()] = v.strip()
        body += c.read_exact(size)
        assert c.read_exact(2) == b"\r\n"


ALL_BYTES = bytes(range(256)) * 3 + b"a\r\nb\r\r\n\x00\xff\xfe tail without newline"


def test_raw_is_byte_exact(daemon):
    p = _py(daemon, f"import sys; sys.stdout.buffer.write({ALL_BYTES!r})")
    daemon.wait_exit(p["pid"])
    r = daemon.get(f"{P}/{p['pid']}/stdout/raw")
    assert r.status == 200, r
    assert r.header("content-type") == "application/octet-stream"
    assert r.body == ALL_BYTES
    assert r.header("x-tend-offset") == "0"
    assert r.header("x-tend-next-offset") == str(len(ALL_BYTES))
    assert r.header("x-tend-complete") == "true"
    assert r.header("x-tend-dropped-bytes") is None
    # The line views still see lines (repaired), the raw view is untouched.
    assert daemon.lines(p["pid"])[-1] == "\x00\ufffd\ufffd tail without newline"


def test_raw_stderr_and_offsets(daemon):
    p = _py(daemon, "import sys; sys.stderr.buffer.write(b'0123456789' * 10); sys.stdout.write('out')")
    daemon.wait_exit(p["pid"])
    whole = daemon.get(f"{P}/{p['pid']}/stderr/raw").body
    assert whole == b"0123456789" * 10
    assert daemon.get(f"{P}/{p['pid']}/stdout/raw").body == b"out"
    for off in (0, 1, 37, 99, 100):
        r = daemon.get(f"{P}/{p['pid']}/stderr/raw?offset={off}")
        assert r.status == 200 and r.body == whole[off:], (off, r)
        assert r.header("x-tend-offset") == str(off)
        assert r.header("x-tend-next-offset") == "100"
    r = daemon.get(f"{P}/{p['pid']}/stderr/raw?offset=101")
    assert_error(r, 416, "OFFSET_OUT_OF_RANGE", mentions="100")


@pytest.mark.parametrize("query", ["offset=-1", "offset=abc", "offset=99999999999999999999999", "follow=maybe"])
def test_raw_bad_query(daemon, query):
    p = daemon.start("true")
    assert_error(daemon.get(f"{P}/{p['pid']}/stdout/raw?{query}"), 400, "INVALID_REQUEST")


def test_raw_errors(daemon, daemon_factory):
    assert_error(daemon.get(f"{P}/999999999/stdout/raw"), 404, "NOT_FOUND")
    p = daemon.start("true", stdout_mode="discard")
    assert_error(daemon.get(f"{P}/{p['pid']}/stdout/raw"), 409, "RAW_OUTPUT_UNAVAILABLE", mentions="discarded")
    assert daemon.get(f"{P}/{p['pid']}/stderr/raw").status == 200
    r = daemon.request("POST", f"{P}/{p['pid']}/stdout/raw", body=b"")
    assert r.status == 405 and r.header("allow") == "GET", r
    assert daemon.get(f"{P}/{p['pid']}/stdout/raw", token="wrong").status == 401
    off = daemon_factory("--raw-bytes", "0")
    q = off.start("echo", ["hi"])
    assert_error(off.get(f"{P}/{q['pid']}/stdout/raw"), 409, "RAW_OUTPUT_UNAVAILABLE", mentions="--raw-bytes 0")


def test_raw_follow_live_to_eof(daemon):
    p = _py(daemon, "import sys,time\n"
                    "for i in range(20):\n"
                    "    sys.stdout.buffer.write(bytes([i]) * (i + 1) + b'\\r'); sys.stdout.flush(); time.sleep(0.02)\n")
    expected = b"".join(bytes([i]) * (i + 1) + b"\r" for i in range(20))
    c, status, headers = _raw_follow(daemon, p["pid"])
    assert status == 200 and headers["content-type"] == "application/octet-stream", headers
    assert "chunked" in headers["transfer-encoding"] and headers["x-tend-offset"] == "0"
    body, trailers = _read_stream(c)
    assert body == expected
    assert trailers == {"x-tend-end": "eof", "x-tend-next-offset": str(len(expected))}
    # Keep-alive: the connection serves the next request.
    c.send(build_request("GET", f"{P}/{p['pid']}/stdout/raw?offset=200", token=daemon.token))
    r = c.read_response()
    assert r.status == 200 and r.body == expected[200:]
    c.close()


def test_raw_follow_resumes_at_offset(daemon):
    p = daemon.sh("read x; printf 'abc\\000def'; read y; printf 'ghi'", stdin_mode="pipe")
    daemon.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    wait_for(lambda: daemon.get(f"{P}/{p['pid']}/stdout/raw").body == b"abc\x00def", 5, what="first output")
    c, status, headers = _raw_follow(daemon, p["pid"], offset=4)
    assert status == 200 and headers["x-tend-offset"] == "4"
    daemon.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    body, trailers = _read_stream(c)
    assert body == b"defghi" and trailers["x-tend-end"] == "eof" and trailers["x-tend-next-offset"] == "10"
    c.close()


def test_raw_window_is_bounded_and_reports_what_fell_out(daemon_factory):
    d = daemon_factory("--raw-bytes", "16384")
    data = gen(200_000, "window")  # noqa: F821 (defined by exec(GEN))
    p = _py(d, GEN + "import sys; sys.stdout.buffer.write(gen(200_000, 'window'))")
    d.wait_exit(p["pid"])
    r = d.get(f"{P}/{p['pid']}/stdout/raw")
    start = int(r.header("x-tend-offset"))
    assert 0 < len(r.body) <= 16384 and start + len(r.body) == len(data), (start, len(r.body))
    assert r.body == data[start:]
    assert r.header("x-tend-dropped-bytes") == str(start)
    # The line journal is independent of the raw ring.
    assert d.get(f"{P}/{p['pid']}/stdout").status == 200


def test_raw_follow_never_silently_loses_bytes(daemon_factory):
    """A flood through a small ring to a reader that stalls: every byte received is the byte at that
    offset, and a loss is always announced (gap trailer, then a later X-Tend-Offset)."""
    d = daemon_factory("--raw-bytes", "16384")
    # 8 MiB of a known pattern (offset-derived), written as fast as possible after "go" on stdin.
    p = _py(d, "import sys,hashlib\n"
               "sys.stdin.readline()\n"
               "for k in range(2048):\n"
               "    sys.stdout.buffer.write(hashlib.sha256(str(k).encode()).digest() * 128)\n",
            stdin_mode="pipe")
    expected = b"".join(hashlib.sha256(str(k).encode()).digest() * 128 for k in range(2048))
    c, status, headers = _raw_follow(d, p["pid"], rcvbuf=4096)
    assert status == 200
    d.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    # Stall until the child has written everything (it can finish only because tendd never stops reading
    # its pipe): by then the flood went far past the 16 KiB ring, whatever the machine's speed.
    d.wait_exit(p["pid"], timeout=60)
    offset = int(headers["x-tend-offset"])
    gaps = 0
    while True:
        body, trailers = _read_stream(c)
        assert body == expected[offset:offset + len(body)], "raw bytes differ from what the child wrote"
        assert int(trailers["x-tend-next-offset"]) == offset + len(body)
        offset += len(body)
        c.close()
        if trailers["x-tend-end"] == "eof":
            break
        assert trailers["x-tend-end"] == "gap", trailers
        gaps += 1
        c, status, headers = _raw_follow(d, p["pid"], offset=offset)
        assert status == 200
        resumed = int(headers["x-tend-offset"])
        assert resumed > offset and headers["x-tend-dropped-bytes"] == str(resumed - offset), headers
        offset = resumed
        assert gaps < 10_000
    assert offset == len(expected)
    assert gaps >= 1, "a stalled reader of a 16 KiB ring should have seen a gap"


def test_raw_follow_fast_reader_gets_everything(daemon):
    """With a reader that keeps up, a few MiB of binary arrive whole (or a gap is announced, never silent)."""
    data = gen(1 << 20, "fast")  # noqa: F821
    p = _py(daemon, GEN + "import sys\nsys.stdin.readline()\nd = gen(1 << 20, 'fast')\n"
                    "for _ in range(4): sys.stdout.buffer.write(d)\n", stdin_mode="pipe")
    c, status, _ = _raw_follow(daemon, p["pid"])
    daemon.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    body, trailers = _read_stream(c)
    c.close()
    expected = data * 4
    if trailers["x-tend-end"] == "eof":
        assert body == expected
    else:
        assert trailers["x-tend-end"] == "gap" and body == expected[:len(body)]


def test_raw_follow_client_vanishes(daemon):
    p = daemon.sh("while :; do head -c 65536 /dev/zero; sleep 0.01; done")
    for _ in range(5):
        c, status, _ = _raw_follow(daemon, p["pid"], rcvbuf=4096)
        assert status == 200
        c.abort()
    time.sleep(0.3)
    assert daemon.get("/api/v1/health").status == 200
    r = daemon.get(f"{P}/{p['pid']}/stdout/raw")
    assert r.status == 200 and set(r.body) <= {0}
    daemon.request("DELETE", f"{P}/{p['pid']}")


def test_raw_survives_upgrade(daemon_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    d = daemon_factory("--state-dir", str(state))
    p = d.sh("printf 'before\\000\\377'; read x; printf 'after'", stdin_mode="pipe")
    wait_for(lambda: d.get(f"{P}/{p['pid']}/stdout/raw").body == b"before\x00\xff", 5, what="output")
    pid_before = d.pid
    os.kill(d.pid, signal.SIGUSR2)
    wait_for(lambda: "msg=\"restore\" adopted=1" in d.log_text(), 5, what="the re-exec")
    assert d.pid == pid_before
    r = d.get(f"{P}/{p['pid']}/stdout/raw")
    assert r.body == b"before\x00\xff" and r.header("x-tend-next-offset") == "8"
    c, status, _ = _raw_follow(d, p["pid"], offset=8)
    assert status == 200
    d.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    body, trailers = _read_stream(c)
    c.close()
    assert body == b"after" and trailers == {"x-tend-end": "eof", "x-tend-next-offset": "13"}


def test_raw_readers_reset_during_a_flood(daemon):
    """Readers that reset their connection while the daemon is sending them a flood (a send fails in the
    middle of a pump, which frees the connection): the daemon keeps serving."""
    p = daemon.sh("read go; head -c 400000000 /dev/zero", stdin_mode="pipe")
    conns = []
    for _ in range(8):
        c, status, _ = _raw_follow(daemon, p["pid"])
        assert status == 200
        conns.append(c)
    daemon.post(f"{P}/{p['pid']}/stdin", body=b"go\n")
    for c in conns:
        c.read_chunk()
        c.abort()
        time.sleep(0.01)
    for _ in range(8):
        c, status, _ = _raw_follow(daemon, p["pid"])
        c.read_chunk()
        c.abort()
    assert daemon.get("/api/v1/health").status == 200
    daemon.request("DELETE", f"{P}/{p['pid']}")
    assert daemon.alive()


def test_quiet_processes_allocate_no_raw_ring(daemon_factory):
    """A stream that never prints gets no ring (not even address space): 100 quiet processes must not
    add 100 x 2 x 256 KiB of mappings to the daemon."""
    d = daemon_factory()

    def vm_size_kib():
        with open(f"/proc/{d.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmSize:"))

    warm = d.start("true")
    d.wait_exit(warm["pid"])
    before = vm_size_kib()
    pids = [d.start("true")["pid"] for _ in range(100)]
    for pid in pids:
        d.wait_exit(pid)
    grown = vm_size_kib() - before
    assert grown < 8 * 1024, f"VmSize grew by {grown} KiB for 100 quiet processes"
    p = d.sh("echo out; echo err >&2")
    d.wait_exit(p["pid"])
    assert d.get(f"{P}/{p['pid']}/stdout/raw").body == b"out\n"
    assert d.get(f"{P}/{p['pid']}/stderr/raw").body == b"err\n"
