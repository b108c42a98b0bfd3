"""Compatibility with the official Tensorlake Python SDK (tensorlake==0.5.161)."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import time

import pytest

from conftest import NO_SUCH_PID, wait_for

sandbox_mod = pytest.importorskip("tensorlake.sandbox")
from tensorlake.sandbox import Sandbox  # noqa: E402
from tensorlake.sandbox.exceptions import RemoteAPIError, SandboxError  # noqa: E402
from tensorlake.sandbox.models import (  # noqa: E402
    OutputMode,
    ProcessStatus,
    StdinMode,
)


@pytest.fixture
def sdk(daemon):
    sb = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=daemon.token)
    yield sb
    sb.close()


def _track(daemon, info):
    daemon.started.append(info.pid)
    return info


def _wait_done(sdk, pid, timeout=10.0):
    def done():
        p = sdk.get_process(pid)
        return p if p.status != ProcessStatus.RUNNING else None
    return wait_for(done, timeout, what=f"sdk process {pid} to end")


def _near_now(ts: dt.datetime, slack_s: float = 60.0) -> bool:
    now = dt.datetime.now(dt.timezone.utc)
    return abs((now - ts).total_seconds()) < slack_s


def test_health_and_info(sdk, daemon):
    h = sdk.health()
    assert h.healthy is True
    info = sdk.daemon_info()
    assert isinstance(info.version, str) and info.version
    assert info.uptime_secs >= 0
    assert info.total_processes >= info.running_processes >= 0


def test_start_args_follow_and_exit(sdk, daemon):
    p = _track(daemon, sdk.start_process("echo", ["hello", "world"]))
    assert p.pid > 0
    assert p.command == "echo"
    assert p.args == ["hello", "world"]
    assert p.status in (ProcessStatus.RUNNING, ProcessStatus.EXITED)
    assert _near_now(p.started_at)
    events = list(sdk.follow_stdout(p.pid))
    assert [e.line for e in events] == ["hello world"]
    assert all(_near_now(e.timestamp) for e in events)
    assert events[0].stream is None
    done = _wait_done(sdk, p.pid)
    assert done.status == ProcessStatus.EXITED
    assert done.exit_code == 0
    assert done.signal is None
    assert done.ended_at is not None and done.ended_at >= done.started_at
    assert done.managed is None


def test_env_and_working_dir(sdk, daemon, tmp_path):
    p = _track(daemon, sdk.start_process("sh", ["-c", 'echo "$FOO"; pwd'], env={"FOO": "bar baz"},
                                         working_dir=str(tmp_path)))
    assert [e.line for e in sdk.follow_stdout(p.pid)] == ["bar baz", str(tmp_path)]


def test_stdin_pipe(sdk, daemon):
    p = _track(daemon, sdk.start_process("cat", stdin_mode=StdinMode.PIPE))
    assert p.stdin_writable is True
    sdk.write_stdin(p.pid, b"abc\n")
    sdk.write_stdin(p.pid, b"\xc3\xa9t\xc3\xa9\n")
    sdk.close_stdin(p.pid)
    assert [e.line for e in sdk.follow_stdout(p.pid)] == ["abc", "été"]
    done = _wait_done(sdk, p.pid)
    assert done.exit_code == 0 and done.stdin_writable is False
    out = sdk.get_stdout(p.pid)
    assert out.pid == p.pid and out.lines == ["abc", "été"] and out.line_count == 2


def test_follow_stderr_and_output(sdk, daemon):
    p = _track(daemon, sdk.start_process(
        "sh", ["-c", "echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2"]))
    assert [e.line for e in sdk.follow_stderr(p.pid)] == ["e1"]
    out = list(sdk.follow_output(p.pid))
    assert [(e.line, e.stream) for e in out] == [("o1", "stdout"), ("e1", "stderr"), ("o2", "stdout")]
    assert sdk.get_stdout(p.pid).lines == ["o1", "o2"]
    err = sdk.get_stderr(p.pid)
    assert err.lines == ["e1"] and err.line_count == 1 and err.pid == p.pid
    allout = sdk.get_output(p.pid)
    assert allout.lines == ["o1", "e1", "o2"] and allout.line_count == 3


def test_output_modes_discard(sdk, daemon):
    p = _track(daemon, sdk.start_process("sh", ["-c", "echo out; echo err >&2"],
                                         stdout_mode=OutputMode.DISCARD))
    _wait_done(sdk, p.pid)
    assert sdk.get_stdout(p.pid).lines == []
    assert sdk.get_stderr(p.pid).lines == ["err"]
    p = _track(daemon, sdk.start_process("sh", ["-c", "echo out; echo err >&2"],
                                         stderr_mode=OutputMode.DISCARD))
    _wait_done(sdk, p.pid)
    assert sdk.get_stdout(p.pid).lines == ["out"]
    assert sdk.get_stderr(p.pid).lines == []


def test_list_and_get(sdk, daemon):
    a = _track(daemon, sdk.start_process("sleep", ["30"]))
    b = _track(daemon, sdk.start_process("true"))
    _wait_done(sdk, b.pid)
    procs = {p.pid: p for p in sdk.list_processes()}
    assert procs[a.pid].status == ProcessStatus.RUNNING
    assert procs[b.pid].status == ProcessStatus.EXITED and procs[b.pid].exit_code == 0
    g = sdk.get_process(a.pid)
    assert g.pid == a.pid and g.command == "sleep" and g.args == ["30"]
    assert sdk.get_process(str(a.pid)).pid == a.pid


def test_send_signal(sdk, daemon):
    p = _track(daemon, sdk.start_process("sleep", ["30"]))
    r = sdk.send_signal(p.pid, 15)
    assert r.success is True
    done = _wait_done(sdk, p.pid)
    assert done.status == ProcessStatus.SIGNALED
    assert done.signal == 15
    assert done.exit_code is None


def test_kill_process(sdk, daemon):
    p = _track(daemon, sdk.start_process("sleep", ["30"]))
    assert sdk.kill_process(p.pid).value is None
    done = _wait_done(sdk, p.pid)
    assert done.status == ProcessStatus.SIGNALED and done.signal == 9
    # killing an exited process is fine
    sdk.kill_process(p.pid)
    assert sdk.get_process(p.pid).signal == 9


def test_follow_output_live(sdk, daemon):
    p = _track(daemon, sdk.start_process(
        "sh", ["-c", "i=1; while [ $i -le 20 ]; do echo n$i; i=$((i+1)); sleep 0.02; done"]))
    ev = list(sdk.follow_output(p.pid))
    assert [e.line for e in ev] == [f"n{i}" for i in range(1, 21)]
    assert all(e.stream == "stdout" for e in ev)
    ts = [e.timestamp for e in ev]
    assert ts == sorted(ts)


@pytest.mark.skipif(not (os.geteuid() == 0 and "nobody" in {p.pw_name for p in pwd.getpwall()}),
                    reason="needs root and user nobody")
def test_user_nobody(sdk, daemon):
    p = _track(daemon, sdk.start_process("id", ["-u"], user="nobody"))
    assert [e.line for e in sdk.follow_stdout(p.pid)] == ["65534"]
    p = _track(daemon, sdk.start_process("id", ["-u"], user={"uid": 65534, "gid": 65534}))
    assert [e.line for e in sdk.follow_stdout(p.pid)] == ["65534"]


# --------------------------------------------------------------------------- errors


def _raises(fn, status, code):
    with pytest.raises(RemoteAPIError) as ei:
        fn()
    e = ei.value
    assert e.status_code == status, (e.status_code, e.message)
    assert e.code == code, (e.code, e.message)
    return e


def test_errors_unknown_process(sdk):
    _raises(lambda: sdk.get_process(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.get_stdout(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.get_output(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.send_signal(NO_SUCH_PID, 15), 404, "NOT_FOUND")
    _raises(lambda: sdk.kill_process(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.write_stdin(NO_SUCH_PID, b"x"), 404, "NOT_FOUND")
    _raises(lambda: sdk.close_stdin(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.get_process("no-such-name"), 404, "NOT_FOUND")


def test_errors_follow_unknown(sdk):
    _raises(lambda: sdk.follow_stdout(NO_SUCH_PID), 404, "NOT_FOUND")
    _raises(lambda: sdk.follow_output(NO_SUCH_PID), 404, "NOT_FOUND")


def test_errors_400(sdk, daemon):
    p = _track(daemon, sdk.start_process("sleep", ["30"]))
    _raises(lambda: sdk.send_signal(p.pid, 0), 400, "INVALID_SIGNAL")
    _raises(lambda: sdk.send_signal(p.pid, 99), 400, "INVALID_SIGNAL")
    _raises(lambda: sdk.write_stdin(p.pid, b"x"), 400, "STDIN_NOT_WRITABLE")
    _raises(lambda: sdk.close_stdin(p.pid), 400, "STDIN_NOT_WRITABLE")
    q = _track(daemon, sdk.start_process("true"))
    _wait_done(sdk, q.pid)
    _raises(lambda: sdk.send_signal(q.pid, 15), 400, "PROCESS_NOT_RUNNING")


def test_errors_spawn_and_user(sdk):
    e = _raises(lambda: sdk.start_process("/nonexistent/xyz"), 500, "SPAWN_FAILED")
    assert "No such file or directory" in e.message
    _raises(lambda: sdk.start_process("true", user="no_such_user_xyz"), 500, "USER_NOT_FOUND")


def test_wrong_api_key(daemon):
    bad = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key="wrong-key")
    try:
        t0 = time.monotonic()
        _raises(lambda: bad.health(), 401, "UNAUTHORIZED")
        _raises(lambda: bad.list_processes(), 401, "UNAUTHORIZED")
        _raises(lambda: bad.start_process("true"), 401, "UNAUTHORIZED")
        assert time.monotonic() - t0 < 5, "401 must not be retried"
    finally:
        bad.close()


def test_no_api_key(daemon):
    bad = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=None)
    try:
        _raises(lambda: bad.daemon_info(), 401, "UNAUTHORIZED")
    finally:
        bad.close()


def test_localhost_proxy_url(daemon):
    """`localhost` also gets the `<id>.local` Host header; the daemon must not care."""
    sb = Sandbox(identifier="other-id", proxy_url=f"http://localhost:{daemon.port}", api_key=daemon.token)
    try:
        assert sb.health().healthy is True
    finally:
        sb.close()


def test_request_timeout_header_accepted(daemon):
    sb = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=daemon.token,
                 request_timeout=5.0)
    try:
        p = _track(daemon, sb.start_process("echo", ["t"]))
        assert [e.line for e in sb.follow_stdout(p.pid)] == ["t"]
    finally:
        sb.close()


def _sdk_for(d):
    return Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{d.port}", api_key=d.token)


def test_sdk_tolerates_gap_events(daemon_factory):
    d = daemon_factory("--journal-bytes", "65536")
    sb = _sdk_for(d)
    try:
        p = sb.start_process("seq", ["1", "50000"])
        d.started.append(p.pid)
        _wait_done(sb, p.pid)
        lines = [e.line for e in sb.follow_stdout(p.pid)]
        assert lines and lines[-1] == "50000"
        assert lines == [str(i) for i in range(int(lines[0]), 50001)]
        assert int(lines[0]) > 1
        got = sb.get_stdout(p.pid)
        assert got.lines == lines and got.line_count == len(lines)
    finally:
        sb.close()


def test_sdk_tolerates_keepalive_comments(daemon_factory):
    d = daemon_factory("--sse-keepalive-ms", "200")
    sb = _sdk_for(d)
    try:
        p = sb.start_process("sh", ["-c", "sleep 1; echo a; sleep 0.6; echo b >&2"])
        d.started.append(p.pid)
        ev = list(sb.follow_output(p.pid))
        assert [(e.line, e.stream) for e in ev] == [("a", "stdout"), ("b", "stderr")]
    finally:
        sb.close()


def test_sdk_invalid_utf8_and_long_lines(daemon_factory):
    d = daemon_factory("--max-line-bytes", "100")
    sb = _sdk_for(d)
    try:
        p = sb.start_process("sh", ["-c", r"printf 'bad\377\n'; head -c 250 /dev/zero | tr '\000' L; echo"])
        d.started.append(p.pid)
        lines = [e.line for e in sb.follow_stdout(p.pid)]
        assert lines[0] == "bad\ufffd"
        assert "".join(lines[1:]) == "L" * 250 and len(lines) == 4
    finally:
        sb.close()
