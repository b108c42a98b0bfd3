#!/usr/bin/env python3
"""tend benchmark suite: tendd against raw C baselines, side by side in the same run.

    python3 bench/run.py [--quick] [--runs N] [--only sse,lat,raw,start,info,fanout,density,files,metrics,interactive,retention] [--peer PATH|none]

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
                      ("lines", "tools/lines.c"), ("pinger", "tools/pinger.c"), ("zerocopy", "baseline/zerocopy.c"),
                      ("file_server", "baseline/file_server.c"), ("fileclient", "tools/fileclient.c"),
                      ("interactive_relay", "baseline/interactive_relay.c"), ("wsbench", "tools/wsbench.c")]:
        sh(["gcc", "-O2", "-Wall", "-o", os.path.join(BIN, name), os.path.join(BENCH, src)] +
           (["-lutil"] if name == "interactive_relay" else []))
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

    def start_tendd(self, *flags, env=None):
        """tendd as production runs it: the disk tier of output retention on (the systemd unit gives it
        CacheDirectory=tendd), here in a fresh scratch directory; `--retention-dir none` in flags turns it off."""
        errlog = open(os.path.join(self.tmp, "tendd.log"), "a")
        ret = tempfile.mkdtemp(prefix="retention-", dir=self.tmp)
        p = subprocess.Popen([self.tendd, "--listen", f"127.0.0.1:{TENDD_PORT}", "--token-file", self.tokfile,
                              "--max-processes", "5000", "--max-connections", "9000", "--retention-dir", ret, *flags],
                             stdout=subprocess.DEVNULL, stderr=errlog, env=dict(os.environ, **(env or {})))
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
        off_loss = []
        if size in (80, 1):   # the same flood with the disk tier off: what a 1 MiB journal alone keeps
            t = env.start_tendd("--retention-dir", "none")
            for i in range(max(2, R - 2)):
                r = env.client("sse", TENDD_PORT, env.token, 1, "tendd", start_json(env.b("lines"), [str(size), str(n), "wait"], True))
                off_loss.append(100.0 * (1 - r["lines"] / n))
            env.stop(t)
        pl, ploss, pc, pnote = peer_sse(env, R, quick, size, 1)
        note = f"tendd lost {statistics.median(loss):.0f} % of lines (journal overflow, gap events; median)" if max(loss) > 0 else ""
        tgt_l = {80: 0.85, 1: 0.8}.get(size)
        tgt_b = 0.9 if size == 4096 else None
        add("1. SSE follow", f"{size} B lines: lines/s", "lines/s", tl, bl, True, tgt_l, f"≥ {tgt_l}" if tgt_l else "", note + pnote, peer=pl)
        if size in (80, 1):
            loss_row("1. SSE follow", f"{size} B lines: lines lost by a reader as fast as the C relay's", loss, ploss)
            add("1. SSE follow", f"{size} B lines: lines lost with the disk tier off (--retention-dir none)", "%", off_loss,
                0.0, False, None, "(info)", "the 1 MiB memory journal alone: a flood faster than the reader overflows it")
        add("1. SSE follow", f"{size} B lines: bytes/s (SSE)", "B/s", tb, bb, True, tgt_b, f"≥ {tgt_b}" if tgt_b else "", "")
        add("1. SSE follow", f"{size} B lines: daemon CPU per delivered line", "ns", tc, bc, False, None, "(info)",
            "tendd also ingests the lines it drops" if max(loss) > 0 else "", peer=pc)
    # Without loss: a journal big enough to hold everything, so all lines are delivered.
    n = 200_000
    log(f"sse: 80 B lines x {n}, --journal-bytes 256 MiB (no loss)")
    t = env.start_tendd("--retention-dir", "none", "--journal-bytes", str(256 << 20))
    base = env.start_base(["sse_relay", str(BASE_PORT), "1", env.b("lines"), "80", str(n)])
    tl, bl = [], []
    for i in range(max(2, R - 2)):
        r = env.client("sse", TENDD_PORT, env.token, 1, "tendd", start_json(env.b("lines"), ["80", str(n), "wait"], True))
        tl.append(r["lines"] / r["secs"])
        r = env.client("sse", BASE_PORT, env.token, 1, "base")
        bl.append(r["lines"] / r["secs"])
    env.stop(t); env.stop(base)
    add("1. SSE follow", "80 B lines, journal 256 MiB (no loss): lines/s", "lines/s", tl, bl, True, None, "(info)", "")


def sc_retention(env, R, quick):
    """Issue 13: the disk tier's cost on SSE throughput (tier on vs off, side by side) and the burst case: a
    follower (curl writing to a file) attached before 1 M 80-byte lines, for tendd with and without the tier,
    the C relay and the Tensorlake daemon: lines delivered, lines lost, daemon peak RSS."""
    sect = "8. Retention (disk tier)"
    ret = os.path.join(env.tmp, "retention")
    res = {}

    def start_on(port, *flags):
        errlog = open(os.path.join(env.tmp, f"tendd-{port}.log"), "a")
        p = subprocess.Popen([env.tendd, "--listen", f"127.0.0.1:{port}", "--token-file", env.tokfile, *flags],
                             stdout=subprocess.DEVNULL, stderr=errlog)
        procs.append(p)
        wait_port(port, p)
        return p

    # Lossless delivery with the tier on (1 MiB journal + disk) vs the tier off with a journal big enough to
    # hold everything (256 MiB, the same delivered lines), and both against the C relay, alternating.
    relay_port = BASE_PORT + 1
    for size, n in [(80, 1_000_000 if quick else 2_000_000), (4096, 20_000 if quick else 50_000)]:
        log(f"retention: SSE {size} B lines x {n}: tier on, tier off (journal 256 MiB), C relay")
        on = start_on(TENDD_PORT, "--retention-dir", ret)
        off = start_on(BASE_PORT, "--retention-dir", "none", "--journal-bytes", str(256 << 20))
        relay = subprocess.Popen([env.b("sse_relay"), str(relay_port), "1", env.b("lines"), str(size), str(n)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(relay)
        wait_port(relay_port, relay)
        got = {"on": [], "off": [], "relay": []}
        lost = {"on": 0, "off": 0}
        for i in range(R):
            for who in (["on", "off", "relay"] if i % 2 == 0 else ["relay", "off", "on"]):
                if who == "relay":
                    r = env.client("sse", relay_port, env.token, 1, "base")
                else:
                    port = TENDD_PORT if who == "on" else BASE_PORT
                    r = env.client("sse", port, env.token, 1, "tendd", start_json(env.b("lines"), [str(size), str(n), "wait"], True))
                    lost[who] = max(lost[who], n - r["lines"])
                got[who].append(r["lines"] / r["secs"])
        env.stop(on); env.stop(off); env.stop(relay)
        add(sect, f"SSE {size} B lines: lines/s, tier on (tendd) vs tier off, journal 256 MiB (base column)", "lines/s",
            got["on"], got["off"], True, 0.95, "≥ 0.95", f"lines lost: tier on {lost['on']}, tier off {lost['off']}")
        add(sect, f"SSE {size} B lines: lines/s, tier on vs C relay", "lines/s", got["on"], got["relay"], True, None, "(info)", "")
        add(sect, f"SSE {size} B lines: lines/s, tier off (journal 256 MiB) vs C relay", "lines/s", got["off"], got["relay"],
            True, None, "(info)", "")
        res[f"sse{size}"] = got

    # The burst: curl -o file as the reader, attached before the child prints.
    n = 1_000_000
    out = os.path.join(env.tmp, "burst.sse")

    def curl(port, path, token):
        return subprocess.Popen(["curl", "-sN", "-o", out, "-H", f"Authorization: Bearer {token}",
                                 f"http://127.0.0.1:{port}{path}"])

    def delivered():
        data = open(out, "rb").read()
        return data.count(b'"line":"'), data.count(b"event:gap") + data.count(b"event: gap")

    def post(port, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body if body is not None else b"",
                                     method="POST", headers={"Authorization": f"Bearer {env.token}",
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()

    def wait_file():
        end = time.time() + 5
        while time.time() < end and not os.path.exists(out): time.sleep(0.01)

    import urllib.request
    burst = {}
    for label, flags in [("tendd, disk tier on", ["--retention-dir", ret]), ("tendd, disk tier off", ["--retention-dir", "none"])]:
        log(f"retention: burst, {label}")
        rows_ = []
        for _ in range(max(1, R - 2)):
            if os.path.exists(out): os.remove(out)
            d = start_on(TENDD_PORT, *flags)
            st, body = post(TENDD_PORT, "/api/v1/processes", start_json(env.b("lines"), ["80", str(n), "wait"], True).encode())
            pid = json.loads(body)["pid"]
            c = curl(TENDD_PORT, f"/api/v1/processes/{pid}/output/follow", env.token)
            time.sleep(0.3)   # the follower is attached (no output yet, so there is no event to wait for)
            post(TENDD_PORT, f"/api/v1/processes/{pid}/stdin/close")
            c.wait(300)
            hwm = rss_kib(d.pid, "VmHWM")
            env.stop(d)
            got, gaps = delivered()
            rows_.append((got, n - got, hwm))
        burst[label] = rows_
    log("retention: burst, C relay")
    rows_ = []
    for _ in range(max(1, R - 2)):
        if os.path.exists(out): os.remove(out)
        base = env.start_base(["sse_relay", str(BASE_PORT), "1", env.b("lines"), "80", str(n)])
        c = curl(BASE_PORT, "/api/v1/processes/1/output/follow", env.token)
        c.wait(300)
        hwm = rss_kib(base.pid, "VmHWM")
        env.stop(base)
        got, _ = delivered()
        rows_.append((got, n - got, hwm))
    burst["C relay (sse_relay.c)"] = rows_
    tl = os.path.join(ROOT, "..", "shared", "peers", "tensorlake-daemon", "tensorlake-daemon")
    if os.path.exists(tl):
        log("retention: burst, Tensorlake daemon")
        rows_ = []
        for _ in range(max(1, R - 2)):
            if os.path.exists(out): os.remove(out)
            logdir = tempfile.mkdtemp(dir=env.tmp)
            p = subprocess.Popen([tl, "--http-port", str(BASE_PORT), "--log-dir", logdir],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_port(BASE_PORT, p)
            # (its stdin close raced with the start once and never reached the child: a delayed start instead)
            st, body = post(BASE_PORT, "/api/v1/processes",
                            start_json("/bin/sh", ["-c", f"sleep 1; exec {env.b('lines')} 80 {n}"]).encode())
            pid = json.loads(body)["pid"]
            c = curl(BASE_PORT, f"/api/v1/processes/{pid}/output/follow", env.token)
            try:
                c.wait(60)
            except subprocess.TimeoutExpired:   # seen: a follower that lagged gets no eof; count what came
                c.kill(); c.wait()
                log("retention: the Tensorlake daemon's follow did not end within 60 s")
            hwm = rss_kib(p.pid, "VmHWM")
            env.stop(p)
            got, _ = delivered()
            rows_.append((got, n - got, hwm))
        burst["Tensorlake daemon"] = rows_
    for label, rs in burst.items():
        got = [r[0] for r in rs]; lost = [r[1] for r in rs]; hwm = [r[2] for r in rs]
        add(sect, f"burst 1 M x 80 B, curl follower: lines delivered ({label})", "lines", got, None, True, None,
            "(info)", f"lost {max(lost)} (max over runs); daemon peak RSS {min(hwm)}–{max(hwm)} KiB")
    res["burst"] = burst
    return res


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


def wsbench(env, *args, cpu=None):
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    out = subprocess.run(pin + [env.b("wsbench"), *map(str, args)], capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"wsbench {args[0]} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def sc_interactive(env, R, quick):
    """PTY keystroke round trip (WebSocket → pty → echo → WebSocket) against a raw TCP ↔ pty relay, and
    tunnel download throughput (sandbox port → WebSocket frames) against a raw TCP relay."""
    count = 500 if quick else 2000
    nbytes = (200 if quick else 500) << 20
    log(f"interactive: {count} keystrokes, {nbytes >> 20} MiB through a tunnel per run")
    src_port = BASE_PORT + 50
    t = env.start_tendd()
    src = subprocess.Popen([env.b("wsbench"), "source", str(src_port), str(nbytes)], stdout=subprocess.DEVNULL)
    procs.append(src)
    wait_port(src_port, src)
    p50t, p99t, p50b, p99b, gt, gb, ct, cb = [], [], [], [], [], [], [], []
    # The keystroke round trip runs with the daemon (or relay), its pty child and the client on one CPU: a
    # wake-up on the other vCPU costs 35-45 µs here and lands at random, which swamped the difference
    # (per-run medians of 17-110 µs for the same binary). Throughput runs unpinned.
    all_cpus = os.sched_getaffinity(0)
    for i in range(R):
        for who in (["t", "b"] if i % 2 == 0 else ["b", "t"]):
            if who == "t":
                os.sched_setaffinity(t.pid, {0})
                r = wsbench(env, "pty-lat", TENDD_PORT, env.token, count, cpu=0)
                os.sched_setaffinity(t.pid, all_cpus)
                p50t.append(r["p50_us"]); p99t.append(r["p99_us"])
                c0 = cpu_ns(t.pid)
                r = wsbench(env, "tunnel-down", TENDD_PORT, env.token, src_port)
                assert r["bytes"] == nbytes, r
                gt.append(r["bytes"] / r["secs"]); ct.append((cpu_ns(t.pid) - c0) / (r["bytes"] / (1 << 20)))
            else:
                base = env.start_base(["interactive_relay", "pty", str(BASE_PORT)])
                os.sched_setaffinity(base.pid, {0})
                r = wsbench(env, "tcp-lat", BASE_PORT, count, cpu=0)
                env.stop(base)
                p50b.append(r["p50_us"]); p99b.append(r["p99_us"])
                base = env.start_base(["interactive_relay", "tcp", str(BASE_PORT), str(src_port)])
                c0 = cpu_ns(base.pid)
                r = wsbench(env, "tcp-down", BASE_PORT)
                cb.append((cpu_ns(base.pid) - c0) / (r["bytes"] / (1 << 20)))
                env.stop(base)
                assert r["bytes"] == nbytes, r
                gb.append(r["bytes"] / r["secs"])
    env.stop(t); env.stop(src)
    add("8. Interactive sessions", "PTY keystroke round trip, p50", "µs", p50t, p50b, False, 1.5, "≤ 1.5×",
        "tendd: WebSocket frame → pty → echo → frame; baseline: raw TCP ↔ pty relay (forkpty + poll); "
        "daemon, pty child and client on CPU 0")
    add("8. Interactive sessions", "PTY keystroke round trip, p99", "µs", p99t, p99b, False, 2.0, "≤ 2×")
    add("8. Interactive sessions", "tunnel download", "B/s", gt, gb, True, 0.7, "≥ 0.7",
        "tendd: 127.0.0.1:port → binary WebSocket frames; baseline: raw TCP relay (read/write, 256 KiB buffer)")
    add("8. Interactive sessions", "tunnel download: relay CPU per MiB", "ns", ct, cb, False, None, "",
        "CPU time of the daemon / the relay process")


def sc_raw(env, R, quick):
    n = 75_000 if quick else 150_000
    total = n * 4096
    child = start_json(env.b("lines"), ["4095", str(n), "wait"], True)
    # tendd never blocks its child on a slow reader (its ring overwrites; the reader is told where it lost
    # bytes and resumes), the relay does: bytes lost are counted and noted. Default 256 KiB ring; a 16 MiB
    # ring for comparison (more memory touched per byte, fewer chances to lose); the default ring in the
    # crash-safe memfd of a daemon with a state directory (what a systemd unit gets: writes of at most a
    # quarter of the ring between commits, so 64 KiB pipe reads).
    # The raw path is measured with the line journal's disk tier off: writing every line that leaves the
    # 1 MiB journal to the tier is retention's cost (SSE rows, section 8), and the last row shows it here.
    sd = os.path.join(env.tmp, "raw-state"); os.makedirs(sd, exist_ok=True)
    off = ["--retention-dir", "none"]
    for flags, label, tgt in [(off, "default 256 KiB ring", 0.9), (off + ["--raw-bytes", str(16 << 20)], "16 MiB ring", None),
                              (off + ["--state-dir", sd], "default ring, crash-safe memfd (--state-dir)", None),
                              ([], "default ring, disk tier of the line journal on", None)]:
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


def scrape_once(conn, token, path):
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body[:200])
    return time.perf_counter() - t0, len(body)


def sc_metrics(env, R, quick):
    """Issue 16: what the metrics cost. (a) GET /metrics (and ?per_process=1, and the process list, which
    now reads every tree's usage) with 4,000 processes held; (b) the hot paths with metrics on vs
    --no-metrics, alternating in the same run: SSE 80 B lines/s, sequential starts/s, and daemon CPU
    per line / per start (less noisy than the rates on a shared machine)."""
    import http.client
    sect = "8. Metrics (issue 16)"
    body = json.dumps({"command": "/bin/sleep", "args": ["100000"]})
    k = 1000 if quick else 4000
    n_scrapes = 20 if quick else 50
    log(f"metrics: scrape with {k} held")
    d = env.start_tendd()
    h, o = hold(env, TENDD_PORT, k, False, body)
    res = {}
    for label, path, n in [("/metrics", "/metrics", n_scrapes), ("/metrics?per_process=1", "/metrics?per_process=1", max(5, n_scrapes // 5)),
                           ("GET /api/v1/processes (with resources)", "/api/v1/processes", max(5, n_scrapes // 5))]:
        conn = http.client.HTTPConnection("127.0.0.1", TENDD_PORT, timeout=60)
        secs, cpus, size = [], [], 0
        for _ in range(n):
            c0 = cpu_ns(d.pid)
            t, size = scrape_once(conn, env.token, path)
            cpus.append((cpu_ns(d.pid) - c0) / 1e6)
            secs.append(t * 1e3)
        conn.close()
        secs.sort()
        res[label] = {"ms": secs, "cpu_ms": cpus, "bytes": size}
        add(sect, f"{label} with {k} processes: response time", "ms", secs, None, False, None,
            "/metrics ≤ 100 ms" if label == "/metrics" else "(info)",
            note=f"p99 {secs[min(len(secs) - 1, int(len(secs) * 0.99))]:.1f} ms; daemon CPU {statistics.median(cpus):.1f} ms; {size} bytes")
    release(env, [h], o["pids"])
    env.stop(d)

    total = 300 if quick else 1000
    lines_n = 1_000_000 if quick else 2_000_000
    true_body = json.dumps({"command": "/bin/true", "stdin_mode": "pipe"})
    flood = start_json(env.b("lines"), ["80", str(lines_n), "wait"], True)
    on = {"lines": [], "lcpu": [], "starts": [], "scpu": []}
    off = {"lines": [], "lcpu": [], "starts": [], "scpu": []}
    log(f"metrics: hot paths on vs off, {R} rounds")
    for i in range(R):
        for who in (["on", "off"] if i % 2 == 0 else ["off", "on"]):
            d = env.start_tendd(*([] if who == "on" else ["--no-metrics"]))
            m = on if who == "on" else off
            c0 = cpu_ns(d.pid)
            r = env.client("sse", TENDD_PORT, env.token, 1, "tendd", flood)
            m["lcpu"].append((cpu_ns(d.pid) - c0) / max(1, r["lines"]))
            m["lines"].append(r["lines"] / r["secs"])
            time.sleep(0.2)
            c0 = cpu_ns(d.pid)
            r = env.client("start", TENDD_PORT, env.token, 1, total, true_body)
            assert r["errors"] == 0, r
            time.sleep(0.2)
            m["scpu"].append((cpu_ns(d.pid) - c0) / 1e3 / total)
            m["starts"].append(r["per_s"])
            env.stop(d)
    add(sect, "SSE 80 B lines/s: metrics on (tendd column) vs --no-metrics (baseline column)", "lines/s", on["lines"], off["lines"], True, 0.98, "≥ 0.98")
    add(sect, "SSE 80 B: daemon CPU per line, on vs off", "ns", on["lcpu"], off["lcpu"], False, None, "(info)")
    add(sect, "sequential starts/s: metrics on vs off", "/s", on["starts"], off["starts"], True, 0.98, "≥ 0.98")
    add(sect, "daemon CPU per start, on vs off", "µs", on["scpu"], off["scpu"], False, None, "(info)")
    res["hot"] = {"on": on, "off": off}
    return res


# ---------------------------------------------------------------- report

def sc_files(env, R, quick):
    """Files API: download (sendfile, and pread + send for comparison) and upload (temp file, fsync,
    rename) of one large file against file_server.c (sendfile; splice socket → pipe → file), the daemon's
    RSS during the transfer, and the latency of GET /api/v1/health while a transfer runs."""
    import threading
    size = (256 if quick else 1024) << 20
    src = os.path.join(env.tmp, "files-src.bin")
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(size >> 20):
            f.write(block[i % 4096:] + block[:i % 4096])
    fc = lambda *a: json.loads(subprocess.run([env.b("fileclient"), *map(str, a)], capture_output=True, text=True,
                                              check=True, timeout=300).stdout.strip().splitlines()[-1])
    base = env.start_base(["file_server", str(BASE_PORT)])

    def peak_rss(pid, fn):
        """Runs fn() while sampling VmRSS of pid every 5 ms; returns (fn's result, max KiB)."""
        peak, done = [rss_kib(pid)], threading.Event()
        def sample():
            while not done.is_set():
                try: peak[0] = max(peak[0], rss_kib(pid))
                except OSError: return
                time.sleep(0.005)
        th = threading.Thread(target=sample); th.start()
        try: return fn(), peak[0]
        finally: done.set(); th.join()

    dl = {"t": [], "tp": [], "b": []}; ul = {"t": [], "b": []}
    cpu = {"t_get": [], "tp_get": [], "b_get": [], "t_put": [], "b_put": []}   # daemon CPU ns per MB moved
    mb = size / 1e6
    rss = {"t_get": [], "t_put": [], "b_get": [], "b_put": [], "t_idle": []}
    for i in range(R):
        log(f"files: run {i + 1}/{R} ({size >> 20} MiB each way)")
        for who in (["t", "tp", "b"] if i % 2 == 0 else ["b", "tp", "t"]):
            if who == "b":
                c0 = cpu_ns(base.pid)
                r, m = peak_rss(base.pid, lambda: fc("get", BASE_PORT, env.token, src)); dl["b"].append(r["bytes"] / r["secs"]); rss["b_get"].append(m)
                c1 = cpu_ns(base.pid); cpu["b_get"].append((c1 - c0) / mb)
                r, m = peak_rss(base.pid, lambda: fc("put", BASE_PORT, env.token, src + ".b", src)); ul["b"].append(r["bytes"] / r["secs"]); rss["b_put"].append(m)
                cpu["b_put"].append((cpu_ns(base.pid) - c1) / mb)
                continue
            t = env.start_tendd(env={"TENDD_FILES_PREAD": "1"} if who == "tp" else None)
            rss["t_idle"].append(rss_kib(t.pid))
            c0 = cpu_ns(t.pid)
            r, m = peak_rss(t.pid, lambda: fc("get", TENDD_PORT, env.token, src))
            assert r["bytes"] == size, r
            dl[who].append(r["bytes"] / r["secs"])
            c1 = cpu_ns(t.pid); cpu[who + "_get"].append((c1 - c0) / mb)
            if who == "t":
                rss["t_get"].append(m)
                r, m = peak_rss(t.pid, lambda: fc("put", TENDD_PORT, env.token, src + ".t", src))
                ul["t"].append(r["bytes"] / r["secs"]); rss["t_put"].append(m)
                cpu["t_put"].append((cpu_ns(t.pid) - c1) / mb)
            env.stop(t)
    sec = "8. Files"
    add(sec, f"download {size >> 20} MiB from the page cache, sendfile (tendd) vs sendfile (C)", "B/s", dl["t"], dl["b"], True, 0.8, "≥ 0.8")
    add(sec, f"download {size >> 20} MiB, tendd pread + send (TENDD_FILES_PREAD=1) vs sendfile (C)", "B/s", dl["tp"], dl["b"], True, None, "(info)")
    add(sec, f"upload {size >> 20} MiB: temp file + fsync + rename, tendd read + write vs C splice", "B/s", ul["t"], ul["b"], True, 0.7, "≥ 0.7",
        "both fsync before the rename; the disk's write-back dominates")
    add(sec, "daemon CPU per MB downloaded, tendd sendfile vs C sendfile", "ns", cpu["t_get"], cpu["b_get"], False, None, "(info)")
    add(sec, "daemon CPU per MB downloaded, tendd pread + send vs C sendfile", "ns", cpu["tp_get"], cpu["b_get"], False, None, "(info)")
    add(sec, "daemon CPU per MB uploaded (incl. fsync), tendd read + write vs C splice", "ns", cpu["t_put"], cpu["b_put"], False, None, "(info)")
    add(sec, "RSS peak during the download (sampled every 5 ms)", "KiB", rss["t_get"], rss["b_get"], False, None, "(info)",
        f"tendd idle: {statistics.median(rss['t_idle']):,.0f} KiB")
    add(sec, "RSS peak during the upload", "KiB", rss["t_put"], rss["b_put"], False, None, "(info)")
    # Responsiveness: health latency on a keep-alive connection, idle vs while a download / an upload runs.
    t = env.start_tendd()
    idle, during_get, during_put = [], [], []
    for i in range(R):
        idle.append(fc("lat", TENDD_PORT, env.token, 300))
        g = subprocess.Popen([env.b("fileclient"), "get", str(TENDD_PORT), env.token, src], stdout=subprocess.DEVNULL)
        time.sleep(0.05)
        during_get.append(fc("lat", TENDD_PORT, env.token, 300)); g.wait(300)
        u = subprocess.Popen([env.b("fileclient"), "put", str(TENDD_PORT), env.token, src + ".lat", src], stdout=subprocess.DEVNULL)
        time.sleep(0.05)
        during_put.append(fc("lat", TENDD_PORT, env.token, 300)); u.wait(300)
    env.stop(t); env.stop(base)
    for k in ("p50_us", "p99_us"):
        add(sec, f"GET /api/v1/health {k[:3]} while a download runs (tendd idle = baseline column)", "µs",
            [x[k] for x in during_get], [x[k] for x in idle], False, None, "(info)")
        add(sec, f"GET /api/v1/health {k[:3]} while an upload runs (tendd idle = baseline column)", "µs",
            [x[k] for x in during_put], [x[k] for x in idle], False, None, "(info)")
    for f in (src, src + ".b", src + ".t", src + ".lat"):
        try: os.unlink(f)
        except OSError: pass


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
         f"- tendd: `{meta['tendd']}` with default flags except `--max-processes 5000 --max-connections 9000` and the disk tier of output retention on in a scratch directory (`--retention-dir`, as the systemd unit's `CacheDirectory=` gives it; rows say where it is off) (log level info, stderr to a file)",
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
    ap.add_argument("--only", default="sse,retention,lat,raw,start,info,fanout,density,files,metrics,interactive")
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
    scen = [("sse", sc_sse), ("retention", sc_retention), ("lat", sc_lat), ("raw", sc_raw), ("start", sc_start), ("info", sc_info),
            ("fanout", sc_fanout), ("density", sc_density), ("files", sc_files), ("metrics", sc_metrics), ("interactive", sc_interactive)]
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
