// ByteRing: the raw bytes of one output stream, exactly as the child wrote them (no line splitting, no
// UTF-8 repair), bounded, addressed by byte offset in the stream (0 = the first byte it ever wrote). It
// backs the raw byte view (`GET …/stdout/raw?offset=N`), which is lossless for binary output and
// resumable by offset; the line journal stays the source of the SSE views.
//
// Storage: one flat region, `[header 64 B][data: capacity bytes]`, either the caller's (a MAP_SHARED memfd
// mapping that survives a crash of the daemon) or allocated by the ring on its first byte (heap mode);
// both run the same code. The byte at stream offset o lives at data[o % capacity]. Only the header's
// `total` word (bytes ever written) is the committed state.
//
// Crash consistency (region mode): an append writes at most `commitEvery` bytes, then publishes the new
// total (behind a release fence), and repeats. The retained window is the last `capacity - commitEvery`
// bytes before the committed total, so the bytes an uncommitted write may have overwritten (at most
// `commitEvery`, just behind the window) are never claimed: after a crash at any instant, every byte the
// recovered ring serves is the byte that was at that offset. A heap-mode ring has nothing to recover:
// it retains its whole capacity and takes writes of up to all of it at once (bigger pipe reads).

#if canImport(Synchronization)
import Synchronization
#endif
import Sys

public final class ByteRing {
    /// Size of the data area (the memory the ring may touch, besides its 64-byte header).
    public let capacity: Int
    /// The most bytes written between two commits (one `fill`, one piece of an `append`).
    public let commitEvery: Int
    /// Bytes the ring keeps: offsets [firstOffset, total) are readable. Region mode: capacity minus
    /// commitEvery; heap mode: the capacity.
    public let window: Int
    private var base: UnsafeMutableRawPointer?
    private var owned = false
    /// Bytes ever appended: the offset the next byte will get.
    public private(set) var total: UInt64 = 0
    /// No byte before this offset is retained (set when one append skipped more than the window).
    private var validFrom: UInt64 = 0

    /// Bytes of region a ring of `capacity` data bytes needs (header + data).
    public static func regionSize(capacity: Int) -> Int { headerSize + capacity }

    /// Heap mode: the region is allocated on the first append, so a silent stream costs nothing.
    public init(capacity: Int) {
        precondition(capacity >= 4096, "ByteRing: capacity below 4 KiB")
        self.capacity = capacity
        commitEvery = capacity
        window = capacity
    }

    /// Region mode: `region` (at least `regionSize(capacity:)` bytes) stays mapped for the ring's
    /// lifetime. `fresh: false` recovers the committed state a previous daemon left in it.
    public init(region: UnsafeMutableRawBufferPointer, capacity: Int, fresh: Bool) throws {
        precondition(capacity >= 4096, "ByteRing: capacity below 4 KiB")
        guard let p = region.baseAddress, region.count >= ByteRing.regionSize(capacity: capacity) else {
            throw JournalRecoveryError("raw ring region of \(region.count) bytes is too small for \(capacity)")
        }
        self.capacity = capacity
        commitEvery = ByteRing.commitSize(capacity)
        window = capacity - commitEvery
        base = p
        if fresh {
            p.storeBytes(of: 0, toByteOffset: totalOffset, as: UInt64.self)
            p.storeBytes(of: 0, toByteOffset: validFromOffset, as: UInt64.self)
            p.storeBytes(of: UInt64(capacity), toByteOffset: capacityOffset, as: UInt64.self)
            p.storeBytes(of: ringMagic, toByteOffset: 0, as: UInt64.self)
        } else {
            guard p.load(fromByteOffset: 0, as: UInt64.self) == ringMagic else {
                throw JournalRecoveryError("raw ring header missing")
            }
            guard p.load(fromByteOffset: capacityOffset, as: UInt64.self) == UInt64(capacity) else {
                throw JournalRecoveryError("raw ring was made for another capacity")
            }
            total = p.load(fromByteOffset: totalOffset, as: UInt64.self)
            validFrom = p.load(fromByteOffset: validFromOffset, as: UInt64.self)
        }
    }

    deinit {
        if owned, let base { PageMemory.release(base, ByteRing.regionSize(capacity: capacity)) }
    }

    /// Heap mode: the region (zero pages straight from the kernel) on first use.
    @inline(__always)
    private func ensureBase() {
        if base == nil {
            base = PageMemory.allocate(ByteRing.regionSize(capacity: capacity))
            owned = true
        }
    }

    private static func commitSize(_ capacity: Int) -> Int { min(1 << 20, capacity / 4) }

    /// Whether the ring has its memory yet (heap mode: after its first byte; region mode: always).
    public var allocated: Bool { base != nil }

    /// Offset of the oldest byte still retained.
    public var firstOffset: UInt64 {
        Swift.min(total, Swift.max(validFrom, total > UInt64(window) ? total - UInt64(window) : 0))
    }

    /// Appends bytes read from the stream's pipe.
    public func append(_ bytes: UnsafeRawBufferPointer) {
        guard var src = bytes.baseAddress, bytes.count > 0 else { return }
        ensureBase()
        let data = base! + headerSize
        var left = bytes.count
        // Bytes older than the window would be overwritten before anyone could read them: skip them
        // (they still count in `total`). The bytes between the old window and the first one written are
        // stale from then on: `validFrom` (published first) excludes them, also after a crash.
        if left > window {
            let skip = left - window
            total &+= UInt64(skip)
            src += skip
            left = window
            validFrom = total
            base!.storeBytes(of: validFrom, toByteOffset: validFromOffset, as: UInt64.self)
        }
        while left > 0 {
            let piece = min(left, commitEvery)
            var at = Int(total % UInt64(capacity))
            var done = 0
            while done < piece {
                let n = min(piece - done, capacity - at)
                (data + at).copyMemory(from: src + done, byteCount: n)
                done += n
                at = 0
            }
            total &+= UInt64(piece)
            src += piece
            left -= piece
            publish()
        }
    }

    /// Reads straight into the ring (no copy through another buffer): `read` gets the free space at the
    /// tail, contiguous and at most `max` (and `commitEvery`) bytes, and returns how many it filled (or
    /// throws, nothing committed). Those bytes are committed and passed to `then`, in place.
    public func fill<R>(max: Int, _ read: (UnsafeMutableRawBufferPointer) throws -> Int,
                        then: (UnsafeRawBufferPointer) -> R) rethrows -> R {
        ensureBase()
        let at = Int(total % UInt64(capacity))
        let room = Swift.min(max, commitEvery, capacity - at)
        let space = UnsafeMutableRawBufferPointer(start: base! + headerSize + at, count: room)
        let n = try read(space)
        precondition(n >= 0 && n <= room, "ByteRing.fill: read returned \(n) for \(room) bytes")
        total &+= UInt64(n)
        if n > 0 { publish() }
        return then(UnsafeRawBufferPointer(start: space.baseAddress, count: n))
    }

    @inline(__always)
    private func publish() {
        #if canImport(Synchronization)
        if #available(macOS 15.0, *) { atomicMemoryFence(ordering: .releasing) }
        #endif
        base!.storeBytes(of: total, toByteOffset: totalOffset, as: UInt64.self)
    }

    /// Calls `body` with the retained bytes from `offset` (clamped to the window) up to at most `max`
    /// bytes, as one or two contiguous pieces (the second is empty unless the range wraps). The pointers
    /// are valid only during the call. Returns what `body` returns.
    public func withBytes<R>(from offset: UInt64, max: Int,
                             _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let from = Swift.max(offset, firstOffset)
        let n = from >= total ? 0 : Int(Swift.min(UInt64(max), total - from))
        guard n > 0, let b = base else {
            return try body(UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(start: nil, count: 0))
        }
        let data = UnsafeRawPointer(b + headerSize)
        let at = Int(from % UInt64(capacity))
        let first = Swift.min(n, capacity - at)
        return try body(UnsafeRawBufferPointer(start: data + at, count: first),
                        UnsafeRawBufferPointer(start: first < n ? data : nil, count: n - first))
    }

    /// The retained bytes from `offset` (clamped to the window), at most `max`, as an array (tests, small reads).
    public func bytes(from offset: UInt64, max: Int = .max) -> [UInt8] {
        withBytes(from: offset, max: max) { a, b in Array(a) + Array(b) }
    }
}

private let ringMagic: UInt64 = 0x474E_4952_5752_4454   // "TDRWRING"
private let headerSize = 64
private let totalOffset = 8
private let capacityOffset = 16
private let validFromOffset = 24
