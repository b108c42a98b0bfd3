// Config: every tunable of the daemon, with its default and the flag that sets it.
// Parsed by the `tendd` executable; the Server only reads it.

public struct Config {
    public var listen: [String] = []
    public var tokenFile: String? = nil
    public var logLevel: LogLevel = .info
    /// Per-process output retention (journal memory bound). 1 MiB keeps ~10,000 80-byte lines: enough to replay
    /// a build log or a server's start-up, while 4,000 processes that all fill it cost at most 4 GiB (and an
    /// idle or quiet process costs next to nothing: journal segments are allocated lazily).
    public var journalBytes = 1 << 20
    /// Longest line delivered as one event; longer lines are split into several events.
    public var maxLineBytes = 64 << 10
    /// Per-stream raw byte ring (the `…/stdout/raw` view, resumable by byte offset). 0 turns the raw view
    /// off. Touched lazily like the journal: a quiet stream costs nothing.
    public var rawBytes = 256 << 10
    public var maxExited = 1000
    public var exitedTTLms: Int64 = 24 * 3600 * 1000
    public var maxConnections = 1024
    public var maxProcesses = 4096
    public var maxBodyBytes = 1 << 20          // JSON request bodies
    public var maxStdinQueue = 4 << 20          // bytes buffered per process for its stdin before the request is slowed
    public var maxHeaderBytes = 16 << 10
    public var headerTimeoutMs: Int64 = 10_000
    public var idleTimeoutMs: Int64 = 60_000
    public var sseKeepaliveMs: Int64 = 15_000
    public var drainMs: Int64 = 2_000
    /// pty: a PTY session with no client attached for this long is killed (like the old daemon: 300 s).
    public var ptyIdleMs: Int64 = 300_000
    /// pty: how long an exited PTY session stays listed (and attachable for its output and exit code).
    public var ptyKeepExitedMs: Int64 = 60_000
    public var shutdownGraceMs: Int64 = 5_000
    public var pipeSize: Int32 = 1 << 20
    /// Force the fallback tree ownership (process group + subreaper + /proc scan) even where cgroup v2 works.
    public var noCgroup = false
    /// Where the state file lives (crash and upgrade survival); default $RUNTIME_DIRECTORY. nil: off.
    public var stateDir: String? = nil
    // retention (issue 13): the disk tier behind the memory journal (README "Output retention").
    /// Its directory: nil: `$CACHE_DIRECTORY` (systemd `CacheDirectory=`), `none`: off.
    public var retentionDir: String? = nil
    /// Disk bytes per process (segment files); 0: the tier is off.
    public var retentionProcessBytes = 64 << 20
    /// Disk bytes for all processes; nil: a tenth of the filesystem holding the directory.
    public var retentionTotalBytes: Int? = nil
    /// Per-connection output queue high watermark: above it the daemon stops producing for that client.
    public var writeHighWater = 256 << 10
    /// metrics: no counters, no loop clock reads, no /metrics route (`--no-metrics`; for measuring their cost).
    public var noMetrics = false
    public init() {}
}

public enum LogLevel: Int, Comparable {
    case debug = 0, info, warn, error
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warn
        case "error": self = .error
        default: return nil
        }
    }
    var tag: String { ["debug", "info", "warn", "error"][rawValue] }
    /// sd-daemon(3) priority prefix, understood by journald on stderr.
    var syslogPrefix: String { ["<7>", "<6>", "<4>", "<3>"][rawValue] }
}
