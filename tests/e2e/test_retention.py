"""Output retention across the memory journal and the disk tier (issue 13): nothing a reader waits for is
lost while the disk budgets hold; budgets drop the oldest and say so; faults degrade to reported gaps."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import wait_for

sandbox_mod = pytest.importorskip("tensorlake.sandbox")
from tensorlake.sandbox import Sandbox  # noqa: E402
from tensorlake.sandbox.models import ProcessStatus  # noqa: E402


def sdk_for(d):
    return Sandbox(identifier="test", proxy_url=f"http://127.0.0.1:{d.port}", api_key=d.token)


def wait_done(d, pid, timeout=60.0):
    return d.wait_exit(pid, timeout=timeout)


def follow_all(d, pid, which="output", headers=None, query="", timeout=120.0):
    """Reads a whole follow stream fast: [(event, id, data-dict)]."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    h = {"Authorization": f"Bearer {d.token}", "Accept": "text/event-stream"}
    h.update(headers or {})
    try:
        conn.request("GET", f"/api/v1/processes/{pid}/{which}/follow{query}", headers=h)
        r = conn.getresponse()
        assert r.status == 200, r.status
        body = r.read()
    finally:
        conn.close()
    return parse_events(body)


def parse_events(body: bytes):
    out = []
    for block in body.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        ev, eid, data = "message", None, None
        for line in block.split(b"\n"):
            k, _, v = line.partition(b":")
            if k == b"event":
                ev = v.decode()
            elif k == b"id":
                eid = int(v)
            elif k == b"data":
                data = json.loads(v)
        out.append((ev, eid, data))
    return out


def dir_bytes(path):
    total = 0
    for name in os.listdir(path):
        try:
            total += os.path.getsize(os.path.join(path, name))
        except OSError:
            pass
    return total


def check_sequence(events, total_lines, line_of=lambda i: str(i)):
    """Output events + gaps account for every line 1..total exactly once, in order; returns (lines, gap lines)."""
    seq = 1
    got = gap = 0
    for ev, eid, data in events:
        if ev == "gap":
            assert data["dropped_lines"] > 0
            seq += data["dropped_lines"]
            gap += data["dropped_lines"]
        elif ev == "output":
            assert eid == seq, (eid, seq)
            assert data["line"] == line_of(eid), (eid, data["line"][:50])
            seq += 1
            got += 1
    assert seq == total_lines + 1, (seq, total_lines)
    assert events[-1][0] == "eof"
    return got, gap


@pytest.mark.timeout(120)
def test_sdk_reads_200k_lines_from_both_tiers(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    d = daemon_factory("--retention-dir", str(ret))
    sb = sdk_for(d)
    try:
        p = sb.start_process("seq", ["1", "200000"])
        d.started.append(p.pid)
        wait_done(d, p.pid)
        want = [str(i) for i in range(1, 200001)]
        assert sb.get_stdout(p.pid).lines == want
        assert sb.get_output(p.pid).lines == want
        got = [e.line for e in sb.follow_output(p.pid)]
        assert got == want
        assert [e.line for e in sb.follow_stdout(p.pid)] == want
        assert any(n.endswith(".seg") for n in os.listdir(ret)), "nothing spilled to disk"
    finally:
        sb.close()


@pytest.mark.timeout(180)
def test_sdk_reads_50mb_and_timestamps_survive_spill(daemon_factory, tmp_path):
    d = daemon_factory("--retention-dir", str(tmp_path / "ret"))
    sb = sdk_for(d)
    try:
        # 50 MiB: 524,288 lines of 99 digits + "\n"
        n = 50 * 1024 * 1024 // 100
        p = sb.start_process("sh", ["-c", f"seq -f '%099g' 1 {n}"])
        d.started.append(p.pid)
        wait_done(d, p.pid, timeout=120)
        want = [f"{i:099d}" for i in range(1, n + 1)]
        assert sb.get_stdout(p.pid).lines == want
        assert sb.get_output(p.pid).lines == want
        assert [e.line for e in sb.follow_output(p.pid)] == want
        events = follow_all(d, p.pid)
        got, gap = check_sequence(events, n, lambda i: f"{i:099d}")
        assert (got, gap) == (n, 0)
        ts = [data["timestamp"] for ev, _, data in events if ev == "output"]
        assert ts == sorted(ts) and ts[0] > 1_600_000_000_000
    finally:
        sb.close()


@pytest.mark.timeout(120)
def test_follower_resumes_with_last_event_id_across_tiers(daemon_factory, tmp_path):
    d = daemon_factory("--retention-dir", str(tmp_path / "ret"))
    info = d.start("seq", ["1", "300000"])
    wait_done(d, info["pid"])
    s = d.follow(info["pid"], which="output")
    last = None
    for _ in range(12345):
        ev = s.next_event(include_comments=False)
        assert ev.event == "output"
        assert ev.id == int(json.loads(ev.data)["line"])
        last = ev.id
    s.conn.close()
    assert last == 12345
    rest = follow_all(d, info["pid"], headers={"Last-Event-ID": str(last)})
    outs = [(eid, data["line"]) for ev, eid, data in rest if ev == "output"]
    assert [e[0] for e in outs] == list(range(12346, 300001))
    assert all(str(eid) == line for eid, line in outs)
    assert not [e for e in rest if e[0] == "gap"]
    # ?after= in the middle of the disk tier, too
    mid = follow_all(d, info["pid"], query="?after=150000")
    assert [eid for ev, eid, _ in mid if ev == "output"] == list(range(150001, 300001))


@pytest.mark.timeout(120)
def test_process_budget_keeps_newest_and_reports_drop(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    d = daemon_factory("--retention-dir", str(ret), "--retention-process-bytes", str(1 << 20),
                       "--journal-bytes", str(64 << 10))
    info = d.start("sh", ["-c", "seq -f '%079g' 1 100000"])   # 8 MB
    wait_done(d, info["pid"])
    events = follow_all(d, info["pid"])
    got, gap = check_sequence(events, 100000, lambda i: f"{i:079d}")
    assert events[0][0] == "gap" and gap == events[0][2]["dropped_lines"]
    assert events[0][2]["dropped_bytes"] == 79 * gap
    assert 10_000 < got < 20_000, got   # ~1 MiB of disk + 64 KiB of memory
    assert dir_bytes(ret) <= 1 << 20
    lines = d.lines(info["pid"])
    assert len(lines) == got and lines[-1] == f"{100000:079d}"


@pytest.mark.timeout(120)
def test_many_flooding_processes_stay_within_total_budget(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    total = 6 << 20
    d = daemon_factory("--retention-dir", str(ret), "--retention-process-bytes", str(4 << 20),
                       "--retention-total-bytes", str(total), "--journal-bytes", str(64 << 10))
    pids = [d.start("sh", ["-c", "seq -f '%079g' 1 60000"])["pid"] for _ in range(6)]   # 4.8 MB each
    peak = 0
    while any(d.info(p)["status"] == "running" for p in pids):
        peak = max(peak, dir_bytes(ret))
        time.sleep(0.02)
    peak = max(peak, dir_bytes(ret))
    assert peak <= total + (1 << 20), peak   # at most one write batch above it, between a write and its eviction
    assert dir_bytes(ret) <= total
    kept = 0
    for p in pids:
        events = follow_all(d, p)
        got, gap = check_sequence(events, 60000, lambda i: f"{i:079d}")
        kept += got
    assert kept < 6 * 60000   # something was evicted, and reported as gaps (check_sequence)


@pytest.mark.timeout(60)
def test_forgotten_record_files_are_removed(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    d = daemon_factory("--retention-dir", str(ret), "--max-exited", "1", "--journal-bytes", str(64 << 10))
    a = d.start("seq", ["1", "100000"])["pid"]
    wait_done(d, a)
    assert any(n.startswith("1.") for n in os.listdir(ret))
    b = d.start("true")["pid"]
    wait_done(d, b)
    c = d.start("true")["pid"]   # a and b exited: max-exited 1 forgets a
    wait_done(d, c)
    wait_for(lambda: not any(n.startswith("1.") for n in os.listdir(ret)), 10, what="p1's files removed")
    assert d.get(f"/api/v1/processes/{a}").status == 404


@pytest.mark.timeout(60)
def test_stale_files_removed_at_start_and_clean_stop(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    ret.mkdir()
    (ret / "7.3.seg").write_bytes(b"garbage")
    d = daemon_factory("--retention-dir", str(ret), "--journal-bytes", str(64 << 10))
    assert not (ret / "7.3.seg").exists()
    a = d.start("seq", ["1", "100000"])["pid"]
    wait_done(d, a)
    assert os.listdir(ret)
    assert d.stop() == 0
    assert os.listdir(ret) == []


@pytest.mark.timeout(120)
def test_disk_full_degrades_to_gaps(daemon_factory, tmp_path):
    ret = tmp_path / "small"
    ret.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(ret)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        d = daemon_factory("--retention-dir", str(ret), "--journal-bytes", str(64 << 10))
        info = d.start("sh", ["-c", "seq -f '%079g' 1 200000"])   # 16 MB into 2 MiB
        wait_done(d, info["pid"])
        events = follow_all(d, info["pid"])
        got, gap = check_sequence(events, 200000, lambda i: f"{i:079d}")
        assert gap > 0 and got > 0
        assert "disk tier dropping lines" in d.log_text(200000)
        # The daemon keeps serving, and the newest lines are intact.
        assert d.lines(info["pid"])[-1] == f"{200000:079d}"
        e = d.start("echo", ["still fine"])
        wait_done(d, e["pid"])
        assert d.lines(e["pid"]) == ["still fine"]
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(ret)], capture_output=True)


@pytest.mark.timeout(120)
def test_directory_removed_under_the_daemon(daemon_factory, tmp_path):
    ret = tmp_path / "ret"
    d = daemon_factory("--retention-dir", str(ret), "--journal-bytes", str(64 << 10))
    a = d.start("seq", ["1", "100000"])["pid"]
    wait_done(d, a)
    shutil.rmtree(ret)
    # The removed files were a's disk tier: reading it reports the loss as a gap, no error.
    events = follow_all(d, a)
    got, gap = check_sequence(events, 100000)
    assert gap > 0 and got > 0
    # New output spills again: the directory is made again.
    b = d.start("seq", ["1", "100000"])["pid"]
    wait_done(d, b)
    assert os.path.isdir(ret) and os.listdir(ret)
    assert d.lines(b) == [str(i) for i in range(1, 100001)]


@pytest.mark.timeout(120)
def test_upgrade_keeps_disk_tier(daemon_factory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    d = daemon_factory("--state-dir", str(state), "--retention-dir", str(tmp_path / "ret"))
    a = d.start("seq", ["1", "200000"])["pid"]
    wait_done(d, a)
    before = d.get(f"/api/v1/processes/{a}").json
    os.kill(d.pid, signal.SIGUSR2)
    wait_for(lambda: "msg=\"restore\"" in d.log_text(20000) and d.get("/api/v1/health").status == 200, 15,
             what="re-exec")
    assert d.get(f"/api/v1/processes/{a}").json["started_at"] == before["started_at"]
    assert d.lines(a) == [str(i) for i in range(1, 200001)]
    events = follow_all(d, a)
    assert check_sequence(events, 200000) == (200000, 0)


@pytest.mark.timeout(180)
def test_follower_attached_before_burst_gets_every_line(daemon_factory, tmp_path):
    d = daemon_factory("--retention-dir", str(tmp_path / "ret"))
    info = d.start("sh", ["-c", "echo start; read x; exec seq -f '%079.0f' 1 1000000"], stdin_mode="pipe")
    out = tmp_path / "out.sse"
    curl = subprocess.Popen(["curl", "-sN", "-o", str(out), "-H", f"Authorization: Bearer {d.token}",
                             f"http://127.0.0.1:{d.port}/api/v1/processes/{info['pid']}/output/follow"])
    try:
        # The follower is attached once its first event (the "start" line) reached the file.
        wait_for(lambda: out.exists() and b'"start"' in out.read_bytes(), 10, what="curl attached")
        r = d.post(f"/api/v1/processes/{info['pid']}/stdin", body=b"go\n",
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status == 204, r
        assert curl.wait(150) == 0
    finally:
        if curl.poll() is None:
            curl.kill()
    events = parse_events(out.read_bytes())
    line = lambda i: "start" if i == 1 else f"{i - 1:079d}"
    assert check_sequence(events, 1000001, line) == (1000001, 0)
