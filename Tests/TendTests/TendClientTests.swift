// Unit tests of the `tend` CLI's pure parts: argument parsing, URLs and settings, signals, the
// response-head parser, the SSE parser, stream events, exit statuses and the ps table.
import XCTest
import Glibc
import ArgumentParser
import JSON
import Sys
@testable import TendClient

final class ArgumentParsingTests: XCTestCase {
    func testRunOptionsAndCommandAfterTerminator() throws {
        let r = try Run.parse(["--timeout", "2.5", "-e", "A=1", "--env", "B=x=y", "--cwd", "/tmp", "--user", "nobody",
                               "--", "ls", "-l", "--color"])
        let s = try r.spec()
        XCTAssertEqual(s.command, "ls")
        XCTAssertEqual(s.args, ["-l", "--color"])
        XCTAssertEqual(s.timeout, 2.5)
        XCTAssertEqual(s.cwd, "/tmp")
        XCTAssertEqual(s.user, "nobody")
        XCTAssertEqual(s.env.map { $0.0 }, ["A", "B"])
        XCTAssertEqual(s.env.map { $0.1 }, ["1", "x=y"])
        XCTAssertEqual(String(decoding: s.body(includeTimeout: true).serialized(), as: UTF8.self),
                       #"{"command":"ls","args":["-l","--color"],"env":{"A":"1","B":"x=y"},"working_dir":"/tmp","user":"nobody","timeout":2.5}"#)
        XCTAssertEqual(String(decoding: s.body(includeTimeout: false).serialized(), as: UTF8.self),
                       #"{"command":"ls","args":["-l","--color"],"env":{"A":"1","B":"x=y"},"working_dir":"/tmp","user":"nobody"}"#)
    }

    func testRunWithoutTerminator() throws {
        let s = try Run.parse(["echo", "hi", "there"]).spec()
        XCTAssertEqual(s.command, "echo")
        XCTAssertEqual(s.args, ["hi", "there"])
        XCTAssertNil(s.timeout)
    }

    func testRunRejectsBadInput() {
        XCTAssertThrowsError(try Run.parse([]))
        XCTAssertThrowsError(try Run.parse(["--"]))
        XCTAssertThrowsError(try Run.parse(["--timeout", "0", "--", "true"]))
        XCTAssertThrowsError(try Run.parse(["--timeout", "abc", "--", "true"]))
        XCTAssertThrowsError(try Run.parse(["--env", "NOVALUE", "--", "true"]))
        XCTAssertThrowsError(try Run.parse(["--env", "=x", "--", "true"]))
    }

    func testStartBody() throws {
        let s = try Start.parse(["--name", "web", "--restart", "always", "--stdin", "-e", "P=1", "--", "sleep", "9"])
        XCTAssertEqual(String(decoding: try s.body().serialized(), as: UTF8.self),
                       #"{"command":"sleep","args":["9"],"env":{"P":"1"},"stdin_mode":"pipe","name":"web","restart":{"policy":"always"}}"#)
        XCTAssertThrowsError(try Start.parse(["--restart", "sometimes", "--", "true"]))
        XCTAssertThrowsError(try Start.parse([]))
    }

    func testSubcommandsAndFlags() throws {
        let ps = try Tend.parseAsRoot(["ps", "--all", "--json", "--url", "unix:/x.sock"])
        let p = try XCTUnwrap(ps as? Ps)
        XCTAssertTrue(p.all)
        XCTAssertTrue(p.json)
        XCTAssertEqual(p.conn.url, "unix:/x.sock")

        let logs = try XCTUnwrap(try Tend.parseAsRoot(["logs", "-f", "--stderr", "--since-id", "42", "web"]) as? Logs)
        XCTAssertTrue(logs.follow)
        XCTAssertTrue(logs.stderr)
        XCTAssertFalse(logs.stdout)
        XCTAssertEqual(logs.sinceId, 42)
        XCTAssertEqual(logs.process, "web")
        XCTAssertThrowsError(try Tend.parseAsRoot(["logs", "--stdout", "--stderr", "1"]))
        XCTAssertThrowsError(try Tend.parseAsRoot(["logs"]))

        let sig = try XCTUnwrap(try Tend.parseAsRoot(["signal", "12", "hup"]) as? SignalCommand)
        XCTAssertEqual(sig.process, "12")
        XCTAssertEqual(sig.signal, "hup")
        XCTAssertThrowsError(try Tend.parseAsRoot(["signal", "12", "NOPE"]))
        XCTAssertThrowsError(try Tend.parseAsRoot(["signal", "12", "65"]))

        let st = try XCTUnwrap(try Tend.parseAsRoot(["stdin", "7", "--close"]) as? Stdin)
        XCTAssertTrue(st.close)
        XCTAssertEqual(st.process, "7")
        XCTAssertNotNil(try Tend.parseAsRoot(["kill", "7"]) as? Kill)
        XCTAssertNotNil(try Tend.parseAsRoot(["restart", "web"]) as? Restart)
        XCTAssertNotNil(try Tend.parseAsRoot(["inspect", "web"]) as? Inspect)
        XCTAssertNotNil(try Tend.parseAsRoot(["info"]) as? Info)
        XCTAssertNotNil(try Tend.parseAsRoot(["health", "--token-file", "/t"]) as? Health)
        XCTAssertThrowsError(try Tend.parseAsRoot(["frobnicate"]))
        // No --token flag (tokens on command lines leak through /proc).
        XCTAssertThrowsError(try Tend.parseAsRoot(["ps", "--token", "secret"]))
    }

    func testHoistGlobalOptions() {
        XCTAssertEqual(hoistGlobalOptions(["--url", "unix:/s", "ps", "--all"]), ["ps", "--url", "unix:/s", "--all"])
        XCTAssertEqual(hoistGlobalOptions(["--url=u", "--token-file", "/t", "run", "--", "ls"]),
                       ["run", "--url=u", "--token-file", "/t", "--", "ls"])
        XCTAssertEqual(hoistGlobalOptions(["ps", "--url", "x"]), ["ps", "--url", "x"])
        XCTAssertEqual(hoistGlobalOptions(["--help"]), ["--help"])
        XCTAssertEqual(hoistGlobalOptions(["--url"]), ["--url"])
    }
}

final class SettingsTests: XCTestCase {
    func testURLs() {
        XCTAssertEqual(parseURL("http://127.0.0.1:9501"), .tcp(host: "127.0.0.1", port: 9501))
        XCTAssertEqual(parseURL("http://localhost:80/"), .tcp(host: "localhost", port: 80))
        XCTAssertEqual(parseURL("http://example.org"), .tcp(host: "example.org", port: 80))
        XCTAssertEqual(parseURL("http://[::1]:9501"), .tcp(host: "::1", port: 9501))
        XCTAssertEqual(parseURL("10.0.0.2:7"), .tcp(host: "10.0.0.2", port: 7))
        XCTAssertEqual(parseURL("unix:/run/tendd.sock"), .unix(path: "/run/tendd.sock"))
        XCTAssertEqual(parseURL("unix:///run/tendd.sock"), .unix(path: "/run/tendd.sock"))
        XCTAssertNil(parseURL("https://x:1"))
        XCTAssertNil(parseURL("http://x:0"))
        XCTAssertNil(parseURL("http://x:99999"))
        XCTAssertNil(parseURL("http://x:1/prefix"))
        XCTAssertNil(parseURL("unix:"))
        XCTAssertNil(parseURL("unix:/" + String(repeating: "a", count: 120)))
        XCTAssertNil(parseURL(""))
        XCTAssertEqual(ClientAddress.tcp(host: "::1", port: 5).description, "http://[::1]:5")
    }

    func testPrecedence() {
        let env = ["TEND_URL": "unix:/e.sock", "TEND_TOKEN_FILE": "/e/tok"]
        let both = Settings.resolve(urlFlag: "http://f:1", tokenFileFlag: "/f/tok", env: { env[$0] })
        XCTAssertEqual(both.url, "http://f:1")
        XCTAssertEqual(both.tokenFile, "/f/tok")
        XCTAssertEqual(both.urlSource, "--url")
        let fromEnv = Settings.resolve(urlFlag: nil, tokenFileFlag: nil, env: { env[$0] })
        XCTAssertEqual(fromEnv.url, "unix:/e.sock")
        XCTAssertEqual(fromEnv.tokenFile, "/e/tok")
        XCTAssertEqual(fromEnv.tokenFileSource, "TEND_TOKEN_FILE")
        let defaults = Settings.resolve(urlFlag: nil, tokenFileFlag: nil, env: { _ in nil })
        XCTAssertEqual(defaults.url, "http://127.0.0.1:9501")
        XCTAssertEqual(defaults.tokenFile, "/etc/tendd-token")
        XCTAssertEqual(defaults.urlSource, "default")
        let emptyEnv = Settings.resolve(urlFlag: nil, tokenFileFlag: nil, env: { _ in "" })
        XCTAssertEqual(emptyEnv.url, "http://127.0.0.1:9501")
    }

    func testPathSegment() {
        XCTAssertEqual(pathSegment("1234"), "1234")
        XCTAssertEqual(pathSegment("web svc"), "web%20svc")
        XCTAssertEqual(pathSegment("a?b#c%d/e"), "a%3Fb%23c%25d%2Fe")
        XCTAssertEqual(pathSegment("héllo"), "h%C3%A9llo")
    }
}

final class FormatTests: XCTestCase {
    func testSignals() {
        XCTAssertEqual(parseSignal("TERM"), 15)
        XCTAssertEqual(parseSignal("SIGTERM"), 15)
        XCTAssertEqual(parseSignal("hup"), 1)
        XCTAssertEqual(parseSignal("sigkill"), 9)
        XCTAssertEqual(parseSignal("9"), 9)
        XCTAssertEqual(parseSignal("64"), 64)
        XCTAssertEqual(parseSignal("RTMIN"), 34)
        XCTAssertEqual(parseSignal("SIGRTMIN+2"), 36)
        XCTAssertEqual(parseSignal("RTMAX-1"), 63)
        XCTAssertNil(parseSignal("0"))
        XCTAssertNil(parseSignal("65"))
        XCTAssertNil(parseSignal("-1"))
        XCTAssertNil(parseSignal("TERMINATE"))
        XCTAssertNil(parseSignal("RTMAX+1"))
        XCTAssertEqual(signalName(15), "SIGTERM")
        XCTAssertEqual(signalName(40), "SIG40")
    }

    func testRunExitStatus() {
        XCTAssertEqual(runExitStatus(exitCode: 0, signal: nil, timedOut: false), 0)
        XCTAssertEqual(runExitStatus(exitCode: 3, signal: nil, timedOut: false), 3)
        XCTAssertEqual(runExitStatus(exitCode: 256 + 7, signal: nil, timedOut: false), 7)
        XCTAssertEqual(runExitStatus(exitCode: nil, signal: 15, timedOut: false), 143)
        XCTAssertEqual(runExitStatus(exitCode: nil, signal: 9, timedOut: false), 137)
        XCTAssertEqual(runExitStatus(exitCode: nil, signal: 9, timedOut: true), 124)
        var r = RunResult()
        r.interrupted = true
        XCTAssertEqual(r.status, 130)
    }

    func testProcessRowAndTable() throws {
        let info = try parseJSON(Array(#"{"pid":42,"status":"signaled","exit_code":null,"signal":15,"command":"sh","args":["-c","echo a b"],"started_at":1000,"managed":{"name":"web"}}"#.utf8))
        let row = ProcessRow(info, now: 1000 + 125_000)
        XCTAssertEqual(row.cells, ["42", "web", "signaled", "SIGTERM", "2m ago", "sh -c 'echo a b'"])
        let lines = renderTable(header: ["PID", "CMD"], rows: [["7", "a very long command line indeed"]], width: 20)
        XCTAssertEqual(lines, ["PID  CMD", "7    a very long co…"])
        XCTAssertEqual(lines[1].count, 20)
        XCTAssertEqual(renderTable(header: ["A", "B"], rows: [["xx", "y"]], width: nil), ["A   B", "xx  y"])
        XCTAssertEqual(shellQuote("it's"), #"'it'\''s'"#)
        XCTAssertEqual(shellQuote(""), "''")
        XCTAssertEqual(shellQuote("/bin/ls"), "/bin/ls")
        XCTAssertEqual(age(0, now: 3 * 3600 * 1000), "3h ago")
        XCTAssertEqual(duration(90061), "1d 1h")
        XCTAssertEqual(duration(61), "1m 1s")
    }
}

final class WireTests: XCTestCase {
    func testResponseHead() throws {
        let raw = Array("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"a\":1}xxxxx".utf8)
        let (h, used) = try XCTUnwrap(try parseResponseHead(raw[...]))
        XCTAssertEqual(h.status, 404)
        XCTAssertEqual(h.reason, "Not Found")
        XCTAssertEqual(h.contentLength, 12)
        XCTAssertEqual(h.header("content-type"), "application/json")
        XCTAssertFalse(h.isChunked)
        XCTAssertEqual(used, raw.count - 12)
        XCTAssertNil(try parseResponseHead(Array("HTTP/1.1 200 OK\r\nX: y\r\n".utf8)[...]))
        XCTAssertThrowsError(try parseResponseHead(Array("SPDY/9 200 OK\r\n\r\n".utf8)[...]))
        XCTAssertThrowsError(try parseResponseHead(Array("HTTP/1.1 200 OK\r\nnocolon\r\n\r\n".utf8)[...]))
        let chunked = try XCTUnwrap(try parseResponseHead(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)[...]))
        XCTAssertTrue(chunked.0.isChunked)
    }

    func testSSEParserAnySplit() {
        let text = ": keepalive\n\nid:1\nevent:output\ndata:{\"line\":\"a\",\"timestamp\":5,\"stream\":\"stderr\"}\n\n" +
            "event:gap\ndata:{\"dropped_lines\":3,\"dropped_bytes\":30}\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\nevent:eof\ndata:{}\n\n"
        let bytes = Array(text.utf8)
        let expected = [
            SSEEvent(id: "1", event: "output", data: #"{"line":"a","timestamp":5,"stream":"stderr"}"#),
            SSEEvent(id: nil, event: "gap", data: #"{"dropped_lines":3,"dropped_bytes":30}"#),
            SSEEvent(id: "2", event: "message", data: "x\ny"),
            SSEEvent(id: nil, event: "eof", data: "{}"),
        ]
        for split in [1, 2, 3, 7, 1000] {
            var p = SSEParser()
            var got: [SSEEvent] = []
            var i = 0
            while i < bytes.count {
                got += p.feed(Array(bytes[i..<min(bytes.count, i + split)]))
                i += split
            }
            XCTAssertEqual(got, expected, "split \(split)")
        }
        XCTAssertEqual(StreamEvent.from(expected[0]), .output(id: 1, line: "a", stream: "stderr", timestamp: 5))
        XCTAssertEqual(StreamEvent.from(expected[1]), .gap(droppedLines: 3, droppedBytes: 30))
        XCTAssertEqual(StreamEvent.from(expected[3]), .eof)
    }

    func testRunStreamEvents() {
        XCTAssertEqual(StreamEvent.from(SSEEvent(id: nil, event: "message", data: #"{"handle":1,"pid":42,"started_at":17}"#)), .started(pid: 42))
        XCTAssertEqual(StreamEvent.from(SSEEvent(id: nil, event: "message", data: #"{"exit_code":null,"signal":9,"reason":"timed_out"}"#)),
                       .exit(exitCode: nil, signal: 9, reason: "timed_out"))
        XCTAssertEqual(StreamEvent.from(SSEEvent(id: nil, event: "exit", data: #"{"exit_code":3,"signal":null}"#)),
                       .exit(exitCode: 3, signal: nil, reason: nil))
        XCTAssertEqual(StreamEvent.from(SSEEvent(id: nil, event: "message", data: "not json")), .other)
    }
}

final class ExchangeTests: XCTestCase {
    /// Writes `response` into one end of a socketpair and reads it back through HTTPExchange.
    private func exchange(_ response: String) throws -> (ResponseHead, [[UInt8]], ReadOutcome) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        try FD.writeFully(fds[1], Array(response.utf8), socket: true)
        shutdown(fds[1], Int32(SHUT_WR))
        defer { close(fds[1]) }
        let ex = HTTPExchange(fd: fds[0])
        let head = try ex.readHead()
        var pieces: [[UInt8]] = []
        while true {
            let r = try ex.readBody(deadline: Clock.monotonicMs() + 2000)
            if case .bytes(let b) = r { pieces.append(b); continue }
            return (head, pieces, r)
        }
    }

    func testChunkedBody() throws {
        let (h, pieces, end) = try exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nGARBAGE")
        XCTAssertEqual(h.status, 200)
        XCTAssertEqual(String(decoding: pieces.flatMap { $0 }, as: UTF8.self), "hello, world")
        XCTAssertEqual(end, .end)
    }

    func testContentLengthAndCloseDelimited() throws {
        let (h, pieces, end) = try exchange("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nabcdEXTRA")
        XCTAssertEqual(h.status, 404)
        XCTAssertEqual(pieces.flatMap { $0 }, Array("abcd".utf8))
        XCTAssertEqual(end, .end)
        let (_, p2, e2) = try exchange("HTTP/1.1 200 OK\r\n\r\nuntil close")
        XCTAssertEqual(p2.flatMap { $0 }, Array("until close".utf8))
        XCTAssertEqual(e2, .end)
        let (h3, p3, e3) = try exchange("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        XCTAssertEqual(h3.status, 204)
        XCTAssertTrue(p3.isEmpty)
        XCTAssertEqual(e3, .end)
    }

    func testTruncatedChunkedBodyIsAnError() {
        XCTAssertThrowsError(try exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")) { e in
            guard case ClientError.transport = e else { return XCTFail("\(e)") }
        }
    }
}
