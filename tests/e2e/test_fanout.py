"""Fan-out: many followers of one flooding process (issue 17). Followers with the same options share one
encoding of the events (Server/SharedEvents.swift); those that fall behind it, join later, or filter a
stream encode for themselves. Every follower must see exactly the events a lone follower would: the same
ids, lines, streams and timestamps, in order, each line once, and exact gap accounting."""

from __future__ import annotations

import threading

from conftest import Collected, SSEStream
from test_metrics import samples, scrape, val

N = 20_000   # lines of each stream: beyond the journal and the shared window (1 MiB of events per follower)


def _collect_all(streams: list[SSEStream], max_seconds: float = 60.0) -> list[Collected]:
    out: list[Collected | None] = [None] * len(streams)

    def run(i):
        out[i] = streams[i].collect(max_seconds=max_seconds)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(streams))]
    for t in ts: t.start()
    for t in ts: t.join()
    return out  # type: ignore[return-value]


def _go(d, pid):
    """Every follower is attached: let the child print."""
    assert d.request("POST", f"/api/v1/processes/{pid}/stdin", body=b"go\n").status == 204
    assert d.request("POST", f"/api/v1/processes/{pid}/stdin/close").status == 204


def _shared_events(d) -> float:
    return val(samples(scrape(d)), "tendd_sse_shared_events_total")


def _key(e):
    return (e.id, e.json["line"], e.json.get("stream"), e.json["timestamp"])


def test_many_followers_of_a_flood_get_identical_lossless_streams(daemon_factory, tmp_path):
    d = daemon_factory("--retention-dir", str(tmp_path / "ret"))
    # stdout and stderr interleaved; the child waits for every follower before it prints.
    p = d.start("sh", ["-c", f"read go; seq 1 {N} & seq 1 {N} >&2; wait"], stdin_mode="pipe")
    pid = p["pid"]
    both = [d.follow(pid, "output") for _ in range(8)]
    slow = d.follow(pid, "output", rcvbuf=4096)         # falls far behind the others, reads at the end
    out_only = [d.follow(pid, "stdout") for _ in range(3)]
    err_only = [d.follow(pid, "stderr") for _ in range(3)]
    _go(d, pid)
    cols = _collect_all(both + out_only + err_only)
    d.wait_exit(pid)
    slow.conn.sock.settimeout(20)
    slow_col = slow.collect(max_seconds=60)
    # Some of the both-stream followers' events came from a shared encoding (how many depends on how far
    # apart the readers run: the bench measures what it saves), never more than they received.
    shared = _shared_events(d)
    assert 0 < shared <= (len(both) + 1) * 2 * N
    ref = cols[0]
    ref.assert_eof_terminated()
    assert not [e for e in ref.events if e.event == "gap"], "lossless with the disk tier on"
    expect = [(str(i), "stdout") for i in range(1, N + 1)] + [(str(i), "stderr") for i in range(1, N + 1)]
    assert sorted((e.json["line"], e.json["stream"]) for e in ref.outputs) == sorted(expect)
    ids = ref.ids
    assert all(b > a for a, b in zip(ids, ids[1:])), "ids strictly increasing"
    keys = [_key(e) for e in ref.outputs]
    for c in cols[1:len(both)] + [slow_col]:
        c.assert_eof_terminated()
        assert [_key(e) for e in c.outputs] == keys
    for i, c in enumerate(cols[len(both):]):
        stream = "stdout" if i < len(out_only) else "stderr"
        # A one-stream follower's events carry no "stream" field; the rest is the same.
        want = [(k[0], k[1], None, k[3]) for k in keys if k[2] == stream]
        c.assert_eof_terminated()
        assert [_key(e) for e in c.outputs] == want, f"{stream} follower differs"


def test_late_follower_resumes_inside_a_shared_stream(daemon_factory, tmp_path):
    """A follower that joins with Last-Event-ID in the middle of the others' window gets exactly the rest."""
    d = daemon_factory("--retention-dir", str(tmp_path / "ret"))
    p = d.start("sh", ["-c", f"read go; seq 1 {N}"], stdin_mode="pipe")
    pid = p["pid"]
    first = [d.follow(pid, "stdout") for _ in range(4)]
    _go(d, pid)
    cols = _collect_all(first)
    d.wait_exit(pid)
    keys = [_key(e) for e in cols[0].outputs]
    assert [int(k[1]) for k in keys] == list(range(1, N + 1))
    for c in cols[1:]:
        assert [_key(e) for e in c.outputs] == keys
    # Two late followers at the same place, while the first ones are gone: they share again.
    mid = keys[N // 3][0]
    late = [SSEStream(d.port, f"/api/v1/processes/{pid}/stdout/follow", d.token, headers={"Last-Event-ID": str(mid)})
            for _ in range(2)]
    lc = _collect_all(late)
    for c in lc:
        c.assert_eof_terminated()
        assert [_key(e) for e in c.outputs] == keys[N // 3 + 1:]


def test_fanout_with_a_small_journal_accounts_every_gap(daemon_factory):
    """Tier off, 64 KiB journal: followers that fall behind get gap events, and for each follower the lines
    it got plus the lines its gaps report are every line, each once, in order."""
    d = daemon_factory("--retention-dir", "none", "--journal-bytes", "65536")
    p = d.start("sh", ["-c", f"read go; seq 1 {N}"], stdin_mode="pipe")
    pid = p["pid"]
    fast = [d.follow(pid, "stdout") for _ in range(6)]
    slow = [d.follow(pid, "stdout", rcvbuf=4096) for _ in range(2)]
    both = [d.follow(pid, "output") for _ in range(3)]   # shared: the same accounting
    _go(d, pid)
    cols = _collect_all(fast)
    d.wait_exit(pid)
    for s in slow: s.conn.sock.settimeout(20)
    cols += _collect_all(slow + both)
    assert _shared_events(d) > 0
    for c in cols:
        c.assert_eof_terminated()
        prev, seen = 0, 0
        for idx, e in enumerate(c.events):
            if e.event == "output":
                v = int(e.json["line"])
                assert v == prev + 1, f"line {v} after {prev} without a gap event"
                prev = v; seen += 1
            elif e.event == "gap":
                g = e.json
                nxt = next((int(x.json["line"]) for x in c.events[idx + 1:] if x.event == "output"), N + 1)
                assert g["dropped_lines"] == nxt - prev - 1, (g, prev, nxt)
                prev = nxt - 1
        assert prev == N, "the last line must arrive"
