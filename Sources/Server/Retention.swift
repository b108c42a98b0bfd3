// Retention (issue 13): the Server's glue to the disk tier of output retention (Supervision/DiskTier.swift).
// Owns where the directory comes from (`--retention-dir`, else systemd's `$CACHE_DIRECTORY`), the budgets
// from the flags, attaching a tier to each record's journal, and removing the files of records that no
// longer exist (at start-up, when a record is forgotten, on a clean stop). Hook points in the other
// Server files are marked `// retention (issue 13):`.
import Sys
import Supervision

extension Server {
    /// The disk tier's directory: `--retention-dir` (`none`: off), else `$CACHE_DIRECTORY` (systemd's
    /// `CacheDirectory=`); nil: the tier is off.
    static func retentionDirectory(_ config: Config) -> String? {
        if let d = config.retentionDir { return d == "none" || d.isEmpty ? nil : d }
        return Proc.getenv("CACHE_DIRECTORY")?.split(separator: ":").first.map(String.init)
    }

    /// Opens the disk tier (nil when off or when the directory cannot be made: then a warning).
    static func makeRetention(_ config: Config, _ log: Log) -> DiskRetention? {
        guard let dir = retentionDirectory(config), config.retentionProcessBytes > 0 else { return nil }
        do {
            let r = try DiskRetention(dir: dir, processBudget: config.retentionProcessBytes,
                                      totalBudget: config.retentionTotalBytes, maxLineBytes: config.maxLineBytes,
                                      log: { [log] in log.warn($0) }, clock: { Clock.monotonicMs() })
            log.info("msg=\"output retention on disk\" dir=\(Log.q(dir)) process_bytes=\(r.processBudget) total_bytes=\(r.totalBudget)")
            return r
        } catch {
            log.warn("msg=\"output retention on disk off: cannot use the directory\" dir=\(Log.q(dir)) error=\(Log.q("\(error)"))")
            return nil
        }
    }

    /// A new or restored record: its journal spills into its own tier.
    func attachRetention(_ p: ProcessRecord) {
        retention?.attachLazily(p.journal, handle: p.handle)   // the tier object is made at the first spill
    }

    /// After start-up (and restore): files of records that do not exist go.
    public func pruneRetention() {
        guard let retention else { return }
        retention.removeOrphans(keeping: Set(table.processes.values.map { $0.handle }))
    }
}
