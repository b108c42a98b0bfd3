"""Crash/upgrade survival without systemd (issue 5): --state-dir, SIGUSR2 re-exec, and what happens to
processes that cannot be re-adopted (no fd store: tendd was SIGKILLed outside systemd).
The full crash path with systemd's fd store is in tests/systemd/test_crash.py."""
from __future__ import annotations

import json
import os
import secrets
import signal
import time

import pytest

from conftest import procs_with, Daemon, wait_for


@pytest.mark.parametrize("mode", ["cgroup", "fallback"])
def test_unadoptable_processes_are_reported_and_killed(daemon_factory, tmp_path, mode):
    state = tmp_path / "state"
    state.mkdir()
    extra = ["--state-dir", str(state)] + (["--no-cgroup"] if mode == "fallback" else [])
    a = daemon_factory(*extra)
    m = f"1000.{secrets.randbelow(10**9):09d}"
    p = a.start("sh", ["-c", f"(setsid sleep {m} &); exec sleep {m}"])
    wait_for(lambda: len(procs_with(m)) >= 2, 5, what="the tree")
    wait_for(lambda: (state / "daemon.json").exists(), 5, what="the state file")
    a.proc.kill()                 # a crash outside systemd: no fd store keeps the pidfd or the pipes
    a.proc.wait(5)
    assert procs_with(m), "children outlive the crashed daemon"
    b = daemon_factory(*extra)
    log = b.log_text()
    assert "cannot re-adopt: pidfd missing" in log and "msg=\"restore\" adopted=1" in log, log
    metrics = b.get("/metrics").body.decode()   # metrics (issue 16): a crash restore
    assert 'tendd_restores_total{kind="crash"} 1\n' in metrics and "tendd_adopted_processes_total 1\n" in metrics
    wait_for(lambda: not procs_with(m), 5, what="the lost tree to be killed")
    info = b.info(p["pid"])
    assert info["status"] == "signaled" and info["signal"] == 9, info


def test_sigusr2_upgrade_keeps_processes_and_output(daemon_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    d = daemon_factory("--state-dir", str(state))
    p = d.sh("for i in $(seq 1 30); do echo $i; sleep 0.05; done; exit 4")
    w = d.sh("read x; echo got $x", stdin_mode="pipe")
    s = d.follow(p["pid"], "stdout")
    first = [s.next_event(include_comments=False) for _ in range(3)]
    last_id = first[-1].id
    pid_before = d.pid
    os.kill(d.pid, signal.SIGUSR2)
    wait_for(lambda: "msg=\"restore\" adopted=2" in d.log_text(), 5, what="the re-exec")
    assert d.alive() and d.pid == pid_before
    # metrics (issue 16): the new image counts one upgrade restore and the two processes it adopted.
    metrics = d.get("/metrics").body.decode()
    assert 'tendd_restores_total{kind="upgrade"} 1\n' in metrics and 'tendd_restores_total{kind="crash"} 0\n' in metrics
    assert "tendd_adopted_processes_total 2\n" in metrics
    s2 = d.follow(p["pid"], "stdout", headers={"Last-Event-ID": str(last_id)})
    rest = s2.collect()
    rest.assert_eof_terminated()
    got = [e.line for e in first] + rest.lines
    assert got == [str(i) for i in range(1, 31)]
    assert d.wait_exit(p["pid"])["exit_code"] == 4          # still our child: waitid works after exec
    r = d.request("POST", f"/api/v1/processes/{w['pid']}/stdin", body=b"hello\n")
    assert r.status == 204
    assert d.wait_output(w["pid"], lambda ls: ls == ["got hello"])
