"""Auth and isolation: every route refuses a missing, wrong or oversized token with no side effect;
no response leaks the token, the daemon's environment or another process's output; request paths
cannot reach the filesystem; children inherit no daemon fd (checked in /proc/<child>/fd)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from conftest import (NO_SUCH_PID, RawConn, assert_error, build_request, fd_count, wait_for)

P = "/api/v1/processes"
SECRET_ENV = ("TEND_E2E_DAEMON_SECRET", "daemon-secret-7f3a9c")
# Variables that belong to the daemon alone (README: "Children inherit the daemon's environment minus
# its private variables").
PRIVATE_ENV = {"TENDD_TOKEN": "private-token-value", "CREDENTIALS_DIRECTORY": "/nonexistent-creds",
               "WATCHDOG_USEC": "0", "INVOCATION_ID": "0123456789abcdef0123456789abcdef",
               "LISTEN_PID": "1", "LISTEN_FDS": "0", "LISTEN_FDNAMES": "none"}


@pytest.fixture
def iso(daemon_factory):
    env = dict(PRIVATE_ENV)
    env[SECRET_ENV[0]] = SECRET_ENV[1]
    return daemon_factory(unix_socket=True, env=env)


def routes(pid: int) -> list[tuple[str, str, bytes | None]]:
    start = json.dumps({"command": "sh", "args": ["-c", "echo started-by-intruder > /tmp/tend-intruder"]}).encode()
    return [
        ("GET", "/api/v1/health", None),
        ("GET", "/api/v1/info", None),
        ("GET", P, None),
        ("POST", P, start),
        ("POST", f"{P}/run", start),
        ("GET", f"{P}/{pid}", None),
        ("DELETE", f"{P}/{pid}", None),
        ("POST", f"{P}/{pid}/signal", b'{"signal":9}'),
        ("POST", f"{P}/{pid}/restart", None),
        ("POST", f"{P}/{pid}/stdin", b"intruder input\n"),
        ("POST", f"{P}/{pid}/stdin/close", None),
        ("GET", f"{P}/{pid}/stdout", None),
        ("GET", f"{P}/{pid}/stderr", None),
        ("GET", f"{P}/{pid}/output", None),
        ("GET", f"{P}/{pid}/stdout/follow", None),
        ("GET", f"{P}/{pid}/stderr/follow", None),
        ("GET", f"{P}/{pid}/output/follow", None),
    ]


def bad_tokens(token: str) -> dict[str, dict[str, str] | None]:
    flip = token[:-1] + ("0" if token[-1] != "0" else "1")
    return {
        "missing": None,
        "empty": {"Authorization": "Bearer "},
        "wrong_same_length": {"Authorization": f"Bearer {flip}"},
        "prefix": {"Authorization": f"Bearer {token[:-1]}"},
        "extended": {"Authorization": f"Bearer {token}0"},
        "oversized": {"Authorization": "Bearer " + token * 200},            # ~9.6 KiB, within the head limit
        "basic_scheme": {"Authorization": f"Basic {token}"},
        "no_scheme": {"Authorization": token},
        "x_api_key_only": {"X-Api-Key": token},
        "token_in_query": None,   # sent as ?token= / ?api_key= below
    }


@pytest.mark.timeout(60)
def test_every_route_refuses_bad_tokens_without_side_effects(iso):
    d = iso
    victim = d.start("cat", stdin_mode="pipe")
    pid = victim["pid"]
    try:
        os.unlink("/tmp/tend-intruder")
    except FileNotFoundError:
        pass
    checked = 0
    for label, headers in bad_tokens(d.token).items():
        for method, path, body in routes(pid):
            if label == "token_in_query":
                path = f"{path}?token={d.token}&api_key={d.token}&access_token={d.token}"
            c = RawConn(d.port)
            h = dict(headers or {})
            if body is not None:
                h["Content-Type"] = "application/json"
            c.send(build_request(method, path, token=None, body=body, headers=h))
            r = c.read_response(method)
            c.close()
            body_text = r.body.decode("utf-8", "replace")
            assert_error(r, 401, "UNAUTHORIZED")
            assert d.token not in body_text
            assert "www-authenticate" not in r.headers or d.token not in r.headers["www-authenticate"]
            checked += 1
    # Nothing happened: the victim runs, got no input, no process was started, no file was written.
    assert d.info(pid)["status"] == "running"
    assert d.lines(pid) == []
    assert [p["pid"] for p in d.get(P).json["processes"]] == [pid]
    assert not os.path.exists("/tmp/tend-intruder")
    assert checked == len(routes(pid)) * len(bad_tokens(d.token))
    # The same over the unix socket.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(d.unix_path)
    s.sendall(build_request("DELETE", f"{P}/{pid}", token="nope"))
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 401 ")
    assert d.info(pid)["status"] == "running"
    # A lower-case scheme with the right token is accepted (RFC 9110: the scheme is case-insensitive).
    assert d.get("/api/v1/health", headers={"Authorization": f"bearer {d.token}"}, token=d.NO_TOKEN).status == 200
    # The log never holds the token.
    assert d.token not in d.log_text(1 << 20)


@pytest.mark.timeout(60)
def test_errors_leak_no_token_environment_or_other_output(iso):
    d = iso
    marker = "OTHER-PROCESS-SECRET-OUTPUT-91c2"
    other = d.sh(f"echo {marker}; echo {marker} >&2; sleep 30")
    d.wait_output(other["pid"], lambda ls: marker in ls)
    bad = [
        ("POST", P, b"{"),
        ("POST", P, b'{"command":""}'),
        ("POST", P, b'{"command":"/nonexistent/' + marker.encode() + b'"}'),
        ("POST", P, b'{"command":"true","working_dir":"/nonexistent-dir"}'),
        ("POST", P, b'{"command":"true","user":"no-such-user-xyz"}'),
        ("POST", P, b'{"command":"true","env":{"A=B":"x"}}'),
        ("POST", P, b'{"command":"true","env":{"K":1}}'),
        ("POST", P, b'{"command":"true","stdin_mode":"tty"}'),
        ("POST", f"{P}/run", b'{"command":"true","timeout":-1}'),
        ("POST", f"{P}/{other['pid']}/signal", b'{"signal":99}'),
        ("POST", f"{P}/{other['pid']}/stdin", b"x"),
        ("POST", f"{P}/{other['pid']}/restart", None),
        ("GET", f"{P}/{NO_SUCH_PID}", None),
        ("GET", f"{P}/{NO_SUCH_PID}/stdout", None),
        ("GET", f"{P}/{NO_SUCH_PID}/output/follow", None),
        ("GET", f"{P}/%ff%fe", None),
        ("PUT", P, None),
        ("GET", "/api/v1/nope", None),
        ("GET", "/api/v1/processes/1/stdout/../../../etc", None),
    ]
    secrets_ = [d.token, SECRET_ENV[1], marker, PRIVATE_ENV["TENDD_TOKEN"], PRIVATE_ENV["CREDENTIALS_DIRECTORY"],
                PRIVATE_ENV["INVOCATION_ID"]]
    seen_codes = set()
    for method, path, body in bad:
        c = RawConn(d.port)
        c.send(build_request(method, path, token=d.token, body=body,
                             headers={"Content-Type": "application/json"} if body else None))
        r = c.read_response(method)
        c.close()
        assert 400 <= r.status < 600, (method, path, r)
        text = r.body.decode("utf-8", "replace") + json.dumps(r.headers)
        for s in secrets_:
            if s == marker and "nonexistent/" + marker in path + (body or b"").decode():
                # the request's own command may be named back in its error; another process's output may not
                assert text.count(marker) <= 1, text
                continue
            assert s not in text, f"{method} {path} leaked {s!r}: {text[:300]}"
        seen_codes.add(r.json["code"])
    assert {"INVALID_REQUEST", "NOT_FOUND", "SPAWN_FAILED", "METHOD_NOT_ALLOWED"} <= seen_codes, seen_codes


@pytest.mark.timeout(60)
def test_request_paths_cannot_reach_the_filesystem(iso):
    d = iso
    fds = fd_count(d.pid)
    paths = [
        "/api/v1/processes/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/processes/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/processes/../../etc/passwd/stdout",
        "/api/v1/../../../../etc/passwd",
        "/etc/passwd",
        "/api/v1/processes/%2Fetc%2Fpasswd/stdout",
        "/api/v1/processes/1%00/stdout",
        "//api/v1/processes",
        "/api/v1/processes/.%2F1/output",
        "/proc/self/environ",
        "/api/v1/processes/..%252F..%252Fetc%252Fshadow/stdout",
    ]
    for path in paths:
        for method in ("GET", "DELETE", "POST"):
            c = RawConn(d.port)
            c.send(build_request(method, path, token=d.token, body=b"{}" if method == "POST" else None))
            r = c.read_response(method)
            c.close()
            assert r.status in (400, 404, 405), (method, path, r)
            assert b"root:" not in r.body and SECRET_ENV[1].encode() not in r.body, (path, r.body)
    assert fd_count(d.pid) <= fds + 1, "requests for paths opened files"


def _settled(pid: int) -> int:
    """Waits until `pid` (a `sleep`) has finished exec and its libc start-up and sits in its nanosleep:
    before that the dynamic loader may hold files (libc.so.6 as fd 3) that are not inherited fds."""
    def sleeping():
        try:
            with open(f"/proc/{pid}/wchan") as f:
                return "nanosleep" in f.read()
        except OSError:
            return False
    wait_for(sleeping, 10, what=f"process {pid} to settle in its sleep")
    return pid


def _fd_links(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            pass
    return out


@pytest.mark.timeout(60)
def test_children_inherit_no_daemon_fds_or_private_env(iso):
    d = iso
    # Make the daemon hold many kinds of fds: other children's pipes and pidfds, client connections,
    # a follow stream, the unix and TCP listeners, epoll, signalfd.
    others = [d.start("cat", stdin_mode="pipe") for _ in range(3)]
    held = []
    for _ in range(3):
        c = RawConn(d.port)
        c.send(build_request("GET", "/api/v1/health", token=d.token))
        assert c.read_response().status == 200
        held.append(c)
    follow = d.follow(others[0]["pid"])
    assert follow.status == 200
    daemon_links = set(_fd_links(d.pid).values())
    assert any("socket:" in l for l in daemon_links) and any("pidfd" in l for l in daemon_links), daemon_links

    probe = d.sh("sleep 30 & exec sleep 31", stdin_mode="pipe")
    grand = wait_for(lambda: [p for p in _children(probe["pid"])], 5, what="the grandchild")[0]
    for pid, stdin in ((probe["pid"], "pipe:"), (grand, None)):
        links = _fd_links(_settled(pid))
        assert sorted(links) == [0, 1, 2], f"child {pid} has fds {links}"
        if stdin:
            assert links[0].startswith("pipe:") and links[1].startswith("pipe:") and links[2].startswith("pipe:"), links
        # no socket, pidfd, epoll, signalfd or file of the daemon (/dev/null and its own pipes aside)
        assert not [l for l in links.values()
                    if l in daemon_links and not l.startswith("pipe:") and l != "/dev/null"], links
        assert not [l for l in links.values() if "socket:" in l or "anon_inode" in l], links
    closed = d.start("sleep", ["30"], stdin_mode="closed", stdout_mode="discard", stderr_mode="discard")
    links = _fd_links(_settled(closed["pid"]))
    assert sorted(links) == [0, 1, 2] and set(links.values()) == {"/dev/null"}, links
    # Environment: the daemon's minus its private variables.
    envp = d.sh("env; sleep 1")
    lines = d.wait_output(envp["pid"], lambda ls: any(l.startswith("PATH=") for l in ls))
    d.wait_exit(envp["pid"])
    lines = d.lines(envp["pid"])
    names = {l.split("=", 1)[0] for l in lines if "=" in l}
    assert SECRET_ENV[0] in names            # ordinary variables are inherited (documented)
    leaked = names & set(PRIVATE_ENV)
    assert not leaked, f"private daemon variables reached the child: {leaked}"
    for c in held:
        c.close()
    follow.close()


def _children(ppid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if int(st.rsplit(")", 1)[1].split()[1]) == ppid:
                out.append(int(name))
    return out
