// ChunkedDecoder.swift — the incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
// It owns chunk-size lines (hex size, ignored but bounded extensions), the CRLF after each
// chunk's data, the skipped-but-bounded trailer section and the body-size limit. It is a byte
// state machine, so input may be split anywhere (down to one byte per call) with identical
// results; it never consumes bytes after the terminating blank line.

/// Decodes a chunked request body incrementally.
public struct ChunkedDecoder: Sendable {
    /// Longest accepted chunk-size line (size, extensions and line ending).
    public static let maxChunkSizeLineBytes = 4096
    /// Largest accepted trailer section (all trailer lines and the final empty line).
    public static let maxTrailerBytes = 16 * 1024

    public enum Result: Equatable, Sendable {
        /// All input was consumed and more is needed.
        case needMore
        /// The last chunk, trailers and final line ending were consumed.
        case done
        /// The body is malformed or too large; answer with the error's status and close.
        case invalid(HTTPParseError)
    }

    private enum State: Sendable {
        /// Reading hex digits of a chunk size.
        case size
        /// After the size: skipping `;ext` / BWS until the line ends.
        case sizeExtension
        /// Saw CR ending the size line; LF must follow.
        case sizeLF
        /// Copying `remaining` payload bytes.
        case data
        /// After the payload: CR or LF expected.
        case dataCR
        /// After the payload's CR: LF expected.
        case dataLF
        /// At the start of a trailer line (an empty line ends the body).
        case trailerLineStart
        /// Inside a non-empty trailer line.
        case trailerLine
        /// Saw CR inside the trailer section; LF must follow.
        case trailerLF(lineWasEmpty: Bool)
        case done
        case failed(HTTPParseError)
    }

    private let maxBodyBytes: Int
    private var state: State = .size
    private var size = 0
    private var sizeDigits = 0
    private var lineBytes = 0
    private var remaining = 0
    private var trailerBytes = 0
    public private(set) var decodedBytes = 0

    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// Consumes as much of `input` as it can, appending decoded payload bytes to `out`.
    /// After `.done` the trailer section and final CRLF have been consumed; bytes after it
    /// (a pipelined request) are NOT consumed. Once `.done` or `.invalid` has been returned,
    /// further calls consume nothing and return the same result.
    public mutating func decode(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) -> (consumed: Int, result: Result) {
        let n = input.count
        var i = 0
        while i < n {
            switch state {
            case .done:
                return (i, .done)
            case .failed(let err):
                return (i, .invalid(err))

            case .size:
                if let err = countSizeLineByte() { return fail(err, i) }
                let c = input[i]
                if let h = hexValue(c) {
                    sizeDigits += 1
                    if sizeDigits > 16 || size > (Int.max >> 4) { return fail(.invalidChunkSize, i) }
                    size = size << 4 | h
                } else {
                    if sizeDigits == 0 { return fail(.invalidChunkSize, i) }
                    switch c {
                    case asciiCR: state = .sizeLF
                    case asciiLF: if let err = endSizeLine() { return fail(err, i) }
                    case UInt8(ascii: ";"), asciiSP, asciiHT: state = .sizeExtension
                    default: return fail(.invalidChunkSize, i)
                    }
                }
                i += 1

            case .sizeExtension:
                if let err = countSizeLineByte() { return fail(err, i) }
                let c = input[i]
                if c == asciiCR {
                    state = .sizeLF
                } else if c == asciiLF {
                    if let err = endSizeLine() { return fail(err, i) }
                } else if (c < 0x20 && c != asciiHT) || c == 0x7F {
                    return fail(.invalidChunkExtension, i)
                }
                i += 1

            case .sizeLF:
                guard input[i] == asciiLF else { return fail(.invalidChunkExtension, i) }
                if let err = countSizeLineByte() { return fail(err, i) }
                if let err = endSizeLine() { return fail(err, i) }
                i += 1

            case .data:
                let take = min(remaining, n - i)
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[i..<(i + take)]))
                remaining -= take
                decodedBytes += take
                i += take
                if remaining == 0 { state = .dataCR }

            case .dataCR:
                switch input[i] {
                case asciiCR: state = .dataLF
                case asciiLF: state = .size
                default: return fail(.missingChunkCRLF, i)
                }
                i += 1

            case .dataLF:
                guard input[i] == asciiLF else { return fail(.missingChunkCRLF, i) }
                state = .size
                i += 1

            case .trailerLineStart, .trailerLine, .trailerLF:
                trailerBytes += 1
                if trailerBytes > ChunkedDecoder.maxTrailerBytes { return fail(.trailersTooLarge, i) }
                let c = input[i]
                i += 1
                switch (state, c) {
                case (.trailerLF(let empty), asciiLF):
                    if empty { state = .done; return (i, .done) }
                    state = .trailerLineStart
                case (.trailerLF, _):
                    return fail(.invalidTrailer, i - 1)
                case (.trailerLineStart, asciiLF):
                    state = .done
                    return (i, .done)
                case (.trailerLineStart, asciiCR):
                    state = .trailerLF(lineWasEmpty: true)
                case (_, asciiCR):
                    state = .trailerLF(lineWasEmpty: false)
                case (_, asciiLF):
                    state = .trailerLineStart
                case (_, _):
                    if (c < 0x20 && c != asciiHT) || c == 0x7F { return fail(.invalidTrailer, i - 1) }
                    state = .trailerLine
                }
            }
        }
        switch state {
        case .done: return (i, .done)
        case .failed(let err): return (i, .invalid(err))
        default: return (i, .needMore)
        }
    }

    /// True once the terminating blank line has been consumed.
    public var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    private mutating func fail(_ err: HTTPParseError, _ consumed: Int) -> (consumed: Int, result: Result) {
        state = .failed(err)
        return (consumed, .invalid(err))
    }

    private mutating func countSizeLineByte() -> HTTPParseError? {
        lineBytes += 1
        return lineBytes > ChunkedDecoder.maxChunkSizeLineBytes ? .chunkSizeLineTooLong : nil
    }

    /// The chunk-size line ended: start the payload, or the trailer section for the last chunk.
    private mutating func endSizeLine() -> HTTPParseError? {
        lineBytes = 0
        sizeDigits = 0
        let chunk = size
        size = 0
        if chunk == 0 {
            state = .trailerLineStart
            return nil
        }
        // Reject as soon as the size is known; earlier chunks have been fully decoded by now.
        if chunk > maxBodyBytes - decodedBytes { return .bodyTooLarge }
        remaining = chunk
        state = .data
        return nil
    }
}
