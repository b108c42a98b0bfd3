"""A minimal RFC 6455 client for the e2e tests (tunnels, PTY sessions): handshake over a RawConn, masked
frames out, unmasked frames in."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from conftest import RawConn, Resp, build_request


class WSClient:
    """A minimal RFC 6455 client over a RawConn: masked frames out, frames in."""

    def __init__(self, d, path: str, *, token: str | None = "default", headers: dict | None = None):
        self.conn = RawConn(d.port)
        self.key = base64.b64encode(os.urandom(16)).decode()
        h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": self.key}
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        self.conn.send(build_request("GET", path, token=d.token if token == "default" else token, headers=h))
        self.status, _, self.headers = self.conn.read_head()
        self.resp = None
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((self.key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, self.headers
            assert self.headers.get("upgrade", "").lower() == "websocket"
        else:
            n = int(self.headers.get("content-length", "0"))
            self.resp = Resp(self.status, self.headers, self.conn.read_exact(n))

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        m = 0x80 if mask else 0
        if n < 126:
            head = bytes([b0, m | n])
        elif n < 65536:
            head = bytes([b0, m | 126]) + struct.pack(">H", n)
        else:
            head = bytes([b0, m | 127]) + struct.pack(">Q", n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def send(self, opcode: int, payload: bytes, **kw):
        self.conn.send(self.frame(opcode, payload, **kw))

    def send_binary(self, payload: bytes):
        # Masking a large payload byte by byte in Python is slow: XOR with a repeated key via int math.
        key = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes([0x82, 0x80 | n])
        elif n < 65536:
            head = bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", n)
        k = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
        self.conn.send(head + key + masked)

    def recv(self) -> tuple[int, bool, bytes]:
        """One frame: (opcode, fin, payload). Server frames must not be masked."""
        b0, b1 = self.conn.read_exact(2)
        assert b1 & 0x80 == 0, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.conn.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.conn.read_exact(8))[0]
        return b0 & 0x0F, bool(b0 & 0x80), self.conn.read_exact(n)

    def recv_data(self, n: int) -> bytes:
        """Binary payload bytes until `n` arrived (frames may split them any way)."""
        out = bytearray()
        while len(out) < n:
            op, _fin, p = self.recv()
            assert op in (0, 2), f"expected data, got opcode {op} {p!r}"
            out += p
        return bytes(out)

    def recv_close(self) -> tuple[int, str]:
        while True:
            op, _fin, p = self.recv()
            if op == 8:
                return (struct.unpack(">H", p[:2])[0] if len(p) >= 2 else 1005), p[2:].decode()

    def close(self):
        self.conn.close()
