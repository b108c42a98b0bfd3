"""Resource leak checks. Marked `last`: they run after every other test of the session."""

from __future__ import annotations

import time

import pytest

from conftest import RawConn, build_request, children_of, fd_count, proc_state, wait_for

P = "/api/v1/processes"


def _kill_everything(d):
    procs = d.get(P).json["processes"]
    for p in procs:
        if p["status"] == "running":
            assert d.request("DELETE", f"{P}/{p['pid']}").status == 204
    for p in procs:
        if p["status"] == "running":
            d.wait_exit(p["pid"], 10)


def _settle_fds(d, slack: int, timeout: float = 10.0) -> int:
    """Wait until the fd count is within baseline+slack; return the last count."""
    last = [0]

    def ok():
        last[0] = fd_count(d.pid)
        return last[0] <= d.baseline_fds + slack

    try:
        wait_for(ok, timeout, interval=0.1, what="fd count to settle")
    except AssertionError:
        pass
    return last[0]


def _fd_listing(pid):
    import os
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


@pytest.mark.last
@pytest.mark.timeout(60)
def test_fresh_daemon_no_fd_leak_per_process(daemon_factory):
    d = daemon_factory()
    base = d.baseline_fds
    for i in range(40):
        d.start("sh", ["-c", f"echo {i}; echo e{i} >&2"], stdin_mode="pipe" if i % 2 else "closed")
    for pid in list(d.started):
        d.wait_exit(pid)
    # followers, including abandoned ones
    for pid in d.started[:10]:
        d.follow(pid, "output").collect()
    s = d.follow(d.start("sleep", ["30"])["pid"], "stdout")
    s.conn.abort()
    c = RawConn(d.port)
    c.send(build_request("GET", "/api/v1/health", token=d.token)[:20])
    c.abort()
    _kill_everything(d)
    n = _settle_fds(d, 2)
    assert n <= base + 2, f"fd leak: {base} at start, {n} now\n{_fd_listing(d.pid)}"
    kids = children_of(d.pid)
    assert kids == [], f"daemon still has children: {kids}"


@pytest.mark.last
@pytest.mark.timeout(60)
def test_session_daemon_no_leaks(daemon):
    """After the whole suite ran against it: fds back near the start value, no children."""
    assert daemon.alive(), f"session daemon died\n{daemon.log_text()}"
    _kill_everything(daemon)
    n = _settle_fds(daemon, 2)
    assert n <= daemon.baseline_fds + 2, (
        f"fd leak: {daemon.baseline_fds} at start, {n} now\n{_fd_listing(daemon.pid)}")
    kids = children_of(daemon.pid)
    deadline = time.monotonic() + 5
    while kids and time.monotonic() < deadline:
        time.sleep(0.1)
        kids = children_of(daemon.pid)
    assert kids == [], f"daemon has children/zombies left: {kids}"
    assert proc_state(daemon.pid) in ("S", "R"), proc_state(daemon.pid)
    assert daemon.get("/api/v1/health").status == 200
