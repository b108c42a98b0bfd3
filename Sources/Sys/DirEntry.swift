// DirEntry: the name of a directory entry returned by readdir(3), read safely (hardening).
//
// glibc packs dirents by d_reclen: the last entry of a getdents buffer can be shorter than
// MemoryLayout<dirent>.size, so loading `ent.pointee` (or `ent.pointee.d_name`, a 256-byte tuple)
// reads past the end of the heap buffer. AddressSanitizer caught this in ProcScan.all() (a
// heap-buffer-overflow READ of 256 bytes, tests/e2e under scripts/sanitize.sh). Only the bytes up
// to the NUL are read here.
import Glibc

/// The entry's name (C: `ent->d_name`), without touching bytes past its terminating NUL.
public func direntName(_ ent: UnsafeMutablePointer<dirent>) -> String {
    let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
    let p = (UnsafeRawPointer(ent) + offset).assumingMemoryBound(to: CChar.self)
    return String(cString: p)
}
