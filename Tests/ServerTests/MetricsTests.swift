// The metrics' pure parts: the fixed-bucket histogram, the Prometheus text encoder (exact bytes),
// the route labels, and the request counters' indexing.
import XCTest
import Reactor
@testable import Server

final class MetricsTests: XCTestCase {
    func testHistogramBucketsAreUpperBoundsInclusive() {
        var h = Histogram(bounds: [10, 100])
        for ns in [0, 10, 11, 100, 101, 5_000] as [Int64] { h.observe(ns: ns) }
        XCTAssertEqual(h.counts, [2, 2, 2])
        XCTAssertEqual(h.count, 6)
        XCTAssertEqual(h.sumNs, 5_222)
        h.observe(ns: -5)   // a clock that went backwards counts as 0
        XCTAssertEqual(h.counts[0], 3)
        XCTAssertEqual(h.sumNs, 5_222)
    }

    func testExpositionTextIsExact() {
        var e = Exposition()
        e.family("a_total", "counter", "Line one\\two\nthree")
        e.sample("a_total", UInt64(3))
        e.sample("a_total", [("k", "q\"uo\\te\nnl"), ("z", "")], Int64(-2))
        e.sample("b", 0.25)
        e.sample("b", 2.0)
        e.sample("b", Double.infinity)
        XCTAssertEqual(String(decoding: e.out, as: UTF8.self), """
        # HELP a_total Line one\\\\two\\nthree
        # TYPE a_total counter
        a_total 3
        a_total{k="q\\"uo\\\\te\\nnl",z=""} -2
        b 0.25
        b 2
        b +Inf

        """)
    }

    func testHistogramRendersCumulativeBucketsInSeconds() {
        var h = Histogram(bounds: [100_000, 1_000_000_000])
        h.observe(ns: 50_000); h.observe(ns: 200_000); h.observe(ns: 2_000_000_000)
        var e = Exposition()
        e.histogram("lat_seconds", [("route", "info")], h)
        XCTAssertEqual(String(decoding: e.out, as: UTF8.self), """
        lat_seconds_bucket{route="info",le="0.0001"} 1
        lat_seconds_bucket{route="info",le="1"} 2
        lat_seconds_bucket{route="info",le="+Inf"} 3
        lat_seconds_sum{route="info"} 2.00025
        lat_seconds_count{route="info"} 3

        """)
    }

    func testBucketBoundsFormatAsShortDecimals() {
        XCTAssertEqual(Histogram.loopBounds.map(Exposition.seconds).prefix(4), ["1e-05", "2.5e-05", "5e-05", "0.0001"])
        XCTAssertEqual(Histogram.requestBounds.map(Exposition.seconds).suffix(3), ["2.5", "5", "10"])
        XCTAssertEqual(Exposition.format(.nan), "NaN")
        XCTAssertEqual(Exposition.format(-.infinity), "-Inf")
    }

    func testRequestsAreCountedByRouteAndCode() {
        let m = Metrics()
        m.requestDone(.info, status: 200, ns: 1_000)
        m.requestDone(.info, status: 200, ns: 1_000)
        m.requestDone(nil, status: 401, ns: 1_000)
        m.requestDone(.getProcess("7"), status: 418, ns: 1_000)   // not a code the API uses: "other"
        let width = Metrics.codes.count + 1
        XCTAssertEqual(m.requests[Metrics.RouteLabel.info.rawValue * width + Metrics.codes.firstIndex(of: 200)!], 2)
        XCTAssertEqual(m.requests[Metrics.RouteLabel.none.rawValue * width + Metrics.codes.firstIndex(of: 401)!], 1)
        XCTAssertEqual(m.requests[Metrics.RouteLabel.get.rawValue * width + Metrics.codes.count], 1)
        XCTAssertEqual(m.requests.reduce(0, +), 4)
        XCTAssertEqual(m.requestDuration[Metrics.RouteLabel.info.rawValue].count, 2)
    }

    func testSpawnFailureReasonsComeFromTheErrorCode() {
        let m = Metrics()
        m.spawnFailed(APIError(500, "SPAWN_FAILED", ""))
        m.spawnFailed(APIError(500, "USER_NOT_FOUND", ""))
        m.spawnFailed(APIError(503, "LIMIT_REACHED", ""))
        m.spawnFailed(APIError(503, "LIMIT_REACHED", ""))
        m.spawnFailed(APIError(400, "INVALID_REQUEST", ""))
        XCTAssertEqual(m.spawnFailures, [1, 1, 2, 1])
    }

    func testMetricsRouteIsGetOnly() {
        guard case .success(.metrics) = Router.route(method: "GET", path: "/metrics") else { return XCTFail() }
        guard case .failure(let e) = Router.route(method: "POST", path: "/metrics") else { return XCTFail() }
        XCTAssertEqual(e.status, 405)
        guard case .failure(let n) = Router.route(method: "GET", path: "/metrics/") else { return XCTFail() }
        XCTAssertEqual(n.status, 404)
    }
}
