// tendd: flags -> Config -> Server. Everything else lives in the Server module.
import Server
import Sys

let usage = """
usage: tendd [--listen ADDR]... --token-file PATH [options]

  --listen ADDR            127.0.0.1:9501, [::1]:9501, :9501 or unix:/path (repeatable; default 127.0.0.1:9501)
  --token-file PATH        bearer token file (or systemd credential 'tendd-token' via $CREDENTIALS_DIRECTORY)
  --log-level LEVEL        debug | info | warn | error (default info)
  --journal-bytes N        output kept per process (default 1048576)
  --max-line-bytes N       longest line before it is split into several events (default 65536)
  --raw-bytes N            raw byte ring per output stream for …/stdout/raw (default 262144; 0 = off)
  --max-exited N           exited process records kept (default 1000)
  --exited-ttl-s N         seconds an exited record is kept (default 86400; 0 = no age limit)
  --max-connections N      concurrent client connections (default 1024)
  --max-processes N        running processes (default 4096)
  --max-body-bytes N       JSON request body limit (default 1048576)
  --max-stdin-queue N      stdin bytes buffered per process before a stdin request is slowed (default 4194304)
  --max-header-bytes N     request line + headers limit (default 16384)
  --header-timeout-ms N    time allowed to send request headers (default 10000)
  --idle-timeout-ms N      idle keep-alive connections are closed after this (default 60000)
  --sse-keepalive-ms N     SSE comment after this much silence (default 15000)
  --drain-ms N             after the leader exits, how long streams wait for pipes held by descendants (default 2000)
  --pty-idle-s N           a PTY session with no client for this long is killed (default 300)
  --pty-keep-exited-s N    an exited PTY session stays listed this long (default 60)
  --shutdown-grace-ms N    on SIGTERM: TERM children, KILL after this (default 5000)
  --pipe-size N            capture pipe size, F_SETPIPE_SZ (default 1048576)
  --no-cgroup              own process trees without cgroup v2 (process group + subreaper + /proc scan);
                           also TENDD_NO_CGROUP=1
  --no-metrics             no /metrics and no counters (to measure their cost); also TENDD_NO_METRICS=1
  --state-dir DIR          state file for crash/upgrade survival (default $RUNTIME_DIRECTORY; none: off)
  --retention-dir DIR      disk tier of output retention (default $CACHE_DIRECTORY; none: off)
  --retention-process-bytes N  disk bytes of output kept per process (default 67108864; 0 = tier off)
  --retention-total-bytes N    disk bytes of output kept for all processes (default: a tenth of the filesystem)
  --version, --help

Under systemd (tendd.socket), listeners come from socket activation; --listen adds more.
"""

func fail(_ msg: String) -> Never {
    var b = Array("tendd: \(msg)\n".utf8)
    b.withUnsafeMutableBytes { _ = try? FD.write(2, UnsafeRawBufferPointer($0)) }
    Proc.exit(2)
}

var config = Config()
var args = CommandLine.arguments.dropFirst()
var listen: [String] = []
func value(_ flag: String) -> String {
    guard let v = args.popFirst() else { fail("\(flag) needs a value\n\(usage)") }
    return v
}
func number(_ flag: String) -> Int {
    let v = value(flag)
    guard let n = Int(v), n >= 0 else { fail("\(flag) needs a non-negative integer, got '\(v)'") }
    return n
}
while let a = args.popFirst() {
    var flag = a
    if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
        flag = String(a[..<eq])
        args.insert(String(a[a.index(after: eq)...]), at: args.startIndex)
    }
    switch flag {
    case "--listen": listen.append(value(flag))
    case "--token-file": config.tokenFile = value(flag)
    case "--log-level":
        let v = value(flag)
        guard let l = LogLevel(name: v) else { fail("unknown log level '\(v)'") }
        config.logLevel = l
    case "--journal-bytes": config.journalBytes = max(4096, number(flag))
    case "--max-line-bytes": config.maxLineBytes = max(16, number(flag))
    case "--raw-bytes": let n = number(flag); config.rawBytes = n == 0 ? 0 : max(16 << 10, n)
    case "--max-exited": config.maxExited = number(flag)
    case "--exited-ttl-s": config.exitedTTLms = Int64(number(flag)) * 1000
    case "--max-connections": config.maxConnections = max(1, number(flag))
    case "--max-processes": config.maxProcesses = max(1, number(flag))
    case "--max-body-bytes": config.maxBodyBytes = number(flag)
    case "--max-stdin-queue": config.maxStdinQueue = max(4096, number(flag))
    case "--max-header-bytes": config.maxHeaderBytes = max(1024, number(flag))
    case "--header-timeout-ms": config.headerTimeoutMs = Int64(max(1, number(flag)))
    case "--idle-timeout-ms": config.idleTimeoutMs = Int64(max(1, number(flag)))
    case "--sse-keepalive-ms": config.sseKeepaliveMs = Int64(max(10, number(flag)))
    case "--drain-ms": config.drainMs = Int64(number(flag))
    case "--pty-idle-s": config.ptyIdleMs = Int64(max(1, number(flag))) * 1000          // pty
    case "--pty-keep-exited-s": config.ptyKeepExitedMs = Int64(number(flag)) * 1000     // pty
    case "--shutdown-grace-ms": config.shutdownGraceMs = Int64(number(flag))
    case "--pipe-size": config.pipeSize = Int32(clamping: number(flag))
    case "--no-cgroup": config.noCgroup = true
    case "--no-metrics": config.noMetrics = true   // metrics: off switch
    case "--state-dir": config.stateDir = value(flag)
    case "--retention-dir": config.retentionDir = value(flag)
    case "--retention-process-bytes": let n = number(flag); config.retentionProcessBytes = n == 0 ? 0 : max(1 << 20, n)
    case "--retention-total-bytes": config.retentionTotalBytes = max(1 << 20, number(flag))
    case "--version": print("tendd 0.1.0"); Proc.exit(0)
    case "--help", "-h": print(usage); Proc.exit(0)
    default: fail("unknown argument '\(a)'\n\(usage)")
    }
}

var addresses: [ListenAddress] = []
for l in listen {
    guard let a = ListenAddress.parse(l) else { fail("cannot parse --listen '\(l)'") }
    addresses.append(a)
}
// systemd socket activation: listeners passed by tendd.socket (sd_listen_fds_with_names). With them, only
// explicit --listen flags are added; without them, the flags or the default address.
var inherited: [(fd: Int32, name: String)] = []
// Crash/upgrade survival: fds named p<handle>.<kind> (and tendd.state) come back from systemd's fd
// store or from our own re-exec; Server.restore adopts them.
var stored: [(fd: Int32, name: String)] = []
do {
    for f in try Systemd.inheritedFDs() {
        if f.isListeningStream { inherited.append((f.fd, f.name)) }
        else if f.name.hasPrefix("p") || f.name == "tendd.state" { stored.append((f.fd, f.name)) } else {
            FD.close(f.fd)   // not a listening stream socket (a later issue re-adopts fd-store entries)
            var b = Array("tendd: ignoring inherited fd \(f.fd) named '\(f.name)': not a listening stream socket\n".utf8)
            b.withUnsafeMutableBytes { _ = try? FD.write(2, UnsafeRawBufferPointer($0)) }
        }
    }
} catch { fail("\(error)") }
// Move stored fds out of the low numbers (the Server reserves low slots for fast spawns).
stored = stored.map { f in
    guard let moved = try? FD.dup(f.fd, atLeast: 1024) else { return f }
    FD.close(f.fd)
    return (moved, f.name)
}
// After our own re-exec (upgrade) the inherited listeners are the very sockets the flags named.
if Proc.getenv("TENDD_REEXEC") == "1" && !inherited.isEmpty { addresses = [] }
if addresses.isEmpty && inherited.isEmpty { addresses = [.tcp(host: "127.0.0.1", port: 9501)] }

do {
    let server = try Server(config: config)
    do { try server.loadToken() } catch { fail("\(error)") }
    try server.start()
    if server.persistenceEnabled || !stored.isEmpty {
        let summary = server.restore(stored: stored)
        server.log.info("msg=\"restore\" \(summary)")
    }
    server.pruneRetention()   // retention (issue 13): files of records that no longer exist
    try server.listen(on: addresses, inherited: inherited)
    server.log.info("msg=ready version=0.1.0 pid=\(Proc.myPid)")
    if Proc.getenv("TENDD_NO_TRIM") != "1" { CodePages.trim() }
    let code = try server.run()
    server.log.flush()   // the log is buffered per loop turn
    Proc.exit(code)
} catch {
    fail("\(error)")
}
