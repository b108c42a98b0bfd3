// Fuzz target: the journal's line framer (Supervision.Journal).
// Input: [mode][maxBytes byte][maxLine byte][split seed] then ops: [op][len][len bytes]...
//   op bit 0: stream (stdout/stderr); op bit 7: finish(stream) instead of append.
// Two journals get the same ops; the second gets every append cut into small pieces. Properties:
//  - both assign the same text and stream to every seq both retain, and the same nextSeq
//    ("feeding the same bytes in any split gives the same lines");
//  - every line is valid UTF-8, at most maxLineBytes long, without "\n";
//  - retainedBytes <= maxBytes; droppedLines == headSeq - 1; bytesBefore(headSeq) == droppedBytes;
//  - mode bit 0 (large bounds, no loss): the lines equal a simple reference model
//    (split on "\n", drop one "\r" before it, String(decoding:) repair, last partial line at finish).
import Supervision

private struct Line: Equatable { var seq: UInt64; var stream: OutputStream; var text: [UInt8] }

private func lines(_ j: Journal) -> [Line] {
    var out: [Line] = []
    var seq = j.headSeq
    while seq < j.nextSeq {
        let next = j.read(from: seq, filter: .both, maxLines: 1000) { e in
            out.append(Line(seq: e.seq, stream: e.stream, text: Array(e.text)))
            return true
        }
        precondition(next > seq, "read made no progress")
        seq = next
    }
    return out
}

private func check(_ j: Journal, _ ls: [Line]) {
    precondition(j.retainedBytes <= j.maxBytes, "retained \(j.retainedBytes) > bound \(j.maxBytes)")
    precondition(j.droppedLines == j.headSeq - 1, "droppedLines != headSeq - 1")
    precondition(j.bytesBefore(j.headSeq) == j.droppedBytes, "bytesBefore(head) != droppedBytes")
    precondition(UInt64(ls.count) == j.nextSeq - j.headSeq, "retained line count")
    var expect = j.headSeq
    for l in ls {
        precondition(l.seq == expect, "seq gap"); expect += 1
        precondition(l.text.count <= j.maxLineBytes, "line longer than maxLineBytes")
        precondition(!l.text.contains(0x0A), "newline inside a line")
        precondition(Array(String(decoding: l.text, as: UTF8.self).utf8) == l.text, "invalid UTF-8 in a line")
    }
    // A filtered read sees exactly the lines of that stream.
    var outOnly = 0
    var seq = j.headSeq
    while seq < j.nextSeq {
        let next = j.read(from: seq, filter: .stdout, maxLines: 1000) { e in
            precondition(e.stream == .stdout); outOnly += 1; return true
        }
        precondition(next > seq); seq = next
    }
    precondition(outOnly == ls.filter { $0.stream == .stdout }.count, "filtered read")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJournal(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let exact = data[0] & 1 != 0
    let maxBytes = exact ? 1 << 20 : 1024 + Int(data[1]) * 32
    let maxLine = exact ? 1 << 16 : 4 + Int(data[2])
    var rng = UInt32(data[3]) &* 2654435761 &+ 7
    let a = Journal(maxBytes: maxBytes, maxLineBytes: maxLine)
    let b = Journal(maxBytes: maxBytes, maxLineBytes: maxLine)
    // Reference model (exact mode): raw pending bytes per stream.
    var pending: [OutputStream: [UInt8]] = [.stdout: [], .stderr: []]
    var model: [(OutputStream, [UInt8])] = []
    func emit(_ s: OutputStream, _ raw: ArraySlice<UInt8>, stripCR: Bool) {
        var r = raw
        if stripCR, r.last == 0x0D { r = r.dropLast() }
        model.append((s, Array(String(decoding: r, as: UTF8.self).utf8)))
    }
    var i = 4
    var now: Int64 = 1_000
    while i + 2 <= size {
        let op = data[i], len = Int(data[i + 1])
        i += 2
        let stream: OutputStream = op & 1 == 0 ? .stdout : .stderr
        now += Int64(op >> 4)
        if op & 0x80 != 0 {
            a.finish(stream, nowMs: now); b.finish(stream, nowMs: now)
            if let p = pending[stream], !p.isEmpty { emit(stream, p[...], stripCR: false) }
            pending[stream] = []
            continue
        }
        let n = min(len, size - i)
        let chunk = UnsafeRawBufferPointer(start: data + i, count: n)
        i += n
        a.append(chunk, from: stream, nowMs: now)
        var at = 0
        while at < n {
            rng = rng &* 1103515245 &+ 12345
            let k = min(n - at, Int((rng >> 16) % 5) + 1)
            b.append(UnsafeRawBufferPointer(rebasing: chunk[at..<(at + k)]), from: stream, nowMs: now)
            at += k
        }
        var p = pending[stream]!
        p.append(contentsOf: chunk)
        var start = 0
        while let nl = p[start...].firstIndex(of: 0x0A) {
            emit(stream, p[start..<nl], stripCR: true)
            start = nl + 1
        }
        pending[stream] = Array(p[start...])
    }
    let la = lines(a), lb = lines(b)
    check(a, la); check(b, lb)
    precondition(a.nextSeq == b.nextSeq, "split changed the number of lines: \(a.nextSeq) vs \(b.nextSeq)")
    let common = max(a.headSeq, b.headSeq)
    precondition(la.filter { $0.seq >= common } == lb.filter { $0.seq >= common }, "split changed the lines")
    if exact {
        precondition(a.headSeq == 1, "exact mode dropped lines")
        precondition(la.count == model.count, "line count \(la.count) vs model \(model.count)")
        for (l, m) in zip(la, model) {
            precondition(l.stream == m.0 && l.text == m.1, "seq \(l.seq) differs from the model")
        }
    }
    return 0
}
