// Shared by the suites: the provider emulator and a real usage collector (gaterouter-collector
// on SQLite), both from the cargo target dir, started once per test process and stopped at
// exit; the shared JSON vectors; and small helpers. Mirrors bindings/kotlin Support.kt.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import GateRouter

/// The repository root, from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent() // GateRouterTests
    .deletingLastPathComponent() // Tests
    .deletingLastPathComponent() // swift
    .deletingLastPathComponent() // bindings
    .deletingLastPathComponent() // repository root

/// Where cargo put gaterouter-emulator and gaterouter-collector (GATEROUTER_TARGET_DIR, else target/debug).
let targetDir: URL = {
    if let dir = ProcessInfo.processInfo.environment["GATEROUTER_TARGET_DIR"] { return URL(fileURLWithPath: dir) }
    return repoRoot.appendingPathComponent("target/debug")
}()

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Children started by the suite; terminated when the test process exits.
final class Children: @unchecked Sendable {
    static let shared = Children()
    private let lock = NSLock()
    private var processes: [Process] = []

    private init() {
        // SIGKILL, not terminate(): on Linux, Foundation's Process starts children with the
        // spawning thread's signal mask, where SIGTERM is blocked, so they would outlive the
        // suite. No waiting either: Process.waitUntilExit can hang an exiting process.
        atexit {
            for p in Children.shared.all() where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
    }

    func add(_ p: Process) { lock.lock(); processes.append(p); lock.unlock() }
    func all() -> [Process] { lock.lock(); defer { lock.unlock() }; return processes }
}

/// A JSON vector file from tests/vectors.
func vector(_ name: String) throws -> [String: Any] {
    let data = try Data(contentsOf: repoRoot.appendingPathComponent("tests/vectors/\(name)"))
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
}

func json(_ object: Any) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
}

/// One HTTP exchange on loopback: (status, body).
func http(_ method: String, _ url: String, body: String? = nil, bearer: String? = nil) async throws -> (Int, String) {
    var req = URLRequest(url: URL(string: url)!)
    req.httpMethod = method
    if let bearer { req.setValue("Bearer \(bearer)", forHTTPHeaderField: "authorization") }
    if let body {
        req.setValue("application/json", forHTTPHeaderField: "content-type")
        req.httpBody = Data(body.utf8)
    }
    let (data, resp) = try await URLSession.shared.data(for: req)
    return ((resp as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
}

/// Poll `cond` every 20 ms for up to `ms`.
func waitUntil(_ what: String, ms: Int, _ cond: () async throws -> Bool) async throws {
    let end = Date().addingTimeInterval(Double(ms) / 1000)
    while try await !cond() {
        if Date() > end { throw TestFailure("timed out after \(ms) ms waiting for \(what)") }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
}

func millis(_ block: () throws -> Void) rethrows -> Double {
    let start = Date()
    try block()
    return Date().timeIntervalSince(start) * 1000
}

func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }

func request(_ model: String, _ text: String, maxTokens: UInt32? = nil) -> ChatRequest {
    ChatRequest(model: model, messages: [user(text)], maxTokens: maxTokens)
}

let weather = Tool(name: "get_weather", description: "Weather for a city",
                   parametersJson: #"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#)

/// The provider emulator (`gaterouter-emulator --listen 127.0.0.1:0`), started on first use.
enum Emulator {
    static let base: String = {
        let p = Process()
        p.executableURL = ProcessInfo.processInfo.environment["GATEROUTER_EMULATOR_BIN"].map { URL(fileURLWithPath: $0) }
            ?? targetDir.appendingPathComponent("gaterouter-emulator")
        p.arguments = ["--listen", "127.0.0.1:0"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { fatalError("cannot start \(p.executableURL!.path): \(error) (cargo build -p gaterouter-emulator)") }
        Children.shared.add(p)
        // The first stdout line is `listening on http://127.0.0.1:PORT`.
        var line = Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { break }
            line.append(byte)
        }
        let banner = String(decoding: line, as: UTF8.self)
        precondition(banner.hasPrefix("listening on "), "unexpected emulator banner: \(banner)")
        return String(banner.dropFirst("listening on ".count)).trimmingCharacters(in: .whitespaces)
    }()

    /// The four providers pointed at `base`, fast retries, plus `extra` TOML.
    static func toml(base: String = Emulator.base, extra: String = "") -> String {
        var toml = ""
        for (name, kind, path) in [("openai", "openai", "/openai/v1"), ("anthropic", "anthropic", "/anthropic"),
                                   ("gemini", "gemini", "/gemini/v1beta"), ("deepseek", "openai", "/deepseek/v1")] {
            toml += "[providers.\(name)]\nkind = \"\(kind)\"\nbase_url = \"\(base)\(path)\"\napi_key = \"emulator-key\"\n\n"
        }
        return toml + "[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n" + extra
    }

    /// Queue a fault (`POST /_emulator/faults`).
    static func fault(_ json: String) async throws {
        let (status, body) = try await http("POST", base + "/_emulator/faults", body: json)
        XCTAssertLessThan(status, 300, "fault not queued: \(status) \(body)")
    }
}

/// An Ed25519 key as an app keeps it: 32 random bytes (the seed) from the system's CSPRNG.
struct AppKey {
    let seed: Data
    let signingKey: UsageSigningKey

    init() throws {
        var rng = SystemRandomNumberGenerator()
        seed = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
        signingKey = try UsageSigningKey.fromSeed(seed: seed)
    }

    /// Standard base64 of the public key (what the collector registers).
    var publicKeyBase64: String { signingKey.publicKey() }
}

/// The real collector on SQLite in a temp dir, with org `acme` and member `alice`.
enum Collector {
    static let admin = "swift-suite-admin-token"

    static let url: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gaterouter-collector-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let port = freePort()
        let p = Process()
        p.executableURL = ProcessInfo.processInfo.environment["GATEROUTER_COLLECTOR_BIN"].map { URL(fileURLWithPath: $0) }
            ?? targetDir.appendingPathComponent("gaterouter-collector")
        p.arguments = ["--listen", "127.0.0.1:\(port)", "--db", "sqlite://\(dir.path)/c.db"]
        var env = ProcessInfo.processInfo.environment
        env["GATEROUTER_COLLECTOR_ADMIN_TOKEN"] = admin
        p.environment = env
        let log = dir.appendingPathComponent("collector.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        p.standardOutput = try! FileHandle(forWritingTo: log)
        p.standardError = p.standardOutput
        do { try p.run() } catch { fatalError("cannot start \(p.executableURL!.path): \(error) (cargo build -p gaterouter-collector)") }
        Children.shared.add(p)
        let base = "http://127.0.0.1:\(port)"
        // Blocking setup on first use (a static initialiser cannot await): poll with a semaphore.
        let ready = DispatchSemaphore(value: 0)
        var failure: String?
        Task {
            do {
                try await waitUntil("the collector on \(base) (log: \(log.path))", ms: 20_000) {
                    guard p.isRunning else { throw TestFailure("the collector exited: \((try? String(contentsOf: log)) ?? "")") }
                    return (try? await http("GET", base + "/healthz", bearer: admin).0) == 200
                }
                let (s, v) = try await http("POST", base + "/v1/admin/orgs", body: #"{"id":"acme","name":"Acme"}"#, bearer: admin)
                if !(200...201).contains(s) { throw TestFailure("org not created: \(s) \(v)") }
                // Records naming a member must name a registered one (the collector checks the tree).
                let (us, uv) = try await http("POST", base + "/v1/admin/users", body: #"{"id":"alice","org_id":"acme"}"#, bearer: admin)
                if !(200...201).contains(us) { throw TestFailure("user not created: \(us) \(uv)") }
            } catch { failure = "\(error)" }
            ready.signal()
        }
        ready.wait()
        if let failure { fatalError(failure) }
        return base
    }()

    /// A free loopback port (bound then released).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, len)
                _ = getsockname(fd, $0, &len)
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Set org acme's routing learning settings (`PUT /v1/admin/orgs/acme/routing`).
    static func putRouting(_ body: String) async throws {
        let (s, v) = try await http("PUT", url + "/v1/admin/orgs/acme/routing", body: body, bearer: admin)
        XCTAssertEqual(s, 200, "routing settings: \(s) \(v)")
    }

    /// Register an API key of org acme with the app key's public half.
    static func registerKey(_ id: String, _ key: AppKey) async throws {
        let (s, v) = try await http("POST", url + "/v1/admin/keys",
                                    body: #"{"id":"\#(id)","org_id":"acme","public_key":"\#(key.publicKeyBase64)"}"#, bearer: admin)
        XCTAssertTrue((200...201).contains(s), "key not created: \(s) \(v)")
    }

    /// Calls the collector has stored for one API key (analytics summary).
    static func calls(_ keyId: String) async throws -> Int {
        let rows = try await analytics("summary", keyId)
        return rows.reduce(0) { $0 + ((($1["calls"]) as? NSNumber)?.intValue ?? 0) }
    }

    /// (rated calls, mean score) of one key's calls, from the outcomes analytics.
    static func outcomes(_ keyId: String) async throws -> (Int, Double?) {
        let (s, body) = try await http("GET", url + "/v1/analytics/outcomes?by=key&key=\(keyId)", bearer: admin)
        guard s == 200 else { throw TestFailure("outcomes: \(s) \(body)") }
        let obj = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        guard let row = (obj?["rows"] as? [[String: Any]])?.first else { return (0, nil) }
        return (((row["rated_calls"]) as? NSNumber)?.intValue ?? 0, (row["mean_score"] as? NSNumber)?.doubleValue)
    }

    /// Users seen for one key, from the per-user analytics.
    static func users(_ keyId: String) async throws -> [String] {
        try await analytics("users", keyId).compactMap { $0["user"] as? String }
    }

    private static func analytics(_ view: String, _ keyId: String) async throws -> [[String: Any]] {
        let (s, body) = try await http("GET", url + "/v1/analytics/\(view)?key=\(keyId)", bearer: admin)
        guard s == 200 else { throw TestFailure("\(view): \(s) \(body)") }
        let obj = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return try XCTUnwrap(obj?["rows"] as? [[String: Any]], body)
    }
}

/// The fields every `GateRouterError` carries, whatever its case.
/// A caught error's case name (`RateLimited`) beside its `info()`, read the way an app
/// would: no destructuring.
@dynamicMemberLookup
struct ErrorFields {
    let kind: String
    let info: ErrorInfo
    subscript<T>(dynamicMember path: KeyPath<ErrorInfo, T>) -> T { info[keyPath: path] }
}

extension GateRouterError {
    var fields: ErrorFields {
        // The case name: the label of the enum's one child (its associated value).
        ErrorFields(kind: Mirror(reflecting: self).children.first?.label ?? "\(self)", info: info())
    }
}

/// The `GateRouterError` that `body` throws (fails the test if it throws nothing or something else).
func gateRouterError(_ what: String, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () async throws -> Void) async -> ErrorFields? {
    do {
        try await body()
        XCTFail("\(what): expected a GateRouterError, got none", file: file, line: line)
    } catch let e as GateRouterError {
        return e.fields
    } catch {
        XCTFail("\(what): expected a GateRouterError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}
