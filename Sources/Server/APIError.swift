// APIError: every error the API returns, as status + code + message, rendered as {"error","code"}.
import JSON

public struct APIError: Error {
    public let status: Int
    public let code: String
    public let message: String
    public init(_ status: Int, _ code: String, _ message: String) {
        self.status = status; self.code = code; self.message = message
    }

    static func badRequest(_ m: String) -> APIError { APIError(400, "BAD_REQUEST", m) }
    static func invalid(_ m: String) -> APIError { APIError(400, "INVALID_REQUEST", m) }
    static func notFound(_ m: String) -> APIError { APIError(404, "NOT_FOUND", m) }
    static func processNotFound(_ p: String) -> APIError { APIError(404, "NOT_FOUND", "Process \(p) not found") }
    static let unauthorized = APIError(401, "UNAUTHORIZED", "missing or invalid bearer token")

    var json: JSONValue { .object([("error", .string(message)), ("code", .string(code))]) }
}
