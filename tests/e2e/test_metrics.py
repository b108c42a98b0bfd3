"""`GET /metrics` and per-process resource usage, against a real tendd.

The exposition is checked by the real tools (`promtool check metrics` from the Debian package
`prometheus`, and `prometheus_client`'s text parser); counters are checked to move by exactly the
right amount after known actions, on a daemon of their own so nothing else moves them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import RawConn, assert_error, build_request, wait_for

from prometheus_client.parser import text_string_to_metric_families


def scrape(d, query: str = "") -> str:
    r = d.get("/metrics" + query)
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    return r.body.decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def val(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return val(after, name, **labels) - val(before, name, **labels)


def promtool_check(text: str):
    tool = shutil.which("promtool")
    # Not a skip: CI installs the Debian package `prometheus` (scripts/test.sh); without it this must fail.
    assert tool, "promtool not found: install the Debian package 'prometheus'"
    r = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert r.returncode == 0, f"promtool check metrics failed:\n{r.stdout.decode()}{r.stderr.decode()}"


# =========================================================================== format


def test_metrics_pass_promtool_and_the_python_parser(daemon):
    p = daemon.sh("echo hello; sleep 30")
    daemon.wait_output(p["pid"], lambda ls: ls == ["hello"])
    for query in ("", "?per_process=1"):
        text = scrape(daemon, query)
        promtool_check(text)
        fams = families(text)   # raises on anything the parser rejects
        expected = {
            "tendd_processes": "gauge", "tendd_process_starts": "counter", "tendd_process_spawn_failures": "counter",
            "tendd_process_exits": "counter", "tendd_managed_restarts": "counter", "tendd_health_check_failures": "counter",
            "tendd_output_bytes": "counter", "tendd_output_lines": "counter", "tendd_journal_dropped_lines": "counter",
            "tendd_journal_dropped_bytes": "counter", "tendd_followers": "gauge", "tendd_sse_events": "counter",
            "tendd_sse_shared_events": "counter",
            "tendd_http_requests": "counter", "tendd_http_request_duration_seconds": "histogram",
            "tendd_connections": "gauge", "tendd_connections_max": "gauge",
            "tendd_process_start_duration_seconds": "histogram", "tendd_event_loop_lag_seconds": "histogram",
            "tendd_event_loop_iteration_seconds": "histogram", "tendd_restores": "counter",
            "tendd_adopted_processes": "counter", "process_cpu_seconds": "counter",
            "process_resident_memory_bytes": "gauge", "process_open_fds": "gauge", "process_max_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }
        for name, kind in expected.items():
            assert fams.get(name) == kind, (name, fams.get(name))
        m = samples(text)
        assert val(m, "tendd_processes", state="running") >= 1
        assert abs(val(m, "process_open_fds") - len(os.listdir(f"/proc/{daemon.pid}/fd"))) <= 2
        soft = [l.split()[3] for l in open(f"/proc/{daemon.pid}/limits") if l.startswith("Max open files")][0]
        assert val(m, "process_max_fds") == int(soft)
        assert val(m, "process_resident_memory_bytes") > 1 << 20
        assert abs(val(m, "process_start_time_seconds") - time.time()) < 3600
        assert val(m, "tendd_connections") >= 1
        per_process = [k for k in m if k[0] == "tendd_process_cpu_seconds_total"]
        if query:
            assert ("tendd_process_output_bytes_total", (("handle", str(p["handle"])), ("pid", str(p["pid"])))) in m
            assert any(dict(k[1])["pid"] == str(p["pid"]) for k in per_process)
        else:
            assert per_process == [], "per-process series only on request"


def test_metrics_auth_and_bad_input(daemon, daemon_factory):
    assert_error(daemon.get("/metrics", token=daemon.NO_TOKEN), 401, "UNAUTHORIZED")
    assert_error(daemon.get("/metrics", token="wrong"), 401, "UNAUTHORIZED")
    assert_error(daemon.post("/metrics", {}), 405, "METHOD_NOT_ALLOWED")
    assert_error(daemon.get("/metrics?per_process=yes"), 400, "INVALID_REQUEST", mentions="per_process")
    assert daemon.get("/metrics?per_process=0").status == 200
    assert_error(daemon.get("/metrics/x"), 404, "NOT_FOUND")
    off = daemon_factory("--no-metrics")
    assert_error(off.get("/metrics"), 404, "NOT_FOUND", mentions="--no-metrics")
    assert off.sh("exit 0")["pid"] > 0   # the daemon works as before without them


# =========================================================================== counters move exactly


def test_counters_move_by_exactly_the_actions(daemon_factory):
    d = daemon_factory("--journal-bytes", "4096")
    before = samples(scrape(d))

    # Three processes: 2 stdout lines (4 bytes each incl. newline) + 1 stderr line each, exit 0.
    pids = [d.sh("printf 'a\\nbb\\n'; printf 'ccc\\n' >&2")["pid"] for _ in range(3)]
    for p in pids:
        d.wait_exit(p)
    # Failures: not found, unknown user, both before any spawn side effect.
    assert d.start_raw({"command": "/nonexistent/tend-metrics"}).status == 500
    assert d.start_raw({"command": "true", "user": "no-such-user-tend"}).status == 500
    # One killed by DELETE, one signalled with TERM, one timed-out run.
    k = d.start("sleep", ["30"])["pid"]
    assert d.request("DELETE", f"/api/v1/processes/{k}").status == 204
    t = d.start("sleep", ["30"])["pid"]
    assert d.post(f"/api/v1/processes/{t}/signal", {"signal": 15}).status == 200
    d.wait_exit(t)
    r = d.post("/api/v1/processes/run", {"command": "sleep", "args": ["30"], "timeout": 0.2})
    assert r.status == 200 and b"timed_out" in r.body, r
    # A flood over the 4 KiB journal: what is no longer retained was dropped.
    f = d.sh("i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done")["pid"]
    d.wait_exit(f)
    retained = len(d.lines(f))
    # Requests: 4 x info, 1 x unknown process, 1 x unauthenticated.
    for _ in range(4):
        assert d.get("/api/v1/info").status == 200
    assert d.get("/api/v1/processes/2000000000").status == 404
    assert d.get("/api/v1/info", token="wrong").status == 401

    after = samples(scrape(d))
    assert delta(before, after, "tendd_process_starts_total") == 3 + 2 + 1 + 1
    assert delta(before, after, "tendd_process_spawn_failures_total", reason="spawn_failed") == 1
    assert delta(before, after, "tendd_process_spawn_failures_total", reason="user_not_found") == 1
    assert delta(before, after, "tendd_process_exits_total", reason="exited") == 3 + 1
    assert delta(before, after, "tendd_process_exits_total", reason="killed") == 1
    assert delta(before, after, "tendd_process_exits_total", reason="signaled") == 1
    assert delta(before, after, "tendd_process_exits_total", reason="timed_out") == 1
    assert delta(before, after, "tendd_output_lines_total", stream="stdout") == 6 + 400
    assert delta(before, after, "tendd_output_lines_total", stream="stderr") == 3
    flood_bytes = sum(len(f"line-{i}-" + "x" * 50) + 1 for i in range(400))
    assert delta(before, after, "tendd_output_bytes_total", stream="stdout") == 3 * 5 + flood_bytes
    assert delta(before, after, "tendd_output_bytes_total", stream="stderr") == 3 * 4
    assert 0 < retained < 400
    assert delta(before, after, "tendd_journal_dropped_lines_total") == 400 - retained
    # Start latency: one observation per successful API start (run included), none for failures.
    assert delta(before, after, "tendd_process_start_duration_seconds_count") == 7
    assert delta(before, after, "tendd_http_requests_total", route="info", code="200") == 4
    assert delta(before, after, "tendd_http_requests_total", route="get", code="404") == 1
    assert delta(before, after, "tendd_http_requests_total", route="none", code="401") == 1
    assert delta(before, after, "tendd_http_requests_total", route="start", code="500") == 2
    assert delta(before, after, "tendd_http_requests_total", route="metrics", code="200") == 1   # the first scrape
    assert delta(before, after, "tendd_http_request_duration_seconds_count", route="info") == 4
    assert val(after, "tendd_processes", state="exited") == 3 + 1
    assert val(after, "tendd_processes", state="signaled") == 3
    assert delta(before, after, "tendd_event_loop_iteration_seconds_count") > 0


def test_followers_and_events_sent(daemon_factory):
    d = daemon_factory()
    done = d.sh("for i in 1 2 3 4 5; do echo $i; done")["pid"]
    d.wait_exit(done)
    live = d.sh("echo start; sleep 30")["pid"]
    d.wait_output(live, lambda ls: ls == ["start"])
    before = samples(scrape(d))
    got = d.follow(done).collect()
    got.assert_eof_terminated()
    assert got.lines == ["1", "2", "3", "4", "5"]
    s1 = d.follow(live)
    raw = RawConn(d.port)
    raw.send(build_request("GET", f"/api/v1/processes/{live}/stdout/raw?follow=true", token=d.token))
    assert raw.read_head()[0] == 200
    assert raw.read_chunk() == b"start\n"
    first = s1.next_event(include_comments=False)
    assert first is not None and first.line == "start"
    wait_for(lambda: val(samples(scrape(d)), "tendd_followers", kind="sse") == 1, what="one SSE follower")
    after = samples(scrape(d))
    assert val(after, "tendd_followers", kind="raw") == 1
    assert delta(before, after, "tendd_sse_events_total") == 5 + 1
    # The streams end with their process: the gauge goes back to zero.
    assert d.request("DELETE", f"/api/v1/processes/{live}").status == 204
    s1.collect().assert_eof_terminated()
    while raw.read_chunk():
        pass
    s1.close()
    raw.close()
    wait_for(lambda: (lambda m: val(m, "tendd_followers", kind="sse") + val(m, "tendd_followers", kind="raw"))(samples(scrape(d))) == 0,
             what="followers gone")


def test_managed_restarts_and_health_failures(daemon_factory):
    d = daemon_factory()
    before = samples(scrape(d))
    r = d.start_raw({"command": "sh", "args": ["-c", "exit 1"], "name": "flaky",
                     "restart": {"policy": "on_failure", "max_restarts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 20}})
    assert r.status == 201, r
    wait_for(lambda: d.get("/api/v1/processes/flaky").json["managed"]["status"] == "stopped", what="restart limit")
    # Health checks against a port nobody listens on; policy never: failures are only counted.
    r = d.start_raw({"command": "sleep", "args": ["30"], "name": "sick", "restart": {"policy": "never"},
                     "health_check": {"type": "tcp", "port": 1, "initial_delay_ms": 0, "interval_ms": 20,
                                      "timeout_ms": 100, "failure_threshold": 1000}})
    assert r.status == 201, r
    wait_for(lambda: d.get("/api/v1/processes/sick").json["managed"]["consecutive_health_failures"] >= 3,
             what="three failed checks")
    assert d.request("DELETE", "/api/v1/processes/sick").status == 204
    failures = d.get("/api/v1/processes/sick").json["managed"]["consecutive_health_failures"]
    after = samples(scrape(d))
    assert delta(before, after, "tendd_managed_restarts_total") == 2
    assert delta(before, after, "tendd_process_exits_total", reason="exited") == 3
    assert delta(before, after, "tendd_health_check_failures_total") == failures


def test_loop_lag_shows_a_stalled_loop(daemon_factory):
    d = daemon_factory()
    m = samples(scrape(d))
    slow_before = m[("tendd_event_loop_lag_seconds_count", ())] - m[("tendd_event_loop_lag_seconds_bucket", (("le", "0.5"),))]
    assert slow_before == 0, "no iteration should have lagged 0.5 s on an idle daemon"
    # Stop the daemon's only thread for a second: its housekeeping timer (every 250 ms) fires late.
    os.kill(d.pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    m = samples(scrape(d))
    slow = m[("tendd_event_loop_lag_seconds_count", ())] - m[("tendd_event_loop_lag_seconds_bucket", (("le", "0.5"),))]
    assert slow >= 1, "the stall must show as lag above 0.5 s"


# =========================================================================== per-process usage


def busy_script(marker: str) -> str:
    # Burns CPU for ~0.3 s in a child, then idles with a grandchild (sleep).
    return f"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo {marker}; sleep 30"


@pytest.mark.parametrize("mode", [[], ["--no-cgroup"]], ids=["default", "fallback"])
def test_resources_in_process_json(daemon_factory, mode):
    d = daemon_factory(*mode)
    p = d.sh(busy_script("busy-done"))
    d.wait_output(p["pid"], lambda ls: ls == ["busy-done"])
    res = d.info(p["pid"])["resources"]
    assert res["source"] == ("proc" if mode else d.info(p["pid"])["resources"]["source"])
    assert res["source"] in ("cgroup", "proc")
    assert res["cpu_usec"] >= 30_000, res          # the busy loop
    assert res["output_bytes"] == len("busy-done")
    if res["source"] == "proc":
        assert res["pids"] == 2, res              # sh + sleep
        assert res["memory_bytes"] > 0
        assert res["memory_peak_bytes"] is None
    else:
        for k in ("memory_bytes", "memory_peak_bytes", "pids"):
            assert res[k] is None or res[k] > 0, res   # null where the controller is not enabled
    listed = [x for x in d.get("/api/v1/processes").json["processes"] if x["pid"] == p["pid"]]
    assert listed[0]["resources"]["source"] == res["source"]
    assert d.request("DELETE", f"/api/v1/processes/{p['pid']}").status == 204
    gone = d.info(p["pid"])["resources"]
    assert gone["source"] is None and gone["cpu_usec"] is None and gone["output_bytes"] == len("busy-done")
    # Per-process series: the running ones only.
    q = d.sh("echo q; sleep 30")
    d.wait_output(q["pid"], lambda ls: ls == ["q"])
    m = samples(scrape(d, "?per_process=1"))
    pids = {dict(k[1])["pid"] for k in m if k[0] == "tendd_process_output_bytes_total"}
    assert pids == {str(q["pid"])}


def test_sdk_parses_process_info_with_resources(daemon):
    from tensorlake.sandbox import Sandbox
    sb = Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{daemon.port}", api_key=daemon.token)
    try:
        info = sb.start_process("sh", args=["-c", "echo x; sleep 30"])
        daemon.started.append(info.pid)
        assert "resources" in daemon.info(info.pid)
        got = sb.get_process(info.pid)
        assert got.pid == info.pid
        assert any(x.pid == info.pid for x in sb.list_processes())
    finally:
        sb.close()


@pytest.mark.parametrize("mode", [[], ["--no-cgroup"]], ids=["default", "fallback"])
def test_many_processes_are_read_over_several_loop_turns(daemon_factory, mode):
    # More processes than one batch (ResourceSweep.batch = 128; in the fallback also more /proc entries
    # than one scan step of 256): the list and ?per_process=1 are answered after several loop turns;
    # everything is there, in order, and other requests are served meanwhile.
    d = daemon_factory(*mode)
    n = 300
    pids = [d.start("sleep", ["60"])["pid"] for _ in range(n)]
    listed = d.get("/api/v1/processes").json["processes"]
    assert [x["pid"] for x in listed] == pids
    assert all(x["resources"]["source"] in (("proc",) if mode else ("cgroup", "proc")) for x in listed)
    assert all(x["resources"]["cpu_usec"] is not None and x["resources"]["pids"] in (None, 1) for x in listed), listed[:3]
    m = samples(scrape(d, "?per_process=1"))
    assert {dict(k[1])["pid"] for k in m if k[0] == "tendd_process_output_bytes_total"} == {str(p) for p in pids}
    # Clients that leave in the middle of a sweep cost nothing and break nothing.
    for path in ("/api/v1/processes", "/metrics?per_process=1"):
        c = RawConn(d.port)
        c.send(build_request("GET", path, token=d.token))
        c.abort()
    assert d.get("/api/v1/health").status == 200
    assert len(d.get("/api/v1/processes").json["processes"]) == n
