#!/usr/bin/env python3
"""tend benchmark suite: tendd against raw C baselines, side by side in the same run.

    python3 bench/run.py [--quick] [--runs N] [--only sse,lat,raw,start,info,fanout,density] [--peer PATH|none]

Builds tendd (release, static stdlib, scratch path .build-bench; or uses $TENDD_BIN), compiles the
baselines and tools with gcc -O2, runs every scenario several times alternating tendd and the
baseline, and writes bench/results/REPORT.md, bench/results/ratios.svg and bench/results/raw.json
(--quick: bench/results/quick/, so a quick run never overwrites the committed full report).
Every child and daemon it starts is killed at the end, also on failure or Ctrl-C.

A second column compares tendd with the daemon users would otherwise run: Tensorlake's own container
daemon (../shared/peers/tensorlake-daemon/, or --peer PATH / $TEND_BENCH_PEER), on the figures where the
two are comparable (same API: starts, SSE follow, latency, /info, fan-out, memory). It has no auth, so
the same client drives it unchanged. Without the binary the column is "—".
"""
import argparse, atexit, json, os, re, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BIN = os.path.join(BENCH, ".bin")
RESULTS = os.path.join(BENCH, "results")
_PORT_BASE = int(os.environ.get("TEND_BENCH_PORT", "19501"))  # two runs at once need different bases
TENDD_PORT, BASE_PORT, PEER_PORT = _PORT_BASE, _PORT_BASE + 100, _PORT_BASE + 200
DEFAULT_PEER = os.path.join(os.path.dirname(ROOT), "shared", "peers", "tensorlake-daemon", "tensorlake-daemon")

procs = []        # Popen objects we started
held_pids = set() # children started through the APIs we hold (killed at exit)


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def cleanup():
    for pid in list(held_pids):
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass
    held_pids.clear()
    for p in procs:
        if p.poll() is None:
            try: p.terminate()
            except OSError: pass
    deadline = time.time() + 3
    for p in procs:
        try: p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            try: p.kill(); p.wait(2)
            except Exception: pass
    procs.clear()


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build(args):
    os.makedirs(BIN, exist_ok=True)
    tendd = os.environ.get("TENDD_BIN")
    if not tendd:
        log("building tendd (release)")
        sh(["swift", "build", "-c", "release", "--static-swift-stdlib", "--product", "tendd",
            "--scratch-path", os.path.join(ROOT, ".build-bench")], cwd=ROOT, stdout=subprocess.DEVNULL)
        tendd = os.path.join(ROOT, ".build-bench", "release", "tendd")
    for name, src in [("sse_relay", "baseline/sse_relay.c"), ("raw_relay", "baseline/raw_relay.c"),
                      ("api_server", "baseline/api_server.c"), ("client", "tools/client.c"),
                      ("lines", "tools/lines.c"), ("pinger", "tools/pinger.c"), ("zerocopy", "baseline/zerocopy.c")]:
        sh(["gcc", "-O2", "-Wall", "-o", os.path.join(BIN, name), os.path.join(BENCH, src)])
    if not shutil.which("wrk"):
        log("installing wrk")
        r = subprocess.run(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sh(["apt-get", "install", "-y", "wrk"], stdout=subprocess.DEVNULL)
    return tendd


def wait_port(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open")


class Env:
    def __init__(self, tendd, tmp, token, peer=None):
        self.tendd, self.tmp, self.token, self.peer = tendd, tmp, token, peer
        self.tokfile = os.path.join(tmp, "token")

    def b(self, name):
        return os.path.join(BIN, name)

    def start_tendd(self, *flags):
        errlog = open(os.path.join(self.tmp, "tendd.log"), "a")
        p = subprocess.Popen([self.tendd, "--listen", f"127.0.0.1:{TENDD_PORT}", "--token-file", self.tokfile,
                              "--max-processes", "5000", "--max-connections", "9000", *flags],
                             stdout=subprocess.DEVNULL, stderr=errlog)
        procs.append(p)
        wait_port(TENDD_PORT, p)
        return p

    def start_peer(self):
        """The Tensorlake daemon on PEER_PORT (its logs of every output line go to a fresh directory)."""
        logdir = tempfile.mkdtemp(prefix="peer-logs-", dir=self.tmp)
        p = subprocess.Popen([self.peer, "--http-port", str(PEER_PORT), "--log-dir", logdir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(PEER_PORT, p)
        return p

    def start_base(self, argv):
        p = subprocess.Popen([self.b(argv[0])] + argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        wait_port(BASE_PORT, p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try: p.wait(10)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        if p in procs: procs.remove(p)

    def client(self, *args, timeout=120):
        out = subprocess.run([self.b("client"), *map(str, args)], capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"client {args[:5]} failed: {out.stderr.strip()}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def cgroup2_mount():
    """Where cgroup2 is mounted and with which options (they change spawn latency tails)."""
    for line in open("/proc/mounts"):
        f = line.split()
        if len(f) > 3 and f[2] == "cgroup2":
            return f"{f[1]} ({f[3]})"
    return "none"


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ns(pid):
    """Time the task has run on a CPU, in ns (/proc/PID/schedstat; all threads of a one-thread daemon)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def cpu_ns_all(pid):
    """CPU time of every thread of a process, in ns (the Tensorlake daemon runs several)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f: total += int(f.read().split()[0])
        except OSError: pass
    return total


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs: return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# results: list of rows {section, metric, unit, tendd, base, peer, higher_better, target(ratio), target_text, note}
rows = []


def add(section, metric, unit, tendd, base, higher=True, target=None, target_text="", note="", peer=None):
    st = lambda v: stats(v) if isinstance(v, list) else v
    rows.append(dict(section=section, metric=metric, unit=unit, tendd=st(tendd), base=st(base), peer=st(peer or None),
                     higher=higher, target=target, target_text=target_text, note=note))


def loss_row(section, metric, loss, peer_loss=None, peer_note=""):
    """Lines a reader reading as fast as it can did not get, in % (target: none)."""
    m = statistics.median(loss)
    add(section, metric, "%", loss, 0.0, False, None, "0 %", ("pass" if max(loss) == 0 else f"miss: {m:.1f} % lost (median)") + peer_note,
        peer=peer_loss)


def start_json(cmd, args, stdin_pipe=False):
    d = {"command": cmd, "args": args}
    if stdin_pipe: d["stdin_mode"] = "pipe"
    return json.dumps(d)


# ---------------------------------------------------------------- scenarios

def sc_sse(env, R, quick):
    sizes = [(80, 1_000_000 if quick else 2_000_000), (1, 1_000_000 if quick else 2_000_000),
             (4096, 20_000 if quick else 50_000)]
    for size, n in sizes:
        log(f"sse: {size} B lines x {n}")
        t = env.start_tendd()
        base = env.start_base(["sse_relay", str(BASE_PORT), "1", env.b("lines"), str(size), str(n)])
        tl, tb, bl, bb, loss, tc, bc = [], [], [], [], [], [], []
        for i in range(R):
            order = ["t", "b"] if i % 2 == 0 else ["b", "t"]
            for who in order:
                if who == "t":
                    c0 = cpu_ns(t.pid)
                    r = env.client("sse", TENDD_PORT, env.token, 1, "tendd",
                                   start_json(env.b("lines"), [str(size), str(n), "wait"], True))
                    tc.append((cpu_ns(t.pid) - c0) / r["lines"])
                    tl.append(r["lines"] / r["secs"]); tb.append(r["bytes"] / r["secs"]); loss.append(100.0 * (1 - r["lines"] / n))
                else:
                    for attempt in range(2):   # a rare relay run ends at once (seen once under load): retry it once
                        c0 = cpu_ns(base.pid)
                        r = env.client("sse", BASE_PORT, env.token, 1, "base")
                        if r["lines"] == n: break
                        log(f"sse: the C relay delivered {r['lines']} of {n} lines, retrying")
                    bc.append((cpu_ns(base.pid) - c0) / max(1, r["lines"]))
                    assert r["lines"] == n, r
                    bl.append(r["lines"] / r["secs"]); bb.append(r["bytes"] / r["secs"])
        env.stop(t); env.stop(base)
        pl, ploss, pc, pnote = peer_sse(env, R, quick, size, 1)
        note = f"tendd lost {statistics.median(loss):.0f} % of lines (journal overflow, gap events; median)" if max(loss) > 0 else ""
        tgt_l = {80: 0.85, 1: 0.8}.get(size)
        tgt_b = 0.9 if size == 4096 else None
        add("1. SSE follow", f"{size} B lines: lines/s", "lines/s", tl, bl, True, tgt_l, f"≥ {tgt_l}" if tgt_l else "", note + pnote, peer=pl)
        if size in (80, 1):
            loss_row("1. SSE follow", f"{size} B lines: lines lost by a reader as fast as the C relay's", loss, ploss)
        add("1. SSE follow", f"{size} B lines: bytes/s (SSE)", "B/s", tb, bb, True, tgt_b, f"≥ {tgt_b}" if tgt_b else "", "")
        add("1. SSE follow", f"{size} B lines: daemon CPU per delivered line", "ns", tc, bc, False, None, "(info)",
            "tendd also ingests the lines it drops" if max(loss) > 0 else "", peer=pc)
    # Without loss: a journal big enough to hold everything, so all lines are delivered.
    n = 200_000
    log(f"sse: 80 B lines x {n}, --journal-bytes 256 MiB (no loss)")
    t = env.start_tendd("--journal-bytes", str(256 << 20))
    base = env.start_base(["sse_relay", str(BASE_PORT), "1", env.b("lines"), "80", str(n)])
    tl, bl = [], []
    for i in range(max(2, R - 2)):
        r = env.client("sse", TENDD_PORT, env.token, 1, "tendd", start_json(env.b("lines"), ["80", str(n), "wait"], True))
        tl.append(r["lines"] / r["secs"])
        r = env.client("sse", BASE_PORT, env.token, 1, "base")
        bl.append(r["lines"] / r["secs"])
    env.stop(t); env.stop(base)
    add("1. SSE follow", "80 B lines, journal 256 MiB (no loss): lines/s", "lines/s", tl, bl, True, None, "(info)", "")


def peer_sse(env, R, quick, size, nf):
    """The Tensorlake daemon under the same client: lines/s delivered, % lost, CPU per delivered line.
    It writes every line to a log file and broadcasts it line by line (~10^4 lines/s here), so it gets
    fewer lines per run than tendd (the rate is what is compared; the count is in the note)."""
    if not env.peer: return None, None, None, ""
    n = {4096: 5_000}.get(size, 10_000 if quick else 30_000)
    p = env.start_peer()
    pl, ploss, pc = [], [], []
    for _ in range(max(2, R - 2)):
        c0 = cpu_ns_all(p.pid)
        r = env.client("sse", PEER_PORT, env.token, nf, "tendd", start_json(env.b("lines"), [str(size), str(n), "wait"], True), timeout=600)
        pl.append(r["lines"] / r["secs"]); ploss.append(100.0 * (1 - r["lines"] / (n * nf)))
        pc.append((cpu_ns_all(p.pid) - c0) / max(1, r["lines"]))
    env.stop(p)
    return pl, ploss, pc, f"; Tensorlake daemon: {n:,} lines per run, lost {statistics.median(ploss):.0f} %"


def sc_lat(env, R, quick):
    count = 500 if quick else 2000
    log(f"latency: {count} ping-pongs per run")
    t = env.start_tendd()
    p50t, p99t, p50b, p99b = [], [], [], []
    for i in range(R):
        fifo = os.path.join(env.tmp, f"fifo{i}")
        for who in (["t", "b"] if i % 2 == 0 else ["b", "t"]):
            if os.path.exists(fifo): os.unlink(fifo)
            os.mkfifo(fifo)
            if who == "t":
                r = env.client("lat", TENDD_PORT, env.token, "tendd", fifo, count, start_json(env.b("pinger"), [fifo, str(count)]))
                p50t.append(r["p50_us"]); p99t.append(r["p99_us"])
            else:
                base = env.start_base(["sse_relay", str(BASE_PORT), "1", env.b("pinger"), fifo, str(count)])
                r = env.client("lat", BASE_PORT, env.token, "base", fifo, count)
                env.stop(base)
                p50b.append(r["p50_us"]); p99b.append(r["p99_us"])
    env.stop(t)
    p50p, p99p = [], []
    if env.peer:
        p = env.start_peer()
        for i in range(R):
            fifo = os.path.join(env.tmp, f"pfifo{i}")
            os.mkfifo(fifo)
            r = env.client("lat", PEER_PORT, env.token, "tendd", fifo, count, start_json(env.b("pinger"), [fifo, str(count)]))
            p50p.append(r["p50_us"]); p99p.append(r["p99_us"])
        env.stop(p)
    add("2. One-line latency", "child write → follower, p50", "µs", p50t, p50b, False, 1.3, "≤ 1.3×", peer=p50p)
    add("2. One-line latency", "child write → follower, p99", "µs", p99t, p99b, False, 2.0, "≤ 2×", peer=p99p)


def sc_raw(env, R, quick):
    n = 75_000 if quick else 150_000
    total = n * 4096
    child = start_json(env.b("lines"), ["4095", str(n), "wait"], True)
    # tendd never blocks its child on a slow reader (its ring overwrites; the reader is told where it lost
    # bytes and resumes), the relay does: bytes lost are counted and noted. Default 256 KiB ring; a 16 MiB
    # ring for comparison (more memory touched per byte, fewer chances to lose); the default ring in the
    # crash-safe memfd of a daemon with a state directory (what a systemd unit gets: writes of at most a
    # quarter of the ring between commits, so 64 KiB pipe reads).
    sd = os.path.join(env.tmp, "raw-state"); os.makedirs(sd, exist_ok=True)
    for flags, label, tgt in [([], "default 256 KiB ring", 0.9), (["--raw-bytes", str(16 << 20)], "16 MiB ring", None),
                              (["--state-dir", sd], "default ring, crash-safe memfd (--state-dir)", None)]:
        log(f"raw: {n} x 4 KiB lines, tendd {label} vs the read/write relay")
        t = env.start_tendd(*flags)
        base = env.start_base(["raw_relay", str(BASE_PORT), env.b("lines"), "4095", str(n)])
        tb, bb, tc, bc, loss = [], [], [], [], []
        for i in range(R):
            for who in (["t", "b"] if i % 2 == 0 else ["b", "t"]):
                if who == "t":
                    c0 = cpu_ns(t.pid)
                    r = env.client("rawt", TENDD_PORT, env.token, child)
                    assert r["bytes"] + r["lost"] == total, r
                    tb.append(r["bytes"] / r["secs"]); loss.append(100.0 * r["lost"] / total)
                    tc.append((cpu_ns(t.pid) - c0) / (total / 1e6))
                else:
                    c0 = cpu_ns(base.pid)
                    r = env.client("raw", BASE_PORT)
                    assert r["bytes"] == total, r
                    bb.append(r["bytes"] / r["secs"]); bc.append((cpu_ns(base.pid) - c0) / (total / 1e6))
        env.stop(t); env.stop(base)
        note = f"tendd lost {statistics.median(loss):.0f} % of bytes (reported as gaps; median)" if max(loss) > 0 else ""
        add("3. Raw byte stream", f"pipe → TCP, bytes/s delivered, {label}", "B/s", tb, bb, True, tgt, f"≥ {tgt}" if tgt else "(info)", note)
        add("3. Raw byte stream", f"daemon CPU per MB ingested, {label}", "ns", tc, bc, False, None, "(info)",
            "tendd also builds the line journal from the same bytes")
    # Zero-copy candidates, measured with the same child and client (bench/baseline/zerocopy.c).
    modes = ["rw", "splice", "tee", "ring", "sendfile"]
    res = {m: [] for m in modes}
    for i in range(R):
        for m in (modes if i % 2 == 0 else modes[::-1]):
            z = env.start_base(["zerocopy", m, str(BASE_PORT), env.b("lines"), "4095", str(n)])
            r = env.client("raw", BASE_PORT)
            env.stop(z)
            assert r["bytes"] == total, (m, r)
            res[m].append(r["bytes"] / r["secs"])
    what = {"splice": "splice pipe → socket", "tee": "tee + splice + read (send zero-copy and keep the bytes)",
            "ring": "read into a 64 MiB memfd ring + send from it (tendd's way)",
            "sendfile": "read into the memfd ring + sendfile from it"}
    for m in modes[1:]:
        add("3. Raw byte stream", f"copy strategy: {what[m]} (vs read/write)", "B/s", res[m], res["rw"], True, None, "(info)")


def sc_start(env, R, quick):
    total = 400 if quick else 1000
    body = json.dumps({"command": "/bin/true", "stdin_mode": "pipe"})
    log(f"start: {total} x /bin/true, sequential and 8 concurrent")
    t = env.start_tendd()
    base = env.start_base(["api_server", str(BASE_PORT), env.token])
    peer = env.start_peer() if env.peer else None
    res = {k: [] for k in ["t1", "b1", "p1", "t8", "b8", "p8"]}
    daemons = {"t": (t, TENDD_PORT), "b": (base, BASE_PORT), "p": (peer, PEER_PORT)}
    for i in range(R):
        for conc in (1, 8):
            for who in ((["t", "b"] if i % 2 == 0 else ["b", "t"]) + (["p"] if peer else [])):
                d, port = daemons[who]
                c0 = cpu_ns_all(d.pid)
                r = env.client("start", port, env.token, conc, total, body)
                time.sleep(0.2)
                r["cpu_us"] = (cpu_ns_all(d.pid) - c0) / 1e3 / total
                assert r["errors"] == 0, r
                res[f"{who}{conc}"].append(r)
                time.sleep(0.2)  # let the last children be reaped
    env.stop(t); env.stop(base)
    if peer: env.stop(peer)
    for conc, label in ((1, "sequential"), (8, "8 concurrent clients")):
        T, B, P = res[f"t{conc}"], res[f"b{conc}"], res[f"p{conc}"]
        col = lambda rs, k: [r[k] for r in rs]
        add("4. Start /bin/true", f"{label}: starts/s", "/s", col(T, "per_s"), col(B, "per_s"), True, 0.9, "≥ 0.9", peer=col(P, "per_s"))
        add("4. Start /bin/true", f"{label}: p50", "µs", col(T, "p50_us"), col(B, "p50_us"), False, None, "", peer=col(P, "p50_us"))
        add("4. Start /bin/true", f"{label}: p99", "µs", col(T, "p99_us"), col(B, "p99_us"), False, 2.0, "≤ 2×", peer=col(P, "p99_us"))
        add("4. Start /bin/true", f"{label}: daemon CPU per start (children excluded)", "µs", col(T, "cpu_us"), col(B, "cpu_us"), False,
            1.5, "≤ 1.5×", "all threads of each daemon (/proc/PID/task/*/schedstat)", peer=col(P, "cpu_us"))


def wrk(env, port, secs):
    lua = os.path.join(env.tmp, "auth.lua")
    with open(lua, "w") as f:
        f.write(f'wrk.headers["Authorization"] = "Bearer {env.token}"\n')
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", "-s", lua, f"http://127.0.0.1:{port}/api/v1/info"],
                         capture_output=True, text=True, timeout=secs + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx: raise RuntimeError(f"wrk got {non2xx.group(1)} non-2xx responses on port {port}")
    return rps, p99


def sc_info(env, R, quick):
    secs = 3 if quick else 5
    log(f"info: wrk -t1 -c50 -d{secs}s")
    for label, flags in (("", []), (" (tendd --log-level warn)", ["--log-level", "warn"])):
        t = env.start_tendd(*flags)
        base = env.start_base(["api_server", str(BASE_PORT), env.token])
        rt, pt, rb, pb, ct, cb = [], [], [], [], [], []
        for i in range(R if not label else max(2, R - 2)):
            for who in (["t", "b"] if i % 2 == 0 else ["b", "t"]):
                if who == "t":
                    c0 = cpu_ns(t.pid); r, p = wrk(env, TENDD_PORT, secs); rt.append(r); pt.append(p)
                    ct.append((cpu_ns(t.pid) - c0) / (r * secs))
                else:
                    c0 = cpu_ns(base.pid); r, p = wrk(env, BASE_PORT, secs); rb.append(r); pb.append(p)
                    cb.append((cpu_ns(base.pid) - c0) / (r * secs))
        env.stop(t); env.stop(base)
        rp, pp, cp = [], [], []
        if env.peer and not label:
            p = env.start_peer()
            for i in range(max(2, R - 2)):
                c0 = cpu_ns_all(p.pid); r, q = wrk(env, PEER_PORT, secs); rp.append(r); pp.append(q)
                cp.append((cpu_ns_all(p.pid) - c0) / (r * secs))
            env.stop(p)
        add("5. GET /api/v1/info", f"50 keep-alive connections: req/s{label}", "req/s", rt, rb, True, 0.9 if not label else None,
            "≥ 0.9" if not label else "(info)", peer=rp)
        add("5. GET /api/v1/info", f"50 keep-alive connections: p99{label}", "µs", pt, pb, False, None, "", peer=pp)
        add("5. GET /api/v1/info", f"server CPU per request{label}", "ns", ct, cb, False, None, "(info)", peer=cp)


def sc_fanout(env, R, quick):
    n = 100_000 if quick else 200_000
    for nf in (1, 10, 100):
        log(f"fan-out: {n} x 80 B lines to {nf} followers")
        t = env.start_tendd()
        base = env.start_base(["sse_relay", str(BASE_PORT), str(nf), env.b("lines"), "80", str(n)])
        at, ab, loss = [], [], []
        for i in range(max(2, R - 1)):
            for who in (["t", "b"] if i % 2 == 0 else ["b", "t"]):
                if who == "t":
                    r = env.client("sse", TENDD_PORT, env.token, nf, "tendd", start_json(env.b("lines"), ["80", str(n), "wait"], True))
                    at.append(r["lines"] / r["secs"]); loss.append(100.0 * (1 - r["lines"] / (n * nf)))
                else:
                    r = env.client("sse", BASE_PORT, env.token, nf, "base")
                    assert r["lines"] == n * nf, r
                    ab.append(r["lines"] / r["secs"])
        env.stop(t); env.stop(base)
        pl, ploss, _, pnote = peer_sse(env, R, quick, 80, nf) if nf > 1 else (None, None, None, "")
        note = f"tendd lost {statistics.median(loss):.0f} % of lines (median)" if max(loss) > 0 else "tendd lost 0 %"
        tgt = 0.85 if nf > 1 else None
        add("6. Fan-out", f"{nf} follower{'s' if nf > 1 else ''}: aggregate lines/s", "lines/s", at, ab, True, tgt,
            f"≥ {tgt}" if tgt else "(info)", note + pnote, peer=pl)


def hold(env, port, k, follow, body):
    p = subprocess.Popen([env.b("client"), "hold", str(port), env.token, str(k), "1" if follow else "0", body],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    line = p.stdout.readline()
    if not line:
        raise RuntimeError("hold failed: " + p.stderr.read())
    r = json.loads(line)
    held_pids.update(r["pids"])
    return p, r


def release(env, holders, pids):
    for pid in pids:
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass
        held_pids.discard(pid)
    for h in holders:
        h.stdin.close(); h.wait(10)
        if h in procs: procs.remove(h)


def sc_density(env, R, quick):
    body = json.dumps({"command": "/bin/sleep", "args": ["100000"]})
    true_body = json.dumps({"command": "/bin/true", "stdin_mode": "pipe"})
    total = 300 if quick else 500
    reps = 3 if quick else 5
    res = {}
    for who in ("t", "b"):
        log(f"density: {'tendd' if who == 't' else 'baseline'}")
        if who == "t":
            d = env.start_tendd(); port = TENDD_PORT
        else:
            d = env.start_base(["api_server", str(BASE_PORT), env.token]); port = BASE_PORT
        time.sleep(1.6)   # idle: the readiness check's connection closed > 1 s ago (tendd then gives code pages back)
        r = {"idle": rss_kib(d.pid)}

        def rate(key):
            rates, cpus = [], []
            for _ in range(reps):
                c0 = cpu_ns(d.pid)
                rates.append(env.client("start", port, env.token, 1, total, true_body)["per_s"])
                time.sleep(0.2)
                cpus.append((cpu_ns(d.pid) - c0) / 1e3 / total)
            r[key] = rates
            r["cpu_" + key] = cpus
        rate("rate0")
        time.sleep(0.3)
        r["idle_after_starts"] = rss_kib(d.pid)
        h1, o1 = hold(env, port, 1000, who == "t", body)
        time.sleep(0.5)
        r["rss1000"] = rss_kib(d.pid); r["start1000_s"] = o1["start_secs"]; r["follow1000_s"] = o1["follow_secs"]
        rate("rate1000")
        h2, o2 = hold(env, port, 3000, who == "t", body)
        time.sleep(0.5)
        r["rss4000"] = rss_kib(d.pid); r["start4000_s"] = o1["start_secs"] + o2["start_secs"]
        r["follow4000_s"] = o1["follow_secs"] + o2["follow_secs"]
        r["fds4000"] = len(os.listdir(f"/proc/{d.pid}/fd"))
        rate("rate4000")
        release(env, [h1, h2], o1["pids"] + o2["pids"])
        env.stop(d)
        res[who] = r
    # The Tensorlake daemon: idle RSS, then RSS per held process with its follower (1,000 held: it costs
    # ~250 KiB each, 4,000 would take a GiB of a shared machine).
    P = {}
    if env.peer:
        log("density: Tensorlake daemon")
        d = env.start_peer()
        time.sleep(1.6)
        P["idle"] = rss_kib(d.pid)
        for _ in range(reps):
            env.client("start", PEER_PORT, env.token, 1, total, true_body)
        time.sleep(0.5)
        P["idle_after_starts"] = rss_kib(d.pid)
        kp = 300 if quick else 1000
        h, o = hold(env, PEER_PORT, kp, True, body)
        time.sleep(0.5)
        P["held"], P[f"rss{kp}"] = kp, rss_kib(d.pid)
        P["per"] = (P[f"rss{kp}"] - P["idle_after_starts"]) / kp
        release(env, [h], o["pids"])
        env.stop(d)
        res["p"] = P
    T, B = res["t"], res["b"]
    sect = "7. Density and memory"
    add(sect, "RSS idle", "KiB", T["idle"], B["idle"], False, None, "tendd ≤ 4 MiB",
        note="pass" if T["idle"] <= 4096 else f"miss: {T['idle'] - 4096} KiB over", peer=P.get("idle"))
    for k in (1000, 4000):
        add(sect, f"RSS with {k} idle children + {k} followers (baseline: no followers)", "KiB", T[f"rss{k}"], B[f"rss{k}"], False, None, "")
        pt = (T[f"rss{k}"] - T["idle_after_starts"]) / k
        pb = (B[f"rss{k}"] - B["idle_after_starts"]) / k
        add(sect, f"daemon memory per idle process (RSS growth / {k})", "KiB", pt, pb, False, None, "tendd ≤ 2 KiB",
            note=("pass" if pt <= 2 else f"miss: {pt - 2:.1f} KiB over") + "; includes the follower's connection" +
            (f"; Tensorlake daemon: RSS growth / {P['held']} held, each with a follower" if P else ""),
            peer=P.get("per"))
        add(sect, f"time to start {k} children (one client, sequential)", "s", T[f"start{k}_s"], B[f"start{k}_s"], False, None, "",
            note=f"tendd: + {T[f'follow{k}_s']:.2f} s to open the {k} follow streams")
    for k in (1000, 4000):
        rt = statistics.median(T[f"rate{k}"]) / statistics.median(T["rate0"])
        rb = statistics.median(B[f"rate{k}"]) / statistics.median(B["rate0"])
        add(sect, f"start rate with {k} held / empty-daemon rate", "×", rt, rb, True, None, "tendd ≥ 0.8",
            note=("pass" if rt >= 0.8 else f"miss by {100 * (0.8 - rt):.0f} points") + f"; tendd {statistics.median(T[f'rate{k}']):.0f}/s vs {statistics.median(T['rate0']):.0f}/s empty")
    for k in (0, 1000, 4000):
        add(sect, f"daemon CPU per start with {k} held (children excluded)", "µs", T[f"cpu_rate{k}"], B[f"cpu_rate{k}"], False, None, "(info)")
    add(sect, "tendd fds with 4000 held", "fds", T["fds4000"], B["fds4000"], False, None, "")
    # The same with the state file on (--state-dir: what a systemd unit with RuntimeDirectory= gets).
    log("density: tendd --state-dir")
    sd = os.path.join(env.tmp, "state"); os.makedirs(sd, exist_ok=True)
    d = env.start_tendd("--state-dir", sd)
    time.sleep(0.3)
    r0 = statistics.median(env.client("start", TENDD_PORT, env.token, 1, 200, true_body)["per_s"] for _ in range(3))
    kk = 1000 if quick else 4000
    h, o = hold(env, TENDD_PORT, kk, False, body)
    r4 = statistics.median(env.client("start", TENDD_PORT, env.token, 1, 200, true_body)["per_s"] for _ in range(3))
    release(env, [h], o["pids"])
    env.stop(d)
    add(sect, f"with --state-dir: start rate with {kk} held / empty", "×", r4 / r0, None, True, None, "tendd ≥ 0.8",
        note=("pass" if r4 / r0 >= 0.8 else f"miss by {100 * (0.8 - r4 / r0):.0f} points") + f"; {r4:.0f}/s vs {r0:.0f}/s empty; starting the {kk} took {o['start_secs']:.1f} s")
    res["statedir"] = {"held": kk, "rate0": r0, "rate_held": r4, "start_held_s": o["start_secs"]}
    # Journal bound: a child prints 300 MB of 80-byte lines. Daemon RSS after a first such flood (which
    # touches the daemon-wide read buffer and allocator arenas once) and after a second one: the growth is
    # the second process's journal (and record), to compare with --journal-bytes 1 MiB. Then the same with
    # the raw rings on (their own bound, 2 x 256 KiB), and with one follower (its connection's queue).
    log("density: journal bound")
    import urllib.request

    def wait_exit(pid):
        end = time.time() + 60
        while time.time() < end:   # until the child exited (no follower waited for it)
            req = urllib.request.Request(f"http://127.0.0.1:{TENDD_PORT}/api/v1/processes/{pid}",
                                         headers={"Authorization": f"Bearer {env.token}"})
            if json.load(urllib.request.urlopen(req))["status"] != "running": return
            time.sleep(0.1)

    flood = start_json(env.b("lines"), ["80", "3700000", "wait"], True)
    for key, flags, nf, bound, label in [
            ("journal", ["--raw-bytes", "0"], 0, 1024, "journal 1 MiB, raw view off"),
            ("journal_raw", [], 0, 1024 + 512, "journal 1 MiB + raw rings 2 x 256 KiB"),
            ("journal_follower", ["--raw-bytes", "0"], 1, None, "journal 1 MiB, one follower")]:
        d = env.start_tendd(*flags)
        time.sleep(0.3)
        r = env.client("sse", TENDD_PORT, env.token, 0, "tendd", flood, timeout=300)
        wait_exit(r["pid"])
        before = rss_kib(d.pid)
        hwm_before = rss_kib(d.pid, "VmHWM")
        r = env.client("sse", TENDD_PORT, env.token, nf, "tendd", flood, timeout=300)
        wait_exit(r["pid"])
        after = rss_kib(d.pid)
        hwm_after = rss_kib(d.pid, "VmHWM")
        env.stop(d)
        growth = after - before
        if bound is not None:
            add(sect, f"RSS growth per flooding process (prints 300 MB; {label})", "KiB", growth, None, False, None,
                f"≤ {bound} KiB", note=("pass" if growth <= bound else f"miss: {growth - bound} KiB over") +
                f"; peak RSS growth {hwm_after - hwm_before} KiB")
        else:
            add(sect, f"RSS growth per flooding process ({label})", "KiB", growth, None, False, None, "(info)",
                note=f"peak RSS growth {hwm_after - hwm_before} KiB (journal + the follower's queue); "
                     f"follower got {r['lines']} of 3700000 lines, {r['gaps']} gaps")
        res[key] = {"rss_before": before, "rss_after": after, "hwm_before": hwm_before, "hwm_after": hwm_after}
    return res


# ---------------------------------------------------------------- report

def fmt(v, unit):
    if v is None: return "—"
    if isinstance(v, str): return v
    if unit in ("B/s",):
        s = v / 1e6; return f"{s:,.0f} MB/s" if s >= 10 else f"{s:,.1f} MB/s"
    if unit in ("lines/s", "req/s", "/s"):
        return f"{v / 1e6:,.2f} M" if v >= 1e6 else f"{v:,.0f}"
    if unit == "µs": return f"{v:,.0f} µs" if v >= 100 else f"{v:,.1f} µs"
    if unit == "KiB": return f"{v:,.0f} KiB" if v >= 100 else f"{v:,.1f} KiB"
    if unit == "s": return f"{v:,.2f} s"
    if unit == "ns": return f"{v:,.0f} ns"
    if unit == "×": return f"{v:.2f}"
    if unit == "%": return f"{v:.1f} %"
    return f"{v:,.0f}"


def cell(s, unit):
    if s is None: return "—"
    if isinstance(s, (str, int, float)): return fmt(s, unit)
    if s["n"] == 1 or s["min"] == s["max"]: return fmt(s["median"], unit)
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}–{fmt(s['max'], unit)})"


def med(s):
    if s is None or isinstance(s, str): return None
    return s["median"] if isinstance(s, dict) else s


def ratio(row, other="base"):
    t, b = med(row["tendd"]), med(row.get(other))
    if t is None or b is None or b == 0 or row["unit"] in ("×", "%"): return None
    return t / b


def peer_cell(row):
    """tendd / Tensorlake daemon, and who leads (for a loss: the two percentages)."""
    if row["unit"] == "%":
        t, p = med(row["tendd"]), med(row.get("peer"))
        if p is None: return ""
        return "leads" if t < p else ("equal" if t == p else "**behind**")
    r = ratio(row, "peer")
    if r is None: return ""
    lead = r > 1 if row["higher"] else r < 1
    return f"{r:.2f} ({'leads' if lead else '**behind**'})"


def verdict(row, r):
    if row["target"] is None or r is None: return ""
    ok = r >= row["target"] if row["higher"] else r <= row["target"]
    if ok: return "pass"
    if row["higher"]: return f"**miss** ({100 * (1 - r / row['target']):.0f} % short)"
    return f"**miss** ({r / row['target']:.1f}× the allowed)"


def write_svg(path):
    bars = []
    for row in rows:
        r = ratio(row)
        if r is None or row["target"] is None: continue
        # normalise so that bigger is better: for latencies use baseline/tendd
        if row["higher"]: val, tgt = r, row["target"]
        else: val, tgt = 1 / r, 1 / row["target"]
        bars.append((f"{row['section'].split('. ', 1)[1]}: {row['metric']}", val, tgt, "c"))
    for row in rows:   # the second series: tendd / Tensorlake daemon (target: lead, i.e. above 1)
        r = ratio(row, "peer")
        if r is None: continue
        bars.append((f"vs Tensorlake: {row['section'].split('. ', 1)[1]}: {row['metric']}", r if row["higher"] else 1 / r, 1.0, "p"))
    W, bh, gap, left = 980, 22, 8, 430
    H = 60 + len(bars) * (bh + gap) + 40
    scale = (W - left - 40) / max([1.2] + [min(8.0, max(v, t)) * 1.05 for _, v, t, _ in bars])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">tendd / C baseline, then tendd / Tensorlake daemon (higher is better; latencies, CPU, memory inverted)</text>',
           f'<text x="{W / 2}" y="40" text-anchor="middle" fill="#555">black tick = target (vs Tensorlake: 1, tendd must lead); green/blue when met, red when missed; bars cut at 8</text>']
    x1 = left + scale * 1.0
    out.append(f'<line x1="{x1}" y1="48" x2="{x1}" y2="{H - 30}" stroke="#999" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1}" y="{H - 14}" text-anchor="middle" fill="#555">1.0 = baseline</text>')
    for i, (label, v, t, kind) in enumerate(bars):
        y = 56 + i * (bh + gap)
        color = "#d0463c" if v < t else ("#3a9d4a" if kind == "c" else "#3a6fb0")
        label = label.replace("&", "&amp;").replace("<", "&lt;")
        out.append(f'<text x="{left - 8}" y="{y + bh * 0.7}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{max(1, min(v, 8.0) * scale):.1f}" height="{bh}" fill="{color}"/>')
        out.append(f'<text x="{left + min(v, 8.0) * scale + 4:.1f}" y="{y + bh * 0.7}">{v:.2f}</text>')
        tx = left + t * scale
        out.append(f'<line x1="{tx:.1f}" y1="{y - 2}" x2="{tx:.1f}" y2="{y + bh + 2}" stroke="black" stroke-width="2"/>')
    out.append("</svg>")
    with open(path, "w") as f: f.write("\n".join(out))


def write_report(path, meta):
    L = [f"# tend benchmark report", "",
         f"- date: {meta['date']}; commit: `{meta['commit']}`; mode: {'quick' if meta['quick'] else 'full'}, {meta['runs']} runs per figure",
         *([f"- merged report: {meta['merged']}"] if meta.get("merged") else []),
         f"- machine: {meta['cpus']} vCPU, {meta['kernel']}; load average before / after: {meta['load_before']} / {meta['load_after']}",
         *([f"- cgroup2 mount: {meta['cgroup2']} (`favordynmods` makes a migration through cgroup.procs cheap; tendd starts children in their leaf with clone3 either way)"] if meta.get("cgroup2") else []),
         f"- tendd: `{meta['tendd']}` with default flags except `--max-processes 5000 --max-connections 9000` (log level info, stderr to a file)",
         f"- Tensorlake daemon: {meta.get('peer') or '— (binary absent: column empty)'}",
         "- every figure: median of the runs (min–max), tendd and its baseline alternated in the same run; the ratio is of the medians.",
         "- the machine is shared (2 vCPU, other developers building): numbers are noisy; compare ratios, not absolute values.",
         "", "![ratios](ratios.svg)", "",
         "| section | metric | tendd | C baseline | ratio | target | result | Tensorlake daemon | tendd / Tensorlake | note |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        r = ratio(row)
        v = verdict(row, r)
        if not v and row["note"].startswith(("pass", "miss")):
            v = "pass" if row["note"].startswith("pass") else "**miss**"
        L.append(f"| {row['section']} | {row['metric']} | {cell(row['tendd'], row['unit'])} | {cell(row['base'], row['unit'])} | "
                 f"{'' if r is None else f'{r:.2f}'} | {row['target_text']} | {v} | {cell(row.get('peer'), row['unit'])} | "
                 f"{peer_cell(row)} | {row['note']} |")
    L += ["", "Baselines (bench/baseline/, gcc -O2): `sse_relay.c` (pipe → epoll → SSE framing with 16-byte JSON escaping → "
          "chunked HTTP, blocks its child when a follower is > 1 MiB behind), `raw_relay.c` (read/write, 1 MiB pipe and buffer), "
          "`api_server.c` (keep-alive HTTP: GET /api/v1/info and POST /api/v1/processes = 3 pipes + clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + exec, "
          "same child-side work as tendd's shim). Children: `tools/lines.c` (N lines of S bytes, 64 KiB writes), `tools/pinger.c`. "
          "Client: `tools/client.c` (the same client measures all three); req/s with `wrk -t1 -c50`.",
          "", "Tensorlake daemon: Tensorlake's open-source container daemon (Rust/axum/tokio, `tensorlakeai/indexify` "
          "`crates/container-daemon`, no auth), driven by the same client over the same API; \"tendd / Tensorlake\" is the ratio "
          "of the medians (for rates higher is better, for latencies, CPU and memory lower). It logs every line to a file and "
          "broadcasts it through a 1,024-line channel (a slow follower loses lines silently: the client counts what arrives); its CPU "
          "is summed over all its threads. Not comparable, so \"—\": the raw byte view (it has none), the C-relay-specific rows.", ""]
    if meta.get("analysis"):
        L += ["## Analysis", "", meta["analysis"], ""]
    with open(path, "w") as f: f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--only", default="sse,lat,raw,start,info,fanout,density")
    ap.add_argument("--analysis", help="markdown file appended to the report as its Analysis section")
    ap.add_argument("--merge", action="store_true", help="keep the sections of results/raw.json that this run does not measure")
    ap.add_argument("--report-only", action="store_true", help="rewrite REPORT.md and ratios.svg from results/raw.json")
    ap.add_argument("--out", help="results directory (default bench/results, or bench/results/quick with --quick)")
    ap.add_argument("--peer", default=os.environ.get("TEND_BENCH_PEER", DEFAULT_PEER),
                    help="the Tensorlake daemon binary for the second column ('none': no column)")
    args = ap.parse_args()
    global RESULTS
    RESULTS = args.out or (os.path.join(RESULTS, "quick") if args.quick else RESULTS)
    if args.report_only:
        data = json.load(open(os.path.join(RESULTS, "raw.json")))
        rows.extend(data["rows"])
        meta = data["meta"]
        if args.analysis: meta["analysis"] = open(args.analysis).read().strip()
        write_svg(os.path.join(RESULTS, "ratios.svg"))
        write_report(os.path.join(RESULTS, "REPORT.md"), meta)
        return
    R = args.runs or (3 if args.quick else 5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load_before = open("/proc/loadavg").read().split()[:3]
    tendd = build(args)
    tmp = tempfile.mkdtemp(prefix="tend-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    token = os.urandom(16).hex()
    peer = args.peer if args.peer != "none" and os.access(args.peer, os.X_OK) else None
    if not peer: log(f"no Tensorlake daemon at {args.peer}: its column will be '—'")
    env = Env(tendd, tmp, token, peer)
    with open(env.tokfile, "w") as f: f.write(token + "\n")
    os.chmod(env.tokfile, 0o600)
    t0 = time.time()
    todo = args.only.split(",")
    scen = [("sse", sc_sse), ("lat", sc_lat), ("raw", sc_raw), ("start", sc_start), ("info", sc_info),
            ("fanout", sc_fanout), ("density", sc_density)]
    extra = {}
    try:
        for name, fn in scen:
            if name in todo:
                s = time.time()
                extra[name] = fn(env, R, args.quick)
                log(f"{name} done in {time.time() - s:.0f} s")
    finally:
        cleanup()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "Sources", "CShims"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    label = os.environ.get("BENCH_COMMIT") or (commit + ("+dirty" if dirty else ""))
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), commit=label, quick=args.quick, runs=R,
                cpus=os.cpu_count(), kernel=os.uname().release, load_before=" ".join(load_before),
                load_after=" ".join(open("/proc/loadavg").read().split()[:3]), tendd=os.path.relpath(tendd, ROOT),
                cgroup2=cgroup2_mount(), peer=f"`{os.path.relpath(peer, ROOT)}`, port {PEER_PORT}, `--log-dir` in a temporary directory" if peer else None)
    if args.analysis:
        meta["analysis"] = open(args.analysis).read().strip()
    os.makedirs(RESULTS, exist_ok=True)
    if args.merge and os.path.exists(os.path.join(RESULTS, "raw.json")):
        old = json.load(open(os.path.join(RESULTS, "raw.json")))
        new_sections = {r["section"] for r in rows}
        merged = [r for r in old["rows"] if r["section"] not in new_sections] + rows
        merged.sort(key=lambda r: r["section"].split(".")[0].zfill(3))   # stable: keeps order inside a section
        rows[:] = merged
        meta["merged"] = f"sections {', '.join(sorted(new_sections))} from the run of {meta['date']}; the rest from {old['meta']['date']}"
        for k, v in old.get("extra", {}).items(): extra.setdefault(k, v)
    write_svg(os.path.join(RESULTS, "ratios.svg"))
    write_report(os.path.join(RESULTS, "REPORT.md"), meta)
    with open(os.path.join(RESULTS, "raw.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows, "extra": extra}, f, indent=1, default=str)
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"done in {time.time() - t0:.0f} s: {os.path.relpath(RESULTS, ROOT)}/REPORT.md")


if __name__ == "__main__":
    main()
