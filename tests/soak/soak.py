#!/usr/bin/env python3
"""Soak under faults: a bounded mixed load against one real tendd, then leak and loss checks.

    SOAK_SECONDS=300 TENDD_BIN=.build/release/tendd python3 tests/soak/soak.py

Load (all to 127.0.0.1, every socket with a timeout, every loop bounded in time and count):
  short      many short processes (stdout+stderr, exit code N % 7), followed to eof, exit code checked
  run        POST /processes/run streams (started/output/exit events), exit code checked
  flood      `seq 1 N` floods; one follower stays and must get 1..N complete (N fits the journal),
             one vanishes mid-stream (RST); big floods check exact gap accounting instead
  stdin      `cat` fed numbered stdin lines by a staying follower, ended by stdin close (exit 0),
             SIGTERM (signal 15) or DELETE (signal 9), each status checked
  signals    trap USR1 -> exit 42
  vanish     followers that connect, read a little and vanish (close or RST) on random processes
  bad        malformed HTTP, bad JSON, wrong token, unknown pid, oversized head, half-sent bodies
At the end: no process running, no zombie or stray child, daemon fd count back to the baseline, RSS
back near it (after old records are evicted with --max-exited), and the daemon log has no error line.
Prints a summary and `N passed, N failed`; exits 1 on any failure.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from conftest import Daemon, RawConn, build_request, children_of, fd_count, proc_state, wait_for  # noqa: E402

P = "/api/v1/processes"
SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()))))
MAX_EXITED = 200
JOURNAL = 1 << 20


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.failures: list[str] = []
        self.counts: dict[str, int] = {}

    def check(self, ok: bool, what: str):
        with self.lock:
            if ok:
                self.passed += 1
            else:
                self.failed += 1
                if len(self.failures) < 30:
                    self.failures.append(what)

    def count(self, key: str, n: int = 1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


T = Tally()


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


class Stream:
    """A follow/run SSE stream read with little Python work per event (chunked framing + a regex)."""

    EV = re.compile(rb'(?:id:(\d+)\n)?event:(\w+)\ndata:(\{"line":"((?:[^"\\]|\\.)*)"[^\n]*|[^\n]*)\n\n')

    def __init__(self, d: Daemon, method: str, path: str, body: bytes | None = None, timeout: float = 30):
        self.c = RawConn(d.port, timeout=timeout)
        self.c.send(build_request(method, path, token=d.token, body=body))
        self.status, _, self.headers = self.c.read_head()
        self.buf = bytearray()
        self.done = False

    def events(self, max_seconds: float = 60):
        """Yields (kind, id, line_or_data) until the body ends."""
        deadline = time.monotonic() + max_seconds
        while not self.done:
            if time.monotonic() > deadline:
                raise TimeoutError("stream did not end")
            data = self.c.read_chunk()
            if not data:
                self.done = True
                break
            self.buf += data
            end = self.buf.rfind(b"\n\n")
            if end < 0:
                continue
            block = bytes(self.buf[:end + 2])
            del self.buf[:end + 2]
            for m in self.EV.finditer(block):
                sid, kind, data_, line = m.groups()
                if kind == b"output":
                    yield ("output", int(sid) if sid else None, line.decode())
                else:
                    yield (kind.decode(), None, data_.decode())

    def close(self, rst: bool = False):
        (self.c.abort if rst else self.c.close)()


class ExitWatcher(threading.Thread):
    """Polls GET /processes every 0.2 s and remembers the final ProcessInfo of every process this soak
    started (keyed by handle: pids are reused), so a worker that reads a long stream can still check
    the exit status after the record was evicted (--max-exited) in the meantime."""

    def __init__(self, d: Daemon):
        super().__init__(daemon=True)
        self.d = d
        self.lock = threading.Lock()
        self.handle_of: dict[int, int] = {}     # pid -> handle of the latest start with that pid
        self.final: dict[int, dict] = {}        # handle -> final info
        self.stop = False

    def started(self, info: dict):
        with self.lock:
            self.handle_of[info["pid"]] = info["handle"]

    def run(self):
        while not self.stop:
            try:
                for p in self.d.get(P, timeout=10).json["processes"]:
                    if p["status"] != "running":
                        with self.lock:
                            self.final.setdefault(p["handle"], p)
            except Exception:   # noqa: BLE001 - polling is best effort; the check below reports misses
                pass
            time.sleep(0.2)

    def wait(self, pid: int, timeout: float) -> dict | None:
        with self.lock:
            handle = self.handle_of.get(pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if handle in self.final:
                    return self.final[handle]
            time.sleep(0.05)
        return None


WATCH: ExitWatcher | None = None


def start(d: Daemon, spec: dict) -> int | None:
    r = d.post(P, spec)
    T.check(r.status == 201, f"start {spec} -> {r.status} {r.body[:200]!r}")
    if r.status != 201:
        return None
    T.count("processes started")
    if WATCH is not None:
        WATCH.started(r.json)
    return r.json["pid"]


def final_info(d: Daemon, pid: int, timeout: float = 30) -> dict | None:
    if WATCH is not None:
        info = WATCH.wait(pid, timeout)
        T.check(info is not None, f"pid {pid}: no final status seen within {timeout}s")
        return info
    try:
        return wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(d.info(pid)), timeout,
                        what=f"{pid} to end")
    except AssertionError as e:
        T.check(False, f"pid {pid}: {e}")
        return None


# --------------------------------------------------------------------------- workers


def w_short(d: Daemon, rnd: random.Random, n: int):
    code = n % 7
    pid = start(d, {"command": "sh", "args": ["-c", f"echo out{n}; echo err{n} >&2; exit {code}"]})
    if pid is None:
        return
    s = Stream(d, "GET", f"{P}/{pid}/output/follow")
    got = [(k, line) for k, _, line in s.events() if k == "output"]
    s.close()
    T.check(sorted(line for _, line in got) == sorted([f"out{n}", f"err{n}"]), f"short {pid}: {got}")
    i = final_info(d, pid)
    T.check(i is not None and i["status"] == "exited" and i["exit_code"] == code, f"short {pid}: {i}")
    T.count("short processes")


def w_run(d: Daemon, rnd: random.Random, n: int):
    code = n % 5
    body = json.dumps({"command": "sh", "args": ["-c", f"for i in 1 2 3; do echo r{n}-$i; done; exit {code}"]}).encode()
    s = Stream(d, "POST", f"{P}/run", body)
    T.check(s.status == 200, f"run -> {s.status}")
    evs = list(s.events())
    s.close()
    kinds = [k for k, _, _ in evs]
    lines = [x for k, _, x in evs if k == "output"]
    ok = kinds and kinds[0] == "started" and kinds[-1] == "exit" and lines == [f"r{n}-1", f"r{n}-2", f"r{n}-3"]
    T.check(bool(ok), f"run {n}: {evs[:6]}")
    if kinds and kinds[-1] == "exit":
        T.check(json.loads(evs[-1][2])["exit_code"] == code, f"run {n} exit: {evs[-1]}")
    T.count("runs")


def w_flood(d: Daemon, rnd: random.Random, n: int):
    big = n % 4 == 3
    count = rnd.randint(1_000_000, 2_000_000) if big else rnd.randint(10_000, 60_000)   # small: fits the journal
    pid = start(d, {"command": "sh", "args": ["-c", f"read go; seq 1 {count}"], "stdin_mode": "pipe"})
    if pid is None:
        return
    stay = Stream(d, "GET", f"{P}/{pid}/stdout/follow")
    vanish = Stream(d, "GET", f"{P}/{pid}/stdout/follow")
    raw_vanish = Stream(d, "GET", f"{P}/{pid}/stdout/raw?follow=true")
    d.request("POST", f"{P}/{pid}/stdin", body=b"go\n")
    raw_vanish.c.read_chunk()
    raw_vanish.close(rst=rnd.random() < 0.5)
    T.count("raw followers vanished")
    # the vanishing follower reads a bit, then resets the connection
    k = 0
    for _ in vanish.events():
        k += 1
        if k > rnd.randint(1, 2000):
            break
    vanish.close(rst=True)
    T.count("followers vanished")
    nxt, lines, gap_lines, problems = 1, 0, 0, []
    for kind, sid, x in stay.events(max_seconds=120):
        if kind == "output":
            if sid != nxt or x != str(sid):
                problems.append(f"id {sid} text {x[:20]} expected {nxt}")
                nxt = sid or nxt
            nxt += 1
            lines += 1
        elif kind == "gap":
            g = json.loads(x)
            gap_lines += g["dropped_lines"]
            nxt += g["dropped_lines"]
        elif kind == "eof":
            pass
    stay.close()
    T.count("flood lines delivered", lines)
    T.count("flood lines dropped (reported by gap events)", gap_lines)
    T.check(not problems, f"flood {pid}: {problems[:3]}")
    T.check(nxt == count + 1 and lines + gap_lines == count, f"flood {pid}: ended at {nxt}, {lines}+{gap_lines} of {count}")
    if not big:
        T.check(gap_lines == 0, f"flood {pid}: {gap_lines} lines lost although the output fits the journal")
    i = final_info(d, pid)
    T.check(i is not None and i["exit_code"] == 0, f"flood {pid}: {i}")
    check_raw(d, pid, "".join(f"{k}\n" for k in range(1, count + 1)).encode())
    T.count("big floods" if big else "floods")


def check_raw(d: Daemon, pid: int, expected: bytes):
    """The raw view of a finished process: what the ring still holds is exactly the end of what the
    child wrote, and a follow from offset 0 says where it starts and ends with eof at the total."""
    s = Stream(d, "GET", f"{P}/{pid}/stdout/raw?follow=true&offset=0")
    start = int(s.headers.get("x-tend-offset", "-1"))
    body = bytearray()
    while True:
        c = s.c.read_chunk()
        if not c:
            break
        body += c
    s.close()
    T.check(s.status == 200 and 0 <= start and bytes(body) == expected[start:],
            f"raw {pid}: status {s.status}, offset {start}, {len(body)} bytes, match={bytes(body) == expected[start:]}")
    T.check(start == 0 or s.headers.get("x-tend-dropped-bytes") == str(start), f"raw {pid}: dropped header {s.headers}")
    T.count("raw bytes checked", len(body))


def w_stdin(d: Daemon, rnd: random.Random, n: int):
    pid = start(d, {"command": "cat", "stdin_mode": "pipe"})
    if pid is None:
        return
    s = Stream(d, "GET", f"{P}/{pid}/stdout/follow")
    m = rnd.randint(1, 50)
    c = RawConn(d.port)
    sent = []
    for j in range(m):
        chunk = "".join(f"in{n}-{j}-{k}\n" for k in range(rnd.randint(1, 20))).encode()
        c.send(build_request("POST", f"{P}/{pid}/stdin", token=d.token, body=chunk))
        r = c.read_response()
        T.check(r.status == 204, f"stdin {pid}: {r}")
        sent += chunk.decode().splitlines()
        T.count("stdin bytes", len(chunk))
    c.close()
    got = []
    if sent:
        for kind, _, x in s.events():
            if kind == "output":
                got.append(x)
                if len(got) == len(sent):
                    break
    T.check(got == sent, f"stdin {pid}: echoed {len(got)}/{len(sent)} lines, first diff at "
                         f"{next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), None)}")
    how = rnd.choice(["close", "term", "kill"])
    if how == "close":
        d.request("POST", f"{P}/{pid}/stdin/close")
        want = ("exited", 0, None)
    elif how == "term":
        d.post(f"{P}/{pid}/signal", {"signal": 15})
        want = ("signaled", None, 15)
    else:
        T.check(d.request("DELETE", f"{P}/{pid}").status == 204, f"DELETE {pid}")
        want = ("signaled", None, 9)
    T.count(f"stdin processes ended by {how}")
    rest = [x for k, _, x in s.events() if k == "output"]
    s.close()
    T.check(rest == [], f"stdin {pid}: unexpected output {rest[:3]}")
    i = final_info(d, pid)
    T.check(i is not None and (i["status"], i["exit_code"], i["signal"]) == want, f"stdin {pid} {how}: {i} want {want}")


def w_signal(d: Daemon, rnd: random.Random, n: int):
    pid = start(d, {"command": "sh", "args": ["-c", "trap 'exit 42' USR1; echo ready; while :; do sleep 0.05; done"]})
    if pid is None:
        return
    try:
        d.wait_output(pid, lambda ls: ls == ["ready"], timeout=10)
    except AssertionError as e:
        T.check(False, f"signal {pid}: {e}")
    r = d.post(f"{P}/{pid}/signal", {"signal": 10})
    T.check(r.status == 200, f"signal {pid}: {r}")
    i = final_info(d, pid)
    T.check(i is not None and i["status"] == "exited" and i["exit_code"] == 42, f"signal {pid}: {i}")
    T.count("signals delivered")


def w_vanish(d: Daemon, rnd: random.Random, n: int):
    procs = d.get(P).json["processes"]
    if not procs:
        return
    p = rnd.choice(procs)
    try:
        s = Stream(d, "GET", f"{P}/{p['pid']}/{rnd.choice(['stdout', 'stderr', 'output'])}/follow", timeout=5)
        if s.status != 200:    # forgotten in the meantime
            T.check(s.status == 404, f"vanish follow -> {s.status}")
            s.close()
            return
        if rnd.random() < 0.5:
            try:
                s.c.sock.recv(rnd.randint(1, 65536))
            except OSError:
                pass
        s.close(rst=rnd.random() < 0.5)
        T.count("followers vanished")
    except (OSError, EOFError) as e:
        T.check(False, f"vanish: {e!r}")


BAD = [
    (b"GARBAGE\x00\xff\r\n\r\n", 400),
    (b"GET /api/v1/health HTTP/9.9\r\n\r\n", 505),
    (b"GET /api/v1/health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (None, 401),           # wrong token
    (None, 404),           # unknown pid
    (None, 400),           # bad JSON
    (None, 413),           # body too large
]


def w_bad(d: Daemon, rnd: random.Random, n: int):
    raw, want = rnd.choice(BAD)
    c = RawConn(d.port, timeout=10)
    try:
        if raw is None and want == 401:
            raw = build_request("GET", P, token="wrong")
        elif raw is None and want == 404:
            raw = build_request("GET", f"{P}/1999999999", token=d.token)
        elif raw is None and want == 400:
            raw = build_request("POST", P, token=d.token, body=b'{"command": [1,')
        elif raw is None and want == 413:
            raw = build_request("POST", P, token=d.token, headers={"Content-Length": str(64 << 20)}) + b"{"
        if rnd.random() < 0.2:                  # half a request, then vanish
            c.send(raw[: max(1, len(raw) // 2)])
            c.abort()
            T.count("requests abandoned half-way")
            return
        c.send(raw)
        r = c.read_response()
        T.check(r.status == want and "code" in r.json, f"bad request {raw[:40]!r}: {r.status} want {want}")
        T.count("bad requests")
    except (OSError, EOFError) as e:
        T.check(False, f"bad request {raw[:40]!r}: {e!r}")
    finally:
        c.close()


WORKERS = [("short", w_short, 3), ("run", w_run, 1), ("flood", w_flood, 2), ("stdin", w_stdin, 1),
           ("signal", w_signal, 1), ("vanish", w_vanish, 1), ("bad", w_bad, 1)]


def worker(name, fn, idx, d: Daemon, deadline: float):
    rnd = random.Random(SEED * 1000 + sum(name.encode()) + idx)
    n = idx * 1_000_000
    while time.monotonic() < deadline and n < idx * 1_000_000 + 200_000:
        n += 1
        try:
            fn(d, rnd, n)
        except Exception as e:   # noqa: BLE001 - every unexpected error is a failed check
            T.check(False, f"{name} #{n}: {type(e).__name__}: {e}")
            time.sleep(0.2)
        if name in ("vanish", "bad"):
            time.sleep(0.05)


def main() -> int:
    t_start = time.monotonic()
    d = Daemon(["--max-exited", str(MAX_EXITED), "--journal-bytes", str(JOURNAL), "--log-level", "info",
                "--exited-ttl-s", "0", "--idle-timeout-ms", "20000"])
    try:
        # warm up, then take the baseline
        for i in range(5):
            pid = start(d, {"command": "true"})
            final_info(d, pid)
        time.sleep(0.5)
        base_fds, base_rss = fd_count(d.pid), status_kb(d.pid, "VmRSS")
        print(f"soak: seed={SEED} seconds={SECONDS:.0f} daemon pid={d.pid} baseline fds={base_fds} rss={base_rss} KiB",
              flush=True)
        global WATCH
        WATCH = ExitWatcher(d)
        WATCH.start()
        deadline = time.monotonic() + SECONDS
        threads = [threading.Thread(target=worker, args=(name, fn, i + 1 + 10 * k, d, deadline), daemon=True)
                   for k, (name, fn, count) in enumerate(WORKERS) for i in range(count)]
        for t in threads:
            t.start()
        peak_rss, peak_fds = 0, 0
        while any(t.is_alive() for t in threads):
            peak_rss = max(peak_rss, status_kb(d.pid, "VmRSS"))
            peak_fds = max(peak_fds, fd_count(d.pid))
            if time.monotonic() > deadline + 180:
                T.check(False, "workers did not stop within 180 s of the deadline")
                break
            time.sleep(0.5)
        load_secs = time.monotonic() - t_start

        WATCH.stop = True
        WATCH.join(15)
        WATCH = None
        # ---- end checks
        running = [p for p in d.get(P).json["processes"] if p["status"] == "running"]
        T.check(not running, f"processes still running after the load: {running[:5]}")
        for p in running:
            d.request("DELETE", f"{P}/{p['pid']}")
        # evict every record that holds a journal: MAX_EXITED trivial processes push them out
        for i in range(MAX_EXITED):
            pid = start(d, {"command": "true"})
            if pid:
                final_info(d, pid)
        records = d.get(P).json["processes"]
        T.check(len(records) <= MAX_EXITED and all(p["command"] == "true" for p in records),
                f"records after eviction: {len(records)}")

        def fds_ok():
            return fd_count(d.pid) <= base_fds + 1
        try:
            wait_for(fds_ok, 20, interval=0.2, what="fds back to baseline")
        except AssertionError:
            pass
        end_fds = fd_count(d.pid)
        T.check(end_fds <= base_fds + 1, f"fd count {end_fds} vs baseline {base_fds}")
        time.sleep(1)
        end_rss = status_kb(d.pid, "VmRSS")
        rss_slack = int(os.environ.get("SOAK_RSS_SLACK_KB", str(24 * 1024)))
        T.check(end_rss <= base_rss + rss_slack, f"RSS {end_rss} KiB vs baseline {base_rss} KiB (+{rss_slack})")
        kids = children_of(d.pid)
        T.check(not kids, f"children left (zombies or strays): {kids[:10]}")
        errors = [l for l in d.log_text(1 << 26).splitlines() if "level=error" in l]
        T.check(not errors, f"error lines in the daemon log: {errors[:3]}")
        T.check(d.alive(), "daemon died")
        rc = d.stop(15)
        T.check(rc == 0, f"daemon exit code on SIGTERM: {rc}")

        print(f"\nsoak summary ({load_secs:.0f} s of load, seed {SEED})")
        for k in sorted(T.counts):
            print(f"  {k:48s} {T.counts[k]:>12,}")
        print(f"  {'daemon fds: baseline / peak / end':48s} {base_fds} / {peak_fds} / {end_fds}")
        print(f"  {'daemon RSS KiB: baseline / peak / end':48s} {base_rss} / {peak_rss} / {end_rss}")
        for f in T.failures:
            print("  FAIL:", f)
    finally:
        if d.alive():
            d.hard_kill()
    print(f"{T.passed} passed, {T.failed} failed")
    return 1 if T.failed else 0


if __name__ == "__main__":
    sys.exit(main())
