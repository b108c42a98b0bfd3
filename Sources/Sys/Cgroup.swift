// Cgroup: cgroup v2 leaves for whole-tree ownership (C: mkdir/rmdir and writes to cgroup files).
// A process starts in its leaf (clone3 CLONE_INTO_CGROUP, or the child writes "0" to cgroup.procs before
// execve), so no descendant can escape it; `cgroup.kill` (Linux 5.14) kills everything in it, setsid'd or not.
import Glibc
import CShims

public enum Cgroup {
    /// The directory under which this daemon may create leaves: `<cgroup2 mount><own cgroup>`, if it is
    /// a writable cgroup v2 directory with `cgroup.kill` support. nil otherwise.
    public static func detectBase() -> String? {
        guard let mountinfo = try? FD.readFile("/proc/self/mountinfo") else { return nil }
        var mount: String? = nil
        for line in String(decoding: mountinfo, as: UTF8.self).split(separator: "\n") {
            // "... - cgroup2 cgroup2 rw": the mount point is field 5, the fs type follows " - ".
            let fields = line.split(separator: " ")
            guard let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields[dash + 1] == "cgroup2" else { continue }
            if fields.count > 4 { mount = String(fields[4]); break }
        }
        guard let mount, let own = try? FD.readFile("/proc/self/cgroup") else { return nil }
        var rel = "/"
        for line in String(decoding: own, as: UTF8.self).split(separator: "\n") where line.hasPrefix("0::") {
            rel = String(line.dropFirst(3))
        }
        let base = rel == "/" ? mount : mount + rel
        guard access(base, W_OK) == 0, access(base + "/cgroup.procs", W_OK) == 0 else { return nil }
        return base
    }

    /// C: mkdir(2). Succeeds if it already exists.
    public static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) < 0 && errno != EEXIST { throw lastError("mkdir(\(path))") }
    }

    /// C: mkdirat(2) of a directory that must not exist yet: false if it does (EEXIST).
    /// `path` is relative to the directory fd `dir` (a short path walk in cgroupfs) or absolute.
    public static func makeNewDirectory(_ path: String, in dir: Int32 = FD.cwd) throws -> Bool {
        if mkdirat(dir, path, 0o755) == 0 { return true }
        if errno == EEXIST { return false }
        throw lastError("mkdir(\(path))")
    }

    /// C: rmdir(2) (unlinkat AT_REMOVEDIR, `path` relative to `dir`) of a leaf; false while it still has
    /// processes (EBUSY) or on other errors.
    @discardableResult
    public static func remove(_ path: String, in dir: Int32 = FD.cwd) -> Bool {
        unlinkat(dir, path, AT_REMOVEDIR) == 0 || errno == ENOENT
    }

    /// An O_DIRECTORY fd of the cgroup `leaf`: a child is started in it (clone3 CLONE_INTO_CGROUP, or
    /// by writing to cgroup.procs under it).
    public static func openDir(_ leaf: String, in dir: Int32 = FD.cwd) throws -> Int32 {
        try FD.open(leaf, at: dir, flags: FD.directory)
    }

    /// Writes "1" to `<leaf>/cgroup.kill`: SIGKILL to every process in the leaf.
    @discardableResult
    public static func kill(_ leaf: String) -> Bool { write(leaf + "/cgroup.kill", "1") }

    public static func hasKill(_ dir: String) -> Bool { access(dir + "/cgroup.kill", W_OK) == 0 }

    /// `populated` from `<leaf>/cgroup.events`.
    /// Once per reaped process: one read into a small stack buffer and a byte comparison (the file
    /// starts "populated 0|1\n"), not a growing array decoded to a String and searched.
    public static func populated(_ leaf: String, in dir: Int32 = FD.cwd) -> Bool {
        guard let fd = try? FD.open(leaf + "/cgroup.events", at: dir, flags: O_RDONLY) else { return false }
        defer { FD.close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { buf in
            guard case .bytes(let n)? = try? FD.read(fd, into: UnsafeMutableRawBufferPointer(buf)) else { return false }
            let key = Array("populated ".utf8)
            guard n > key.count, buf.prefix(key.count).elementsEqual(key) else {   // another layout: search it
                return String(decoding: buf.prefix(n), as: UTF8.self).contains("populated 1")
            }
            return buf[key.count] == UInt8(ascii: "1")
        }
    }

    /// The pids in a leaf (`cgroup.procs`).
    public static func pids(_ leaf: String) -> [Int32] {
        guard let b = try? FD.readFile(leaf + "/cgroup.procs") else { return [] }
        return String(decoding: b, as: UTF8.self).split(separator: "\n").compactMap { Int32($0) }
    }

    /// `oom_kill` from `<leaf>/memory.events` (nil without the memory controller).
    public static func oomKills(_ leaf: String) -> Int? {
        guard let b = try? FD.readFile(leaf + "/memory.events", limit: 4096) else { return nil }
        for line in String(decoding: b, as: UTF8.self).split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst(9))
        }
        return nil
    }

    /// Writes a small value to a cgroup file.
    @discardableResult
    public static func write(_ path: String, _ value: String) -> Bool {
        guard let fd = try? FD.open(path, flags: FD.writeOnly) else { return false }
        defer { FD.close(fd) }
        return (try? FD.writeAll(fd, Array(value.utf8))) != nil
    }
}

/// ProcScan: the fallback view of a process tree without cgroups, from /proc.
public enum ProcScan {
    public struct Entry { public let pid: Int32; public let ppid: Int32; public let pgid: Int32 }

    /// Every process's (pid, ppid, pgid) from /proc/<pid>/stat.
    public static func all() -> [Entry] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var out: [Entry] = []
        while let ent = readdir(dir) {
            let name = direntName(ent)   // hardening: never load the whole dirent (ASan heap overflow; DirEntry.swift)
            guard let pid = Int32(name), let stat = try? FD.readFile("/proc/\(name)/stat", limit: 4096) else { continue }
            // "pid (comm) state ppid pgrp ...": comm may contain spaces and ')', so split after the last ')'.
            guard let close = stat.lastIndex(of: 0x29) else { continue }
            let rest = String(decoding: stat[(close + 2)...], as: UTF8.self).split(separator: " ")
            guard rest.count > 2, let ppid = Int32(rest[1]), let pgid = Int32(rest[2]) else { continue }
            out.append(Entry(pid: pid, ppid: ppid, pgid: pgid))
        }
        return out
    }

    /// Our direct children (C: /proc/self/task/<pid>/children; the daemon has one thread).
    public static func childrenOfSelf() -> [Int32] {
        guard let b = try? FD.readFile("/proc/self/task/\(getpid())/children", limit: 1 << 22) else { return [] }
        return String(decoding: b, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int32($0) }
    }

    /// True if /proc/<pid>/environ contains exactly `entry` ("K=V").
    /// Whether the environment of `pid` has the entry `entry`, or (if given) one starting with `orPrefix`.
    public static func environContains(_ pid: Int32, _ entry: String, orPrefix: String? = nil) -> Bool {
        guard let b = try? FD.readFile("/proc/\(pid)/environ", limit: 1 << 20) else { return false }
        let needle = Array(entry.utf8)
        let prefix = orPrefix.map { Array($0.utf8) }
        return b.split(separator: 0).contains { e in
            e.elementsEqual(needle) || (prefix.map { e.starts(with: $0) } ?? false)
        }
    }

    /// C: kill(2) of one pid.
    @discardableResult
    public static func signal(_ pid: Int32, _ sig: Int32) -> Bool { Glibc.kill(pid, sig) == 0 }
}
