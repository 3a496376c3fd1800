// XCTest suite for the Swift bindings, against the provider emulator and the shared JSON
// vectors (tests/vectors). macOS only (no Swift toolchain on the Linux machines that build
// this repo): build the XCFramework with build-xcframework.sh, `cargo build -p
// gaterouter-emulator`, then `swift test` in bindings/swift. GATEROUTER_EMULATOR_BIN
// overrides the emulator path. The Kotlin suite (bindings/kotlin) runs the same checks,
// plus delivery to a real collector, on every test run.
import CryptoKit
import Foundation
import XCTest
@testable import GateRouter

/// The repository root, from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent() // GateRouterTests
    .deletingLastPathComponent() // Tests
    .deletingLastPathComponent() // swift
    .deletingLastPathComponent() // bindings
    .deletingLastPathComponent() // repository root

/// A JSON vector file from tests/vectors.
func vector(_ name: String) throws -> [String: Any] {
    let data = try Data(contentsOf: repoRoot.appendingPathComponent("tests/vectors/\(name)"))
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
}

final class Emulator {
    let process = Process()
    let baseURL: String

    init() throws {
        let root = repoRoot
        let bin = ProcessInfo.processInfo.environment["GATEROUTER_EMULATOR_BIN"]
            ?? root.appendingPathComponent("target/debug/gaterouter-emulator").path
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["--listen", "127.0.0.1:0"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first stdout line is `listening on http://127.0.0.1:PORT`.
        var line = Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { break }
            line.append(byte)
        }
        let banner = String(decoding: line, as: UTF8.self)
        guard banner.hasPrefix("listening on ") else {
            throw NSError(domain: "emulator", code: 1, userInfo: [NSLocalizedDescriptionKey: "unexpected banner: \(banner)"])
        }
        baseURL = String(banner.dropFirst("listening on ".count)).trimmingCharacters(in: .whitespaces)
    }

    func config(extra: String = "") -> String {
        var toml = ""
        for (name, kind, path) in [("openai", "openai", "/openai/v1"), ("anthropic", "anthropic", "/anthropic"),
                                   ("gemini", "gemini", "/gemini/v1beta"), ("deepseek", "openai", "/deepseek/v1")] {
            toml += "[providers.\(name)]\nkind = \"\(kind)\"\nbase_url = \"\(baseURL)\(path)\"\napi_key = \"emulator-key\"\n\n"
        }
        return toml + extra
    }

    func fault(_ json: String) async throws {
        var req = URLRequest(url: URL(string: baseURL + "/_emulator/faults")!)
        req.httpMethod = "POST"
        req.setValue("application/json", forHTTPHeaderField: "content-type")
        req.httpBody = Data(json.utf8)
        let (_, resp) = try await URLSession.shared.data(for: req)
        XCTAssertLessThan((resp as! HTTPURLResponse).statusCode, 300)
    }

    deinit {
        process.terminate()
    }
}

/// Collects stream callbacks (they arrive on a gaterouter worker thread).
final class Recorder: ChatStreamListener, @unchecked Sendable {
    private let lock = NSLock()
    private(set) var chunks: [ChatChunk] = []
    private(set) var usage: Usage?
    private(set) var error: GateRouterError?
    let done: XCTestExpectation

    init(_ done: XCTestExpectation) { self.done = done }

    func onChunk(chunk: ChatChunk) {
        lock.lock(); chunks.append(chunk); lock.unlock()
    }

    func onComplete(usage: Usage?) {
        lock.lock(); self.usage = usage; lock.unlock()
        done.fulfill()
    }

    func onError(error: GateRouterError) {
        lock.lock(); self.error = error; lock.unlock()
        done.fulfill()
    }

    var text: String {
        lock.lock(); defer { lock.unlock() }
        return chunks.compactMap { $0.text }.joined()
    }
}

final class GateRouterTests: XCTestCase {
    static var emulator: Emulator!

    override class func setUp() {
        super.setUp()
        emulator = try! Emulator()
    }

    override class func tearDown() {
        emulator = nil
        super.tearDown()
    }

    func user(_ text: String) -> ChatMessage {
        ChatMessage(role: .user, content: text)
    }

    func testChatThroughEveryProvider() async throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        for model in ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"] {
            let resp = try await client.chat(request: ChatRequest(model: model, messages: [user("Why is the sky blue?")]))
            XCTAssertEqual(resp.model, model)
            XCTAssertTrue(resp.text.contains("Why is the sky blue?"), resp.text)
            XCTAssertEqual(resp.finishReason, .stop)
            XCTAssertEqual(resp.usage.totalTokens, resp.usage.promptTokens + resp.usage.completionTokens)
        }
    }

    func testStreamViaListenerMatchesChat() async throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        let req = ChatRequest(model: "anthropic/claude-sonnet-4-5", messages: [user("Tell a fox story")])
        let whole = try await client.chat(request: req)
        let rec = Recorder(expectation(description: "stream ends"))
        let handle = try client.chatStream(request: req, listener: rec)
        await fulfillment(of: [rec.done], timeout: 20)
        XCTAssertNil(rec.error)
        XCTAssertEqual(rec.text, whole.text)
        XCTAssertNotNil(rec.chunks.last?.usage)
        XCTAssertEqual(rec.usage?.completionTokens, whole.usage.completionTokens)
        handle.cancel() // no-op once finished
    }

    func testToolCallRoundTrip() async throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        let weather = Tool(name: "get_weather", description: "Weather for a city",
                           parametersJson: #"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#)
        var messages = [user("Weather in Paris?")]
        let first = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: messages, tools: [weather]))
        XCTAssertEqual(first.finishReason, .toolCalls)
        let call = try XCTUnwrap(first.toolCalls.first)
        messages.append(first.message)
        messages.append(ChatMessage(role: .tool, content: "18C", toolCallId: call.id))
        let second = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: messages, tools: [weather]))
        XCTAssertEqual(second.finishReason, .stop)
    }

    func testRateLimitIsTyped() async throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config(extra: "[retry]\nmax_retries = 0\n"))
        try await Self.emulator.fault(#"{"fault":"rate_limit","provider":"openai","times":1,"retry_after":2}"#)
        do {
            _ = try await client.chat(request: ChatRequest(model: "openai/gpt-4o", messages: [user("x")]))
            XCTFail("expected RateLimited")
        } catch let GateRouterError.RateLimited(_, code, provider, status, retryAfterMs, _) {
            XCTAssertEqual(code, "RATE_LIMITED")
            XCTAssertEqual(provider, "openai")
            XCTAssertEqual(status, 429)
            XCTAssertEqual(retryAfterMs, 2000)
        }
    }

    func testInvalidRequestNamesTheField() async throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        do {
            _ = try await client.chat(request: ChatRequest(model: "openai/gpt-4o", messages: [user("x")], temperature: 3.0))
            XCTFail("expected InvalidRequest")
        } catch let GateRouterError.InvalidRequest(_, _, _, _, _, field) {
            XCTAssertEqual(field, "temperature")
        }
        XCTAssertThrowsError(try GateRouterClient.fromConfigToml(text: "[providers.openai]\nbase_urll = \"x\"\n")) { error in
            guard case GateRouterError.Config(let detail, _, _, _, _, _) = error else {
                return XCTFail("expected Config, got \(error)")
            }
            XCTAssertTrue(detail.contains("base_urll"), detail)
        }
    }

    func testRouteCountTokensAndEstimateCost() throws {
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        let auto = try client.route(request: ChatRequest(model: "auto", messages: [user("Hi! How are you today?")]))
        XCTAssertEqual(auto.mode, .auto)
        XCTAssertNotNil(auto.tier)
        XCTAssertEqual(auto.chosen, auto.candidates.first?.model)
        let explicit = try client.route(request: ChatRequest(model: "openai/gpt-4o", messages: [user("hi")]))
        XCTAssertEqual(explicit.mode, .explicit)
        XCTAssertNil(explicit.score)

        // tests/vectors/chat_tokens.json `single_user`.
        let count = try client.countTokens(request: ChatRequest(model: "openai/gpt-4o", messages: [user("Hello, how are you?")]))
        XCTAssertEqual(count.tokens, 13)
        XCTAssertTrue(count.exact)
        let est = try client.estimateCost(request: ChatRequest(model: "openai/gpt-4o", messages: [user("Hello, how are you?")], maxTokens: 100))
        XCTAssertEqual(est.prompt, count)
        XCTAssertEqual(est.max.outputMicros, 1000) // 100 tokens at $10 per million
        XCTAssertLessThanOrEqual(est.expected.totalMicros, est.max.totalMicros)
    }

    func testSharedVectors() throws {
        for case let t as [String: Any] in try XCTUnwrap(vector("tokens.json")["texts"] as? [Any]) {
            let text = try XCTUnwrap(t["text"] as? String)
            XCTAssertEqual(countTextTokens(text: text, model: "openai/gpt-4o").tokens, (t["o200k_base"] as? NSNumber)?.uint64Value, t["name"] as? String)
            XCTAssertEqual(countTextTokens(text: text, model: "openai/gpt-4").tokens, (t["cl100k_base"] as? NSNumber)?.uint64Value, t["name"] as? String)
        }
        let client = try GateRouterClient.fromConfigToml(text: Self.emulator.config())
        for case let c as [String: Any] in try XCTUnwrap(vector("chat_tokens.json")["cases"] as? [Any]) {
            var req = try XCTUnwrap(c["request"] as? [String: Any])
            for (model, expected) in try XCTUnwrap(c["expected_prompt_tokens"] as? [String: NSNumber]) {
                req["model"] = model
                let json = String(decoding: try JSONSerialization.data(withJSONObject: req), as: UTF8.self)
                XCTAssertEqual(try client.countTokensJson(requestJson: json).tokens, expected.uint64Value, "\(c["name"] ?? "") on \(model)")
            }
        }
        for case let c as [String: Any] in try XCTUnwrap(vector("cost.json")["cases"] as? [Any]) {
            let u = try XCTUnwrap(c["usage"] as? [String: NSNumber])
            let o = try XCTUnwrap(c["options"] as? [String: Bool])
            let usage = Usage(promptTokens: u["prompt_tokens"]!.uint64Value, completionTokens: u["completion_tokens"]!.uint64Value,
                              totalTokens: u["total_tokens"]!.uint64Value, cachedPromptTokens: u["cached_prompt_tokens"]!.uint64Value,
                              cacheWriteTokens: u["cache_write_tokens"]!.uint64Value, reasoningTokens: u["reasoning_tokens"]!.uint64Value)
            let cost = try calculateCost(usage: usage, model: try XCTUnwrap(c["model"] as? String),
                                         options: CostOptions(batch: o["batch"] ?? false, cacheWrite1h: o["cache_write_1h"] ?? false))
            let expected = try XCTUnwrap(c["expected"] as? [String: Any])
            XCTAssertEqual(cost.totalMicros, (expected["total_micros"] as? NSNumber)?.uint64Value, c["name"] as? String)
            XCTAssertEqual(cost.inputMicros, (expected["input_micros"] as? NSNumber)?.uint64Value, c["name"] as? String)
            XCTAssertEqual(cost.outputMicros, (expected["output_micros"] as? NSNumber)?.uint64Value, c["name"] as? String)
            XCTAssertEqual(cost.tierAboveInputTokens, (expected["tier_above_input_tokens"] as? NSNumber)?.uint64Value, c["name"] as? String)
        }
        let routing = try vector("routing.json")
        let tolerance = (routing["tolerance"] as? Double) ?? 1e-6
        for case let c as [String: Any] in try XCTUnwrap(routing["cases"] as? [Any]) {
            let json = String(decoding: try JSONSerialization.data(withJSONObject: try XCTUnwrap(c["request"])), as: UTF8.self)
            let d = try client.routeJson(requestJson: json)
            XCTAssertEqual(try XCTUnwrap(d.score), try XCTUnwrap(c["score"] as? Double), accuracy: tolerance, c["name"] as? String ?? "")
            XCTAssertEqual(d.tier.map { "\($0)" }, c["tier"] as? String, c["name"] as? String)
        }
    }

    /// The iOS path: a CryptoKit key (kept in the Keychain by the app) signs usage records
    /// from memory, the spool lives in Application Support, reporting follows the app.
    func testMobileOptionsKeyAndLifecycle() async throws {
        let privateKey = Curve25519.Signing.PrivateKey()
        let key = try UsageSigningKey.fromSeed(seed: privateKey.rawRepresentation)
        XCTAssertEqual(key.publicKey(), privateKey.publicKey.rawRepresentation.base64EncodedString())
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("gaterouter-spool-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: spool) }
        // No collector_url: records stay in the spool, which is what this checks.
        let config = Self.emulator.config(extra: "[identity]\norg = \"acme\"\n")
        let client = try GateRouterClient.create(configToml: config, options: MobileOptions(
            spoolDir: spool.path, signingKey: key, apiKeyId: "k_ios", networkClass: .cellular, startSuspended: true))
        var status = try XCTUnwrap(client.reportingStatus())
        XCTAssertTrue(status.suspended)
        XCTAssertEqual(status.networkClass, .cellular)
        XCTAssertEqual(status.spoolDir, spool.path)
        _ = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: [user("from the phone")]))
        status = try XCTUnwrap(client.reportingStatus())
        XCTAssertEqual(status.pendingRecords, 1)
        let flushed = try await client.flush(timeoutMs: 5000)
        XCTAssertFalse(flushed.drained) // suspended: flush returns at once
        client.resume()
        client.setNetworkClass(network: .wifi)
        status = try XCTUnwrap(client.reportingStatus())
        XCTAssertFalse(status.suspended)
        XCTAssertEqual(status.networkClass, .wifi)
        XCTAssertThrowsError(try UsageSigningKey.fromSeed(seed: Data(count: 31)))
    }
}
