"""tendd under a real systemd: a private ``systemd --user`` manager in its own mount namespace
(see /work/shared/notes/systemd-testing.md), running units generated from the repo's
``systemd/tendd.socket`` and ``systemd/tendd.service``:

* ExecStart= points at the built binary (TENDD_BIN), ListenStream= at a free port and a unix
  socket in a temp dir, LoadCredential= at a temp token file, WatchdogSec= 2 s, output appended to a
  file (there is no journal), and a marker in the environment that every child inherits, so the
  test can find every process tendd started (and kill leftovers, whatever happens).
* Every other line of the units is used as shipped.

Run by ``run.sh`` (from ``scripts/test.sh``); the tests are ordered and share one manager.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TENDD_BIN = os.path.abspath(os.environ.get("TENDD_BIN", str(REPO / ".build" / "release" / "tendd")))
SYSTEMD = os.environ.get("TEND_SYSTEMD", "/lib/systemd/systemd")
WATCHDOG_SEC = 2
GRACE_MS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str, every: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Manager:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="tend-systemd-"))
        self.run = self.tmp / "run"
        self.run.mkdir(mode=0o700)
        self.home = self.tmp / "home"
        self.home.mkdir()
        self.units = self.tmp / "config" / "systemd" / "user"
        self.units.mkdir(parents=True)
        self.log = self.tmp / "tendd.log"
        self.manager_log = self.tmp / "manager.log"
        self.marker = "tend-systemd-test-" + secrets.token_hex(6)
        self.token = secrets.token_hex(16)
        self.token_file = self.tmp / "token"
        self.token_file.write_text(self.token + "\n")
        self.token_file.chmod(0o600)
        self.port = free_port()
        self.direct_port = free_port()
        self.unix_path = str(self.tmp / "tendd.sock")
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.run),
            "XDG_CONFIG_HOME": str(self.tmp / "config"),
            "LANG": "C.UTF-8",
        }
        self.proc: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()

    # ---- the manager

    def start(self):
        with open(self.manager_log, "wb") as out:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--", "sh", "-c",
                 "mount -t tmpfs none /run/systemd && mkdir -p /run/systemd/system && exec " + SYSTEMD + " --user"],
                env={**self.env, "SYSTEMD_LOG_TARGET": "console", "SYSTEMD_LOG_LEVEL": "info"},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("systemd --user exited: " + self.manager_log.read_text()[-2000:])
            # (is-system-running prints "offline" even when it cannot connect: ask for a property instead)
            return self.ctl("show", "-p", "Version", check=False).returncode == 0
        wait_for(up, 20, "the systemd --user manager")
        # Credentials (LoadCredential=) need a private ramfs mount, which some kernels (gVisor) do not give a
        # user manager: then the test unit points CREDENTIALS_DIRECTORY at a directory holding tendd-token,
        # which is what systemd would have made, and tendd's credential path is still the one exercised.
        probe = subprocess.run(["systemd-run", "--user", "--wait", "--quiet", "--pipe", "-p", "SetCredential=probe:ok",
                                "sh", "-c", 'cat "$CREDENTIALS_DIRECTORY/probe"'],
                               env=self.env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.credentials_work = probe.stdout.strip() == "ok"
        if not self.credentials_work:
            print("\n  note: this manager cannot set up credentials; CREDENTIALS_DIRECTORY is simulated")
        self.write_units()
        self.ctl("daemon-reload")

    def ctl(self, *args, check=True, timeout=30) -> subprocess.CompletedProcess:
        r = subprocess.run(["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"systemctl --user {' '.join(args)} -> {r.returncode}: {r.stdout}{r.stderr}\n"
                                 + self.tail())
        return r

    def show(self, unit: str, prop: str) -> str:
        return self.ctl("show", "-p", prop, "--value", unit).stdout.strip()

    def main_pid(self, unit="tendd.service") -> int:
        pid = int(self.show(unit, "MainPID"))
        if pid:
            self.seen_pids.add(pid)
        return pid

    def tail(self, n=4000) -> str:
        log = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "--- tendd log ---\n" + log[-n:]

    def stop(self):
        if self.proc is None:
            return
        try:
            self.ctl("stop", "tendd.socket", "tendd.service", "tendd-direct.service", check=False, timeout=30)
            self.ctl("exit", check=False, timeout=10)
            self.proc.wait(timeout=15)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Whatever is left (only after a failure): every process with our marker, and the daemons we saw.
        # The manager and anything it started carry our XDG_RUNTIME_DIR; repeat until none is left.
        for _ in range(50):
            left = set(self.marked_pids()) | set(self.pids_with_env(f"XDG_RUNTIME_DIR={self.run}"))
            for pid in left:   # never a bare remembered pid: it may have been reused by now
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if not left:
                break
            time.sleep(0.1)
        if os.environ.get("TEND_SYSTEMD_KEEP"):
            print(f"\n  kept {self.tmp} (TEND_SYSTEMD_KEEP)")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def marked_pids(self) -> list[int]:
        """Every live (non-zombie) process that has our marker in its environment: tendd and its children."""
        return self.pids_with_env("TEND_SYSTEMD_TEST=" + self.marker)

    def pids_with_env(self, assignment: str) -> list[int]:
        out = []
        needle = assignment.encode()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if needle not in Path(f"/proc/{d}/environ").read_bytes().split(b"\0"):
                    continue
                state = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                out.append(int(d))
        return out

    # ---- units generated from the repo's

    def write_units(self):
        sock = (REPO / "systemd" / "tendd.socket").read_text()
        svc = (REPO / "systemd" / "tendd.service").read_text()
        assert "\nListenStream=9501\n" in sock and "\nListenStream=/run/tendd.sock\n" in sock
        sock = sock.replace("\nListenStream=9501\n", f"\nListenStream=127.0.0.1:{self.port}\n")
        sock = sock.replace("\nListenStream=/run/tendd.sock\n", f"\nListenStream={self.unix_path}\n")
        (self.units / "tendd.socket").write_text(sock)

        def service(text: str) -> str:
            for old, new in [
                ("\nExecStart=/usr/local/bin/tendd ", f"\nExecStart={TENDD_BIN} "),
                ("--shutdown-grace-ms 5000", f"--shutdown-grace-ms {GRACE_MS}"),
                ("\nLoadCredential=tendd-token:/etc/tendd/token\n", f"\nLoadCredential=tendd-token:{self.token_file}\n"),
                ("\nWatchdogSec=10s\n", f"\nWatchdogSec={WATCHDOG_SEC}s\n"),
                ("\nStandardError=journal\n", f"\nStandardOutput=append:{self.log}\nStandardError=append:{self.log}\n"),
            ]:
                assert old in text, f"the repo's tendd.service no longer has {old!r}"
                text = text.replace(old, new)
            # Test-only additions: the marker every child inherits, the freeze switch, no core files.
            extra = (f"Environment=TEND_SYSTEMD_TEST={self.marker}\n"
                     "Environment=TENDD_TEST_FREEZE_SIGNAL=USR1\n"
                     "LimitCORE=0\n")
            if not self.credentials_work:
                creds = self.tmp / "credentials"
                creds.mkdir(mode=0o700, exist_ok=True)
                (creds / "tendd-token").write_text(self.token + "\n")
                extra += f"Environment=CREDENTIALS_DIRECTORY={creds}\n"
            return text.replace("\n[Service]\n", "\n[Service]\n" + extra, 1)

        (self.units / "tendd.service").write_text(service(svc))
        # The same service without socket activation (own --listen), for the READY ordering check.
        direct = service(svc).replace("\nRequires=tendd.socket\n", "\n").replace("After=tendd.socket ", "After=")
        direct = direct.replace(f"\nExecStart={TENDD_BIN} ", f"\nExecStart={TENDD_BIN} --listen 127.0.0.1:{self.direct_port} ")
        direct = direct.replace("\nAlso=tendd.socket\n", "\n")
        (self.units / "tendd-direct.service").write_text(direct)

    # ---- talking to tendd

    def request(self, method: str, path: str, body=None, port=None, timeout=10.0):
        c = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Authorization": f"Bearer {self.token}"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()

    def unix_request(self, path: str) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.unix_path)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: tendd\r\nAuthorization: Bearer {self.token}\r\n"
                      "Connection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    def start_process(self, command: str, args: list[str]) -> int:
        st, body = self.request("POST", "/api/v1/processes", {"command": command, "args": args})
        assert st in (200, 201), (st, body)
        return body["pid"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def mgr():
    assert os.access(TENDD_BIN, os.X_OK), f"no tendd binary at {TENDD_BIN}"
    m = Manager()
    try:
        m.start()
        yield m
    finally:
        m.stop()


# --------------------------------------------------------------------------- the tests, in order


def test_units_verify(mgr):
    """systemd-analyze verify accepts the generated units (the repo's, with test paths)."""
    r = subprocess.run(["systemd-analyze", "--user", "verify",
                        str(mgr.units / "tendd.socket"), str(mgr.units / "tendd.service")],
                       env=mgr.env, capture_output=True, text=True, timeout=30)
    # Lines about units the private manager does not have (network.target, multi-user.target) are expected.
    noise = ("network.target", "multi-user.target", "sockets.target")
    problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip() and not any(n in l for n in noise)]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    mgr.ctl("daemon-reload")
    for unit in ("tendd.socket", "tendd.service", "tendd-direct.service"):
        assert mgr.show(unit, "LoadState") == "loaded", unit
    assert mgr.show("tendd.service", "Type") == "notify"
    assert mgr.show("tendd.service", "NotifyAccess") == "main"
    assert mgr.show("tendd.service", "KillMode") == "process"   # children survive a crash (issue 5)
    assert mgr.show("tendd.service", "FileDescriptorStoreMax") == "20480"
    assert mgr.show("tendd.service", "RuntimeDirectoryPreserve") == "restart"
    assert mgr.show("tendd.service", "Delegate") == "yes"


def test_socket_activation_on_first_connection(mgr):
    mgr.ctl("enable", "--now", "tendd.socket")
    assert mgr.show("tendd.socket", "ActiveState") == "active"
    assert mgr.show("tendd.service", "ActiveState") == "inactive", "started before any connection"
    t0 = time.monotonic()
    st, body = mgr.request("GET", "/api/v1/processes")
    first_ms = (time.monotonic() - t0) * 1000
    assert st == 200, (st, body, mgr.tail())
    assert body == {"processes": []} or body.get("processes") == [], body
    assert mgr.show("tendd.service", "ActiveState") == "active"
    pid = mgr.main_pid()
    assert pid > 0
    print(f"\n  first connection on an idle socket -> response: {first_ms:.1f} ms")
    # Both sockets of the unit, TCP and unix, were handed over and are served at once.
    raw = mgr.unix_request("/api/v1/processes")
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:200]
    log = mgr.log.read_text()
    assert log.count("msg=listening addr=tendd") == 2, mgr.tail()
    assert f"port={mgr.port}" in log
    # A wrong token is still refused through the activated socket (the credential was read).
    c = http.client.HTTPConnection("127.0.0.1", mgr.port, timeout=10)
    c.request("GET", "/api/v1/processes", headers={"Authorization": "Bearer nope"})
    assert c.getresponse().status == 401
    c.close()
    # The children do not see the daemon's systemd variables.
    p = mgr.start_process("sh", ["-c", "env"])
    time.sleep(0.3)
    st, out = mgr.request("GET", f"/api/v1/processes/{p}/stdout")
    lines = out["lines"]
    assert f"TEND_SYSTEMD_TEST={mgr.marker}" in lines
    for var in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "CREDENTIALS_DIRECTORY"):
        assert not any(l.startswith(var + "=") for l in lines), (var, lines)


def test_ready_status_and_watchdog_pings(mgr):
    pid = mgr.main_pid()
    assert mgr.show("tendd.service", "SubState") == "running"
    status = mgr.show("tendd.service", "StatusText")
    assert "running," in status and "2 listeners" in status, status
    # Start a long process: STATUS follows within about a second.
    mgr.start_process("sleep", ["300"])
    wait_for(lambda: "1 running," in mgr.show("tendd.service", "StatusText"), 5, "STATUS to show 1 running")
    # Two and a half watchdog periods later the same daemon is still there: WATCHDOG=1 arrives.
    time.sleep(WATCHDOG_SEC * 2.5)
    assert mgr.main_pid() == pid
    assert mgr.show("tendd.service", "NRestarts") == "0"
    assert f"msg=\"systemd watchdog\" timeout_ms={WATCHDOG_SEC * 1000} ping_ms={WATCHDOG_SEC * 500}" in mgr.log.read_text()


def test_sdk_through_the_activated_socket(mgr):
    from tensorlake.sandbox import Sandbox
    sb = Sandbox(identifier="local", proxy_url=f"http://127.0.0.1:{mgr.port}", api_key=mgr.token)
    try:
        p = sb.start_process("sh", args=["-c", "echo hello; echo world >&2"])
        assert p.pid > 0
        out = list(sb.follow_output(p.pid))
        assert [(e.line, e.stream) for e in out] == [("hello", "stdout"), ("world", "stderr")]
        assert sb.get_stdout(p.pid).lines == ["hello"]
        assert any(x.pid == p.pid for x in sb.list_processes())
    finally:
        sb.close()


def test_reload_keeps_everything(mgr):
    pid = mgr.main_pid()
    child = mgr.start_process("sleep", ["300"])
    mgr.ctl("reload", "tendd.service")     # SIGUSR2: re-exec in place (same pid), token read again
    wait_for(lambda: "msg=\"upgrade: re-executing\"" in mgr.log.read_text() and "msg=\"restore\" adopted=" in mgr.log.read_text(),
             5, "the re-exec")
    assert mgr.main_pid() == pid
    assert alive(child)
    st, info = mgr.request("GET", f"/api/v1/processes/{child}")
    assert st == 200 and info["status"] == "running", info


def test_stop_leaves_nothing_behind(mgr, tmp_path):
    pid = mgr.main_pid()
    plain = mgr.start_process("sleep", ["300"])
    stubborn = mgr.start_process("sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"])
    # Its TERM trap must be in place before the stop (it prints "ready" right after installing it).
    wait_for(lambda: mgr.request("GET", f"/api/v1/processes/{stubborn}/stdout")[1]["lines"] == ["ready"], 5,
             "the stubborn child's trap")
    escaped_file = tmp_path / "escaped.pid"
    # A grandchild in its own session: tendd's group signals miss it; its cgroup leaf's cgroup.kill does not.
    escaper = mgr.start_process("sh", ["-c", f"setsid sleep 300 & echo $! > {escaped_file}; exec sleep 300"])
    escaped = int(wait_for(lambda: escaped_file.exists() and escaped_file.read_text().strip(), 5, "the escaped pid"))
    children = mgr.marked_pids()
    for p in (pid, plain, stubborn, escaper, escaped):
        assert p in children, (p, children)
    # A follower is streaming when the stop begins: it must end with its eof event.
    s = socket.create_connection(("127.0.0.1", mgr.port), timeout=15)
    s.sendall(f"GET /api/v1/processes/{stubborn}/output/follow HTTP/1.1\r\nHost: t\r\n"
              f"Authorization: Bearer {mgr.token}\r\n\r\n".encode())
    first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first
    t0 = time.monotonic()
    mgr.ctl("stop", "tendd.service")
    took = time.monotonic() - t0
    stream = first
    while chunk := s.recv(65536):
        stream += chunk
    s.close()
    assert b"event:eof" in stream and stream.endswith(b"0\r\n\r\n"), stream[-300:]
    assert mgr.show("tendd.service", "ActiveState") == "inactive"
    assert mgr.show("tendd.service", "Result") == "success", mgr.tail()
    assert mgr.show("tendd.service", "ExecMainStatus") == "0"
    left = mgr.marked_pids()
    assert left == [], (left, mgr.tail())
    for p in (pid, plain, stubborn, escaper, escaped):
        assert not alive(p), p
    log = mgr.log.read_text()
    assert "msg=\"stopping\" reason=SIGTERM" in log and "msg=stopped" in log
    assert f"msg=\"killing after grace period\" pid={stubborn}" in log, mgr.tail()
    assert took < GRACE_MS / 1000 + 5, took
    # The socket stays: the next connection activates a new daemon.
    assert mgr.show("tendd.socket", "ActiveState") == "active"
    st, _ = mgr.request("GET", "/api/v1/processes")
    assert st == 200
    assert mgr.main_pid() not in (0, pid)


def test_first_connection_latency(mgr):
    """Idle socket (service stopped) -> first request's full response, 5 times; the median is in the README."""
    times = []
    for _ in range(5):
        mgr.ctl("stop", "tendd.service")
        # Many starts in a row would hit the default start limit (5 in 10 s) and fail the socket.
        mgr.ctl("reset-failed", "tendd.service", "tendd.socket")
        assert mgr.show("tendd.service", "ActiveState") == "inactive"
        time.sleep(0.2)
        t0 = time.monotonic()
        st, _ = mgr.request("GET", "/api/v1/processes")
        times.append((time.monotonic() - t0) * 1000)
        assert st == 200
    times.sort()
    print(f"\n  first connection -> response on an idle socket, 5 activations: median {times[2]:.1f} ms, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")
    assert times[2] < 1000, times   # a few ms expected; the bound only catches a start-up that went wrong


def test_watchdog_restarts_a_frozen_loop(mgr):
    pid = mgr.main_pid()
    restarts = int(mgr.show("tendd.service", "NRestarts"))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGUSR1)   # test-only switch: the loop blocks forever
    wait_for(lambda: "freezing the event loop" in mgr.log.read_text(), 5, "the freeze")
    # The frozen daemon does not answer any more.
    with pytest.raises(OSError):
        mgr.request("GET", "/api/v1/processes", timeout=0.5)
    # The manager SIGABRTs the frozen daemon after WatchdogSec (the Swift runtime prints a backtrace, SIGKILL
    # follows after TimeoutAbortSec=5s at most), then restarts it after RestartSec=100ms.
    seen = set()

    def restarted():
        r = mgr.ctl("show", "-p", "SubState", "-p", "Result", "-p", "NRestarts", "tendd.service").stdout
        props = dict(line.split("=", 1) for line in r.splitlines() if "=" in line)
        seen.add(props["SubState"] + "/" + props["Result"])
        return int(props["NRestarts"]) == restarts + 1
    wait_for(restarted, WATCHDOG_SEC + 15, "the watchdog restart")
    took = time.monotonic() - t0
    # Between the kill and the restart the unit shows why it failed (auto-restart lasts only RestartSec=100ms,
    # so a poll may miss it: the manager's log says it too).
    assert "auto-restart/watchdog" in seen or "Failed with result 'watchdog'" in mgr.manager_log.read_text(), seen
    assert not alive(pid)
    new = wait_for(lambda: mgr.show("tendd.service", "SubState") == "running" and mgr.main_pid(), 10, "the restarted daemon")
    assert new != pid
    st, _ = mgr.request("GET", "/api/v1/processes")
    assert st == 200
    assert took < WATCHDOG_SEC + 5 + 1 + 4, took


def test_ready_only_once_it_answers(mgr):
    """Without socket activation nobody holds the port before tendd: when `systemctl start` returns
    (Type=notify waits for READY=1), a connection must already be accepted and answered."""
    for _ in range(3):
        mgr.ctl("start", "tendd-direct.service")
        st, body = mgr.request("GET", "/api/v1/processes", port=mgr.direct_port, timeout=5)
        assert st == 200, body
        assert mgr.show("tendd-direct.service", "ActiveState") == "active"
        assert "1 listeners" in mgr.show("tendd-direct.service", "StatusText")
        mgr.ctl("stop", "tendd-direct.service")
        assert mgr.show("tendd-direct.service", "Result") == "success"


def test_without_systemd_everything_is_a_no_op(mgr, tmp_path):
    """The same binary outside systemd: --listen works, no NOTIFY_SOCKET, no LISTEN_FDS."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC")}
    p = subprocess.Popen([TENDD_BIN, "--listen", f"127.0.0.1:{port}", "--token-file", str(mgr.token_file)],
                         env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        def up():
            try:
                return mgr.request("GET", "/api/v1/processes", port=port, timeout=2)[0] == 200
            except OSError:
                return False
        wait_for(up, 10, "tendd without systemd")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        err = p.stderr.read().decode()
        assert "systemd watchdog" not in err and "sd_notify" not in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
