// Commands: the `tend` command line (swift-argument-parser). Each subcommand resolves the connection
// settings, makes its calls through TendClient, and turns failures into one clear line on stderr.
//
// Exit status: 0 success; 1 the daemon refused (its message and code are shown); 2 tend could not
// reach the daemon or the connection broke; 64 bad usage. `tend run` exits with the command's status
// instead (128+N when killed by signal N, 124 on --timeout, 130 on Ctrl-C, 125 when tend itself failed).
import ArgumentParser
import Sys
import JSON

public struct Tend: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tend",
        abstract: "Command-line client of tendd, the process-management daemon.",
        discussion: """
        Connection: --url, else $TEND_URL, else \(defaultURL) (also unix:/path/to.sock). Token: --token-file, else $TEND_TOKEN_FILE, else \(defaultTokenFile). There is no --token flag on purpose: a command line is visible to every user in /proc. Under systemd the daemon reads its token from /run/credentials/tendd.service/tendd-token, which users cannot read: point --token-file at a copy readable by the right users instead.

        Exit status: 0 ok, 1 the daemon refused the request, 2 cannot reach the daemon, 64 usage error. `tend run` exits with the command's own status (see `tend run --help`).

        Examples:
          tend run -- make test
          tend start --name web -- python3 -m http.server 8000
          tend ps --all
          tend logs -f web
          tend top
          TEND_URL=unix:/run/tendd.sock tend health
        """,
        version: tendCLIVersion,
        subcommands: [Run.self, Start.self, Ps.self, Logs.self, Kill.self, SignalCommand.self, Restart.self,
                      Inspect.self, Stdin.self, Info.self, Health.self,
                      Cp.self, Ls.self, Cat.self, Rm.self, Top.self]   // files: Files.swift
    )
    public init() {}
}

// MARK: shared options and error reporting

public struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Daemon address: http://HOST:PORT or unix:/path/to.sock (default: $TEND_URL, else \(defaultURL)).", valueName: "URL"))
    public var url: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the bearer token (default: $TEND_TOKEN_FILE, else \(defaultTokenFile)).", valueName: "PATH"))
    public var tokenFile: String?

    public init() {}

    public var settings: Settings { Settings.resolve(urlFlag: url, tokenFileFlag: tokenFile, env: Proc.getenv) }
}

/// One line on stderr for a failure, with the hint that fits it; returns the exit status to use.
func report(_ e: ClientError, _ s: Settings, client: TendClient?) -> Int32 {
    let prefix = Style.red.wrap("tend:", useColor(2))
    var msg: String
    var code: Int32 = 1
    switch e {
    case .connect(let addr, let reason):
        msg = "cannot connect to tendd at \(addr) (\(s.urlSource == "default" ? "the default" : "from \(s.urlSource)")): \(reason); is tendd running? Set the address with --url or TEND_URL (http://HOST:PORT or unix:/path/to.sock)"
        code = 2
    case .api(let status, let c, let m):
        msg = "\(m) (\(c ?? "HTTP \(status)"))"
        if status == 401 {
            if let p = client?.tokenProblem { msg += "; \(p)" } else { msg += "; token read from \(s.tokenFile)" }
            msg += "; set the token file with --token-file or TEND_TOKEN_FILE"
        }
    case .transport(let m):
        msg = "\(m) (talking to \(client?.address.description ?? s.url))"
        code = 2
    case .local(let m):
        msg = m
    }
    try? FD.writeFully(2, Array("\(prefix) \(msg)\n".utf8))
    return code
}

/// Runs `body` with a client; failures become one line on stderr and an exit status.
func withClient(_ conn: ConnectionOptions, failureStatus: Int32? = nil, _ body: (TendClient) throws -> Void) throws {
    let s = conn.settings
    var client: TendClient? = nil
    do {
        client = try s.client()
        try body(client!)
    } catch let e as ClientError {
        let code = report(e, s, client: client)
        throw ExitCode(failureStatus ?? code)
    }
}

func printLine(_ s: String) { try? FD.writeFully(1, Array((s + "\n").utf8)) }
func printJSON(_ v: JSONValue) { printLine(String(decoding: v.serialized(), as: UTF8.self)) }
func processPath(_ p: String, _ suffix: String = "") -> String { "/api/v1/processes/\(pathSegment(p))\(suffix)" }

func parseEnv(_ list: [String]) throws -> [(String, String)] {
    try list.map { s in
        guard let kv = parseEnvPair(s) else { throw ValidationError("--env needs NAME=VALUE, got '\(s)'") }
        return kv
    }
}

/// The command words after `--` (a leading `--` is dropped).
func commandWords(_ words: [String]) -> [String] {
    words.first == "--" ? Array(words.dropFirst()) : words
}

// MARK: run

public struct Run: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Run a command to completion; its stdout and stderr stream to yours, and its exit status becomes tend's.",
        discussion: """
        Exit status: the command's exit code; 128+N when it was killed by signal N (like a shell); 124 when --timeout expired (like coreutils timeout); 130 when you pressed Ctrl-C (the remote process is killed); 125 when tend itself failed (cannot connect, the daemon refused).

        Examples:
          tend run -- make -j4
          tend run --timeout 30 --env CI=1 --cwd /src -- ./test.sh --fast
          tend run --user nobody -- id -u
          tend run --json -- ls /      # NDJSON: one object per line, then the exit record
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Option(help: ArgumentHelp("Kill the command after this many seconds (fractions allowed); tend then exits 124.", valueName: "S"))
    public var timeout: Double?
    @Option(name: [.short, .long], help: ArgumentHelp("Environment variable for the command (repeatable).", valueName: "K=V"))
    public var env: [String] = []
    @Option(help: ArgumentHelp("Working directory of the command.", valueName: "DIR"))
    public var cwd: String?
    @Option(help: ArgumentHelp("Run as this user: a name, a uid, or uid:gid.", valueName: "U"))
    public var user: String?
    @Flag(help: "Print NDJSON (one object per output line, then one exit record) instead of raw output.")
    public var json = false
    @Flag(name: .customLong("no-run-endpoint"), help: ArgumentHelp("Use start + follow even if the daemon has POST /processes/run.", visibility: .hidden))
    public var noRunEndpoint = false
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments (after --).", valueName: "CMD ARGS"))
    public var command: [String] = []

    public init() {}

    public func validate() throws {
        if ["-h", "--help"].contains(command.first ?? "") { throw CleanExit.helpRequest(Self.self) }
        if commandWords(command).isEmpty { throw ValidationError("missing the command to run (tend run [options] -- CMD ARGS…)") }
        if let t = timeout, !(t > 0) { throw ValidationError("--timeout must be a positive number of seconds") }
        _ = try parseEnv(env)
    }

    public func spec() throws -> RunSpec {
        let words = commandWords(command)
        var s = RunSpec(command: words[0], args: Array(words.dropFirst()))
        s.env = try parseEnv(env)
        s.cwd = cwd
        s.user = user
        s.timeout = timeout
        return s
    }

    public func run() throws {
        let spec = try spec()
        // Ctrl-C and SIGTERM arrive on a signalfd so the remote process can be killed first.
        let sigfd = (try? Signal.interceptFD([Signal.int, Signal.term, Signal.hup])) ?? -1
        var status: Int32 = 0
        try withClient(conn, failureStatus: 125) { client in
            let sink = OutputSink(json: json)
            let r = try runToCompletion(client, spec, sink: sink, interruptFD: sigfd, forceFallback: noRunEndpoint)
            sink.flush()
            if json {
                var o: [(String, JSONValue)] = []
                o.append(("pid", r.pid.map { .int($0) } ?? .null))
                o.append(("exit_code", r.exitCode.map { .int($0) } ?? .null))
                o.append(("signal", r.signal.map { .int($0) } ?? .null))
                o.append(("timed_out", .bool(r.timedOut)))
                o.append(("interrupted", .bool(r.interrupted)))
                o.append(("status", .int(Int64(r.status))))
                printJSON(.object(o))
            } else if r.timedOut {
                warn("timed out after \(spec.timeout.map { formatSeconds($0) } ?? "?")s; process \(r.pid.map { String($0) } ?? "?") was killed")
            } else if r.interrupted {
                warn("interrupted; process \(r.pid.map { String($0) } ?? "?") was killed")
            }
            status = r.status
        }
        if status != 0 { throw ExitCode(status) }
    }
}

func formatSeconds(_ d: Double) -> String {
    d == d.rounded() ? String(Int64(d)) : String(d)
}

// MARK: start

public struct Start: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Start a process in the background and print its pid.",
        discussion: """
        Examples:
          tend start -- sleep 600
          tend start --name web --restart on_failure -- python3 -m http.server 8000
          tend start --stdin -- cat          # then: echo hi | tend stdin PID --close
          tend start --json -e PORT=8080 --cwd /srv -- ./serve
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Option(help: ArgumentHelp("Name of a managed process (address it by name afterwards).", valueName: "N"))
    public var name: String?
    @Option(help: ArgumentHelp("Restart policy of a managed process: never, on_failure or always.", valueName: "POLICY"))
    public var restart: String?
    @Flag(help: "Give the process a stdin pipe (write to it with `tend stdin`).")
    public var stdin = false
    @Option(name: [.short, .long], help: ArgumentHelp("Environment variable (repeatable).", valueName: "K=V"))
    public var env: [String] = []
    @Option(help: ArgumentHelp("Working directory.", valueName: "DIR"))
    public var cwd: String?
    @Option(help: ArgumentHelp("Run as this user: a name, a uid, or uid:gid.", valueName: "U"))
    public var user: String?
    @Flag(help: "Print the full ProcessInfo as JSON instead of the pid.")
    public var json = false
    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments (after --).", valueName: "CMD ARGS"))
    public var command: [String] = []

    public init() {}

    public func validate() throws {
        if ["-h", "--help"].contains(command.first ?? "") { throw CleanExit.helpRequest(Self.self) }
        if commandWords(command).isEmpty { throw ValidationError("missing the command to start (tend start [options] -- CMD ARGS…)") }
        if let r = restart, !["never", "on_failure", "always"].contains(r) {
            throw ValidationError("--restart must be never, on_failure or always")
        }
        _ = try parseEnv(env)
    }

    public func body() throws -> JSONValue {
        let words = commandWords(command)
        var o: [(String, JSONValue)] = [("command", .string(words[0])), ("args", .array(words.dropFirst().map { .string($0) }))]
        let e = try parseEnv(env)
        if !e.isEmpty { o.append(("env", .object(e.map { ($0.0, .string($0.1)) }))) }
        if let cwd { o.append(("working_dir", .string(cwd))) }
        if let user { o.append(("user", .string(user))) }
        if stdin { o.append(("stdin_mode", .string("pipe"))) }
        if let name { o.append(("name", .string(name))) }
        if let restart { o.append(("restart", .object([("policy", .string(restart))]))) }
        return .object(o)
    }

    public func run() throws {
        let b = try body()
        try withClient(conn) { client in
            let info = try client.call("POST", "/api/v1/processes", json: b).json()
            if json { printJSON(info) } else if case .int(let pid)? = info["pid"] { printLine(String(pid)) }
        }
    }
}

// MARK: ps

public struct Ps: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "List processes (running ones; --all includes exited).",
        discussion: """
        On a terminal: a table sized to its width. Otherwise: tab-separated lines without a header (pid, name, status, exit, started, command). --json prints the daemon's list.

        Examples:
          tend ps
          tend ps --all
          tend ps --json | jq '.processes[].pid'
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(name: [.short, .long], help: "Include exited processes.")
    public var all = false
    @Flag(help: "Print {\"processes\": [ProcessInfo…]} as JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let v = try client.call("GET", "/api/v1/processes").json()
            var list: [JSONValue] = []
            if case .array(let a)? = v["processes"] { list = a }
            if !all { list = list.filter { $0["status"] == .string("running") } }
            if json { printJSON(.object([("processes", .array(list))])); return }
            let now = Clock.wallMs()
            let rows = list.map { ProcessRow($0, now: now) }
            if Terminal.isTerminal(1) {
                let color = useColor(1)
                let lines = renderTable(header: ["PID", "NAME", "STATUS", "EXIT", "STARTED", "COMMAND"], rows: rows.map(\.cells),
                                        width: Terminal.columns(1)) { r, c, cell in
                    guard color, c == 2 else { return cell }
                    let st = rows[r].status
                    if st == "running" { return Style.green.wrap(cell, true) }
                    if st == "exited" && rows[r].exit == "0" { return cell }
                    return Style.red.wrap(cell, true)
                }
                lines.forEach(printLine)
            } else {
                for r in rows { printLine(r.cells.joined(separator: "\t")) }
            }
        }
    }
}

// MARK: logs

public struct Logs: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print a process's output (stdout lines to stdout, stderr lines to stderr); -f keeps following.",
        discussion: """
        Without -f: the output retained so far. With -f: that, then new lines until the process ends; a dropped connection is resumed transparently (Last-Event-ID), without duplicated or lost lines. --json prints NDJSON objects {"id","stream","line","timestamp"}; ids can be given to --since-id.

        --raw copies one stream's bytes exactly as the process wrote them (stdout, or stderr with --stderr) to stdout, from --offset (default 0); with -f until the stream is complete, resuming after the daemon's ring overtook the reader (the bytes lost are reported on stderr).

        Examples:
          tend logs web
          tend logs -f --stderr 1234
          tend logs --json 1234 | tail -1      # the last id
          tend logs -f --since-id 420 1234
          tend logs --raw -f 1234 > out.bin
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(name: [.short, .long], help: "Follow new output until the process ends.")
    public var follow = false
    @Flag(help: "Only stdout lines.")
    public var stdout = false
    @Flag(help: "Only stderr lines.")
    public var stderr = false
    @Option(name: .customLong("since-id"), help: ArgumentHelp("Only lines after this event id.", valueName: "N"))
    public var sinceId: UInt64?
    @Flag(help: "NDJSON output (with ids).")
    public var json = false
    @Flag(help: "Raw bytes of one stream (stdout, or stderr with --stderr), not lines.")
    public var raw = false
    @Option(help: ArgumentHelp("With --raw: first byte offset.", valueName: "N"))
    public var offset: UInt64?
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String

    public init() {}

    public func validate() throws {
        if stdout && stderr { throw ValidationError("--stdout and --stderr exclude each other (give neither for both)") }
        if raw && (json || sinceId != nil) { throw ValidationError("--raw excludes --json and --since-id (use --offset)") }
        if offset != nil && !raw { throw ValidationError("--offset needs --raw") }
    }

    public func run() throws {
        if raw {
            try withClient(conn) { client in
                try copyRawOutput(client, process: process, stream: stderr ? "stderr" : "stdout", follow: follow, from: offset ?? 0)
            }
            return
        }
        try withClient(conn) { client in
            let sink = OutputSink(json: json)
            sink.showStdout = !stderr
            sink.showStderr = !stdout
            func handle(_ ev: StreamEvent) {
                switch ev {
                case .output(let id, let line, let stream, let ts):
                    if let s = sinceId, let id, id <= s { return }
                    sink.line(line, stream: stream, id: id, timestamp: ts)
                case .gap(let l, let b):
                    sink.flush()
                    if json { sink.jsonRecord(.object([("gap", .object([("dropped_lines", .int(l)), ("dropped_bytes", .int(b))]))])) }
                    else { warn("\(l) older lines (\(b) bytes) were dropped by the daemon's retention limit") }
                default: break
                }
            }
            if follow {
                _ = try followOutput(client, process: process, after: sinceId) { ev in
                    handle(ev)
                    sink.flush()
                    return true
                }
                return
            }
            // Snapshot: how many lines are retained now, then read exactly that many events of the
            // (chronological, tagged, id-carrying) follow stream.
            let snap = try client.call("GET", processPath(process, "/output")).json()
            guard case .int(let count)? = snap["line_count"], count > 0 else { return }
            var seen: Int64 = 0
            _ = try followOutput(client, process: process, after: nil) { ev in
                if case .output = ev { seen += 1 }
                handle(ev)
                return seen < count
            }
            sink.flush()
        }
    }
}

// MARK: kill, signal, restart, inspect

public struct Kill: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Kill a process (SIGKILL to its whole process group); waits until it is gone.",
        discussion: """
        Examples:
          tend kill 1234
          tend kill web
          tend kill --json 1234     # prints the final ProcessInfo
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the process's final ProcessInfo as JSON.")
    public var json = false
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            _ = try client.call("DELETE", processPath(process))
            if json { printJSON(try client.call("GET", processPath(process)).json()) }
        }
    }
}

public struct SignalCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "signal",
        abstract: "Send a signal to a process's process group.",
        discussion: """
        SIG is a name (TERM, SIGTERM, hup, RTMIN+1) or a number 1–64.

        Examples:
          tend signal 1234 TERM
          tend signal web HUP
          tend signal 1234 9
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the daemon's answer as JSON.")
    public var json = false
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String
    @Argument(help: ArgumentHelp("Signal name or number.", valueName: "SIG"))
    public var signal: String
    public init() {}

    public func validate() throws {
        if parseSignal(signal) == nil { throw ValidationError("unknown signal '\(signal)' (use a name like TERM or HUP, or a number 1-64)") }
    }

    public func run() throws {
        let n = parseSignal(signal)!
        try withClient(conn) { client in
            let r = try client.call("POST", processPath(process, "/signal"), json: .object([("signal", .int(Int64(n)))]))
            if json { printJSON(try r.json()) }
        }
    }
}

public struct Restart: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Restart a managed process and print its new pid.",
        discussion: """
        Only managed processes (started with --name or --restart) can be restarted.

        Examples:
          tend restart web
          tend restart --json web
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the new ProcessInfo as JSON.")
    public var json = false
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let info = try client.call("POST", processPath(process, "/restart")).json()
            if json { printJSON(info) } else if case .int(let pid)? = info["pid"] { printLine(String(pid)) }
        }
    }
}

public struct Inspect: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Show everything the daemon knows about a process.",
        discussion: """
        Examples:
          tend inspect 1234
          tend inspect --json web | jq .status
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the ProcessInfo as JSON.")
    public var json = false
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let info = try client.call("GET", processPath(process)).json()
            if json { printJSON(info); return }
            printKeyValues(info)
        }
    }
}

/// `key   value` lines for a JSON object; timestamps get their age, null is `-`.
func printKeyValues(_ v: JSONValue) {
    guard case .object(let top) = v else { printJSON(v); return }
    // Nested objects (managed, restart, last_exit) become dotted keys.
    var pairs: [(String, JSONValue)] = []
    func flatten(_ prefix: String, _ o: [(String, JSONValue)]) {
        for (k, x) in o {
            if case .object(let inner) = x, !inner.isEmpty { flatten(prefix + k + ".", inner) } else { pairs.append((prefix + k, x)) }
        }
    }
    flatten("", top)
    let w = pairs.map { $0.0.count }.max() ?? 0
    let now = Clock.wallMs()
    for (k, x) in pairs {
        var text: String
        switch x {
        case .null: text = "-"
        case .string(let s): text = s
        case .int(let n):
            text = String(n)
            if k.hasSuffix("_at"), n > 0 { text += " (\(age(n, now: now)))" }
            if k == "signal" || k.hasSuffix(".signal") { text += " (\(signalName(n)))" }
        case .array(let a): text = a.map { if case .string(let s) = $0 { return shellQuote(s) } else { return String(decoding: $0.serialized(), as: UTF8.self) } }.joined(separator: " ")
        default: text = String(decoding: x.serialized(), as: UTF8.self)
        }
        printLine(k + String(repeating: " ", count: w - k.count + 2) + text)
    }
}

// MARK: stdin

public struct Stdin: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Copy tend's stdin to a process's stdin (the process needs `tend start --stdin`).",
        discussion: """
        The input is streamed in pieces of at most 1 MiB, so files of any size work. --close sends EOF to the process after the copy (with </dev/null: just close it).

        Examples:
          cat big.csv | tend stdin 1234 --close
          echo reload | tend stdin web
          tend stdin 1234 --close </dev/null
        """
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Close the process's stdin after the copy (it reads EOF).")
    public var close = false
    @Flag(help: "Print {\"bytes\": N, \"closed\": B} as JSON when done.")
    public var json = false
    @Argument(help: ArgumentHelp("Pid or managed name.", valueName: "PROCESS"))
    public var process: String
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let total = try copyStdin(client, process: process, from: 0)
            if close { _ = try client.call("POST", processPath(process, "/stdin/close")) }
            if json { printJSON(.object([("bytes", .int(total)), ("closed", .bool(close))])) }
        }
    }
}

/// Sends everything readable from `fd` in requests of at most `piece` bytes: a piece goes out when it is
/// full or when the input pauses, so interactive input is delivered promptly and large files stream.
public func copyStdin(_ client: TendClient, process: String, from fd: Int32, piece: Int = 1 << 20) throws -> Int64 {
    var total: Int64 = 0
    var buf: [UInt8] = []
    buf.reserveCapacity(piece)
    var scratch = [UInt8](repeating: 0, count: 64 * 1024)
    var eof = false
    while !eof {
        while buf.count < piece {
            if !buf.isEmpty, (try? Poll.wait([fd], events: Poll.readable, timeoutMs: 0))?.first != true { break }
            let n: Int
            do { n = try FD.readSome(fd, into: &scratch) } catch let e as SysError {
                throw ClientError.local("reading stdin: \(e.reason)")
            }
            if n == 0 { eof = true; break }
            let take = min(n, piece - buf.count)
            buf += scratch[0..<n]
            _ = take
        }
        if buf.isEmpty { break }
        let ex = try client.send("POST", processPath(process, "/stdin"), headers: [("Content-Type", "application/octet-stream")], body: buf)
        let head = try ex.readHead()
        let body = try ex.readAll()
        if !(200..<300).contains(head.status) { throw client.apiError(Response(head: head, body: body)) }
        total += Int64(buf.count)
        buf.removeAll(keepingCapacity: true)
    }
    return total
}

// MARK: info, health

public struct Info: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Show the daemon's version, uptime and process counts.",
        discussion: "Examples:\n  tend info\n  tend info --json"
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the daemon's answer as JSON.")
    public var json = false
    public init() {}

    public func run() throws {
        try withClient(conn) { client in
            let v = try client.call("GET", "/api/v1/info").json()
            if json { printJSON(v); return }
            func int(_ k: String) -> Int64 { if case .int(let n)? = v[k] { return n } else { return 0 } }
            var version = "?"
            if case .string(let s)? = v["version"] { version = s }
            printLine("url        \(client.address)")
            printLine("version    \(version)")
            printLine("uptime     \(duration(int("uptime_secs")))")
            printLine("running    \(int("running_processes"))")
            printLine("total      \(int("total_processes"))")
        }
    }
}

/// "3d 4h", "2h 5m", "5m 3s", "42s".
public func duration(_ secs: Int64) -> String {
    let d = secs / 86400, h = secs % 86400 / 3600, m = secs % 3600 / 60, s = secs % 60
    if d > 0 { return "\(d)d \(h)h" }
    if h > 0 { return "\(h)h \(m)m" }
    if m > 0 { return "\(m)m \(s)s" }
    return "\(s)s"
}

public struct Health: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Check that the daemon answers; exit 0 when healthy.",
        discussion: "Examples:\n  tend health && echo up\n  tend health --url unix:/run/tendd.sock --json"
    )
    @OptionGroup public var conn: ConnectionOptions
    @Flag(help: "Print the daemon's answer as JSON.")
    public var json = false
    public init() {}

    public func run() throws {
        var healthy = false
        try withClient(conn) { client in
            let v = try client.call("GET", "/api/v1/health").json()
            healthy = v["healthy"] == .bool(true)
            if json { printJSON(v) } else { printLine(healthy ? "healthy" : "unhealthy") }
        }
        if !healthy { throw ExitCode(1) }
    }
}
