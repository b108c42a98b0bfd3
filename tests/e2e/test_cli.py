"""End-to-end tests of the `tend` CLI against a real tendd.

`TEND_BIN` names the client (default <repo>/.build/release/tend); the daemon comes from the
conftest fixtures (`TENDD_BIN`). Every tend invocation has a timeout so a hang fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import REPO, free_port, wait_for

TEND_BIN = os.environ.get("TEND_BIN", str(REPO / ".build" / "release" / "tend"))


@pytest.fixture(scope="module", autouse=True)
def _need_tend():
    if not os.path.exists(TEND_BIN):
        pytest.fail(f"tend binary not found at {TEND_BIN} (set TEND_BIN)")


def tend_env(daemon, url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["TEND_URL"] = url or f"http://127.0.0.1:{daemon.port}"
    env["TEND_TOKEN_FILE"] = daemon.token_file
    env.pop("NO_COLOR", None)
    return env


def tend(daemon, *args: str, input: bytes | None = None, timeout: float = 20, url: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = tend_env(daemon, url) if daemon is not None else dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([TEND_BIN, *args], input=input, capture_output=True, timeout=timeout, env=e)


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode()


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode()


# Both ways `tend run` can work: POST /processes/run when the daemon has it, and start + follow.
RUN_MODES = [pytest.param([], id="auto"), pytest.param(["--no-run-endpoint"], id="follow")]


# =========================================================================== run


@pytest.mark.parametrize("mode", RUN_MODES)
def test_run_exit_codes_and_stream_separation(daemon, mode):
    r = tend(daemon, "run", *mode, "--", "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 3")
    assert r.returncode == 3, r
    assert out(r) == "out1\nout2\n"
    assert err(r) == "err1\n"
    r = tend(daemon, "run", *mode, "--", "true")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = tend(daemon, "run", *mode, "echo", "no", "terminator")
    assert (r.returncode, out(r)) == (0, "no terminator\n")


@pytest.mark.parametrize("mode", RUN_MODES)
def test_run_killed_by_signal_is_128_plus_signal(daemon, mode):
    r = tend(daemon, "run", *mode, "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + 15, r
    r = tend(daemon, "run", *mode, "--", "sh", "-c", "echo before; kill -KILL $$")
    assert r.returncode == 128 + 9, r
    assert out(r) == "before\n"


@pytest.mark.parametrize("mode", RUN_MODES)
def test_run_timeout_exits_124_and_kills(daemon, mode):
    t0 = time.monotonic()
    r = tend(daemon, "run", *mode, "--json", "--timeout", "0.8", "--", "sh", "-c", "echo started; sleep 30")
    took = time.monotonic() - t0
    assert r.returncode == 124, r
    assert took < 8, took
    recs = [json.loads(l) for l in out(r).splitlines()]
    assert recs[0]["line"] == "started" and recs[0]["stream"] == "stdout", recs
    final = recs[-1]
    assert final["timed_out"] is True and final["status"] == 124, final
    info = daemon.wait_exit(final["pid"])
    assert info["status"] == "signaled" and info["signal"] == 9, info


def test_run_env_cwd_and_large_output(daemon):
    r = tend(daemon, "run", "--env", "GREETING=hi there", "-e", "X=1=2", "--cwd", "/tmp", "--",
             "sh", "-c", 'echo "$GREETING|$X"; pwd; seq 1 20000')
    assert r.returncode == 0, r
    lines = out(r).splitlines()
    assert lines[:2] == ["hi there|1=2", "/tmp"]
    assert lines[2:] == [str(i) for i in range(1, 20001)]


def test_run_spawn_failure_is_one_line_and_125(daemon):
    r = tend(daemon, "run", "--", "/nonexistent/binary")
    assert r.returncode == 125, r
    lines = err(r).strip().splitlines()
    assert len(lines) == 1 and "SPAWN_FAILED" in lines[0], lines


@pytest.mark.parametrize("mode", RUN_MODES)
def test_run_ctrl_c_kills_remote_and_exits_130(daemon, mode):
    marker = f"{time.time_ns() % 100000}.5"
    p = subprocess.Popen([TEND_BIN, "run", *mode, "--", "sleep", marker], env=tend_env(daemon),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def remote():
            r = daemon.get("/api/v1/processes")
            for i in r.json["processes"]:
                if i["command"] == "sleep" and i["args"] == [marker]:
                    return i
            return None
        info = wait_for(remote, 10, what="the remote sleep")
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        rc = p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 130, (rc, p.stderr.read())
    final = daemon.wait_exit(info["pid"], 5)
    assert final["status"] == "signaled" and final["signal"] == 9, final


# =========================================================================== start, ps, inspect, kill, signal


def test_start_ps_inspect_kill(daemon):
    r = tend(daemon, "start", "--", "sleep", "300")
    assert r.returncode == 0, r
    pid = int(out(r).strip())
    daemon.started.append(pid)

    r = tend(daemon, "ps")  # not a terminal: tab-separated, no header
    rows = [l.split("\t") for l in out(r).splitlines()]
    mine = [row for row in rows if row[0] == str(pid)]
    assert mine and mine[0][2] == "running" and mine[0][3] == "-" and mine[0][5] == "sleep 300", rows
    assert all(row[2] == "running" for row in rows), rows

    r = tend(daemon, "inspect", "--json", str(pid))
    info = json.loads(out(r))
    assert info["pid"] == pid and info["status"] == "running" and info["args"] == ["300"]
    r = tend(daemon, "inspect", str(pid))
    assert re.search(rf"^pid\s+{pid}$", out(r), re.M), out(r)
    assert re.search(r"^status\s+running$", out(r), re.M), out(r)

    r = tend(daemon, "kill", str(pid))
    assert (r.returncode, r.stdout) == (0, b""), r
    info = daemon.info(pid)
    assert info["status"] == "signaled" and info["signal"] == 9

    r = tend(daemon, "ps")
    assert str(pid) not in [l.split("\t")[0] for l in out(r).splitlines()]
    r = tend(daemon, "ps", "--all")
    row = [l.split("\t") for l in out(r).splitlines() if l.startswith(f"{pid}\t")]
    assert row and row[0][2] == "signaled" and row[0][3] == "SIGKILL", out(r)
    r = tend(daemon, "ps", "--all", "--json")
    listed = json.loads(out(r))["processes"]
    assert any(i["pid"] == pid and i["status"] == "signaled" for i in listed)


def test_start_json_and_signal_by_name_and_number(daemon):
    script = 'trap "echo got-hup; exit 7" HUP; while :; do sleep 0.05; done'
    r = tend(daemon, "start", "--json", "--", "sh", "-c", script)
    info = json.loads(out(r))
    pid = info["pid"]
    daemon.started.append(pid)
    assert info["status"] == "running" and info["command"] == "sh"
    time.sleep(0.3)  # let sh install the trap
    r = tend(daemon, "signal", str(pid), "HUP")
    assert (r.returncode, r.stdout) == (0, b""), r
    done = daemon.wait_exit(pid)
    assert done["exit_code"] == 7, done
    assert daemon.lines(pid) == ["got-hup"]

    p2 = daemon.start("sleep", ["300"])
    r = tend(daemon, "signal", "--json", str(p2["pid"]), "15")
    assert json.loads(out(r)) == {"success": True}
    assert daemon.wait_exit(p2["pid"])["signal"] == 15
    r = tend(daemon, "signal", str(p2["pid"]), "SIGTERM")  # no longer running
    assert r.returncode == 1 and "PROCESS_NOT_RUNNING" in err(r), r
    r = tend(daemon, "signal", str(p2["pid"]), "NOPE")
    assert r.returncode == 64 and "unknown signal" in err(r), r


def test_managed_options_are_sent_or_refused_clearly(daemon):
    r = tend(daemon, "start", "--name", f"cli-web-{os.getpid()}", "--restart", "on_failure", "--", "sleep", "300")
    if r.returncode == 0:  # managed processes implemented
        pid = int(out(r).strip())
        daemon.started.append(pid)
        name = f"cli-web-{os.getpid()}"
        info = daemon.info(pid)
        assert info["managed"]["name"] == name, info
        assert info["managed"]["restart"]["policy"] == "on_failure", info
        r = tend(daemon, "restart", name)
        assert r.returncode == 0, r
        new_pid = int(out(r).strip())
        daemon.started.append(new_pid)
        assert new_pid != pid
        r = tend(daemon, "inspect", name)
        assert re.search(rf"^pid\s+{new_pid}$", out(r), re.M) and re.search(r"^managed\.restart_count\s+1$", out(r), re.M), out(r)
        r = tend(daemon, "kill", name)
        assert r.returncode == 0, r
    else:
        assert r.returncode == 1 and "NOT_SUPPORTED" in err(r), r
        assert len(err(r).strip().splitlines()) == 1
    p = daemon.start("sleep", ["300"])
    r = tend(daemon, "restart", str(p["pid"]))
    assert r.returncode == 1 and "NOT_MANAGED" in err(r), r


# =========================================================================== stdin


def test_stdin_streams_a_multi_megabyte_file_intact(daemon, tmp_path):
    data = os.urandom(6 * 1024 * 1024 + 123)
    r = tend(daemon, "start", "--stdin", "--", "sha256sum")
    pid = int(out(r).strip())
    daemon.started.append(pid)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:  # through a pipe, like `cat file | tend stdin P`
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        r = subprocess.run([TEND_BIN, "stdin", "--json", str(pid), "--close"], stdin=cat.stdout,
                           capture_output=True, timeout=30, env=tend_env(daemon))
        cat.wait(5)
    assert r.returncode == 0, r
    assert json.loads(out(r)) == {"bytes": len(data), "closed": True}
    assert daemon.wait_exit(pid)["exit_code"] == 0
    assert daemon.lines(pid) == [f"{hashlib.sha256(data).hexdigest()}  -"]


def test_stdin_without_close_keeps_process_running(daemon):
    pid = daemon.start("cat", stdin_mode="pipe")["pid"]
    r = tend(daemon, "stdin", str(pid), input=b"one\ntwo\n")
    assert (r.returncode, r.stdout) == (0, b""), r
    assert daemon.wait_output(pid, lambda ls: ls == ["one", "two"])
    assert daemon.info(pid)["status"] == "running"
    r = tend(daemon, "stdin", str(pid), "--close", input=b"")
    assert r.returncode == 0
    assert daemon.wait_exit(pid)["exit_code"] == 0
    r = tend(daemon, "stdin", str(pid), input=b"late\n")
    assert r.returncode == 1 and "STDIN_NOT_WRITABLE" in err(r), r


# =========================================================================== logs


def test_logs_snapshot_streams_filters_and_ids(daemon):
    p = daemon.sh("for i in 1 2 3; do echo o$i; sleep 0.05; echo e$i >&2; sleep 0.05; done")
    daemon.wait_exit(p["pid"])
    pid = str(p["pid"])
    r = tend(daemon, "logs", pid)
    assert (out(r), err(r)) == ("o1\no2\no3\n", "e1\ne2\ne3\n")
    r = tend(daemon, "logs", "--stdout", pid)
    assert (out(r), err(r)) == ("o1\no2\no3\n", "")
    r = tend(daemon, "logs", "--stderr", pid)
    assert (out(r), err(r)) == ("", "e1\ne2\ne3\n")
    r = tend(daemon, "logs", "--json", pid)
    recs = [json.loads(l) for l in out(r).splitlines()]
    assert [(x["stream"], x["line"]) for x in recs] == [
        ("stdout", "o1"), ("stderr", "e1"), ("stdout", "o2"), ("stderr", "e2"), ("stdout", "o3"), ("stderr", "e3")]
    ids = [x["id"] for x in recs]
    assert ids == sorted(ids) and len(set(ids)) == 6
    r = tend(daemon, "logs", "--json", "--since-id", str(ids[3]), pid)
    assert [json.loads(l)["line"] for l in out(r).splitlines()] == ["o3", "e3"]


def test_logs_without_follow_returns_while_process_runs(daemon):
    p = daemon.sh("echo first; echo second; sleep 300")
    daemon.wait_output(p["pid"], lambda ls: ls == ["first", "second"])
    t0 = time.monotonic()
    r = tend(daemon, "logs", str(p["pid"]), timeout=10)
    assert r.returncode == 0 and out(r) == "first\nsecond\n", r
    assert time.monotonic() - t0 < 5


def test_logs_follow_until_exit(daemon):
    p = daemon.sh("echo a; sleep 0.5; echo b >&2; sleep 0.5; echo c")
    r = tend(daemon, "logs", "-f", str(p["pid"]), timeout=15)
    assert r.returncode == 0, r
    assert (out(r), err(r)) == ("a\nc\n", "b\n")


def test_logs_raw_copies_bytes_exactly(daemon):
    data = bytes(range(256)) * 4 + b"\r\n\x00no newline"
    p = daemon.start("python3", ["-c", f"import sys; sys.stdout.buffer.write({data!r}); sys.stderr.buffer.write(b'E\\r')"])
    daemon.wait_exit(p["pid"])
    pid = str(p["pid"])
    r = tend(daemon, "logs", "--raw", pid)
    assert r.returncode == 0 and r.stdout == data, r
    assert tend(daemon, "logs", "--raw", "--stderr", pid).stdout == b"E\r"
    assert tend(daemon, "logs", "--raw", "--offset", "1000", pid).stdout == data[1000:]
    r = tend(daemon, "logs", "--raw", "--offset", str(len(data) + 1), pid)
    assert r.returncode != 0 and b"OFFSET_OUT_OF_RANGE" in r.stderr, r
    r = tend(daemon, "logs", "--raw", "--json", pid)
    assert r.returncode != 0 and b"--raw excludes" in r.stderr, r


def test_logs_raw_follow_resumes_after_gaps(daemon_factory):
    d = daemon_factory("--raw-bytes", "16384")
    total = 24 << 20
    p = d.start("python3", ["-c", f"import sys; sys.stdin.readline(); sys.stdout.buffer.write(b'x' * {total - 4} + b'end\\n')"],
                stdin_mode="pipe")
    proc = subprocess.Popen([TEND_BIN, "logs", "--raw", "-f", str(p["pid"])], env=tend_env(d),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    d.post(f"/api/v1/processes/{p['pid']}/stdin", body=b"go\n")
    time.sleep(1.5)                 # tend blocks on its full stdout pipe; the 16 KiB ring overtakes it
    got, errs = proc.communicate(timeout=60)
    assert proc.returncode == 0, errs
    assert got.endswith(b"end\n") and set(got[:-4]) <= {ord("x")}, got[-50:]
    lost = sum(int(m) for m in re.findall(rb"(\d+) bytes of stdout", errs))
    assert lost > 0, "the stalled reader should have lost bytes to the small ring"
    assert len(got) + lost == total, (len(got), lost, errs)


class DroppingProxy:
    """TCP proxy to the daemon that cuts the first `drops` connections after `after` response bytes."""

    def __init__(self, port: int, drops: int, after: int):
        self.target = port
        self.drops = drops
        self.after = after
        self.requests: list[bytes] = []
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            n = len(self.requests)
            self.requests.append(b"")
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c: socket.socket, n: int):
        u = socket.create_connection(("127.0.0.1", self.target))
        cut = n < self.drops

        def up():
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    self.requests[n] += b
                    u.sendall(b)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                if cut and sent + len(b) >= self.after:
                    c.sendall(b[: max(0, self.after - sent)])  # cut mid-response (maybe mid-event)
                    break
                c.sendall(b)
                sent += len(b)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.stop = True
        self.lsock.close()


@pytest.mark.timeout(30)
def test_logs_follow_resumes_after_dropped_connection(daemon):
    p = daemon.sh("for i in $(seq 1 60); do echo line-$i; [ $i = 20 ] && echo err-$i >&2; sleep 0.02; done")
    proxy = DroppingProxy(daemon.port, drops=2, after=900)
    try:
        r = tend(daemon, "logs", "-f", str(p["pid"]), url=f"http://127.0.0.1:{proxy.port}", timeout=25)
    finally:
        proxy.close()
    assert r.returncode == 0, r
    assert out(r).splitlines() == [f"line-{i}" for i in range(1, 61)]  # each once, in order
    assert err(r) == "err-20\n"
    assert len(proxy.requests) >= 3, proxy.requests
    assert b"last-event-id" not in proxy.requests[0].lower()
    m = re.search(rb"(?i)last-event-id: *(\d+)", proxy.requests[1])
    assert m and int(m.group(1)) >= 1, proxy.requests[1]


# =========================================================================== errors, settings, help


def test_connection_failure_names_the_address_and_settings(daemon):
    port = free_port()
    r = tend(daemon, "ps", url=f"http://127.0.0.1:{port}")
    assert r.returncode == 2, r
    line = err(r).strip()
    assert len(line.splitlines()) == 1
    assert f"127.0.0.1:{port}" in line and "TEND_URL" in line and "--url" in line, line
    r = tend(daemon, "run", "--url", "unix:/nonexistent/tendd.sock", "--", "true")
    assert r.returncode == 125 and "unix:/nonexistent/tendd.sock" in err(r), r
    r = tend(daemon, "health", "--url", "ftp://x")
    assert r.returncode == 1 and "invalid URL" in err(r), r


def test_errors_are_one_line_with_code(daemon, tmp_path):
    r = tend(daemon, "inspect", "2000000000")
    assert r.returncode == 1, r
    assert err(r).strip().count("\n") == 0 and "NOT_FOUND" in err(r), r
    bad = tmp_path / "wrong"
    bad.write_text("not-the-token\n")
    r = tend(daemon, "ps", "--token-file", str(bad))
    assert r.returncode == 1 and "UNAUTHORIZED" in err(r) and str(bad) in err(r), r
    r = tend(daemon, "ps", env={"TEND_TOKEN_FILE": str(tmp_path / "missing")})
    assert r.returncode == 1 and "cannot read the token file" in err(r) and "TEND_TOKEN_FILE" in err(r), r


def test_flags_override_environment_and_global_position(daemon):
    # TEND_URL points nowhere; --url (before or after the subcommand) wins.
    env = {"TEND_URL": f"http://127.0.0.1:{free_port()}"}
    good = f"http://127.0.0.1:{daemon.port}"
    assert tend(daemon, "health", env=env).returncode == 2
    r = tend(daemon, "health", "--url", good, env=env)
    assert (r.returncode, out(r)) == (0, "healthy\n"), r
    r = tend(daemon, "--url", good, "health", "--json", env=env)
    assert (r.returncode, json.loads(out(r))) == (0, {"healthy": True}), r


def test_unix_socket_info_and_health(daemon_factory):
    d = daemon_factory(unix_socket=True)
    r = tend(d, "info", "--json", url=f"unix:{d.unix_path}")
    info = json.loads(out(r))
    assert set(info) >= {"version", "uptime_secs", "running_processes", "total_processes"}
    r = tend(d, "info", url=f"unix:{d.unix_path}")
    assert re.search(r"^version\s+\S+$", out(r), re.M), out(r)
    r = tend(d, "run", "--", "echo", "via-unix", url=f"unix:{d.unix_path}")
    assert (r.returncode, out(r)) == (0, "via-unix\n")


def test_help_and_usage_errors():
    subs = ["run", "start", "ps", "logs", "kill", "signal", "restart", "inspect", "stdin", "info", "health"]
    r = tend(None, "--help")
    assert r.returncode == 0
    for s in subs:
        assert s in out(r)
    assert "--token" in out(r) and "/proc" in out(r)
    for s in subs:
        r = tend(None, s, "--help")
        assert r.returncode == 0 and "Examples" in out(r) and "--url" in out(r), (s, r)
    r = tend(None, "run", "--help")
    assert "124" in out(r) and "128" in out(r) and "130" in out(r)
    for args in (["run"], ["run", "--timeout", "-1", "--", "true"], ["run", "--env", "NOEQ", "--", "true"],
                 ["start", "--restart", "bogus", "--", "true"], ["logs", "--stdout", "--stderr", "1"],
                 ["signal", "1"], ["ps", "--token", "x"], ["nonsense"]):
        r = tend(None, *args)
        assert r.returncode == 64, (args, r)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", RUN_MODES)
def test_run_survives_a_dropped_stream(daemon, mode):
    # The stream is cut mid-way; tend resumes from the last event id, so no line is duplicated.
    # With start + follow the process lives on and everything arrives; a /processes/run process ends
    # with its connection (like Tensorlake's), which tend must then report, not hide.
    proxy = DroppingProxy(daemon.port, drops=1, after=700)
    try:
        r = tend(daemon, "run", *mode, "--", "sh", "-c", "for i in $(seq 1 40); do echo r$i; sleep 0.02; done; exit 5",
                 url=f"http://127.0.0.1:{proxy.port}", timeout=25)
    finally:
        proxy.close()
    assert len(proxy.requests) >= 2, proxy.requests
    lines = out(r).splitlines()
    if r.returncode == 137 and not mode:
        assert "run stream broke" in err(r), r
        assert lines == [f"r{i}" for i in range(1, len(lines) + 1)], lines
    else:
        assert (r.returncode, lines) == (5, [f"r{i}" for i in range(1, 41)]), r
        assert err(r) == ""


# =========================================================================== top


def test_top_snapshot_sorted_by_cpu_with_rates(daemon_factory):
    d = daemon_factory()
    busy = d.sh("while :; do :; done")["pid"]
    chatty = d.start("sh", ["-c", "while :; do echo 0123456789abcdefghi; sleep 0.01; done"], name="chatty")["pid"]
    idle = d.start("sleep", ["30"])["pid"]
    # Let the busy loop accumulate CPU time (measured, not slept: until the daemon reports some).
    wait_for(lambda: (d.info(busy)["resources"]["cpu_usec"] or 0) > 50_000, what="busy loop CPU")
    r = tend(d, "top", "--json", "--interval", "0.5")
    assert r.returncode == 0, r
    snap = json.loads(out(r))
    rows = snap["processes"]
    assert [x["pid"] for x in rows][0] == busy, rows          # sorted by CPU: the busy loop first
    assert {x["pid"] for x in rows} == {busy, chatty, idle}
    by = {x["pid"]: x for x in rows}
    assert by[busy]["cpu_percent"] > 10, by[busy]
    assert by[idle]["cpu_percent"] < 5 and by[idle]["output_bytes_per_sec"] == 0, by[idle]
    assert by[chatty]["output_bytes_per_sec"] > 100 and by[chatty]["name"] == "chatty", by[chatty]
    assert 400 <= snap["interval_ms"] < 5000
    # Not a terminal: one snapshot, tab-separated rows, no header, same order rule.
    r = tend(d, "top", "--interval", "0.3")
    assert r.returncode == 0, r
    lines = out(r).splitlines()
    assert len(lines) == 3 and lines[0].split("\t")[0] == str(busy), lines
    fields = lines[0].split("\t")
    assert len(fields) == 8 and float(fields[2]) > 10 and fields[6] == "running"
    # Exited processes are not shown.
    assert d.request("DELETE", f"/api/v1/processes/{busy}").status == 204
    r = tend(d, "top", "--json", "--interval", "0.1")
    assert busy not in {x["pid"] for x in json.loads(out(r))["processes"]}


def test_top_refreshes_on_a_terminal_until_interrupted(daemon):
    import pty
    p = daemon.sh("echo on-screen; sleep 30")["pid"]
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(tend_env(daemon))
        os.environ["COLUMNS"], os.environ["LINES"] = "100", "20"
        os.execv(TEND_BIN, [TEND_BIN, "top", "--interval", "0.2"])
    buf = b""
    reaped = False
    try:
        def screens():
            nonlocal buf
            r, _, _ = __import__("select").select([fd], [], [], 0.5)
            if r:
                try:
                    buf += os.read(fd, 65536)
                except OSError:
                    pass
            return buf.count(b"\x1b[2J") >= 2 and str(p).encode() in buf
        wait_for(screens, 15, what="two refreshed screens")
        assert b"PID" in buf and b"CPU%" in buf and b"OUT/s" in buf
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        reaped = True
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def test_top_usage_errors(daemon):
    r = tend(daemon, "top", "--interval", "0")
    assert r.returncode == 64 and "--interval" in err(r)
    r = tend(daemon, "top", "--interval", "0.1", url="http://127.0.0.1:1")
    assert r.returncode == 2 and "cannot connect" in err(r)
