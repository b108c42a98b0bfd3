// Settings: where `tend` connects and which token it sends. Flags win over the environment
// (TEND_URL, TEND_TOKEN_FILE), which wins over the defaults (http://127.0.0.1:9501, /etc/tendd-token).
// There is deliberately no --token flag: a command line is readable by every user via /proc/PID/cmdline.
import Sys

public let defaultURL = "http://127.0.0.1:9501"
public let defaultTokenFile = "/etc/tendd-token"

/// Parses `http://host[:port][/]`, `http://[v6]:port`, `unix:/path` (also `unix:///path`), or a bare
/// `host:port`. A missing http port is 80.
public func parseURL(_ s: String) -> ClientAddress? {
    if s.hasPrefix("unix:") {
        var p = String(s.dropFirst(5))
        if p.hasPrefix("//") { p = String(p.dropFirst(2)) }
        guard p.hasPrefix("/") || p.hasPrefix("."), p.utf8.count < 108 else { return nil }
        return .unix(path: p)
    }
    var rest = Substring(s)
    if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.contains("://") { return nil }
    if let slash = rest.firstIndex(of: "/") {
        guard rest[slash...] == "/" else { return nil }  // no path prefixes
        rest = rest[..<slash]
    }
    guard !rest.isEmpty else { return nil }
    var host: Substring
    var portText: Substring? = nil
    if rest.hasPrefix("[") {
        guard let close = rest.firstIndex(of: "]") else { return nil }
        host = rest[rest.index(after: rest.startIndex)..<close]
        let after = rest[rest.index(after: close)...]
        if !after.isEmpty {
            guard after.hasPrefix(":") else { return nil }
            portText = after.dropFirst()
        }
    } else if let colon = rest.lastIndex(of: ":") {
        host = rest[..<colon]
        portText = rest[rest.index(after: colon)...]
    } else {
        host = rest
    }
    guard !host.isEmpty else { return nil }
    var port: UInt16 = 80
    if let t = portText {
        guard let p = UInt16(t), p > 0 else { return nil }
        port = p
    }
    return .tcp(host: String(host), port: port)
}

/// Reads a token file: one printable word; surrounding whitespace is ignored.
public func readToken(_ path: String) -> Result<String, SysError> {
    do {
        let bytes = try FD.readFile(path, limit: 4096)
        let t = String(decoding: bytes, as: UTF8.self).trimmed
        return .success(t)
    } catch let e as SysError {
        return .failure(e)
    } catch {
        return .failure(SysError("open(\(path))", errno: 5))
    }
}

/// The resolved connection settings (flag → environment → default), and how each was chosen.
public struct Settings: Equatable {
    public var url: String
    public var urlSource: String
    public var tokenFile: String
    public var tokenFileSource: String

    public static func resolve(urlFlag: String?, tokenFileFlag: String?, env: (String) -> String?) -> Settings {
        let url: String, us: String
        if let u = urlFlag { url = u; us = "--url" } else if let u = env("TEND_URL"), !u.isEmpty { url = u; us = "TEND_URL" } else { url = defaultURL; us = "default" }
        let tf: String, ts: String
        if let t = tokenFileFlag { tf = t; ts = "--token-file" } else if let t = env("TEND_TOKEN_FILE"), !t.isEmpty { tf = t; ts = "TEND_TOKEN_FILE" } else { tf = defaultTokenFile; ts = "default" }
        return Settings(url: url, urlSource: us, tokenFile: tf, tokenFileSource: ts)
    }

    /// A client for these settings. An unreadable token file is not fatal here (health may be open);
    /// the problem is remembered and shown if the daemon answers 401.
    public func client() throws -> TendClient {
        guard let addr = parseURL(url) else {
            throw ClientError.local("invalid URL '\(url)' (from \(urlSource)): use http://HOST:PORT or unix:/path/to.sock")
        }
        switch readToken(tokenFile) {
        case .success(let t) where !t.isEmpty:
            return TendClient(address: addr, token: t, tokenSource: tokenFile)
        case .success:
            return TendClient(address: addr, token: nil, tokenSource: tokenFile, tokenProblem: "the token file \(tokenFile) is empty")
        case .failure(let e):
            return TendClient(address: addr, token: nil, tokenSource: tokenFile,
                              tokenProblem: "cannot read the token file \(tokenFile) (\(e.reason))")
        }
    }
}

/// Lets the connection options come before the subcommand (`tend --url X ps`): they are moved right
/// after the subcommand's name, where the subcommand parses them. Everything else keeps its order.
public func hoistGlobalOptions(_ args: [String]) -> [String] {
    var moved: [String] = []
    var i = 0
    while i < args.count {
        let a = args[i]
        if a == "--url" || a == "--token-file" {
            guard i + 1 < args.count else { break }
            moved += [a, args[i + 1]]
            i += 2
        } else if a.hasPrefix("--url=") || a.hasPrefix("--token-file=") {
            moved.append(a)
            i += 1
        } else {
            break
        }
    }
    guard !moved.isEmpty, i < args.count, !args[i].hasPrefix("-") else { return args }
    return [args[i]] + moved + args[(i + 1)...]
}
