#!/usr/bin/env python3
"""Two tendd binaries side by side (before/after a change), alternating in one run on the same machine:
/info req/s and CPU per request (wrk -t1 -c50), starts/s and daemon CPU per start (sequential and 8
clients), idle RSS. With --sse: SSE follow instead (80 B and 1 B lines, 1 and 10 followers; lines/s,
daemon CPU per delivered line, lines lost), both daemons with the disk tier on as in production.
Uses the tools bench/run.py builds into bench/.bin.

    python3 bench/ab.py BEFORE_TENDD AFTER_TENDD [--runs 5] [--secs 3] [--sse]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R   # the same helpers (client, wrk, cpu accounting, cleanup at exit)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before"); ap.add_argument("after")
    ap.add_argument("--runs", type=int, default=5); ap.add_argument("--secs", type=int, default=3)
    ap.add_argument("--starts", type=int, default=500)
    ap.add_argument("--sse", action="store_true")
    ap.add_argument("--lines", type=int, default=1_000_000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tend-ab-")
    token = os.urandom(16).hex()
    env = R.Env(None, tmp, token)
    with open(env.tokfile, "w") as f: f.write(token + "\n")
    ports = {"before": R.TENDD_PORT + 300, "after": R.TENDD_PORT + 301}
    daemons = {}
    for k, binary in (("before", a.before), ("after", a.after)):
        p = subprocess.Popen([binary, "--listen", f"127.0.0.1:{ports[k]}", "--token-file", env.tokfile,
                              "--max-processes", "5000", "--retention-dir", os.path.join(tmp, f"ret-{k}")],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(tmp, f"{k}.log"), "w"))
        R.procs.append(p); R.wait_port(ports[k], p); daemons[k] = p
    time.sleep(0.5)
    if a.sse: return sse(a, env, token, daemons, ports)
    res = {k: {"rss": R.rss_kib(p.pid), "rps": [], "cpu_req": [], "s1": [], "c1": [], "s8": [], "c8": []} for k, p in daemons.items()}
    body = '{"command":"/bin/true","stdin_mode":"pipe"}'
    for i in range(a.runs):
        for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
            p, port, r = daemons[k], ports[k], res[k]
            c0 = R.cpu_ns(p.pid); rps, _ = R.wrk(env, port, a.secs)
            r["rps"].append(rps); r["cpu_req"].append((R.cpu_ns(p.pid) - c0) / (rps * a.secs))
            for conc in (1, 8):
                c0 = R.cpu_ns(p.pid)
                o = env.client("start", port, token, conc, a.starts, body)
                time.sleep(0.2)
                r[f"s{conc}"].append(o["per_s"]); r[f"c{conc}"].append((R.cpu_ns(p.pid) - c0) / 1e3 / a.starts)
    m = lambda xs: statistics.median(xs)
    print(f"| figure | before | after | after / before |\n| --- | --- | --- | --- |")
    for key, label, fmt in (("rps", "/info req/s (wrk -t1 -c50)", "{:,.0f}"), ("cpu_req", "/info daemon CPU per request, ns", "{:,.0f}"),
                            ("s1", "starts/s, sequential", "{:,.0f}"), ("c1", "daemon CPU per start, sequential, µs", "{:,.0f}"),
                            ("s8", "starts/s, 8 clients", "{:,.0f}"), ("c8", "daemon CPU per start, 8 clients, µs", "{:,.0f}")):
        b, f = m(res["before"][key]), m(res["after"][key])
        print(f"| {label} | {fmt.format(b)} | {fmt.format(f)} | {f / b:.2f} |")
    print(f"| idle RSS, KiB | {res['before']['rss']} | {res['after']['rss']} | {res['after']['rss'] / res['before']['rss']:.2f} |")
    print(f"\n{a.runs} runs each, alternating; load average {open('/proc/loadavg').read().split()[:3]}")
    R.cleanup()


def sse(a, env, token, daemons, ports):
    cases = [(80, 1), (1, 1), (80, 10)]
    res = {k: {c: {"lps": [], "cpu": [], "lost": []} for c in cases} for k in daemons}
    for i in range(a.runs):
        for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
            for size, nf in cases:
                n = a.lines if nf == 1 else a.lines // 10
                c0 = R.cpu_ns(daemons[k].pid)
                o = env.client("sse", ports[k], token, nf, "tendd", R.start_json(env.b("lines"), [str(size), str(n), "wait"], True))
                r = res[k][(size, nf)]
                r["lps"].append(o["lines"] / o["secs"]); r["cpu"].append((R.cpu_ns(daemons[k].pid) - c0) / o["lines"])
                r["lost"].append(100.0 * (1 - o["lines"] / (n * nf)))
    m = statistics.median
    print(f"| figure | before | after | after / before |\n| --- | --- | --- | --- |")
    for size, nf in cases:
        for key, label, fmt in (("lps", "lines/s", "{:,.0f}"), ("cpu", "daemon CPU per delivered line, ns", "{:,.1f}"),
                                ("lost", "lines lost, % (max)", "{:.1f}")):
            agg = max if key == "lost" else m
            b, f = agg(res["before"][(size, nf)][key]), agg(res["after"][(size, nf)][key])
            print(f"| {size} B lines, {nf} follower(s): {label} | {fmt.format(b)} | {fmt.format(f)} | {(f / b if b else 0):.2f} |")
    print(f"\n{a.runs} runs each, alternating; {a.lines:,} lines (fan-out: a tenth to each of 10); load average "
          f"{open('/proc/loadavg').read().split()[:3]}")
    R.cleanup()


if __name__ == "__main__":
    main()
