"""Every endpoint and error path of the process API over real sockets."""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import (
    DAEMON_ENV_MARKER,
    DAEMON_ENV_OVERRIDE,
    NO_SUCH_PID,
    TENDD_BIN,
    Daemon,
    RawConn,
    assert_error,
    build_request,
    free_port,
    chunked,
    gone_or_zombie,
    proc_state,
    wait_for,
)

P = "/api/v1/processes"
IS_ROOT = os.geteuid() == 0


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# =========================================================================== auth


AUTH_ROUTES = [
    ("GET", "/api/v1/health", None),
    ("GET", "/api/v1/info", None),
    ("GET", P, None),
    ("POST", P, {"command": "true"}),
    ("GET", f"{P}/1", None),
    ("DELETE", f"{P}/1", None),
    ("POST", f"{P}/1/signal", {"signal": 15}),
    ("GET", f"{P}/1/stdout", None),
    ("GET", f"{P}/1/output/follow", None),
    ("POST", f"{P}/1/stdin/close", None),
]


@pytest.mark.parametrize("method,path,body", AUTH_ROUTES, ids=[f"{m} {p}" for m, p, _ in AUTH_ROUTES])
@pytest.mark.parametrize("auth", ["missing", "wrong", "basic", "prefix", "empty-bearer"])
def test_auth_required(daemon, method, path, body, auth):
    token = {
        "missing": Daemon.NO_TOKEN,
        "wrong": "x" * len(daemon.token),
        "basic": None,
        "prefix": daemon.token[:-1],
        "empty-bearer": "",
    }[auth]
    headers = {"Authorization": f"Basic {daemon.token}"} if auth == "basic" else None
    before = len(daemon.get(P).json["processes"])
    r = daemon.request(method, path, json_body=body, token=token, headers=headers)
    assert_error(r, 401, "UNAUTHORIZED")
    if method == "POST" and path == P:
        assert len(daemon.get(P).json["processes"]) == before, "unauthenticated start spawned a process"


def test_auth_token_not_accepted_in_query(daemon):
    r = daemon.get(f"/api/v1/health?token={daemon.token}", token=Daemon.NO_TOKEN)
    assert_error(r, 401, "UNAUTHORIZED")


def test_auth_scheme_case_insensitive_and_routing_headers_ignored(daemon):
    r = daemon.get("/api/v1/health", headers={
        "Authorization": f"Bearer {daemon.token}",
        "Host": "test.local",
        "X-Tensorlake-Sandbox-Id": "test",
        "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
    })
    assert r.status == 200, r
    assert r.json == {"healthy": True}


# =========================================================================== health / info


def test_health(daemon):
    r = daemon.get("/api/v1/health")
    assert r.status == 200
    assert "application/json" in r.header("content-type")
    assert r.json == {"healthy": True}


def test_info_counts(daemon_factory):
    d = daemon_factory()
    r = d.get("/api/v1/info")
    assert r.status == 200
    info = r.json
    assert set(info) >= {"version", "uptime_secs", "running_processes", "total_processes"}
    assert isinstance(info["version"], str) and info["version"]
    assert isinstance(info["uptime_secs"], int) and 0 <= info["uptime_secs"] < 60
    assert info["running_processes"] == 0 and info["total_processes"] == 0
    a = d.start("sleep", ["30"])
    b = d.start("sleep", ["30"])
    c = d.start("true")
    d.wait_exit(c["pid"])
    info = d.get("/api/v1/info").json
    assert info["running_processes"] == 2, info
    assert info["total_processes"] == 3, info
    assert d.request("DELETE", f"{P}/{a['pid']}").status == 204
    d.wait_exit(a["pid"])
    info = d.get("/api/v1/info").json
    assert info["running_processes"] == 1, info
    assert info["total_processes"] == 3, info
    del b


# =========================================================================== start


def test_start_echo_processinfo_shape(daemon):
    t0 = int(time.time() * 1000)
    r = daemon.start_raw({"command": "echo", "args": ["hello", "world"]})
    assert r.status == 201, r
    assert "application/json" in r.header("content-type")
    info = r.json
    for key in ("pid", "handle", "status", "exit_code", "signal", "oom_killed", "stdin_writable",
                "command", "args", "started_at", "ended_at", "managed"):
        assert key in info, f"ProcessInfo lacks {key}: {info}"
    assert isinstance(info["handle"], int)
    assert info["command"] == "echo"
    assert info["args"] == ["hello", "world"]
    assert info["status"] in ("running", "exited")
    assert info["oom_killed"] is False
    assert info["stdin_writable"] is False
    assert info["managed"] is None
    assert abs(info["started_at"] - t0) < 10_000, (info["started_at"], t0)
    done = daemon.wait_exit(info["pid"])
    assert done["status"] == "exited"
    assert done["exit_code"] == 0
    assert done["signal"] is None
    assert isinstance(done["ended_at"], int) and done["ended_at"] >= done["started_at"]
    assert done["pid"] == info["pid"] and done["handle"] == info["handle"]
    assert daemon.lines(info["pid"]) == ["hello world"]


def test_handles_are_distinct(daemon):
    a = daemon.start("true")
    b = daemon.start("true")
    assert a["handle"] != b["handle"]


def test_args_passed_verbatim(daemon):
    weird = ["a b", "", "$HOME", "'q'", '"dq"', "é€", "--flag=x;y"]
    p = daemon.start("printf", ["%s|\\n"] + weird)
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"]) == [f"{w}|" for w in weird]


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_exit_codes(daemon, code):
    p = daemon.sh(f"exit {code}")
    i = daemon.wait_exit(p["pid"])
    assert i["status"] == "exited"
    assert i["exit_code"] == code
    assert i["signal"] is None


def test_env_merged_over_daemon_env(daemon):
    p = daemon.start("env", env={"FOO": "bar baz", DAEMON_ENV_OVERRIDE[0]: "request-value"})
    daemon.wait_exit(p["pid"])
    lines = daemon.lines(p["pid"])
    assert "FOO=bar baz" in lines
    assert f"{DAEMON_ENV_MARKER[0]}={DAEMON_ENV_MARKER[1]}" in lines, "daemon env not inherited"
    assert f"{DAEMON_ENV_OVERRIDE[0]}=request-value" in lines
    assert f"{DAEMON_ENV_OVERRIDE[0]}={DAEMON_ENV_OVERRIDE[1]}" not in lines
    assert not any(daemon.token in l for l in lines), "token leaked into child environment"


def test_working_dir(daemon, tmp_path):
    p = daemon.start("pwd", working_dir=str(tmp_path))
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"]) == [str(tmp_path)]


def test_working_dir_missing_is_spawn_failed(daemon):
    r = daemon.start_raw({"command": "true", "working_dir": "/nonexistent/dir/xyz"})
    assert_error(r, 500, "SPAWN_FAILED", mentions="No such file or directory")


def test_command_not_found(daemon):
    r = daemon.start_raw({"command": "/nonexistent/binary-xyz"})
    assert_error(r, 500, "SPAWN_FAILED", mentions="No such file or directory")
    r = daemon.start_raw({"command": "no-such-command-in-path-xyz"})
    assert_error(r, 500, "SPAWN_FAILED")


def test_command_not_executable(daemon, tmp_path):
    f = tmp_path / "notexec.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    os.chmod(f, 0o644)
    r = daemon.start_raw({"command": str(f)})
    assert_error(r, 500, "SPAWN_FAILED", mentions="Permission denied")


def test_command_relative_to_path(daemon):
    p = daemon.start("sh", ["-c", "echo $0"])
    i = daemon.wait_exit(p["pid"])
    assert i["exit_code"] == 0
    out = daemon.lines(p["pid"])
    assert len(out) == 1 and out[0].endswith("sh"), out


def test_stdout_discard(daemon):
    p = daemon.sh("echo out; echo err >&2", stdout_mode="discard")
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"], "stdout") == []
    assert daemon.lines(p["pid"], "stderr") == ["err"]
    assert daemon.lines(p["pid"], "output") == ["err"]


def test_stderr_discard(daemon):
    p = daemon.sh("echo out; echo err >&2", stderr_mode="discard")
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"], "stdout") == ["out"]
    assert daemon.lines(p["pid"], "stderr") == []


def test_discard_fds_are_dev_null(daemon):
    p = daemon.start("sleep", ["30"], stdout_mode="discard", stderr_mode="discard")
    pid = p["pid"]
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/2") == "/dev/null"


def test_explicit_default_modes(daemon):
    p = daemon.start("sleep", ["30"], stdin_mode="closed", stdout_mode="capture", stderr_mode="capture")
    pid = p["pid"]
    assert p["stdin_writable"] is False
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")
    assert os.readlink(f"/proc/{pid}/fd/2").startswith("pipe:")


def test_child_is_session_and_group_leader(daemon):
    p = daemon.start("sleep", ["30"])
    pid = p["pid"]
    assert os.getpgid(pid) == pid
    assert os.getsid(pid) == pid
    assert os.getpgid(pid) != os.getpgid(daemon.pid)


def test_child_has_only_std_fds(daemon):
    p = daemon.start("sleep", ["30"])
    pid = p["pid"]

    def listing():
        out = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                pass
        return out

    # sleep's own libc start-up may hold a file (e.g. the gconv cache) for a moment;
    # an fd inherited from the daemon stays forever.
    try:
        wait_for(lambda: sorted(listing()) == [0, 1, 2], 2.0)
    except AssertionError:
        raise AssertionError(f"child holds fds beyond 0,1,2: {listing()}") from None


def test_child_signal_state_is_default(daemon):
    """The child must not inherit a blocked signal mask or ignored signals from the daemon."""
    p = daemon.start("sleep", ["30"])
    with open(f"/proc/{p['pid']}/status") as f:
        st = dict(l.split(":\t", 1) for l in f.read().splitlines() if ":\t" in l)
    assert int(st["SigBlk"], 16) == 0, f"child has blocked signals: {st['SigBlk']}"
    assert int(st["SigIgn"], 16) == 0, f"child has ignored signals: {st['SigIgn']}"


# --------------------------------------------------------------------------- user


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch users")
@pytest.mark.parametrize("user", ["root", "0", "0:0", {"uid": 0}, {"name": "root"}, {"uid": 0, "gid": 0}],
                         ids=["root", "0", "0:0", "uid0", "name-root", "uid0gid0"])
def test_user_root_forms(daemon, user):
    p = daemon.sh("id -u; id -g", user=user)
    i = daemon.wait_exit(p["pid"])
    assert i["exit_code"] == 0, daemon.lines(p["pid"], "output")
    assert daemon.lines(p["pid"]) == ["0", "0"]


@pytest.mark.skipif(not (IS_ROOT and _has_user("nobody")), reason="needs root and user nobody")
@pytest.mark.parametrize("user", ["nobody", "65534", {"name": "nobody"}, {"uid": 65534}],
                         ids=["name", "uid-str", "obj-name", "obj-uid"])
def test_user_nobody(daemon, user):
    pw = pwd.getpwnam("nobody")
    p = daemon.sh("id -u; id -g; id -G", user=user)
    i = daemon.wait_exit(p["pid"])
    assert i["exit_code"] == 0, daemon.lines(p["pid"], "output")
    out = daemon.lines(p["pid"])
    assert out[0] == str(pw.pw_uid) == "65534"
    assert out[1] == str(pw.pw_gid)
    assert "0" not in out[2].split(), f"root supplementary group kept: {out[2]!r}"


@pytest.mark.skipif(not (IS_ROOT and _has_user("nobody")), reason="needs root and user nobody")
def test_user_uid_gid_string(daemon):
    p = daemon.sh("id -u; id -g", user="65534:65534")
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"]) == ["65534", "65534"]


@pytest.mark.parametrize("user", ["no_such_user_xyz", {"name": "no_such_user_xyz"}], ids=["str", "obj"])
def test_user_not_found(daemon, user):
    before = len(daemon.get(P).json["processes"])
    r = daemon.start_raw({"command": "true", "user": user})
    assert_error(r, 500, "USER_NOT_FOUND", mentions="no_such_user_xyz")
    assert len(daemon.get(P).json["processes"]) == before


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize("body", [b"{bad json", b"", b"null", b"[]", b'"str"', b"{\"command\": \"true\"} trailing"],
                         ids=["garbage", "empty", "null", "array", "string", "trailing"])
def test_start_invalid_json(daemon, body):
    r = daemon.request("POST", P, body=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("spec,field", [
    ({}, "command"),
    ({"args": ["x"]}, "command"),
    ({"command": 5}, "command"),
    ({"command": None}, "command"),
    ({"command": "echo", "args": "x"}, "args"),
    ({"command": "echo", "args": [1, 2]}, "args"),
    ({"command": "echo", "env": ["A=1"]}, "env"),
    ({"command": "echo", "env": {"A": 1}}, "env"),
    ({"command": "echo", "working_dir": 3}, "working_dir"),
    ({"command": "echo", "stdin_mode": "bogus"}, "stdin_mode"),
    ({"command": "echo", "stdout_mode": 1}, "stdout_mode"),
    ({"command": "echo", "stderr_mode": "nope"}, "stderr_mode"),
    ({"command": "echo", "user": 12}, "user"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_start_invalid_fields(daemon, spec, field):
    before = len(daemon.get(P).json["processes"])
    r = daemon.start_raw(spec)
    assert_error(r, 400, "INVALID_REQUEST", mentions=field)
    assert len(daemon.get(P).json["processes"]) == before


def test_start_without_content_type_still_parses_or_rejects_cleanly(daemon):
    r = daemon.request("POST", P, body=b'{"command":"true"}', headers={"Content-Type": "text/plain"})
    assert r.status in (201, 400), r
    if r.status == 400:
        assert_error(r, 400, "INVALID_REQUEST")


def test_body_too_large(daemon_factory):
    d = daemon_factory("--max-body-bytes", "1024")
    body = json.dumps({"command": "echo", "args": ["x" * 4000]}).encode()
    c = RawConn(d.port)
    c.send(build_request("POST", P, token=d.token, body=b"", headers={
        "Content-Type": "application/json", "Content-Length": str(len(body))}))
    readable, _w, _x = select.select([c.sock], [], [], 2.0)
    if not readable:  # daemon wants the body before answering
        try:
            c.send(body)
        except OSError:
            pass
    resp = c.read_response()
    assert_error(resp, 413, "BODY_TOO_LARGE")
    assert d.get(P).json["processes"] == []
    # a body just under the limit still works
    ok = d.start_raw({"command": "echo", "args": ["y" * 500]})
    assert ok.status == 201, ok


def test_body_too_large_chunked(daemon_factory):
    d = daemon_factory("--max-body-bytes", "1024")
    c = RawConn(d.port)
    c.send(build_request("POST", P, token=d.token, headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
    piece = b'{"command":"echo","args":["' + b"x" * 600
    c.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
    for _ in range(4):
        r, _w, _x = select.select([c.sock], [], [], 0.3)
        if r:
            break
        try:
            c.send(b"258\r\n" + b"x" * 600 + b"\r\n")
        except OSError:
            break
    assert_error(c.read_response(), 413, "BODY_TOO_LARGE")
    assert d.get(P).json["processes"] == []


def test_default_body_limit_allows_large_args(daemon):
    big = "z" * 100_000  # single argv strings are limited to 128 KiB by the kernel
    p = daemon.start("sh", ["-c", 'printf %s "$1" | wc -c', "sh", big, "y" * 100_000, "w" * 100_000])
    daemon.wait_exit(p["pid"])
    assert daemon.lines(p["pid"]) == ["100000"]


# =========================================================================== list / get


def test_list_includes_running_and_exited(daemon):
    a = daemon.start("sleep", ["30"])
    b = daemon.start("true")
    daemon.wait_exit(b["pid"])
    r = daemon.get(P)
    assert r.status == 200
    procs = {p["pid"]: p for p in r.json["processes"]}
    assert procs[a["pid"]]["status"] == "running"
    assert procs[b["pid"]]["status"] == "exited"
    assert procs[b["pid"]]["exit_code"] == 0
    assert procs[a["pid"]]["command"] == "sleep" and procs[a["pid"]]["args"] == ["30"]


def test_get_unknown_pid(daemon):
    assert_error(daemon.get(f"{P}/{NO_SUCH_PID}"), 404, "NOT_FOUND")
    assert_error(daemon.get(f"{P}/some-name"), 404, "NOT_FOUND")


@pytest.mark.parametrize("method,suffix,body", [
    ("GET", "", None),
    ("DELETE", "", None),
    ("POST", "/signal", {"signal": 15}),
    ("POST", "/stdin", b"data"),
    ("POST", "/stdin/close", None),
    ("GET", "/stdout", None),
    ("GET", "/stderr", None),
    ("GET", "/output", None),
    ("GET", "/stdout/follow", None),
    ("GET", "/stderr/follow", None),
    ("GET", "/output/follow", None),
], ids=lambda v: str(v))
def test_unknown_pid_everywhere(daemon, method, suffix, body):
    kw = {"json_body": body} if isinstance(body, dict) else {"body": body}
    r = daemon.request(method, f"{P}/{NO_SUCH_PID}{suffix}", **kw)
    assert_error(r, 404, "NOT_FOUND")


# =========================================================================== routing


@pytest.mark.parametrize("path", ["/", "/api/v1/nope", "/api/v2/health", f"{P}/1/unknown", "/api/v1/processes/1/stdout/follow/x"])
def test_unknown_route(daemon, path):
    assert_error(daemon.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/health"),
    ("DELETE", "/api/v1/info"),
    ("PUT", P),
    ("PATCH", P),
    ("PUT", "{pid}"),
    ("GET", "{pid}/signal"),
    ("GET", "{pid}/stdin"),
    ("DELETE", "{pid}/stdout"),
    ("POST", "{pid}/output/follow"),
])
def test_method_not_allowed(daemon, method, path):
    p = daemon.start("sleep", ["30"])
    path = path.replace("{pid}", f"{P}/{p['pid']}")
    r = daemon.request(method, path, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert daemon.info(p["pid"])["status"] == "running"


def test_query_string_ignored_on_routes(daemon):
    r = daemon.get("/api/v1/health?x=1")
    assert r.status == 200 and r.json == {"healthy": True}


# =========================================================================== signal / kill


def test_signal_term(daemon):
    p = daemon.start("sleep", ["30"])
    r = daemon.post(f"{P}/{p['pid']}/signal", {"signal": 15})
    assert r.status == 200, r
    assert r.json == {"success": True}
    i = daemon.wait_exit(p["pid"])
    assert i["status"] == "signaled"
    assert i["signal"] == 15
    assert i["exit_code"] is None
    assert i["ended_at"] is not None


def test_signal_reaches_process_group(daemon):
    p = daemon.sh("sleep 100 & echo $!; wait")
    lines = daemon.wait_output(p["pid"], lambda ls: len(ls) >= 1)
    grandchild = int(lines[0])
    assert os.getpgid(grandchild) == p["pid"]
    assert daemon.post(f"{P}/{p['pid']}/signal", {"signal": 15}).status == 200
    daemon.wait_exit(p["pid"])
    wait_for(lambda: gone_or_zombie(grandchild), 5, what="grandchild to die from group signal")


def test_signal_ignored_then_delete(daemon):
    p = daemon.sh("trap '' TERM; echo ready; while :; do sleep 0.1; done")
    daemon.wait_output(p["pid"], lambda ls: ls == ["ready"])
    r = daemon.post(f"{P}/{p['pid']}/signal", {"signal": 15})
    assert r.status == 200 and r.json == {"success": True}
    time.sleep(0.5)
    assert daemon.info(p["pid"])["status"] == "running", "SIGTERM-ignoring process died (escalation?)"
    r = daemon.request("DELETE", f"{P}/{p['pid']}")
    assert r.status == 204, r
    assert r.body == b""
    i = daemon.wait_exit(p["pid"], 5)
    assert i["status"] == "signaled" and i["signal"] == 9 and i["exit_code"] is None


@pytest.mark.parametrize("sig", [0, 65, -1, 1000])
def test_invalid_signal(daemon, sig):
    p = daemon.start("sleep", ["30"])
    assert_error(daemon.post(f"{P}/{p['pid']}/signal", {"signal": sig}), 400, "INVALID_SIGNAL")
    assert daemon.info(p["pid"])["status"] == "running"


@pytest.mark.parametrize("body", [{}, {"signal": "TERM"}, {"signal": 1.5}, {"signal": None}],
                         ids=["missing", "string", "float", "null"])
def test_signal_bad_body(daemon, body):
    p = daemon.start("sleep", ["30"])
    assert_error(daemon.post(f"{P}/{p['pid']}/signal", body), 400, "INVALID_REQUEST", mentions="signal")
    assert daemon.info(p["pid"])["status"] == "running"


def test_signal_64_is_valid(daemon):
    p = daemon.start("sleep", ["30"])
    r = daemon.post(f"{P}/{p['pid']}/signal", {"signal": 64})
    assert r.status == 200 and r.json == {"success": True}
    i = daemon.wait_exit(p["pid"])
    assert i["status"] == "signaled" and i["signal"] == 64


def test_signal_stop_cont_keeps_running(daemon):
    p = daemon.start("sleep", ["30"])
    assert daemon.post(f"{P}/{p['pid']}/signal", {"signal": signal.SIGSTOP}).status == 200
    wait_for(lambda: proc_state(p["pid"]) == "T", 5, what="stopped state")
    assert daemon.info(p["pid"])["status"] == "running"
    assert daemon.post(f"{P}/{p['pid']}/signal", {"signal": signal.SIGCONT}).status == 200
    wait_for(lambda: proc_state(p["pid"]) in ("S", "R"), 5, what="continued")
    assert daemon.info(p["pid"])["status"] == "running"


def test_signal_exited_process(daemon):
    p = daemon.start("true")
    daemon.wait_exit(p["pid"])
    assert_error(daemon.post(f"{P}/{p['pid']}/signal", {"signal": 15}), 400, "PROCESS_NOT_RUNNING")


def test_delete_running_keeps_record(daemon):
    p = daemon.sh("echo before; exec sleep 30")
    daemon.wait_output(p["pid"], lambda ls: ls == ["before"])
    r = daemon.request("DELETE", f"{P}/{p['pid']}")
    assert r.status == 204
    i = daemon.wait_exit(p["pid"], 5)
    assert i["status"] == "signaled" and i["signal"] == 9
    wait_for(lambda: gone_or_zombie(p["pid"]), 5, what="process gone")
    assert daemon.lines(p["pid"]) == ["before"], "output not readable after DELETE"
    assert p["pid"] in [x["pid"] for x in daemon.get(P).json["processes"]]
    # DELETE again is still 204 and changes nothing
    assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
    assert daemon.info(p["pid"])["signal"] == 9


def test_delete_kills_process_group(daemon):
    p = daemon.sh("sleep 100 & echo $!; sleep 100 & echo $!; wait")
    lines = daemon.wait_output(p["pid"], lambda ls: len(ls) >= 2)
    kids = [int(x) for x in lines]
    assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
    daemon.wait_exit(p["pid"], 5)
    for k in kids:
        wait_for(lambda: gone_or_zombie(k), 5, what=f"group member {k} to die")


def test_delete_exited_process(daemon):
    p = daemon.sh("exit 3")
    daemon.wait_exit(p["pid"])
    r = daemon.request("DELETE", f"{P}/{p['pid']}")
    assert r.status == 204, r
    i = daemon.info(p["pid"])
    assert i["status"] == "exited" and i["exit_code"] == 3 and i["signal"] is None


# =========================================================================== stdin


def test_stdin_pipe_roundtrip(daemon):
    p = daemon.start("cat", stdin_mode="pipe")
    assert p["stdin_writable"] is True
    pid = p["pid"]
    assert os.readlink(f"/proc/{pid}/fd/0").startswith("pipe:")
    r = daemon.request("POST", f"{P}/{pid}/stdin", body=b"hello\nwor")
    assert r.status == 204, r
    assert daemon.request("POST", f"{P}/{pid}/stdin", body=b"ld\n").status == 204
    daemon.wait_output(pid, lambda ls: ls == ["hello", "world"])
    assert daemon.info(pid)["status"] == "running"
    r = daemon.request("POST", f"{P}/{pid}/stdin/close")
    assert r.status == 204, r
    i = daemon.wait_exit(pid)
    assert i["exit_code"] == 0
    assert i["stdin_writable"] is False
    # idempotent close
    assert daemon.request("POST", f"{P}/{pid}/stdin/close").status == 204


def test_stdin_write_after_close(daemon):
    p = daemon.start("sleep", ["30"], stdin_mode="pipe")
    pid = p["pid"]
    assert daemon.request("POST", f"{P}/{pid}/stdin/close").status == 204
    assert daemon.info(pid)["stdin_writable"] is False
    assert daemon.request("POST", f"{P}/{pid}/stdin/close").status == 204
    assert_error(daemon.request("POST", f"{P}/{pid}/stdin", body=b"x"), 400, "STDIN_NOT_WRITABLE")


def test_stdin_eof_seen_by_child(daemon):
    p = daemon.sh("read a; echo got:$a; read b || echo eof", stdin_mode="pipe")
    pid = p["pid"]
    assert daemon.request("POST", f"{P}/{pid}/stdin", body=b"one\n").status == 204
    daemon.wait_output(pid, lambda ls: ls == ["got:one"])
    assert daemon.request("POST", f"{P}/{pid}/stdin/close").status == 204
    i = daemon.wait_exit(pid)
    assert i["exit_code"] == 0
    assert daemon.lines(pid) == ["got:one", "eof"]


def test_stdin_not_pipe(daemon):
    p = daemon.start("sleep", ["30"])
    assert_error(daemon.request("POST", f"{P}/{p['pid']}/stdin", body=b"x"), 400, "STDIN_NOT_WRITABLE")
    assert_error(daemon.request("POST", f"{P}/{p['pid']}/stdin/close"), 400, "STDIN_NOT_WRITABLE")


def test_stdin_after_exit(daemon):
    p = daemon.start("head", ["-n", "1"], stdin_mode="pipe")
    pid = p["pid"]
    assert daemon.request("POST", f"{P}/{pid}/stdin", body=b"first\n").status == 204
    i = daemon.wait_exit(pid)
    assert i["exit_code"] == 0 and i["stdin_writable"] is False
    assert daemon.lines(pid) == ["first"]
    assert_error(daemon.request("POST", f"{P}/{pid}/stdin", body=b"late\n"), 400, "STDIN_NOT_WRITABLE")


def test_stdin_large_and_binary(daemon):
    p = daemon.start("wc", ["-c"], stdin_mode="pipe")
    pid = p["pid"]
    blob = bytes(range(256)) * 1024  # 256 KiB incl. NUL and high bytes
    for i in range(0, len(blob), 65536):
        assert daemon.request("POST", f"{P}/{pid}/stdin", body=blob[i:i + 65536]).status == 204
    assert daemon.request("POST", f"{P}/{pid}/stdin/close").status == 204
    daemon.wait_exit(pid)
    assert daemon.lines(pid) == [str(len(blob))]


def test_stdin_to_child_not_reading_does_not_block_daemon(daemon):
    p = daemon.start("sleep", ["30"], stdin_mode="pipe")
    pid = p["pid"]
    # more than a pipe buffer; the daemon must queue or refuse, not stall its loop
    t0 = time.monotonic()
    try:
        daemon.request("POST", f"{P}/{pid}/stdin", body=b"x" * 300_000, timeout=3)
    except OSError:
        pass  # a write that waits for the child is acceptable; the daemon must stay responsive
    r = daemon.get("/api/v1/health", timeout=2)
    assert r.status == 200
    assert time.monotonic() - t0 < 6


def test_stdin_chunked_body(daemon):
    p = daemon.start("cat", stdin_mode="pipe")
    pid = p["pid"]
    c = RawConn(daemon.port)
    c.send(build_request("POST", f"{P}/{pid}/stdin", token=daemon.token,
                         headers={"Transfer-Encoding": "chunked"}) + chunked(b"ab", b"cd\n", b"ef\n"))
    r = c.read_response()
    assert r.status == 204, r
    daemon.wait_output(pid, lambda ls: ls == ["abcd", "ef"])


# =========================================================================== output GETs


def test_output_endpoints_shape(daemon):
    p = daemon.sh("echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2; sleep 0.1; echo e2 >&2")
    pid = p["pid"]
    daemon.wait_exit(pid)
    for which, expected in (("stdout", ["o1", "o2"]), ("stderr", ["e1", "e2"]), ("output", ["o1", "e1", "o2", "e2"])):
        r = daemon.get(f"{P}/{pid}/{which}")
        assert r.status == 200
        assert r.json == {"pid": pid, "lines": expected, "line_count": len(expected)}, which


# =========================================================================== record eviction


def test_max_exited_eviction(daemon_factory):
    d = daemon_factory("--max-exited", "2")
    runner = d.start("sleep", ["30"])
    done = []
    for i in range(4):
        p = d.sh(f"echo n{i}")
        d.wait_exit(p["pid"])
        done.append(p["pid"])
        time.sleep(0.02)
    assert_error(d.get(f"{P}/{done[0]}"), 404, "NOT_FOUND")
    assert_error(d.get(f"{P}/{done[1]}"), 404, "NOT_FOUND")
    assert_error(d.get(f"{P}/{done[0]}/stdout"), 404, "NOT_FOUND")
    assert_error(d.get(f"{P}/{done[1]}/output/follow"), 404, "NOT_FOUND")
    assert d.lines(done[2]) == ["n2"]
    assert d.lines(done[3]) == ["n3"]
    assert d.info(runner["pid"])["status"] == "running"
    pids = sorted(p["pid"] for p in d.get(P).json["processes"])
    assert pids == sorted([runner["pid"], done[2], done[3]])
    # the running one is never evicted, even when it later exits it joins the queue
    assert d.request("DELETE", f"{P}/{runner['pid']}").status == 204
    d.wait_exit(runner["pid"])
    assert_error(d.get(f"{P}/{done[2]}"), 404, "NOT_FOUND")
    assert d.info(runner["pid"])["signal"] == 9


# =========================================================================== HTTP layer


def test_keep_alive_sequential(daemon):
    c = RawConn(daemon.port)
    for _ in range(5):
        c.send(build_request("GET", "/api/v1/health", token=daemon.token))
        r = c.read_response()
        assert r.status == 200 and r.json == {"healthy": True}
    assert not c.is_closed(0.2)
    c.close()


def test_pipelining(daemon):
    p = daemon.sh("echo piped")
    daemon.wait_exit(p["pid"])
    c = RawConn(daemon.port)
    reqs = (build_request("GET", "/api/v1/health", token=daemon.token)
            + build_request("GET", f"{P}/{p['pid']}/stdout", token=daemon.token)
            + build_request("GET", f"{P}/{NO_SUCH_PID}", token=daemon.token)
            + build_request("POST", P, token=daemon.token, body=b'{"command":"echo","args":["pl"]}')
            + build_request("GET", "/api/v1/info", token=daemon.token))
    c.send(reqs)
    r1 = c.read_response()
    r2 = c.read_response()
    r3 = c.read_response()
    r4 = c.read_response()
    r5 = c.read_response()
    assert r1.status == 200 and r1.json == {"healthy": True}
    assert r2.status == 200 and r2.json["lines"] == ["piped"]
    assert_error(r3, 404, "NOT_FOUND")
    assert r4.status == 201 and r4.json["args"] == ["pl"]
    daemon.started.append(r4.json["pid"])
    assert r5.status == 200 and "version" in r5.json
    c.close()


def test_pipelining_byte_by_byte(daemon):
    c = RawConn(daemon.port)
    data = build_request("GET", "/api/v1/health", token=daemon.token) * 2
    for i in range(len(data)):
        c.send(data[i:i + 1])
    assert c.read_response().json == {"healthy": True}
    assert c.read_response().json == {"healthy": True}


def test_chunked_request_body_start(daemon):
    c = RawConn(daemon.port)
    body = b'{"command":"echo","args":["chunky"]}'
    c.send(build_request("POST", P, token=daemon.token, headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"}) + chunked(body[:5], body[5:17], body[17:]))
    r = c.read_response()
    assert r.status == 201, r
    daemon.started.append(r.json["pid"])
    daemon.wait_exit(r.json["pid"])
    assert daemon.lines(r.json["pid"]) == ["chunky"]
    # the connection stays usable after a chunked body
    c.send(build_request("GET", "/api/v1/health", token=daemon.token))
    assert c.read_response().status == 200


def test_connection_close_header(daemon):
    c = RawConn(daemon.port)
    c.send(build_request("GET", "/api/v1/health", token=daemon.token, headers={"Connection": "close"}))
    r = c.read_response()
    assert r.status == 200
    assert c.is_closed(2.0), "daemon kept the connection open after Connection: close"


def test_http10_closes(daemon):
    c = RawConn(daemon.port)
    c.send(f"GET /api/v1/health HTTP/1.0\r\nAuthorization: Bearer {daemon.token}\r\n\r\n".encode())
    r = c.read_response()
    assert r.status == 200 and r.json == {"healthy": True}
    assert c.is_closed(2.0)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nNoColonHeader\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    b"POST /api/v1/processes HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
], ids=["garbage", "no-target", "no-colon", "bad-cl", "dup-cl", "bad-chunk", "binary"])
def test_malformed_http(daemon, raw):
    c = RawConn(daemon.port)
    # add auth after the request line where there is one, so auth is not the reason
    if b"\r\n" in raw and raw.startswith((b"GET /", b"POST /")):
        line, rest = raw.split(b"\r\n", 1)
        raw = line + b"\r\nHost: x\r\nAuthorization: Bearer " + daemon.token.encode() + b"\r\n" + rest
    c.send(raw)
    r = c.read_response()
    assert_error(r, 400, "BAD_REQUEST")
    assert c.is_closed(2.0), "connection not closed after malformed request"
    assert daemon.get("/api/v1/health").status == 200


def test_headers_too_large(daemon):
    c = RawConn(daemon.port)
    c.send(f"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {daemon.token}\r\n".encode())
    answered = False
    for i in range(1024):  # up to ~1 MiB of headers
        r, _, _ = select.select([c.sock], [], [], 0)
        if r:
            answered = True
            break
        try:
            c.send(f"X-Filler-{i}: {'a' * 1000}\r\n".encode())
        except OSError:
            break
    resp = c.read_response()
    assert_error(resp, 431, "HEADERS_TOO_LARGE")
    assert daemon.get("/api/v1/health").status == 200


def test_single_huge_header_line(daemon):
    c = RawConn(daemon.port)
    c.send(f"GET /api/v1/health HTTP/1.1\r\nAuthorization: Bearer {daemon.token}\r\nX-Big: ".encode())
    for _ in range(256):
        r, _, _ = select.select([c.sock], [], [], 0)
        if r:
            break
        try:
            c.send(b"b" * 4096)
        except OSError:
            break
    assert_error(c.read_response(), 431, "HEADERS_TOO_LARGE")


@pytest.mark.timeout(40)
def test_max_connections(daemon_factory):
    d = daemon_factory("--max-connections", "4")
    held = []
    for _ in range(4):
        c = RawConn(d.port)
        c.send(build_request("GET", "/api/v1/health", token=d.token))
        assert c.read_response().status == 200
        held.append(c)
    # the fifth is refused, closed, or gets a 503 JSON then close
    try:
        extra = RawConn(d.port, timeout=3)
        try:
            extra.send(build_request("GET", "/api/v1/health", token=d.token))
            resp = extra.read_response()
        except (EOFError, ConnectionResetError, BrokenPipeError):
            resp = None
        except socket.timeout:
            pytest.fail("fifth connection neither served, refused, nor closed within 3 s")
        if resp is not None:
            assert resp.status == 503, f"fifth connection was served: {resp!r}"
            assert resp.json.get("code"), resp
            assert extra.is_closed(2.0)
        extra.close()
    except ConnectionRefusedError:
        pass
    # freeing one slot lets a new client in
    held.pop().close()

    def can_connect():
        try:
            c = RawConn(d.port, timeout=2)
            c.send(build_request("GET", "/api/v1/health", token=d.token))
            ok = c.read_response().status == 200
            c.close()
            return ok
        except (OSError, EOFError):
            return False

    wait_for(can_connect, 5, interval=0.2, what="a slot after closing one connection")
    for c in held:
        c.close()


def test_header_timeout_partial_request(daemon_factory):
    d = daemon_factory("--header-timeout-ms", "500")
    c = RawConn(d.port)
    t0 = time.monotonic()
    c.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    assert c.is_closed(4.0), "daemon did not drop a client stuck in its headers"
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed <= 3.0, elapsed
    if c.buf:
        status = int(c.buf.split(b" ", 2)[1])
        assert status == 408, c.buf


def test_header_timeout_trickle(daemon_factory):
    """Sending the header section one byte every 100 ms must not evade the timeout."""
    d = daemon_factory("--header-timeout-ms", "500")
    c = RawConn(d.port)
    data = build_request("GET", "/api/v1/health", token=d.token)
    t0 = time.monotonic()
    closed = False
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            closed = True
            break
        if c.is_closed(0.1):
            closed = True
            break
        if time.monotonic() - t0 > 4.0:
            break
    elapsed = time.monotonic() - t0
    if c.buf:
        assert c.buf.split(b" ", 2)[1] == b"408", c.buf
    if not closed:
        try:
            r = c.read_response()
        except (EOFError, ConnectionResetError):
            r = None
        assert r is None or r.status == 408, f"trickled headers were served after {elapsed:.1f}s: {r!r}"
    assert elapsed < 3.0, elapsed
    # other clients were served meanwhile and still are
    assert d.get("/api/v1/health").status == 200


def test_slow_client_does_not_block_others(daemon):
    c = RawConn(daemon.port)
    c.send(b"GET /api/v1/health HTTP/1.1\r\n")
    t0 = time.monotonic()
    for _ in range(5):
        assert daemon.get("/api/v1/health", timeout=2).status == 200
    assert time.monotonic() - t0 < 2.0
    c.close()


def test_unix_socket_listener(daemon_factory):
    d = daemon_factory(unix_socket=True)
    wait_for(lambda: os.path.exists(d.unix_path), 5, what="unix socket")
    c = RawConn(unix=d.unix_path)
    c.send(build_request("GET", "/api/v1/health", token=d.token))
    r = c.read_response()
    assert r.status == 200 and r.json == {"healthy": True}
    c.send(build_request("GET", "/api/v1/health", token="wrong"))
    assert_error(c.read_response(), 401, "UNAUTHORIZED")
    c.close()


# =========================================================================== daemon CLI


def _run_tendd(args, timeout=10):
    return subprocess.run([TENDD_BIN, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_refuses_missing_token_file(tmp_path):
    r = _run_tendd(["--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "absent")])
    assert r.returncode != 0
    assert r.stderr.strip(), "no message on stderr"


def test_refuses_empty_token_file(tmp_path):
    f = tmp_path / "empty"
    f.write_bytes(b"")
    os.chmod(f, 0o600)
    r = _run_tendd(["--listen", "127.0.0.1:0", "--token-file", str(f)])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_refuses_without_token_flag():
    r = _run_tendd(["--listen", "127.0.0.1:0"])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_logs_one_line_per_request(daemon_factory):
    d = daemon_factory()
    before = d.log_text(1 << 20).count("\n")
    for _ in range(3):
        d.get(f"/api/v1/processes/{NO_SUCH_PID}")
    time.sleep(0.2)
    log = d.log_text(1 << 20)
    assert log.count("\n") >= before + 3
    assert str(NO_SUCH_PID) in log or "404" in log


def test_sigterm_with_running_children(daemon_factory):
    d = daemon_factory()
    p = d.start("sleep", ["100"])
    rc = d.stop(15)
    try:
        assert rc is not None, "daemon did not exit within 15 s of SIGTERM while a child was running"
    finally:
        try:
            os.killpg(p["pid"], signal.SIGKILL)
        except OSError:
            pass


# =========================================================================== more edges


def test_many_children_exit_concurrently(daemon):
    """SIGCHLDs coalesce: every exit must still be recorded with its own code."""
    pids = {}
    for i in range(40):
        p = daemon.sh(f"sleep 0.2; exit {i}")
        pids[p["pid"]] = i
    for pid, code in pids.items():
        info = daemon.wait_exit(pid, 10)
        assert info["status"] == "exited" and info["exit_code"] == code, (pid, code, info)
    children = [c for c in os.listdir("/proc") if c.isdigit() and int(c) in pids and proc_state(int(c)) == "Z"]
    assert children == [], f"unreaped children: {children}"


@pytest.mark.parametrize("sig", [9, 11, 15], ids=["KILL", "SEGV", "TERM"])
def test_self_signaled(daemon, sig):
    p = daemon.sh(f"ulimit -c 0; kill -{sig} $$")
    i = daemon.wait_exit(p["pid"])
    assert i["status"] == "signaled" and i["signal"] == sig and i["exit_code"] is None, i


def test_exit_137_is_not_a_signal(daemon):
    p = daemon.sh("exit 137")
    i = daemon.wait_exit(p["pid"])
    assert i["status"] == "exited" and i["exit_code"] == 137 and i["signal"] is None


def test_stdin_write_after_child_closed_its_stdin(daemon):
    p = daemon.sh("exec 0<&-; echo closed; sleep 2", stdin_mode="pipe")
    pid = p["pid"]
    daemon.wait_output(pid, lambda ls: ls == ["closed"])
    r = daemon.request("POST", f"{P}/{pid}/stdin", body=b"x" * 70000)
    assert r.status in (204, 400), r
    if r.status == 400:
        assert_error(r, 400, "STDIN_NOT_WRITABLE")
    time.sleep(0.2)
    assert daemon.get("/api/v1/health").status == 200, "daemon hurt by EPIPE on a child's stdin"
    assert daemon.alive()


def test_delete_exited_leader_kills_leftover_group(daemon):
    """A leftover group member must not survive DELETE (the daemon may already have reaped it
    together with its leader, as Tensorlake reaps leftovers with the unit)."""
    p = daemon.sh("sleep 100 & echo $!")
    lines = daemon.wait_output(p["pid"], lambda ls: len(ls) == 1)
    orphan = int(lines[0])
    daemon.wait_exit(p["pid"])
    try:
        assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
        wait_for(lambda: gone_or_zombie(orphan), 3, what="leftover group member killed by DELETE")
        assert daemon.info(p["pid"])["status"] == "exited"
    finally:
        try:
            os.kill(orphan, signal.SIGKILL)
        except OSError:
            pass


def test_percent_encoded_pid(daemon):
    p = daemon.start("sleep", ["30"])
    enc = "".join(f"%{ord(c):02X}" for c in str(p["pid"]))
    r = daemon.get(f"{P}/{enc}")
    assert r.status == 200 and r.json["pid"] == p["pid"], r


@pytest.mark.parametrize("seg", ["99999999999999999999999", "0", "-1", "00001x"])
def test_weird_pid_segments(daemon, seg):
    assert_error(daemon.get(f"{P}/{seg}"), 404, "NOT_FOUND")
    assert daemon.get("/api/v1/health").status == 200


def test_get_with_body_keeps_connection_in_sync(daemon):
    c = RawConn(daemon.port)
    c.send(build_request("GET", "/api/v1/health", token=daemon.token, body=b"GET / HTTP/1.1\r\n\r\n")
           + build_request("GET", "/api/v1/info", token=daemon.token))
    assert c.read_response().json == {"healthy": True}
    assert "version" in c.read_response().json


def test_connection_usable_after_errors(daemon):
    c = RawConn(daemon.port)
    c.send(build_request("GET", f"{P}/{NO_SUCH_PID}", token=daemon.token))
    assert_error(c.read_response(), 404, "NOT_FOUND")
    c.send(build_request("POST", P, token=daemon.token, body=b"{nope"))
    assert_error(c.read_response(), 400, "INVALID_REQUEST")
    c.send(build_request("GET", "/api/v1/health", token="bad"))
    assert_error(c.read_response(), 401, "UNAUTHORIZED")
    c.send(build_request("PUT", "/api/v1/health", token=daemon.token, body=b""))
    assert_error(c.read_response(), 405, "METHOD_NOT_ALLOWED")
    c.send(build_request("GET", "/api/v1/health", token=daemon.token))
    assert c.read_response().json == {"healthy": True}


def test_pipelined_follow_then_request(daemon):
    p = daemon.start("seq", ["1", "3"])
    daemon.wait_exit(p["pid"])
    c = RawConn(daemon.port)
    c.send(build_request("GET", f"{P}/{p['pid']}/stdout/follow", token=daemon.token)
           + build_request("GET", "/api/v1/health", token=daemon.token))
    status, _, headers = c.read_head()
    assert status == 200 and "chunked" in headers.get("transfer-encoding", "")
    body = b""
    while (ch := c.read_chunk()):
        body += ch
    assert body.count(b"event:output") + body.count(b"event: output") == 3
    assert b"eof" in body
    r = c.read_response()
    assert r.status == 200 and r.json == {"healthy": True}


def test_header_names_case_insensitive(daemon):
    c = RawConn(daemon.port)
    c.send(f"GET /api/v1/health HTTP/1.1\r\nhost: x\r\nAUTHORIZATION: Bearer {daemon.token}\r\n\r\n".encode())
    r = c.read_response()
    assert r.status == 200 and r.json == {"healthy": True}


def test_auth_scheme_lowercase(daemon):
    """RFC 9110 §11.1: the auth scheme is case-insensitive."""
    r = daemon.get("/api/v1/health", headers={"Authorization": f"bearer {daemon.token}"})
    assert r.status == 200, r


def test_many_parallel_clients(daemon):
    import concurrent.futures as cf

    def one(_):
        return daemon.get("/api/v1/health", timeout=5).status

    with cf.ThreadPoolExecutor(64) as ex:
        statuses = list(ex.map(one, range(300)))
    assert statuses == [200] * 300


def test_delete_kills_setsid_descendant(daemon):
    """§12: DELETE kills the whole tree, including descendants that left the group with setsid."""
    p = daemon.sh("setsid sleep 100 & echo $!; exec sleep 100")
    lines = daemon.wait_output(p["pid"], lambda ls: len(ls) == 1)
    gc = int(lines[0])
    wait_for(lambda: os.getsid(gc) == gc, 3, what="grandchild to call setsid")
    try:
        assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
        daemon.wait_exit(p["pid"], 5)
        wait_for(lambda: gone_or_zombie(gc), 3, what="setsid descendant killed by DELETE")
    finally:
        try:
            os.kill(gc, signal.SIGKILL)
        except OSError:
            pass


def test_idle_timeout_closes_keepalive_connection(daemon_factory):
    d = daemon_factory("--idle-timeout-ms", "500")
    c = RawConn(d.port)
    c.send(build_request("GET", "/api/v1/health", token=d.token))
    assert c.read_response().status == 200
    t0 = time.monotonic()
    assert c.is_closed(4.0), "idle keep-alive connection not closed"
    assert 0.3 <= time.monotonic() - t0 <= 3.0


def test_idle_timeout_does_not_cut_follow(daemon_factory):
    d = daemon_factory("--idle-timeout-ms", "300")
    p = d.sh("sleep 1.2; echo late")
    col = d.follow(p["pid"], "stdout").collect(max_seconds=8)
    col.assert_eof_terminated()
    assert col.lines == ["late"]


def test_runtime_timestamps(daemon):
    p = daemon.start("sleep", ["0.5"])
    i = daemon.wait_exit(p["pid"])
    assert 400 <= i["ended_at"] - i["started_at"] <= 3000, i


def test_empty_stdin_write(daemon):
    p = daemon.start("cat", stdin_mode="pipe")
    assert daemon.request("POST", f"{P}/{p['pid']}/stdin", body=b"").status == 204
    assert daemon.request("POST", f"{P}/{p['pid']}/stdin", body=b"z\n").status == 204
    daemon.wait_output(p["pid"], lambda ls: ls == ["z"])
    assert daemon.info(p["pid"])["stdin_writable"] is True


@pytest.mark.parametrize("body", [
    b"[" * 200_000,
    b'{"a":' * 100_000,
    b'{"command":"\xff\xfe"}',
    b'{"command":"echo","args":["\\ud800"]}',
    b'{"command":"echo","args":["\\u00"]}',
    b'{"signal":1e400}',
], ids=["deep-array", "deep-object", "invalid-utf8", "lone-surrogate", "short-escape", "huge-number"])
def test_hostile_json(daemon, body):
    r = daemon.request("POST", P, body=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_REQUEST")
    assert daemon.get("/api/v1/health").status == 200
    assert daemon.alive()


def test_nul_in_command_or_args_rejected(daemon):
    for spec in ({"command": "ec\u0000ho"}, {"command": "echo", "args": ["a\u0000b"]},
                 {"command": "echo", "env": {"A": "x\u0000y"}}, {"command": "true", "working_dir": "/tm\u0000p"}):
        r = daemon.start_raw(spec)
        assert r.status in (400, 500), (spec, r)
        assert r.json.get("code") in ("INVALID_REQUEST", "SPAWN_FAILED"), (spec, r)
    assert daemon.alive()


def test_surrogate_pair_args(daemon):
    r = daemon.request("POST", P, body=b'{"command":"printf","args":["%s\\\\n","\\ud83d\\ude00 \\u00e9"]}',
                       headers={"Content-Type": "application/json"})
    assert r.status == 201, r
    daemon.started.append(r.json["pid"])
    daemon.wait_exit(r.json["pid"])
    assert daemon.lines(r.json["pid"]) == ["😀 é"]
    assert r.json["args"] == ["%s\\n", "😀 é"]


def test_huge_number_signal(daemon):
    p = daemon.start("sleep", ["30"])
    r = daemon.post(f"{P}/{p['pid']}/signal", {"signal": 99999999999999999999})
    assert r.status == 400 and r.json["code"] in ("INVALID_SIGNAL", "INVALID_REQUEST"), r
    r = daemon.post(f"{P}/{p['pid']}/signal", {"signal": 4294967311})  # 15 + 2**32
    assert r.status == 400 and r.json["code"] in ("INVALID_SIGNAL", "INVALID_REQUEST"), r
    assert daemon.info(p["pid"])["status"] == "running"


def test_very_long_request_target(daemon):
    c = RawConn(daemon.port)
    path = "/api/v1/processes/" + "9" * 200_000
    c.send(f"GET {path[:100]}".encode())
    for i in range(100, len(path), 8192):
        readable, _w, _x = select.select([c.sock], [], [], 0)
        if readable:
            break
        try:
            c.send(path[i:i + 8192].encode())
        except OSError:
            break
    r = c.read_response()
    assert r.status in (414, 431, 400, 404), r
    assert r.json.get("code"), r
    assert daemon.get("/api/v1/health").status == 200


def test_chunk_extensions_and_trailers(daemon):
    c = RawConn(daemon.port)
    body = b'{"command":"echo","args":["ext"]}'
    c.send(build_request("POST", P, token=daemon.token, headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        + f"{len(body):x};name=value\r\n".encode() + body + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
        + build_request("GET", "/api/v1/health", token=daemon.token))
    r = c.read_response()
    assert r.status == 201, r
    daemon.started.append(r.json["pid"])
    assert c.read_response().json == {"healthy": True}


def test_delete_immediately_after_start(daemon):
    pids = []
    for _ in range(20):
        p = daemon.start("sleep", ["30"])
        assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
        pids.append(p["pid"])
    for pid in pids:
        i = daemon.wait_exit(pid, 5)
        assert i["status"] == "signaled" and i["signal"] == 9, i
        wait_for(lambda: gone_or_zombie(pid), 3, what=f"{pid} gone")


# =========================================================================== README limits


def test_max_processes_limit(daemon_factory):
    d = daemon_factory("--max-processes", "2")
    a = d.start("sleep", ["30"])
    d.start("sleep", ["30"])
    r = d.start_raw({"command": "sleep", "args": ["30"]})
    assert_error(r, 503, "LIMIT_REACHED")
    assert len(d.get(P).json["processes"]) == 2, "a refused start must not spawn"
    assert d.request("DELETE", f"{P}/{a['pid']}").status == 204
    d.wait_exit(a["pid"])
    r = d.start_raw({"command": "true"})
    assert r.status == 201, r


def test_max_header_bytes_flag(daemon_factory):
    d = daemon_factory("--max-header-bytes", "2048")
    ok = d.get("/api/v1/health", headers={"X-Pad": "p" * 1500})
    assert ok.status == 200, ok
    c = RawConn(d.port)
    c.send(build_request("GET", "/api/v1/health", token=d.token, headers={"X-Pad": "p" * 3000}))
    assert_error(c.read_response(), 431, "HEADERS_TOO_LARGE")


def test_exited_ttl(daemon_factory):
    d = daemon_factory("--exited-ttl-s", "1")
    run = d.start("sleep", ["30"])
    p = d.start("true")
    d.wait_exit(p["pid"])
    assert d.get(f"{P}/{p['pid']}").status == 200
    wait_for(lambda: d.get(f"{P}/{p['pid']}").status == 404, 6, interval=0.2, what="exited record to expire")
    assert d.info(run["pid"])["status"] == "running", "running records never expire"


def test_delete_answers_after_reap(daemon):
    p = daemon.start("sleep", ["30"])
    assert daemon.request("DELETE", f"{P}/{p['pid']}").status == 204
    i = daemon.info(p["pid"])
    assert i["status"] == "signaled" and i["signal"] == 9 and i["ended_at"] is not None, i


def test_shutdown_terms_then_kills_children(daemon_factory):
    d = daemon_factory("--shutdown-grace-ms", "500")
    polite = d.start("sleep", ["100"])
    stubborn = d.sh("trap '' TERM; echo ready; while :; do sleep 0.1; done")
    d.wait_output(stubborn["pid"], lambda ls: ls == ["ready"])
    t0 = time.monotonic()
    rc = d.stop(10)
    elapsed = time.monotonic() - t0
    try:
        assert rc is not None, "daemon did not exit after SIGTERM"
        assert elapsed < 5, elapsed
        wait_for(lambda: gone_or_zombie(polite["pid"]), 3, what="TERMed child gone")
        wait_for(lambda: gone_or_zombie(stubborn["pid"]), 3, what="TERM-ignoring child KILLed after grace")
    finally:
        for pid in (polite["pid"], stubborn["pid"]):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass


def test_token_file_trailing_newline(tmp_path):
    f = tmp_path / "tok"
    f.write_text("newline-token-123\n")
    os.chmod(f, 0o600)
    port = free_port()
    proc = subprocess.Popen([TENDD_BIN, "--listen", f"127.0.0.1:{port}", "--token-file", str(f)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up():
            try:
                c = RawConn(port, timeout=1)
                c.send(build_request("GET", "/api/v1/health", token="newline-token-123"))
                return c.read_response().status
            except OSError:
                return None
        assert wait_for(up, 5) == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_refuses_overlong_token(tmp_path):
    f = tmp_path / "long"
    f.write_text("a" * 2000)
    os.chmod(f, 0o600)
    r = _run_tendd(["--listen", "127.0.0.1:0", "--token-file", str(f)])
    assert r.returncode != 0
    assert r.stderr.strip()


def test_ipv6_listener(daemon_factory):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    d = daemon_factory("--listen", f"[::1]:{port}")
    c = socket.create_connection(("::1", port), timeout=5)
    c.sendall(build_request("GET", "/api/v1/health", token=d.token, headers={"Connection": "close"}))
    data = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        data += b
    assert data.startswith(b"HTTP/1.1 200"), data


def test_pipelined_burst(daemon):
    c = RawConn(daemon.port)
    c.send(b"".join(build_request("GET", f"/api/v1/health?n={i}", token=daemon.token) for i in range(200)))
    for _ in range(200):
        r = c.read_response()
        assert r.status == 200 and r.json == {"healthy": True}


def test_unread_large_responses_do_not_block(daemon):
    p = daemon.sh("head -c 800000 /dev/zero | tr '\\000' 'a' | fold -w 100")
    daemon.wait_exit(p["pid"])
    hogs = []
    for _ in range(5):
        c = RawConn(daemon.port, rcvbuf=4096)
        c.send(build_request("GET", f"{P}/{p['pid']}/stdout", token=daemon.token) * 3)
        hogs.append(c)
    # The loop is not blocked by the unread responses: other requests are answered (each within a socket
    # timeout generous enough for a sanitizer build on a busy machine; a blocked loop never answers).
    for _ in range(5):
        assert daemon.get("/api/v1/health", timeout=10).status == 200
    r = hogs[0].read_response()
    assert r.status == 200 and r.json["line_count"] == 8000
    for c in hogs:
        c.close()


def test_parallel_starts(daemon):
    import concurrent.futures as cf

    def one(i):
        return daemon.start_raw({"command": "sh", "args": ["-c", f"echo {i}"]})

    with cf.ThreadPoolExecutor(16) as ex:
        rs = list(ex.map(one, range(48)))
    assert all(r.status == 201 for r in rs), [r for r in rs if r.status != 201][:3]
    pids = [r.json["pid"] for r in rs]
    handles = [r.json["handle"] for r in rs]
    assert len(set(pids)) == 48 and len(set(handles)) == 48
    for i, pid in enumerate(pids):
        daemon.wait_exit(pid)
        assert daemon.lines(pid) == [str(i)]


def test_stdin_backpressure_request_finishes_when_child_dies(daemon_factory):
    d = daemon_factory("--max-stdin-queue", "65536")
    p = d.start("sleep", ["30"], stdin_mode="pipe")
    c = RawConn(d.port, timeout=10)
    body = b"s" * 2_000_000
    c.send(build_request("POST", f"{P}/{p['pid']}/stdin", token=d.token, body=b"",
                         headers={"Content-Length": str(len(body))}))
    c.sock.setblocking(False)
    sent = 0
    t0 = time.monotonic()
    while sent < len(body) and time.monotonic() - t0 < 1.0:
        try:
            sent += c.sock.send(body[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
    c.sock.setblocking(True)
    c.sock.settimeout(10)
    assert d.get("/api/v1/health", timeout=2).status == 200, "daemon blocked by a stdin writer"
    assert d.request("DELETE", f"{P}/{p['pid']}").status == 204
    # the half-sent stdin request must now be finished (answered or closed), not hang
    t1 = time.monotonic()
    try:
        if sent < len(body):
            c.sock.settimeout(0.5)
            try:
                c.send(body[sent:])
            except (OSError, socket.timeout):
                pass
            c.sock.settimeout(5)
        r = c.read_response()
        assert r.status in (204, 400), r
        if r.status == 400:
            assert r.json["code"] == "STDIN_NOT_WRITABLE"
    except (EOFError, ConnectionResetError):
        pass
    assert time.monotonic() - t1 < 6
    assert d.get("/api/v1/health").status == 200


def test_follow_survives_record_eviction(daemon_factory):
    d = daemon_factory("--max-exited", "1")
    a = d.start("seq", ["1", "20000"])
    d.wait_exit(a["pid"])
    s = d.follow(a["pid"], "stdout", rcvbuf=4096)
    first = s.next_event(include_comments=False)
    assert first is not None and first.event == "output"
    for _ in range(2):
        q = d.start("true")
        d.wait_exit(q["pid"])
    assert d.get(f"{P}/{a['pid']}").status == 404, "record should be evicted"
    rest = s.collect(max_seconds=20)
    nums = [int(first.line)] + [int(x) for x in rest.lines]
    assert nums == list(range(1, len(nums) + 1)), "stream of an evicted record is inconsistent"
    assert rest.events and rest.events[-1].event == "eof" and rest.clean_end
    assert len(nums) == 20000
    assert d.get("/api/v1/health").status == 200


def test_stalled_body_times_out(daemon_factory):
    d = daemon_factory("--idle-timeout-ms", "500")
    c = RawConn(d.port)
    c.send(build_request("POST", P, token=d.token, body=b"", headers={
        "Content-Type": "application/json", "Content-Length": "100"}) + b'{"command":')
    t0 = time.monotonic()
    assert c.is_closed(5.0), "stalled body never timed out"
    assert time.monotonic() - t0 <= 3.5
    if c.buf:
        assert c.buf.startswith(b"HTTP/1.1 408"), bytes(c.buf[:100])
        assert b"{" in c.buf and b"code" in c.buf
    assert d.get(P).json["processes"] == []
