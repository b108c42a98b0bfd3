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
        ]
        for (m, p, want) in table {
            XCTAssertEqual(name(Router.route(method: m, path: p)), want, "\(m) \(p)")
        }
        XCTAssertEqual(Router.allowed("/api/v1/processes/7"), "GET, DELETE")
        XCTAssertEqual(Router.allowed("/api/v1/pty/abc"), "GET, DELETE")
    }
}

final class SupervisorTests: XCTestCase {
    private func state(_ policy: RestartPolicyKind, initial: Int64 = 100, max: Int64 = 1000, maxRestarts: Int? = nil) -> ManagedState {
        var spec = ManagedSpec()
        spec.restart = RestartConfig(policy: policy, maxRestarts: maxRestarts, initialBackoffMs: initial, maxBackoffMs: max)
        return ManagedState(spec: spec, handle: 1)
    }

    func testPolicyTable() {
        let table: [(RestartPolicyKind, Bool, Bool)] = [
            (.never, true, false), (.never, false, false),
            (.on_failure, true, false), (.on_failure, false, true),
            (.always, true, true), (.always, false, true),
        ]
        for (policy, clean, want) in table {
            XCTAssertEqual(state(policy).wantsRestart(exitedCleanly: clean), want, "\(policy) clean=\(clean)")
        }
    }

    func testBackoffDoublesUpToTheCapAndResetsAfterALongRun() {
        let m = state(.always, initial: 100, max: 1000)
        XCTAssertEqual((0..<6).map { _ in m.nextBackoff(runtimeMs: 50) }, [100, 200, 400, 800, 1000, 1000])
        XCTAssertEqual(m.nextBackoff(runtimeMs: ManagedState.backoffResetMs), 100, "a long run resets the sequence")
        XCTAssertEqual(m.nextBackoff(runtimeMs: 0), 200)
        let zero = state(.always, initial: 0, max: 0)
        XCTAssertEqual(zero.nextBackoff(runtimeMs: 0), 0)
    }

    func testRestartLimit() {
        let m = state(.always, maxRestarts: 2)
        XCTAssertFalse(m.restartLimitReached)
        m.restartCount = 2
        XCTAssertTrue(m.restartLimitReached)
        let unlimited = state(.always, maxRestarts: nil)
        unlimited.restartCount = 1_000_000
        XCTAssertFalse(unlimited.restartLimitReached)
    }

    func testManagedJSONHasTheSDKFields() {
        let m = state(.on_failure)
        guard case .object(let kv) = m.json else { return XCTFail("not an object") }
        let keys = Set(kv.map { $0.0 })
        for k in ["id", "name", "status", "restart_count", "restart", "health_check", "health_status",
                  "consecutive_health_failures", "last_exit", "last_error", "next_restart_at"] {
            XCTAssertTrue(keys.contains(k), k)
        }
        XCTAssertEqual(m.json["status"], .string("starting"))
        XCTAssertEqual(m.json["health_status"], .string("disabled"))
    }
}
