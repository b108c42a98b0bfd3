"""TCP tunnels over WebSocket (`GET /api/v1/tunnels/tcp?port=N`, protocol.md §2.16).

Through the official SDK (`create_tunnel`, whose Rust transport opens one WebSocket per local connection)
to an echo server started through the API, with large random payloads checked byte for byte on many
connections at once; and with a raw WebSocket client (`WSClient` below) for the edges: handshake errors,
ping/pong, fragmented messages, text frames, unmasked and oversized frames, a client vanishing mid-frame,
half-close from the sandbox side, a stalled reader that must not stall the others, and fd leaks.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from conftest import assert_error, fd_count, free_port, wait_for
from wsclient import WSClient

T = "/api/v1/tunnels/tcp"

# A server started through the API (so it lives in the "sandbox"): mode echo | flood | greet.
# flood: write 64 KiB blocks forever, recording the total written in the file argv[3] after each write.
# greet: send argv[3] bytes of a fixed pattern, then close.
SERVER = r"""
import socket, sys, threading
port, mode = int(sys.argv[1]), sys.argv[2]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(128)
print("listening", flush=True)
def serve(c):
    try:
        if mode == "echo":
            while True:
                b = c.recv(65536)
                if not b: break
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        elif mode == "flood":
            n = 0; block = b"f" * 65536
            while True:
                n += c.send(block)
                with open(sys.argv[3], "w") as f: f.write(str(n))
        elif mode == "greet":
            n = int(sys.argv[3])
            c.sendall(bytes(i % 251 for i in range(n)))
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def start_server(d, mode: str, *extra: str) -> int:
    port = free_port()
    info = d.start("python3", ["-u", "-c", SERVER, str(port), mode, *extra])
    d.wait_output(info["pid"], lambda ls: "listening" in ls)
    return port


# ---------------------------------------------------------------------------- through the SDK

@pytest.fixture
def sdk(daemon):
    from tensorlake.sandbox import Sandbox
    sb = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=daemon.token)
    yield sb
    sb.close()


def _roundtrip(port: int, payload: bytes, errors: list):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        got = bytearray()

        def reader():
            try:
                while len(got) < len(payload):
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    got.extend(b)
            except OSError as e:
                errors.append(f"recv: {e}")

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(payload)
        t.join(30)
        s.close()
        if bytes(got) != payload:
            errors.append(f"mismatch: sent {len(payload)} got {len(got)}"
                          f" first diff at {next((i for i, (a, b) in enumerate(zip(got, payload)) if a != b), min(len(got), len(payload)))}")
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append(repr(e))


@pytest.mark.timeout(120)
def test_sdk_tunnel_echo_large_random_many_connections(daemon, sdk):
    port = start_server(daemon, "echo")
    tunnel = sdk.create_tunnel(port, local_port=0)
    try:
        local = tunnel.local_port
        assert local > 0
        # One big payload, then 16 concurrent connections with random sizes.
        errors: list = []
        _roundtrip(local, os.urandom(8 << 20), errors)
        assert not errors, errors
        threads = [threading.Thread(target=_roundtrip, args=(local, os.urandom(1 + (i * 97_531) % (3 << 20)), errors))
                   for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors, errors
    finally:
        tunnel.close()


# ---------------------------------------------------------------------------- raw WebSocket edges

def test_handshake_and_request_errors(daemon):
    port = start_server(daemon, "echo")
    # No bearer token: 401 before anything else.
    c = WSClient(daemon, f"{T}?port={port}", token=None)
    assert_error(c.resp, 401, "UNAUTHORIZED")
    c.close()
    for q in ["", "?port=", "?port=0", "?port=abc", "?port=70000", "?port=-1", f"?port={port}&port={port}"]:
        c = WSClient(daemon, T + q)
        assert_error(c.resp, 400, "INVALID_REQUEST", mentions="port")
        c.close()
    dead = free_port()
    c = WSClient(daemon, f"{T}?port={dead}")
    assert_error(c.resp, 502, "CONNECT_FAILED", mentions=str(dead))
    c.close()
    c = WSClient(daemon, f"{T}?port={port}", headers={"Upgrade": None})
    assert_error(c.resp, 426, "UPGRADE_REQUIRED")
    assert c.headers.get("sec-websocket-version") == "13"
    c.close()
    c = WSClient(daemon, f"{T}?port={port}", headers={"Sec-WebSocket-Version": "8"})
    assert_error(c.resp, 426, "UPGRADE_REQUIRED")
    c.close()
    c = WSClient(daemon, f"{T}?port={port}", headers={"Sec-WebSocket-Key": "c2hvcnQ="})
    assert_error(c.resp, 400, "BAD_HANDSHAKE")
    c.close()
    c = WSClient(daemon, f"{T}?port={port}", headers={"Connection": "keep-alive"})
    assert_error(c.resp, 400, "BAD_HANDSHAKE")
    c.close()
    r = daemon.post(f"{T}?port={port}", {})
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    # The daemon still relays after all of that.
    c = WSClient(daemon, f"{T}?port={port}")
    assert c.status == 101
    c.send_binary(b"still fine")
    assert c.recv_data(10) == b"still fine"
    c.close()


def test_ping_fragments_and_close_handshake(daemon):
    port = start_server(daemon, "echo")
    c = WSClient(daemon, f"{T}?port={port}")
    assert c.status == 101
    c.send(0x9, b"are you there")
    assert c.recv() == (0xA, True, b"are you there")
    # A fragmented binary message with a ping between its fragments: the pong comes first, then the echo.
    c.conn.send(c.frame(0x2, b"abc", fin=False) + c.frame(0x9, b"p") + c.frame(0x0, b"def", fin=False) + c.frame(0x0, b"ghi"))
    assert c.recv() == (0xA, True, b"p")
    assert c.recv_data(9) == b"abcdefghi"
    # Our close is answered with the same code and the socket ends.
    c.send(0x8, struct.pack(">H", 1000) + b"bye")
    assert c.recv_close() == (1000, "")
    assert c.conn.is_closed(5)
    c.close()


@pytest.mark.parametrize("case,code", [
    ("text", 1003), ("unmasked", 1002), ("oversized", 1009), ("continuation_first", 1002), ("rsv", 1002),
    ("bad_utf8_close", 1007),
])
def test_bad_frames_get_a_close_code(daemon, case, code):
    port = start_server(daemon, "echo")
    c = WSClient(daemon, f"{T}?port={port}")
    assert c.status == 101
    if case == "text":
        c.send(0x1, b"hello")
    elif case == "unmasked":
        c.send(0x2, b"hello", mask=False)
    elif case == "oversized":
        c.conn.send(bytes([0x82, 0xFF]) + struct.pack(">Q", 2 << 20) + os.urandom(4))   # header only
    elif case == "continuation_first":
        c.send(0x0, b"x")
    elif case == "rsv":
        c.conn.send(bytes([0xC2, 0x80]) + os.urandom(4))
    elif case == "bad_utf8_close":
        c.send(0x8, struct.pack(">H", 1000) + b"\xff")
    got, _reason = c.recv_close()
    assert got == code
    assert c.conn.is_closed(5)
    c.close()
    assert daemon.get("/api/v1/health").status == 200


def test_sandbox_side_closing_first_delivers_everything_then_close(daemon):
    n = 3 << 20
    port = start_server(daemon, "greet", str(n))
    c = WSClient(daemon, f"{T}?port={port}")
    assert c.status == 101
    got = bytearray()
    while True:
        op, _fin, p = c.recv()
        if op == 8:
            assert struct.unpack(">H", p[:2])[0] == 1000
            break
        assert op == 2
        got += p
    assert bytes(got) == bytes(i % 251 for i in range(n))
    c.send(0x8, struct.pack(">H", 1000))
    assert c.conn.is_closed(5)
    c.close()


@pytest.mark.timeout(60)
def test_stalled_reader_is_bounded_and_stalls_nobody(daemon, tmp_path):
    """A client that never reads holds back its tunnelled socket (bounded), and another tunnel still works."""
    progress = tmp_path / "flood"
    port = start_server(daemon, "flood", str(progress))
    stalled = WSClient(daemon, f"{T}?port={port}")
    stalled.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    assert stalled.status == 101

    def written():
        try:
            return int(progress.read_text() or 0)
        except (OSError, ValueError):
            return 0
    wait_for(lambda: written() > (1 << 20), 20, what="the flood to start")

    # The flood stops growing: socket buffers + the daemon's bounded queue, not the whole stream.
    def settled():
        a = written()
        time.sleep(0.3)    # poll interval of this condition, not a wait for an outcome
        return a if written() == a else None
    total = wait_for(settled, 20, what="the flood to be held back")
    assert total < (48 << 20), f"{total} bytes written by a server whose client reads nothing"

    echo = start_server(daemon, "echo")
    c = WSClient(daemon, f"{T}?port={echo}")
    payload = os.urandom(1 << 20)
    t = threading.Thread(target=c.send_binary, args=(payload,))
    t.start()
    assert c.recv_data(len(payload)) == payload
    t.join()
    c.close()
    # The stalled one is still alive and, once read, delivers flood bytes.
    stalled.conn.sock.settimeout(10)
    op, _fin, p = stalled.recv()
    assert op == 2 and set(p) <= {ord("f")}
    stalled.conn.abort()


@pytest.mark.timeout(60)
def test_vanishing_clients_leak_nothing(daemon_factory):
    d = daemon_factory()
    port = start_server(d, "echo")
    base = fd_count(d.pid)
    for i in range(30):
        c = WSClient(d, f"{T}?port={port}")
        assert c.status == 101
        if i % 3 == 0:
            c.conn.send(c.frame(0x2, os.urandom(5000))[:100])    # mid-frame
            c.conn.abort()
        elif i % 3 == 1:
            c.send_binary(b"x" * 10)
            assert c.recv_data(10) == b"x" * 10
            c.close()                                           # no close frame
        else:
            c.send(0x8, struct.pack(">H", 1001))
            assert c.recv_close()[0] == 1001
            c.close()
    wait_for(lambda: fd_count(d.pid) <= base, 10, what=f"fds back to {base} (now {fd_count(d.pid)})")
    assert d.get("/api/v1/health").status == 200


@pytest.mark.timeout(60)
def test_reader_stalled_past_the_idle_timeout_is_dropped(daemon_factory, tmp_path):
    d = daemon_factory("--idle-timeout-ms", "1500")
    port = start_server(d, "flood", str(tmp_path / "flood"))
    base = fd_count(d.pid)
    c = WSClient(d, f"{T}?port={port}")
    c.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    assert c.status == 101
    # Nothing is read: after the idle timeout the daemon drops the client and the tunnelled socket.
    wait_for(lambda: "websocket reader stalled" in d.log_text(), 20, what="the stalled reader to be dropped")
    wait_for(lambda: fd_count(d.pid) <= base, 20, what=f"fds back to {base} (now {fd_count(d.pid)})")
    c.conn.abort()
