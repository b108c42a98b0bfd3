#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (committed; re-run to regenerate).

Seeds are small, valid-ish inputs that reach every branch family quickly: libFuzzer mutates them.
"""
import os
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "corpus"


def put(target: str, name: str, data: bytes):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# --- HTTP request heads
heads = {
    "get": b"GET /api/v1/processes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n",
    "post_cl": b"POST /api/v1/processes HTTP/1.1\r\nContent-Length: 17\r\nContent-Type: application/json\r\n\r\n{\"command\":\"ls\"}",
    "chunked": b"POST /api/v1/processes/1/stdin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "http10": b"GET /api/v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "lf_only": b"\nGET /x?after=5&a=%20 HTTP/1.1\nHost: y\nExpect: 100-continue\n\n",
    "te_cl": b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
    "dup_cl": b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 4\r\n\r\n",
    "http2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "obsfold": b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
    "follow": b"GET /api/v1/processes/12/output/follow HTTP/1.1\r\nLast-Event-ID: 42\r\nConnection: close\r\n\r\n",
    "tls": bytes.fromhex("16030100a5010000a10303") + bytes(range(8)),
}
for k, v in heads.items():
    put("FuzzHTTPHead", k, v)

# --- chunked bodies: [limit byte][seed byte][body]
chunks = {
    "simple": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    "ext": b"3;name=value;x\r\nabc\r\n0;e\r\nTrailer: x\r\nOther: y\r\n\r\nEXTRA",
    "lf": b"A\nabcdefghij\n0\n\n",
    "bad_size": b"zz\r\nabc\r\n0\r\n\r\n",
    "huge": b"ffffffffffffffffffff\r\n",
    "missing_crlf": b"3\r\nabcX0\r\n\r\n",
    "big": b"100\r\n" + b"x" * 256 + b"\r\n0\r\n\r\n",
}
for k, v in chunks.items():
    put("FuzzChunked", k, bytes([200, 7]) + v)

# --- JSON
js = {
    "start": b'{"command":"sh","args":["-c","echo \\u00e9 \\ud83d\\ude00"],"env":{"A":"1"},"working_dir":"/tmp"}',
    "numbers": b'[0,-0,1e10,-1.5E-3,9223372036854775807,-9223372036854775808,9223372036854775808,1.7976931348623157e308]',
    "nested": b'[[[[[[[[{"a":[{"b":null}]}]]]]]]]]',
    "strings": b'["\\"\\\\\\/\\b\\f\\n\\r\\t","\\u0000","\xf0\x9f\x98\x80"]',
    "lits": b' {"t":true,"f":false,"n":null} ',
    "bad": b'{"a":1,}',
}
for k, v in js.items():
    put("FuzzJSON", k, v)

# --- request bodies: [selector][payload]; 0 start, 1 run, 2 signal, 3 router
reqs = {
    "start": (0, b'{"command":"sh","args":["-c","x"],"env":{"K":"v"},"stdin_mode":"pipe","stdout_mode":"discard","user":"1000:1000"}'),
    "start_managed": (0, b'{"command":"web","name":"web","restart":{"policy":"on_failure","max_restarts":3,"initial_backoff_ms":10},'
                         b'"health_check":{"type":"exec","command":"true","interval_ms":100},"stop_grace_ms":100}'),
    "start_user_obj": (0, b'{"command":"id","user":{"uid":0,"gid":0}}'),
    "run": (1, b'{"command":"true","timeout":1.5}'),
    "run_bad": (1, b'{"command":"true","name":"x"}'),
    "signal": (2, b'{"signal":15}'),
    "signal_bad": (2, b'{"signal":"TERM"}'),
    "long_env_key": (0, b'{"command":"x","env":{"' + b"K" * 1500 + b'":1}}'),
    "combining_name": (0, b'{"command":"x","env":{"a' + "\u0301".encode() * 600 + b'":1}}'),
    "route_follow": (3, b"GET /api/v1/processes/web%20x/output/follow"),
    "route_stdin": (3, b"POST /api/v1/processes/12/stdin/close"),
    "route_405": (3, b"PUT /api/v1/processes"),
    "route_bad_pct": (3, b"GET /api/v1/processes/%zz"),
}
for k, (sel, v) in reqs.items():
    put("FuzzRequests", k, bytes([sel]) + v)

# --- resume point: [mode][header] 0x00 [query]
res = {
    "header": (1, b"42", b""),
    "header_blank": (1, b"  \t", b"after=3"),
    "query": (2, b"", b"after=17&x=y"),
    "both": (3, b"7", b"after=9"),
    "overflow": (1, b"18446744073709551616", b""),
    "plus": (2, b"", b"after=%2B5&after=1"),
    "pct": (2, b"", b"a%zz=1&after=1+2"),
}
for k, (m, h, q) in res.items():
    put("FuzzResume", k, bytes([m]) + h + b"\x00" + q)


# --- journal: [mode][maxBytes][maxLine][seed] ops: [op][len][bytes]
def ops(*items):
    out = b""
    for op, data in items:
        out += bytes([op, len(data)]) + data
    return out


jr = {
    "exact_lines": (1, ops((0, b"hello\nwor"), (1, b"err line\r\n"), (0, b"ld\r\n\xe2\x82"), (0, b"\xac\n"), (0x80, b""))),
    "exact_invalid": (1, ops((0, b"\xff\xfe\xed\xa0\x80\n\xf0\x9f"), (0x81, b""), (0x80, b""))),
    "small_long": (0, ops((0, b"x" * 200), (1, b"y" * 100 + b"\n"), (0, b"\r\n" * 50), (0x80, b""))),
    "small_drop": (0, ops(*[(i & 1, b"line %03d\n" % i) for i in range(60)])),
    "cr_edge": (0, ops((0, b"a" * 20 + b"\r"), (0, b"\n"), (0, b"b" * 19 + b"\r"), (0x80, b""))),
}
for k, (mode, body) in jr.items():
    put("FuzzJournal", k, bytes([mode, 0, 16, 3]) + body)

print("corpus written to", ROOT)

# --- WebSocket frames from a client: [limit byte][seed byte][frames]
def wsframe(op, payload, fin=True, key=b"\x37\xfa\x21\x3d"):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


ws = {
    "binary": wsframe(2, b"\x00hello"),
    "text": wsframe(1, "héllo".encode()),
    "fragments": wsframe(1, b"ab", fin=False) + wsframe(9, b"p") + wsframe(0, b"cd", fin=False) + wsframe(0, b"e"),
    "len16": wsframe(2, bytes(300)),
    "close": wsframe(8, b"\x03\xe8bye"),
    "pty_resize": wsframe(2, b"\x01\x00\x50\x00\x18") + wsframe(2, b"\x02"),
    "unmasked": bytes([0x82, 0x03]) + b"abc",
    "badclose": wsframe(8, b"\x03"),
}
for k, v in ws.items():
    put("FuzzWebSocket", k, bytes([250, 5]) + v)
