// XCTest suite for the Swift bindings, against the provider emulator. macOS only (no Swift
// toolchain on the Linux machines that build this repo): build the XCFramework with
// build-xcframework.sh, `cargo build -p gaterouter-emulator`, then `swift test` in
// bindings/swift. GATEROUTER_EMULATOR_BIN overrides the emulator path.
import Foundation
import XCTest
@testable import GateRouter

final class Emulator {
    let process = Process()
    let baseURL: String

    init() throws {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent() // GateRouterTests
            .deletingLastPathComponent() // Tests
            .deletingLastPathComponent() // swift
            .deletingLastPathComponent() // bindings
            .deletingLastPathComponent() // repository root
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
}
