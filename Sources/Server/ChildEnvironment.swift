// ChildEnvironment: the environment every child starts from (the daemon's, minus its private variables),
// joined into "K=V" strings once at start-up, with an index by key. A start only applies its overrides
// (the user's HOME/USER/LOGNAME, the request's `env`, the tree marker) to a copy of that array, instead
// of rebuilding every "K=V" string and searching the list linearly for each key on every start.
struct ChildEnvironment {
    private let entries: [String]
    private let index: [String: Int]
    private let values: [String: String]

    init(_ pairs: [(String, String)]) {
        var entries: [String] = [], index: [String: Int] = [:], values: [String: String] = [:]
        for (k, v) in pairs {
            if let i = index[k] { entries[i] = k + "=" + v } else { index[k] = entries.count; entries.append(k + "=" + v) }
            values[k] = v
        }
        self.entries = entries; self.index = index; self.values = values
    }

    /// The base environment with `overrides` applied in order: a later one wins, a key of the base keeps
    /// its place, a new key is appended (the order the child sees is the same as before the index).
    func compose(_ overrides: [(String, String)]) -> [String] {
        var out = entries
        var added: [String: Int] = [:]
        for (k, v) in overrides {
            let e = k + "=" + v
            if let i = index[k] ?? added[k] { out[i] = e } else { added[k] = out.count; out.append(e) }
        }
        return out
    }

    /// The value a child gets for `key` (the last override, else the base).
    func value(_ key: String, _ overrides: [(String, String)]) -> String? {
        overrides.last(where: { $0.0 == key })?.1 ?? values[key]
    }
}
