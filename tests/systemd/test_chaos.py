"""Issue 18: crash survival proven by chaos, under a real systemd (the private manager of test_systemd.py).

* The windows one test cannot aim at, each driven there deterministically with the test-only pause switch
  (TENDD_TEST_PAUSE_DIR: the daemon blocks at an armed point and the test kills it there): a kill between a
  spawn and its state write, right after the state write (before the answer), after an exit was read but not
  written, while a managed process is backing off, during a restore, during an upgrade's re-exec; and a kill
  while a one-shot run is streaming (the SDK's client sees a clean error, the run's tree is not leaked).
* The chaos run: processes printing numbered lines and exiting with known statuses, processes exiting at
  random moments (so exits fall while the daemon is down, during restores and after adoption), a managed
  process that keeps failing, SSE followers that resume with Last-Event-ID after every drop; meanwhile
  `kill -9` of the daemon and in-place upgrades (`systemctl reload`) at random times. Asserts every line once
  and in order, every exit status exact, the daemon answering within 1.5 s of each kill, and nothing leaked
  (processes, daemon fds, fd-store entries, cgroup subtrees and leaves).

The randomness is seeded: the seed is printed; TEND_CHAOS_SEED=N replays a run.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import select
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from test_systemd import Manager, TENDD_BIN, alive, wait_for

ANSWER_WITHIN_S = 1.5


# --------------------------------------------------------------------------- helpers


class ChaosManager(Manager):
    """The test manager, its service with the test-only pause switch."""

    def __init__(self):
        super().__init__()
        self.pause_dir = self.tmp / "pause"
        self.pause_dir.mkdir()

    def write_units(self):
        super().write_units()
        svc = self.units / "tendd.service"
        svc.write_text(svc.read_text().replace(
            "\n[Service]\n", f"\n[Service]\nEnvironment=TENDD_TEST_PAUSE_DIR={self.pause_dir}\n", 1))


@pytest.fixture(scope="module")
def mgr():
    assert os.access(TENDD_BIN, os.X_OK), f"no tendd binary at {TENDD_BIN}"
    m = ChaosManager()
    try:
        m.start()
        m.ctl("enable", "--now", "tendd.socket")
        yield m
    finally:
        m.stop()


def req(mgr, method, path, body=None, raw: bytes | None = None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", mgr.port, timeout=timeout)
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


def start(mgr, body):
    st, info = req(mgr, "POST", "/api/v1/processes", body)
    assert st == 201, (st, info, mgr.tail())
    return info


def info(mgr, pid):
    st, body = req(mgr, "GET", f"/api/v1/processes/{pid}")
    assert st == 200, (st, body)
    return body


def answered_after(mgr, old_pid: int, t0: float, limit: float = 30) -> float:
    """Seconds from t0 until a new daemon (not old_pid) answers; retries connections the dying one dropped."""
    while True:
        try:
            st, _ = req(mgr, "GET", "/api/v1/health", timeout=limit)
            took = time.monotonic() - t0
            if st == 200 and mgr.main_pid() not in (0, old_pid):
                return took
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"no daemon answered within {limit}s of the kill\n" + mgr.tail())
        time.sleep(0.01)


def kill_daemon(mgr, pid: int | None = None) -> float:
    """kill -9 of the daemon; returns seconds until a new one answers."""
    pid = pid or mgr.main_pid()
    assert pid
    mgr.seen_pids.add(pid)
    mgr.ctl("reset-failed", "tendd.service", check=False)   # the start limit counts restarts; chaos is on purpose
    mgr.last_kill_wall_ms = int(time.time() * 1000)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    return answered_after(mgr, pid, t0)


def arm(mgr, point: str):
    (mgr.pause_dir / (point + ".paused")).unlink(missing_ok=True)
    (mgr.pause_dir / point).write_text("")


def paused(mgr, point: str, timeout=20) -> int:
    """Waits until the daemon blocks at `point`; returns its pid."""
    marker = mgr.pause_dir / (point + ".paused")
    wait_for(lambda: marker.exists(), timeout, f"the daemon to pause at {point}\n" + mgr.tail())
    pid = int(marker.read_text())
    marker.unlink()
    assert alive(pid)
    return pid


def fresh(mgr):
    """A clean daemon: stop (ends every process, clears the state), the socket starts a new one."""
    mgr.ctl("stop", "tendd.service")
    mgr.ctl("reset-failed", "tendd.service", check=False)
    for p in mgr.pause_dir.iterdir():
        p.unlink()
    st, body = req(mgr, "GET", "/api/v1/processes")
    assert st == 200 and body["processes"] == [], body


def tagged(tag: str) -> list[int]:
    """Live processes whose environment holds CHAOS_TAG=tag."""
    out = []
    needle = f"CHAOS_TAG={tag}".encode()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if needle in Path(f"/proc/{d}/environ").read_bytes().split(b"\0") and alive(int(d)):
                    out.append(int(d))
            except OSError:
                pass
    return out


def with_arg(arg: str) -> list[int]:
    """Live processes with `arg` among their command-line arguments."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if arg.encode() in Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0") and alive(int(d)):
                    out.append(int(d))
            except OSError:
                pass
    return out


def fd_store_entries(mgr) -> int:
    return int(mgr.show("tendd.service", "NFileDescriptorStore") or 0)


def daemon_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """The daemon's fds by kind (for a failure message): memfd:tendd-p1 -> memfd, /sys/fs/cgroup/... -> cgroup."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        k = "memfd" if t.startswith("/memfd:") else "cgroup" if "/cgroup" in t else t.split(":")[0] if ":" in t else t
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def cgroup_root(mgr) -> Path:
    """The service's cgroup directory (where tendd makes its tendd-<pid> subtree)."""
    line = [l for l in Path(f"/proc/{mgr.main_pid()}/cgroup").read_text().splitlines() if l.startswith("0::")]
    base = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified/cgroup.procs").exists() else Path("/sys/fs/cgroup")
    return base / line[0][3:].lstrip("/")


def cgroup_dirs(mgr) -> tuple[list[str], list[str]]:
    """(tendd-* subtrees, populated leaves) of this manager's daemons in the service's cgroup. (Every private
    manager on the machine puts its tendd.service at the same cgroup path: only our daemons' pids count.)"""
    own = cgroup_root(mgr)
    ours = {f"tendd-{pid}" for pid in mgr.seen_pids}
    subtrees = sorted(p.name for p in own.iterdir() if p.is_dir() and p.name in ours)
    populated = []
    for s in subtrees:
        for leaf in (own / s).iterdir():
            if leaf.is_dir() and "populated 1" in (leaf / "cgroup.events").read_text():
                populated.append(f"{s}/{leaf.name}")
    return subtrees, populated


class Follower(threading.Thread):
    """An SSE follower of one process that resumes with Last-Event-ID after every drop, until eof."""

    def __init__(self, mgr, pid: int, deadline: float):
        super().__init__(daemon=True)
        self.mgr, self.pid, self.deadline = mgr, pid, deadline
        self.events: list[tuple[int, str]] = []
        self.gaps: list = []
        self.last_id: int | None = None
        self.eof = False
        self.connects = 0
        self.error: str | None = None

    def run(self):
        while not self.eof and time.monotonic() < self.deadline:
            try:
                self._one_connection()
            except (OSError, ValueError, AssertionError) as e:
                self.error = repr(e)
            if not self.eof:
                time.sleep(0.02)

    def _one_connection(self):
        s = socket.create_connection(("127.0.0.1", self.mgr.port), timeout=10)
        self.connects += 1
        try:
            extra = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id is not None else ""
            s.sendall(f"GET /api/v1/processes/{self.pid}/stdout/follow HTTP/1.1\r\nHost: t\r\n"
                      f"Authorization: Bearer {self.mgr.token}\r\n{extra}\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                if not c:
                    return
                buf += c
            head, raw = buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200"), head
            body = b""
            while True:
                # de-chunk what is complete
                while True:
                    i = raw.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(raw[:i].split(b";")[0], 16)
                    if len(raw) < i + 2 + size + 2:
                        break
                    body += raw[i + 2:i + 2 + size]
                    raw = raw[i + 2 + size + 2:]
                    if size == 0:
                        self._parse(body + b"\n\n")
                        return
                body = self._parse(body)
                if self.eof:
                    return
                c = s.recv(65536)
                if not c:
                    return
                raw += c
        finally:
            s.close()

    def _parse(self, body: bytes) -> bytes:
        while b"\n\n" in body:
            block, body = body.split(b"\n\n", 1)
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
        return body


# --------------------------------------------------------------------------- the windows


def test_kill_between_spawn_and_state_write(mgr):
    """The child exists and its fds are stored, its record is not written, its client has no answer: the
    restarted daemon must kill that tree (nobody knows of it) and leave no fd-store entry behind."""
    fresh(mgr)
    tag = "spawn-" + os.urandom(4).hex()
    # The grandchild drops its environment (so the tree marker too) and its session: only the cgroup leaf
    # still ties it to the unrecorded process. It is found by its unique sleep time.
    nap = f"3000.{int.from_bytes(os.urandom(3), 'big')}"
    arm(mgr, "after-spawn")
    s = socket.create_connection(("127.0.0.1", mgr.port), timeout=10)
    body = json.dumps({"command": "sh", "args": ["-c", f"env -i setsid sleep {nap} & exec sleep 300"], "env": {"CHAOS_TAG": tag}})
    s.sendall(f"POST /api/v1/processes HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {mgr.token}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    try:
        spawn_window(mgr, s, tag, nap)
    finally:
        for pid in with_arg(nap):      # only after a failure: the grandchild carries no marker the manager could find
            os.kill(pid, signal.SIGKILL)


def spawn_window(mgr, s, tag, nap):
    log_from = len(mgr.log.read_text())
    pid = paused(mgr, "after-spawn")
    wait_for(lambda: len(tagged(tag)) >= 1 and len(with_arg(nap)) == 1, 10, "the spawned child and grandchild")
    wait_for(lambda: fd_store_entries(mgr) >= 1, 5, "its pidfd in the fd store")   # stored before the record
    took = kill_daemon(mgr, pid)
    try:
        got = s.recv(65536)                     # the client's connection went with the daemon ...
    except OSError:
        got = b""
    s.close()
    assert got == b"", got                      # ... without an answer
    assert req(mgr, "GET", "/api/v1/processes")[1]["processes"] == []
    wait_for(lambda: tagged(tag) == [] and with_arg(nap) == [], 10, "the unrecorded tree to be killed")
    assert "process without a record, killing its tree" in mgr.log.read_text()[log_from:]
    wait_for(lambda: fd_store_entries(mgr) == 0, 5, "the fd store to be empty")
    print(f"\n  kill after spawn: answering again after {took * 1000:.0f} ms")


def test_state_is_written_before_the_answer(mgr):
    """Paused right after the state write of a start: its client must not have the answer yet (the answer
    used to go out before the save, so a kill there lost a process the client had been told about), and the
    restarted daemon has the record and the running process."""
    fresh(mgr)
    tag = "state-" + os.urandom(4).hex()
    arm(mgr, "state-written")
    s = socket.create_connection(("127.0.0.1", mgr.port), timeout=10)
    body = json.dumps({"command": "sleep", "args": ["300"], "env": {"CHAOS_TAG": tag}})
    s.sendall(f"POST /api/v1/processes HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {mgr.token}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
    pid = paused(mgr, "state-written")
    readable, _, _ = select.select([s], [], [], 0.2)
    assert not readable, "the answer went out before the state was written"
    kill_daemon(mgr, pid)
    s.close()
    procs = req(mgr, "GET", "/api/v1/processes")[1]["processes"]
    child = tagged(tag)
    assert len(procs) == 1 and procs[0]["status"] == "running" and child == [procs[0]["pid"]], (procs, child)
    assert req(mgr, "DELETE", f"/api/v1/processes/{procs[0]['pid']}")[0] == 204
    wait_for(lambda: tagged(tag) == [], 10, "the process to be gone after DELETE")


def test_kill_after_an_exit_was_read_but_not_written(mgr, tmp_path):
    """The daemon reaped its own child (the zombie is gone) and dies before writing the exit: the restarted
    daemon reads the exact status from the stored pidfd (PIDFD_INFO_EXIT after the reap), never -1."""
    fresh(mgr)
    go = tmp_path / "go"
    p = start(mgr, {"command": "sh", "args": ["-c", f"echo waiting; while [ ! -e {go} ]; do sleep 0.02; done; exit 42"]})
    arm(mgr, "exit-seen")
    go.write_text("")
    pid = paused(mgr, "exit-seen")
    assert not alive(p["pid"])
    kill_daemon(mgr, pid)
    got = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, p["pid"])), 10, "the exit")
    assert got["status"] == "exited" and got["exit_code"] == 42 and "exit_status_unknown" not in got, got
    assert got["ended_at"] and got["ended_at"] >= got["started_at"]
    assert req(mgr, "GET", f"/api/v1/processes/{p['pid']}/stdout")[1]["lines"] == ["waiting"]


def test_exit_of_a_readopted_process_waits_for_the_reap(mgr, tmp_path):
    """The issue-18 window, held open: a re-adopted process (systemd's child now) exits while the manager is
    stopped, so it stays unreaped. Its pidfd is readable but the kernel has no exit status yet: tendd must wait
    (the process still shows as running), not report -1; once the manager reaps it (EPOLLHUP), the status is
    exact and `ended_at` is when it exited, not when it was reaped."""
    fresh(mgr)
    go = tmp_path / "go"
    p = start(mgr, {"command": "sh", "args": ["-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 33"]})
    kill_daemon(mgr)
    assert info(mgr, p["pid"])["status"] == "running"
    manager = mgr.proc.pid
    assert Path(f"/proc/{manager}/comm").read_text().strip() == "systemd"
    seen_before = mgr.log.read_text().count("exit seen, waiting for its parent's reap")
    os.kill(manager, signal.SIGSTOP)
    try:
        go.write_text("")
        t_exit = int(time.time() * 1000)
        wait_for(lambda: Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z", 5, "the zombie")
        wait_for(lambda: mgr.log.read_text().count("exit seen, waiting for its parent's reap") > seen_before, 5,
                 "the daemon to wait for the reap\n" + mgr.tail())
        held = info(mgr, p["pid"])
        assert held["status"] == "running" and held["exit_code"] is None, held
        t_reap = int(time.time() * 1000)
    finally:
        os.kill(manager, signal.SIGCONT)
    got = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, p["pid"])), 5, "the exit")
    assert got["status"] == "exited" and got["exit_code"] == 33 and "exit_status_unknown" not in got, got
    assert t_exit - 50 <= got["ended_at"] <= t_reap, (t_exit, got["ended_at"], t_reap)


def test_a_status_that_cannot_be_had_is_said_so(mgr, tmp_path):
    """Its parent (the stopped manager) does not reap the re-adopted process within ExitTrust.reapWaitMs (10 s):
    the status cannot be had. The record says so explicitly (exited, exit_code null, exit_status_unknown), the
    log says why, the official SDK parses the record, and a later crash keeps it unknown (never -1)."""
    from tensorlake.sandbox import Sandbox
    fresh(mgr)
    go = tmp_path / "go"
    p = start(mgr, {"command": "sh", "args": ["-c", f"while [ ! -e {go} ]; do sleep 0.02; done; exit 33"]})
    kill_daemon(mgr)
    log_from = len(mgr.log.read_text())
    manager = mgr.proc.pid
    assert Path(f"/proc/{manager}/comm").read_text().strip() == "systemd"
    os.kill(manager, signal.SIGSTOP)
    try:
        go.write_text("")
        t_exit = int(time.time() * 1000)
        got = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, p["pid"])), 20,
                       "the daemon to give the status up\n" + mgr.tail())
    finally:
        os.kill(manager, signal.SIGCONT)
    assert got["status"] == "exited" and got["exit_code"] is None and got["signal"] is None, got
    assert got["exit_status_unknown"] is True and t_exit - 50 <= got["ended_at"] <= t_exit + 2000, (got, t_exit)
    log = mgr.log.read_text()[log_from:]
    assert "msg=\"exit status unknown\"" in log and "not reaped by its parent" in log, log[-3000:]
    sb = Sandbox(identifier="local", proxy_url=f"http://127.0.0.1:{mgr.port}", api_key=mgr.token)
    try:
        sdk = [x for x in sb.list_processes() if x.pid == p["pid"]]
        assert len(sdk) == 1 and sdk[0].status.value == "exited" and sdk[0].exit_code is None, sdk
    finally:
        sb.close()
    kill_daemon(mgr)                                    # and it stays unknown across a crash
    again = info(mgr, p["pid"])
    assert again["exit_status_unknown"] is True and again["exit_code"] is None, again


def test_kill_during_restore(mgr, tmp_path):
    """A restarted daemon is killed in the middle of its restore (fds taken, nothing written) while one
    process exits and another keeps running: the next restore gets both right."""
    fresh(mgr)
    go = tmp_path / "go"
    tag = "restore-" + os.urandom(4).hex()
    runner = start(mgr, {"command": "sh", "args": ["-c", f"while [ ! -e {go}.2 ]; do sleep 0.02; done; echo bye; exit 5"],
                         "env": {"CHAOS_TAG": tag}})
    quitter = start(mgr, {"command": "sh", "args": ["-c", f"while [ ! -e {go} ]; do sleep 0.02; done; echo done; exit 17"]})
    arm(mgr, "restore")
    first = mgr.main_pid()
    mgr.ctl("reset-failed", "tendd.service", check=False)
    os.kill(first, signal.SIGKILL)
    second = paused(mgr, "restore")
    assert second != first
    go.write_text("")                                   # the quitter ends while the restore is paused
    wait_for(lambda: not alive(quitter["pid"]), 10, "the quitter to exit")
    took = kill_daemon(mgr, second)
    q = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, quitter["pid"])), 10, "its exit")
    assert q["status"] == "exited" and q["exit_code"] == 17, q
    assert req(mgr, "GET", f"/api/v1/processes/{quitter['pid']}/stdout")[1]["lines"] == ["done"]
    r = info(mgr, runner["pid"])
    assert r["status"] == "running" and runner["pid"] in tagged(tag), r
    Path(f"{go}.2").write_text("")                      # and the adopted one exits after adoption
    r = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, runner["pid"])), 10, "its exit")
    assert r["status"] == "exited" and r["exit_code"] == 5, r
    print(f"\n  kill during restore: answering again after {took * 1000:.0f} ms")


def test_kill_during_upgrade_reexec(mgr, tmp_path):
    """`systemctl reload` saved the state and is about to exec the new image: a kill there is a crash like
    any other (systemd restarts the daemon from its fd store); a follower misses nothing."""
    fresh(mgr)
    go = tmp_path / "go"
    flood = start(mgr, {"command": "sh", "args": ["-c", f"seq 1 500; while [ ! -e {go} ]; do sleep 0.02; done; seq 501 1000; exit 6"]})
    wait_for(lambda: len(req(mgr, "GET", f"/api/v1/processes/{flood['pid']}/stdout")[1]["lines"]) == 500, 10, "the first lines")
    arm(mgr, "reexec")
    before = mgr.main_pid()
    mgr.ctl("reload", "--no-block", "tendd.service")   # (the reload job waits for READY=1, which never comes)
    pid = paused(mgr, "reexec")
    assert pid == before
    took = kill_daemon(mgr, pid)
    go.write_text("")
    f = Follower(mgr, flood["pid"], time.monotonic() + 30)
    f.run()
    assert f.eof, (f.error, len(f.events))
    assert [l for _, l in f.events] == [str(i) for i in range(1, 1001)] and f.gaps == []
    r = wait_for(lambda: (lambda i: i if i["status"] != "running" else None)(info(mgr, flood["pid"])), 10, "its exit")
    assert r["status"] == "exited" and r["exit_code"] == 6, r
    print(f"\n  kill during re-exec: answering again after {took * 1000:.0f} ms")


def test_kill_while_backing_off(mgr):
    """A managed process's exit decided a restart after backoff; the exit is written, the decision is not.
    The restarted daemon must decide again (it used to leave the process stopped forever, managed status
    "running"), restart it once the backoff is over, and keep its last exit exact."""
    fresh(mgr)
    arm(mgr, "backing-off")
    svc = start(mgr, {"command": "sh", "args": ["-c", "echo up; exit 4"], "name": "flappy",
                      "restart": {"policy": "on_failure", "initial_backoff_ms": 300, "max_backoff_ms": 300}})
    pid = paused(mgr, "backing-off")
    kill_daemon(mgr, pid)
    got = wait_for(lambda: (lambda i: i if i["managed"]["restart_count"] >= 2 else None)(info(mgr, "flappy")),
                   15, "the restarts to resume after the kill")
    assert got["managed"]["last_exit"]["exit_code"] == 4, got
    lines = req(mgr, "GET", "/api/v1/processes/flappy/stdout")[1]["lines"]
    assert len(lines) >= 3 and set(lines) == {"up"}, lines
    assert req(mgr, "DELETE", "/api/v1/processes/flappy")[0] == 204
    assert svc["pid"] > 0


def test_kill_while_a_run_streams(mgr):
    """The daemon dies while a one-shot run streams to the SDK: the SDK's call ends with a clean
    SandboxError (no invented result, no hang), the run is not started again, and its whole tree (a setsid'd
    grandchild too) is killed by the restarted daemon."""
    from tensorlake.sandbox import Sandbox
    from tensorlake.sandbox.exceptions import SandboxError
    fresh(mgr)
    tag = "run-" + os.urandom(4).hex()
    outcome: dict = {}

    def client():
        sb = Sandbox(identifier="local", proxy_url=f"http://127.0.0.1:{mgr.port}", api_key=mgr.token)
        try:
            outcome["result"] = sb.run("sh", args=["-c", "setsid sleep 300 & for i in $(seq 1 300); do echo tick $i; sleep 0.1; done"],
                                       env={"CHAOS_TAG": tag})
        except SandboxError as e:
            outcome["error"] = e
        except Exception as e:     # anything else is not a clean error
            outcome["other"] = e
        finally:
            sb.close()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    wait_for(lambda: len(tagged(tag)) >= 2, 10, "the run's tree")
    procs = req(mgr, "GET", "/api/v1/processes")[1]["processes"]
    assert len(procs) == 1
    wait_for(lambda: len(req(mgr, "GET", f"/api/v1/processes/{procs[0]['pid']}/stdout")[1]["lines"]) >= 3, 10, "streaming")
    kill_daemon(mgr)
    t.join(30)
    assert not t.is_alive(), "the SDK call hangs after the daemon died"
    assert "error" in outcome, outcome
    wait_for(lambda: tagged(tag) == [], 10, "the run's tree to be killed after the restart")
    procs = req(mgr, "GET", "/api/v1/processes")[1]["processes"]
    assert len(procs) == 1 and procs[0]["status"] == "signaled" and procs[0]["signal"] == 9, procs
    print(f"\n  the run's client saw: {type(outcome['error']).__name__}: {outcome['error']}")


# --------------------------------------------------------------------------- the chaos run


FLOODS = 5
FLOOD_LINES = 6000
BURSTS = 60                      # FLOOD_LINES / BURSTS lines every BURST_GAP_S: ~30 s per flood
BURST_GAP_S = 0.5
KILLS = 8
RELOADS = 3


def test_chaos_run(mgr):
    seed = int(os.environ.get("TEND_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"\n  chaos seed {seed} (replay: TEND_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    fresh(mgr)
    log_from = len(mgr.log.read_text())          # this run's part of the daemon log
    base_daemon = mgr.main_pid()
    base_fds, base_kinds = daemon_fds(base_daemon), fd_kinds(base_daemon)
    tag = "chaos-" + os.urandom(4).hex()
    env = {"CHAOS_TAG": tag}
    per = FLOOD_LINES // BURSTS

    floods = []
    for i in range(FLOODS):
        code = 3 + i
        floods.append((start(mgr, {"command": "sh", "env": env, "args": ["-c",
                       f"for b in $(seq 0 {BURSTS - 1}); do seq $((b*{per}+1)) $((b*{per}+{per})); sleep {BURST_GAP_S}; done; exit {code}"]}),
                       code))
    # Processes that end at random moments, with random statuses: while the daemon is down, during a
    # restore, just after adoption, or while it is up.
    enders = []
    for i in range(10):
        delay = round(rng.uniform(0.5, 30.0), 2)
        if i % 4 == 3:
            sig = rng.choice([2, 9, 15])
            enders.append((start(mgr, {"command": "sh", "env": env, "args": ["-c", f"sleep {delay}; kill -{sig} $$"]}), ("signaled", sig)))
        else:
            code = rng.randrange(0, 120)
            enders.append((start(mgr, {"command": "sh", "env": env, "args": ["-c", f"sleep {delay}; exit {code}"]}), ("exited", code)))
    managed = start(mgr, {"command": "sh", "env": env, "args": ["-c", "echo up; sleep 0.4; exit 9"], "name": "chaos-managed",
                          "restart": {"policy": "on_failure", "initial_backoff_ms": 100, "max_backoff_ms": 400}})

    deadline = time.monotonic() + 120
    followers = [Follower(mgr, f["pid"], deadline) for f, _ in floods]
    for f in followers:
        f.start()

    events = ["kill"] * KILLS + ["reload"] * RELOADS
    rng.shuffle(events)
    recoveries, kill_walls = [], []
    for ev in events:
        time.sleep(rng.uniform(1.2, 2.6))
        if ev == "kill":
            recoveries.append(kill_daemon(mgr))
            kill_walls.append(mgr.last_kill_wall_ms)
        else:
            pid = mgr.main_pid()
            readies = mgr.log.read_text().count("msg=ready ")
            mgr.ctl("reload", "tendd.service")
            wait_for(lambda: mgr.log.read_text().count("msg=ready ") > readies, 15, "the re-executed image\n" + mgr.tail())
            answered_after(mgr, -1, time.monotonic())
            assert mgr.main_pid() == pid, "an upgrade keeps the pid"
    print(f"  {KILLS} kills, {RELOADS} upgrades; answering again after "
          + ", ".join(f"{r * 1000:.0f}" for r in recoveries) + " ms")

    for f in followers:
        f.join(max(1, deadline - time.monotonic()))
    # Every line exactly once, in order, across every reconnect.
    for f, (p, _) in zip(followers, floods):
        lines = [l for _, l in f.events]
        assert f.eof, (p["pid"], f.error, len(lines), mgr.tail())
        assert f.gaps == [], f.gaps
        assert lines == [str(i) for i in range(1, FLOOD_LINES + 1)], (p["pid"], len(lines), lines[:3], lines[-3:])
        ids = [i for i, _ in f.events]
        assert ids == sorted(set(ids))
    print(f"  {FLOODS * FLOOD_LINES} lines, each once and in order, over {sum(f.connects for f in followers)} connections")

    # Every exit status exact, ended_at real.
    def done(pid):
        i = info(mgr, pid)
        return i if i["status"] != "running" else None
    for p, code in floods:
        i = wait_for(lambda: done(p["pid"]), 20, f"flood {p['pid']} to end")
        assert (i["status"], i["exit_code"]) == ("exited", code) and "exit_status_unknown" not in i, i
        assert i["started_at"] <= i["ended_at"], i
    for p, (status, value) in enders:
        i = wait_for(lambda: done(p["pid"]), 40, f"process {p['pid']} to end")
        assert i["status"] == status and (i["exit_code"] if status == "exited" else i["signal"]) == value, (i, status, value)
        assert "exit_status_unknown" not in i and i["started_at"] <= i["ended_at"], i
    m = info(mgr, "chaos-managed")["managed"]
    assert m["last_exit"] is not None and m["last_exit"]["exit_code"] == 9, m
    assert m["restart_count"] >= 3 and m["status"] in ("running", "starting", "backing_off"), m
    assert set(req(mgr, "GET", "/api/v1/processes/chaos-managed/stdout")[1]["lines"]) == {"up"}
    assert req(mgr, "DELETE", "/api/v1/processes/chaos-managed")[0] == 204
    assert "exit status unknown" not in mgr.log.read_text()[log_from:]

    # Nothing leaked: processes, fd-store entries, daemon fds, cgroup subtrees and leaves.
    wait_for(lambda: tagged(tag) == [], 10, "every process of the run to be gone")
    records = len(req(mgr, "GET", "/api/v1/processes")[1]["processes"])
    wait_for(lambda: fd_store_entries(mgr) == records, 10,
             f"the fd store to hold just the {records} journals (has {fd_store_entries(mgr)})")
    daemon = mgr.main_pid()
    # No more fds than a fresh daemon plus one journal memfd per record. (Twice in ~20 runs the count was 6
    # below that, never above; the kinds are printed when it differs.)
    wait_for(lambda: daemon_fds(daemon) <= base_fds + records, 10,
             f"the daemon's fds to be at most its baseline {base_fds} {base_kinds} + {records} journals (has {daemon_fds(daemon)} {fd_kinds(daemon)})")
    if daemon_fds(daemon) != base_fds + records:
        print(f"  note: daemon fds {daemon_fds(daemon)} {fd_kinds(daemon)} vs baseline {base_fds} {base_kinds} + {records} journals")
    def who(leaves):
        out = []
        for l in leaves:
            for pid in (cgroup_root(mgr) / l / "cgroup.procs").read_text().split():
                try:
                    out.append((l, pid, Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80],
                                Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]))
                except OSError:
                    out.append((l, pid, "gone"))
        return out
    wait_for(lambda: cgroup_dirs(mgr)[1] == [], 10, f"no populated leaf ({who(cgroup_dirs(mgr)[1])})\n" + mgr.tail(8000))
    subtrees, _ = cgroup_dirs(mgr)
    assert subtrees in ([], [f"tendd-{daemon}"]), subtrees
    # Where the time after each kill went: until the new daemon logged its first line (systemd's RestartSec=
    # and the exec), until it was ready (restore), until the client had its answer.
    starts = [int(l.split()[0][3:]) for l in mgr.log.read_text().splitlines() if "msg=\"whole-tree ownership\"" in l]
    ready = [int(l.split()[0][3:]) for l in mgr.log.read_text().splitlines() if "msg=ready " in l]
    split, late_starts = [], 0
    for k, took in zip(kill_walls, recoveries):
        s0 = next((t for t in starts if t > k), None)
        r0 = next((t for t in ready if t > k), None)
        assert s0 is not None and r0 is not None, (k, starts, ready)
        split.append(f"{s0 - k}/{r0 - k}")
        # tendd's own share (from its first log line to the answer) is always small ...
        assert took * 1000 - (s0 - k) < 500, ("tendd took too long to restore and answer", recoveries, split)
        # ... and the whole within ANSWER_WITHIN_S, unless systemd itself was more than 1.2 s late starting the
        # new daemon (RestartSec=100ms; seen on this shared 2-core machine at load 7+): once per run at most.
        if took >= ANSWER_WITHIN_S:
            assert s0 - k > 1200, ("not answering within 1.5 s of a kill", recoveries, split)
            late_starts += 1
    print("  after each kill, ms to the new daemon's first log line / to ready: " + ", ".join(split))
    assert late_starts <= 1, ("systemd started the daemon late more than once", recoveries, split)
