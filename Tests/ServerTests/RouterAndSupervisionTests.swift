// Pure tables of the Server module: routing (method × path → route, 404 or 405) and the managed
// supervisor's decisions (restart policy × exit, backoff sequence and its reset).
import XCTest
@testable import Server
import Supervision

final class RouterTests: XCTestCase {
    private func name(_ r: Result<Route, APIError>) -> String {
        switch r {
        case .failure(let e): return "\(e.status) \(e.code)"
        case .success(let route):
            switch route {
            case .health: return "health"
            case .info: return "info"
            case .metrics: return "metrics"
            case .listProcesses: return "list"
            case .startProcess: return "start"
            case .run: return "run"
            case .getProcess(let p): return "get \(p)"
            case .deleteProcess(let p): return "delete \(p)"
            case .signal(let p): return "signal \(p)"
            case .restart(let p): return "restart \(p)"
            case .stdin(let p): return "stdin \(p)"
            case .stdinClose(let p): return "stdin-close \(p)"
            case .output(let p, let f, let tagged): return "output \(p) \(f.rawValue) \(tagged)"
            case .follow(let p, let f, let tagged): return "follow \(p) \(f.rawValue) \(tagged)"
            case .raw(let p, let s): return "raw \(p) \(s.rawValue)"
            case .files(let op): return "files \(op)"   // files
            case .tunnelTCP: return "tunnel"
            case .ptyList: return "pty-list"
            case .ptyCreate: return "pty-create"
            case .ptyGet(let id): return "pty-get \(id)"
            case .ptyDelete(let id): return "pty-delete \(id)"
            case .ptyResize(let id): return "pty-resize \(id)"
            case .ptyWS(let id): return "pty-ws \(id)"
            }
        }
    }

    func testRouteTable() {
        let table: [(String, String, String)] = [
            ("GET", "/api/v1/health", "health"),
            ("POST", "/api/v1/health", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/info", "info"),
            ("GET", "/metrics", "metrics"),
            ("DELETE", "/metrics", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/metrics", "404 NOT_FOUND"),
            ("GET", "/api/v1/processes", "list"),
            ("POST", "/api/v1/processes", "start"),
            ("DELETE", "/api/v1/processes", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/processes/7/stdout/raw", "raw 7 1"),
            ("GET", "/api/v1/processes/7/stderr/raw", "raw 7 2"),
            ("POST", "/api/v1/processes/7/stdout/raw", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/processes/7/output/raw", "404 NOT_FOUND"),
            ("POST", "/api/v1/processes/run", "run"),
            ("GET", "/api/v1/processes/run", "get run"),            // `run` is a valid managed name
            ("DELETE", "/api/v1/processes/run", "delete run"),
            ("GET", "/api/v1/processes/42", "get 42"),
            ("DELETE", "/api/v1/processes/42", "delete 42"),
            ("PUT", "/api/v1/processes/42", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/processes/web%20svc", "get web svc"),
            ("GET", "/api/v1/processes/h%C3%A9llo/stdout", "output héllo 1 false"),
            ("GET", "/api/v1/processes/%zz", "400 INVALID_REQUEST"),
            ("POST", "/api/v1/processes/7/signal", "signal 7"),
            ("GET", "/api/v1/processes/7/signal", "405 METHOD_NOT_ALLOWED"),
            ("POST", "/api/v1/processes/7/restart", "restart 7"),
            ("POST", "/api/v1/processes/7/stdin", "stdin 7"),
            ("POST", "/api/v1/processes/7/stdin/close", "stdin-close 7"),
            ("GET", "/api/v1/processes/7/stderr", "output 7 2 false"),
            ("GET", "/api/v1/processes/7/output", "output 7 3 true"),
            ("GET", "/api/v1/processes/7/stdout/follow", "follow 7 1 false"),
            ("GET", "/api/v1/processes/7/output/follow", "follow 7 3 true"),
            ("GET", "/api/v1/processes/7/nope", "404 NOT_FOUND"),
            ("GET", "/api/v2/health", "404 NOT_FOUND"),
            ("GET", "/", "404 NOT_FOUND"),
            ("GET", "api/v1/health", "404 NOT_FOUND"),
            ("GET", "/api/v1/tunnels/tcp", "tunnel"),
            ("POST", "/api/v1/tunnels/tcp", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/tunnels/udp", "404 NOT_FOUND"),
            ("GET", "/api/v1/pty", "pty-list"),
            ("POST", "/api/v1/pty", "pty-create"),
            ("DELETE", "/api/v1/pty", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/pty/abc", "pty-get abc"),
            ("DELETE", "/api/v1/pty/abc", "pty-delete abc"),
            ("POST", "/api/v1/pty/abc", "405 METHOD_NOT_ALLOWED"),
            ("POST", "/api/v1/pty/abc/resize", "pty-resize abc"),
            ("GET", "/api/v1/pty/abc/resize", "405 METHOD_NOT_ALLOWED"),
            ("GET", "/api/v1/pty/abc/ws", "pty-ws abc"),
            ("GET", "/api/v1/pty/%zz/ws", "400 INVALID_REQUEST"),
            ("GET", "/api/v1/pty/abc/nope", "404 NOT_FOUND"),
            // The prefix and empty segments (the split after "/api/v1/").
            ("GET", "/api/v1", "404 NOT_FOUND"),
            ("GET", "/api/v1/", "404 NOT_FOUND"),
            ("GET", "/api/v1//info", "404 NOT_FOUND"),
            ("GET", "/api/v1/info/", "404 NOT_FOUND"),
            ("GET", "/api/v1/processes/", "400 INVALID_REQUEST"),
            ("GET", "//api/v1/info", "404 NOT_FOUND"),
            ("GET", "/api/v10/info", "404 NOT_FOUND"),
            ("GET", "/API/v1/info", "404 NOT_FOUND"),
        ]
        for (m, p, want) in table {
            XCTAssertEqual(name(Router.route(method: m, path: p)), want, "\(m) \(p)")
        }
        XCTAssertEqual(Router.allowed("/api/v1/processes/7"), "GET, DELETE")
        XCTAssertEqual(Router.allowed("/api/v1/pty/abc"), "GET, DELETE")
    }
}

final class ManagedJSONTests: XCTestCase {
    func testManagedJSONHasTheSDKFieldsAndDerivesItsStatusFromTheMachine() {
        var spec = ManagedSpec()
        spec.restart.kind = .on_failure
        let m = ManagedState(spec: spec, handle: 1)
        var machine = ProcessMachine(policy: spec.restart, stopGraceMs: 100, pipesOpen: false)
        guard case .object(let kv) = m.json(machine) else { return XCTFail("not an object") }
        let keys = Set(kv.map { $0.0 })
        for k in ["id", "name", "status", "restart_count", "restart", "health_check", "health_status",
                  "consecutive_health_failures", "last_exit", "last_error", "next_restart_at"] {
            XCTAssertTrue(keys.contains(k), k)
        }
        XCTAssertEqual(m.json(machine)["status"], .string("running"))
        XCTAssertEqual(m.json(machine)["health_status"], .string("disabled"))
        _ = machine.handle(.leaderExited(cleanly: false, runtimeMs: 5))
        XCTAssertEqual(m.json(machine)["status"], .string("backing_off"))
        _ = machine.handle(.stopRequested(Teardown(graceMs: 100)))
        XCTAssertEqual(m.json(machine)["status"], .string("stopped"))
        XCTAssertEqual(m.json(machine)["restart_count"], .int(0))
    }
}
