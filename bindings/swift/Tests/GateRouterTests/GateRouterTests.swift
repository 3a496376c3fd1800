// The Swift suite: the generated bindings + the ffi library + the provider emulator. The same
// checks as bindings/kotlin GateRouterTest.kt: chat through every provider, options, tools,
// streaming (listener and AsyncSequence), typed errors with their fields, cancellation.
import Foundation
import XCTest
@testable import GateRouter

/// Records every stream callback and the thread it arrived on.
final class Recorder: ChatStreamListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _chunks: [ChatChunk] = []
    private var _calls = 0
    private var _onCaller = false
    private(set) var usage: Usage?
    private(set) var error: GateRouterError?
    private let finished = DispatchSemaphore(value: 0)
    private var _done = false

    func onChunk(chunk: ChatChunk) {
        lock.lock(); _chunks.append(chunk); _calls += 1; if Thread.isMainThread { _onCaller = true }; lock.unlock()
    }

    func onComplete(usage: Usage?) {
        lock.lock(); self.usage = usage; _calls += 1; _done = true; lock.unlock()
        finished.signal()
    }

    func onError(error: GateRouterError) {
        lock.lock(); self.error = error; _calls += 1; _done = true; lock.unlock()
        finished.signal()
    }

    var chunks: [ChatChunk] { lock.lock(); defer { lock.unlock() }; return _chunks }
    var calls: Int { lock.lock(); defer { lock.unlock() }; return _calls }
    var done: Bool { lock.lock(); defer { lock.unlock() }; return _done }
    var calledOnMainThread: Bool { lock.lock(); defer { lock.unlock() }; return _onCaller }
    var text: String { chunks.compactMap { $0.text }.joined() }

    /// Wait (off the cooperative pool) for onComplete/onError.
    func await(seconds: Double = 20) async throws {
        let sem = finished
        let ok = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            DispatchQueue.global().async { c.resume(returning: sem.wait(timeout: .now() + seconds) == .success) }
        }
        if !ok { throw TestFailure("the stream did not end within \(seconds) s") }
    }
}

final class GateRouterTests: XCTestCase {
    static let client = try! GateRouterClient.fromConfigToml(text: Emulator.toml())
    static let noRetry = try! GateRouterClient.fromConfigToml(text: Emulator.toml(extra: "max_retries = 0\n"))
    var client: GateRouterClient { Self.client }
    var noRetry: GateRouterClient { Self.noRetry }

    static let models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"]

    func testChatAnswersThroughEveryProvider() async throws {
        for model in Self.models {
            let resp = try await client.chat(request: request(model, "Why is the sky blue?"))
            XCTAssertEqual(resp.model, model)
            XCTAssertTrue(resp.text.contains("Why is the sky blue?"), resp.text)
            XCTAssertEqual(resp.finishReason, .stop)
            XCTAssertGreaterThan(resp.usage.promptTokens, 0)
            XCTAssertGreaterThan(resp.usage.completionTokens, 0)
            XCTAssertEqual(resp.usage.totalTokens, resp.usage.promptTokens + resp.usage.completionTokens)
            XCTAssertEqual(resp.message.role, .assistant)
            XCTAssertEqual(resp.message.content, resp.text)
        }
    }

    func testOptionsReachTheProvider() async throws {
        let resp = try await client.chat(request: ChatRequest(
            model: "openai/gpt-4o-mini",
            messages: [ChatMessage(role: .system, content: "be brief"), user("one two STOP three")],
            temperature: 0.2, maxTokens: 50, stop: ["STOP"]))
        XCTAssertFalse(resp.text.contains("three"), resp.text)
        let short = try await client.chat(request: request("openai/gpt-4o-mini", String(repeating: "a long question ", count: 20), maxTokens: 3))
        XCTAssertEqual(short.finishReason, .length)
        XCTAssertEqual(short.usage.completionTokens, 3)
    }

    func testJsonModeViaResponseFormatJson() async throws {
        let resp = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: [user("answer in json")],
                                                              responseFormatJson: #"{"type":"json_object"}"#))
        XCTAssertTrue(resp.text.trimmingCharacters(in: .whitespaces).hasPrefix("{") && resp.text.contains("\"reply\""), resp.text)
    }

    func testToolCallRoundTrip() async throws {
        for model in ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"] {
            var messages = [user("Weather in Paris?")]
            let first = try await client.chat(request: ChatRequest(model: model, messages: messages, tools: [weather]))
            XCTAssertEqual(first.finishReason, .toolCalls, model)
            XCTAssertEqual(first.toolCalls.count, 1, model)
            let call = try XCTUnwrap(first.toolCalls.first)
            XCTAssertEqual(call.name, "get_weather")
            XCTAssertTrue(call.arguments.contains("\"city\""), call.arguments)
            messages.append(first.message)
            messages.append(ChatMessage(role: .tool, content: "18C", toolCallId: call.id))
            let second = try await client.chat(request: ChatRequest(model: model, messages: messages, tools: [weather]))
            XCTAssertEqual(second.finishReason, .stop, model)
            XCTAssertTrue(second.text.contains("18C"), second.text)
        }
    }

    func testImagesAndToolChoiceConvertToTheCoreRequest() async throws {
        let plain = try await client.chat(request: request("openai/gpt-4o-mini", "what is this"))
        let withImage = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: [
            ChatMessage(role: .user, content: "what is this", images: [ImageInput(url: "data:image/png;base64,iVBORw0KGgo=", detail: .low)]),
        ]))
        // The emulator counts 85 prompt tokens per image part.
        XCTAssertEqual(withImage.usage.promptTokens, plain.usage.promptTokens + 85)
        let noTools = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini", messages: [user("Weather?")],
                                                                 tools: [weather], toolChoice: .disabled))
        XCTAssertEqual(noTools.finishReason, .stop)
        XCTAssertTrue(noTools.toolCalls.isEmpty)
        var other = weather
        other.name = "get_time"
        other.parametersJson = #"{"type":"object","properties":{}}"#
        let forced = try await client.chat(request: ChatRequest(model: "anthropic/claude-sonnet-4-5", messages: [user("Weather?")],
                                                                tools: [weather, other], toolChoice: .function(name: "get_time")))
        XCTAssertEqual(forced.toolCalls.map(\.name), ["get_time"])
    }

    func testChatJsonKeepsFullOpenAIFidelity() async throws {
        let out = try await client.chatJson(requestJson: """
            {"model":"openai/gpt-4o-mini","messages":[{"role":"developer","content":"x"},
             {"role":"user","content":[{"type":"text","text":"hello json"}]}],"max_completion_tokens":40}
            """)
        XCTAssertTrue(out.contains("\"object\":\"chat.completion\""), out)
        XCTAssertTrue(out.contains("hello json"), out)
        let e = await gateRouterError("unknown field") {
            _ = try await self.client.chatJson(requestJson: #"{"model":"openai/gpt-4o","messages":[],"temprature":1}"#)
        }
        XCTAssertEqual(e?.kind, "InvalidRequest")
        XCTAssertTrue(e?.detail.contains("temprature") ?? false, e?.detail ?? "")
    }

    func testStreamViaListenerMatchesChatAndEndsWithUsage() async throws {
        for model in Self.models {
            let whole = try await client.chat(request: request(model, "Tell a fox story"))
            let rec = Recorder()
            let handle = try client.chatStream(request: request(model, "Tell a fox story"), listener: rec)
            try await rec.await()
            XCTAssertNil(rec.error, model)
            XCTAssertEqual(rec.text, whole.text, model)
            let last = try XCTUnwrap(rec.chunks.last)
            XCTAssertNil(last.text)
            XCTAssertNotNil(last.usage)
            XCTAssertEqual(last.usage, rec.usage)
            XCTAssertEqual(rec.usage?.completionTokens, whole.usage.completionTokens)
            XCTAssertEqual(rec.chunks.compactMap(\.finishReason), [.stop], model)
            // Callbacks run on the binding's worker threads, never on the main thread.
            XCTAssertFalse(rec.calledOnMainThread)
            try await Task.sleep(nanoseconds: 50_000_000)
            XCTAssertTrue(handle.isFinished())
            handle.cancel() // a no-op once finished
        }
    }

    func testAsyncSequenceCollectsTheStream() async throws {
        var chunks: [ChatChunk] = []
        for try await chunk in try client.chatStream(request: request("anthropic/claude-sonnet-4-5", "async sequence please")) {
            chunks.append(chunk)
        }
        XCTAssertTrue(chunks.compactMap(\.text).joined().contains("async sequence please"))
        XCTAssertNotNil(chunks.last?.usage)
    }

    func testAsyncSequenceThrowsTypedErrors() async throws {
        try await Emulator.fault(#"{"fault":"rate_limit","provider":"gemini","times":1,"retry_after":1}"#)
        let e = await gateRouterError("stream open") {
            for try await _ in try self.noRetry.chatStream(request: request("gemini/gemini-2.5-flash", "x")) {}
        }
        XCTAssertEqual(e?.kind, "RateLimited")
        XCTAssertEqual(e?.retryAfterMs, 1000)
    }

    func testStreamedToolCallsArriveAsFragments() async throws {
        let rec = Recorder()
        _ = try client.chatStream(request: ChatRequest(model: "openai/gpt-4o-mini", messages: [user("Weather?")], tools: [weather]), listener: rec)
        try await rec.await()
        XCTAssertNil(rec.error)
        let deltas = rec.chunks.flatMap(\.toolCalls)
        XCTAssertEqual(deltas.compactMap(\.name).first, "get_weather")
        XCTAssertTrue(deltas.compactMap(\.arguments).joined().contains("\"city\""))
        XCTAssertEqual(rec.chunks.compactMap(\.finishReason), [.toolCalls])
    }

    func testRateLimitIsTypedWithRetryAfter() async throws {
        try await Emulator.fault(#"{"fault":"rate_limit","provider":"openai","times":1,"retry_after":2}"#)
        let e = try await XCTUnwrapAsync(await gateRouterError("rate limit") {
            _ = try await self.noRetry.chat(request: request("openai/gpt-4o", "x"))
        })
        XCTAssertEqual(e.kind, "RateLimited")
        XCTAssertEqual(e.code, "RATE_LIMITED")
        XCTAssertEqual(e.provider, "openai")
        XCTAssertEqual(e.status, 429)
        XCTAssertEqual(e.retryAfterMs, 2000)
        XCTAssertNotNil(e.providerMessage, "the provider's own text")
    }

    func testRateLimitMatchesByPattern() async throws {
        // The idiomatic Swift form: `catch GateRouterError.RateLimited(let info)`; any error
        // also answers `info()` and `code()` without matching.
        try await Emulator.fault(#"{"fault":"rate_limit","provider":"openai","times":1,"retry_after":2}"#)
        do {
            _ = try await noRetry.chat(request: request("openai/gpt-4o", "x"))
            XCTFail("expected RateLimited")
        } catch let GateRouterError.RateLimited(info) {
            XCTAssertNotNil(info.providerMessage, "the provider's own text")
            XCTAssertFalse(info.detail.isEmpty)
            XCTAssertEqual(info.code, "RATE_LIMITED")
            XCTAssertEqual(info.provider, "openai")
            XCTAssertEqual(info.status, 429)
            XCTAssertEqual(info.retryAfterMs, 2000)
        }
        try await Emulator.fault(#"{"fault":"rate_limit","provider":"openai","times":1,"retry_after":2}"#)
        do {
            _ = try await noRetry.chat(request: request("openai/gpt-4o", "x"))
            XCTFail("expected RateLimited")
        } catch let e as GateRouterError {
            XCTAssertEqual(e.code(), "RATE_LIMITED")
            XCTAssertEqual(e.info().retryAfterMs, 2000)
        }
    }

    func testProviderErrorsMapToTheirCase() async throws {
        let models = ["openai": "openai/gpt-4o", "anthropic": "anthropic/claude-haiku-4-5", "gemini": "gemini/gemini-2.5-pro"]
        let cases = [("auth", "Auth"), ("server_error", "ProviderUnavailable"), ("context_length", "ContextLengthExceeded"),
                     ("bad_request", "InvalidRequest"), ("malformed_json", "InvalidResponse")]
        for (provider, model) in models.sorted(by: { $0.key < $1.key }) {
            for (fault, kind) in cases {
                try await Emulator.fault(#"{"fault":"\#(fault)","provider":"\#(provider)","times":1}"#)
                let e = await gateRouterError("\(fault) on \(provider)") {
                    _ = try await self.noRetry.chat(request: request(model, "x"))
                }
                XCTAssertEqual(e?.kind, kind, "\(fault) on \(provider): \(e?.detail ?? "")")
                XCTAssertEqual(e?.provider, provider, "\(fault) on \(provider)")
            }
        }
    }

    func testACutStreamEndsWithStreamInterrupted() async throws {
        // slow_stream flushes the first events before the cut (else the cut can come before
        // the headers, which is retried as a connection failure).
        let rec = Recorder()
        _ = try noRetry.chatStream(request: request("anthropic/claude-sonnet-4-5",
                                                    "x [[emulator:slow_stream;delay_ms=20]] [[emulator:cut_stream;after_events=2]]"), listener: rec)
        try await rec.await()
        XCTAssertEqual(rec.error?.fields.kind, "StreamInterrupted", "\(String(describing: rec.error))")
    }

    func testStreamOpenErrorsArriveThroughOnError() async throws {
        try await Emulator.fault(#"{"fault":"rate_limit","provider":"gemini","times":1,"retry_after":1}"#)
        let rec = Recorder()
        _ = try noRetry.chatStream(request: request("gemini/gemini-2.5-flash", "x"), listener: rec)
        try await rec.await()
        XCTAssertEqual(rec.error?.fields.kind, "RateLimited")
        XCTAssertEqual(rec.error?.fields.retryAfterMs, 1000)
        XCTAssertEqual(rec.calls, 1)
    }

    func testTimeoutsAreTyped() async throws {
        let c = try GateRouterClient.fromConfigToml(text: Emulator.toml(extra: "max_retries = 0\n\n[timeouts]\nrequest_ms = 300\n"))
        try await Emulator.fault(#"{"fault":"slow","provider":"openai","delay_ms":2000,"times":1}"#)
        let e = await gateRouterError("slow provider") { _ = try await c.chat(request: request("openai/gpt-4o", "x")) }
        XCTAssertEqual(e?.kind, "Timeout")
        XCTAssertEqual(e?.code, "TIMEOUT")
    }

    func testCloseCutsACallInFlightAndRefusesLaterCalls() async throws {
        let c = try GateRouterClient.fromConfigToml(text: Emulator.toml())
        try await Emulator.fault(#"{"fault":"slow","provider":"deepseek","delay_ms":3000,"times":1}"#)
        let call = Task { () -> String? in
            await gateRouterError("closed call") { _ = try await c.chat(request: request("deepseek/deepseek-chat", "x")) }?.code
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        let start = Date()
        let report = try await c.close(graceMs: 0)
        XCTAssertTrue(report.drained)
        let code = await call.value
        XCTAssertEqual(code, "CLIENT_CLOSED")
        let laterKind = await gateRouterError("after close (kind)") { _ = try await c.chat(request: request("openai/gpt-4o", "x")) }?.kind
        XCTAssertEqual(laterKind, "ClientClosed")
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "the slow call was cut")
        let later = await gateRouterError("after close") { _ = try await c.chat(request: request("openai/gpt-4o", "x")) }
        XCTAssertEqual(later?.code, "CLIENT_CLOSED")
        let again = try await c.close(graceMs: 0)
        XCTAssertTrue(again.drained, "idempotent")
    }

    func testCancelStopsARunningStreamWithoutFurtherCallbacks() async throws {
        try await Emulator.fault(#"{"fault":"slow_stream","provider":"openai","delay_ms":150,"times":1}"#)
        let rec = Recorder()
        let handle = try client.chatStream(request: request("openai/gpt-4o", "a rather long prompt so that there are several chunks to stream"), listener: rec)
        try await waitUntil("a first chunk", ms: 10_000) { !rec.chunks.isEmpty }
        handle.cancel()
        handle.cancel() // idempotent
        let seen = rec.calls
        try await Task.sleep(nanoseconds: 600_000_000)
        XCTAssertEqual(rec.calls, seen, "callbacks arrived after cancel()")
        XCTAssertFalse(rec.done)
        XCTAssertTrue(handle.isFinished())
    }

    func testBreakingOutOfTheAsyncSequenceCancelsTheStream() async throws {
        try await Emulator.fault(#"{"fault":"slow_stream","provider":"openai","delay_ms":150,"times":1}"#)
        let started = Date()
        var got = 0
        for try await chunk in try client.chatStream(request: request("openai/gpt-4o", "a rather long prompt so that there are several chunks to stream")) {
            if chunk.text != nil { got += 1 }
            if got == 1 { break }
        }
        XCTAssertEqual(got, 1)
        // Twelve-odd chunks at 150 ms each would take ~2 s: leaving the loop did not wait for them.
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.5)
    }

    func testAListenerBugEndsItsStreamAndNothingElse() async throws {
        // Swift cannot throw from a non-throwing callback; an app "bug" here is a listener that
        // never returns promptly. The stream still ends and the client keeps working.
        final class Slow: ChatStreamListener, @unchecked Sendable {
            let lock = NSLock()
            var calls = 0
            func onChunk(chunk: ChatChunk) { lock.lock(); calls += 1; lock.unlock(); Thread.sleep(forTimeInterval: 0.01) }
            func onComplete(usage: Usage?) { lock.lock(); calls += 1; lock.unlock() }
            func onError(error: GateRouterError) { lock.lock(); calls += 1; lock.unlock() }
        }
        let slow = Slow()
        let handle = try client.chatStream(request: request("openai/gpt-4o-mini", "a prompt long enough for several chunks of text"), listener: slow)
        try await waitUntil("the slow stream to finish", ms: 10_000) { handle.isFinished() }
        XCTAssertGreaterThan(slow.calls, 1)
        let alive = try await client.chat(request: request("openai/gpt-4o-mini", "still alive"))
        XCTAssertTrue(alive.text.contains("still alive"))
    }

    func testCancellingTheTaskEndsTheAsyncSequencePromptly() async throws {
        // uniffi 0.32's Swift async functions ignore Task cancellation (the generated
        // uniffiRustCallAsync has no cancellation handler), so a cancelled `chat` still runs to
        // the end. Streams are cancellable: cancelling the Task iterating chatStream(request:)
        // terminates the AsyncThrowingStream, whose onTermination cancels the Rust stream.
        try await Emulator.fault(#"{"fault":"slow_stream","provider":"openai","delay_ms":150,"times":1}"#)
        let stream = try client.chatStream(request: request("openai/gpt-4o", "a rather long prompt so that there are several chunks to stream"))
        let started = Date()
        let task = Task { () -> Int in
            var n = 0
            for try await _ in stream { n += 1 }
            return n
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        task.cancel()
        let chunks = try await task.value
        let ms = Date().timeIntervalSince(started) * 1000
        // All the chunks at 150 ms each would take about 2 s.
        XCTAssertLessThan(ms, 1200, "cancellation took \(Int(ms)) ms")
        XCTAssertGreaterThan(chunks, 0)
        // The client is unaffected.
        let alive = try await client.chat(request: request("openai/gpt-4o-mini", "after cancel"))
        XCTAssertTrue(alive.text.contains("after cancel"))
    }

    func testInvalidRequestsNameTheField() async throws {
        var e = await gateRouterError("no messages") { _ = try await self.client.chat(request: ChatRequest(model: "openai/gpt-4o", messages: [])) }
        XCTAssertEqual(e?.kind, "InvalidRequest")
        XCTAssertEqual(e?.field, "messages")
        e = await gateRouterError("hot") { _ = try await self.client.chat(request: ChatRequest(model: "openai/gpt-4o", messages: [user("x")], temperature: 3.0)) }
        XCTAssertEqual(e?.field, "temperature")
        var bad = weather
        bad.parametersJson = "{oops"
        e = await gateRouterError("bad schema") { _ = try await self.client.chat(request: ChatRequest(model: "openai/gpt-4o", messages: [user("x")], tools: [bad])) }
        XCTAssertEqual(e?.field, "tools[0].parameters_json")
        // chatStream checks the request before it returns, on the caller's thread.
        let rec = Recorder()
        e = await gateRouterError("tool message without id") {
            _ = try self.client.chatStream(request: ChatRequest(model: "openai/gpt-4o", messages: [ChatMessage(role: .tool, content: "x")]), listener: rec)
        }
        XCTAssertEqual(e?.field, "messages[0].tool_call_id")
        XCTAssertEqual(rec.calls, 0)
        e = await gateRouterError("unknown model") { _ = try await self.client.chat(request: request("nosuch/model", "x")) }
        XCTAssertEqual(e?.kind, "InvalidRequest")
        XCTAssertTrue(e?.detail.contains("nosuch") ?? false, e?.detail ?? "")
    }

    func testConfigErrorsAreTypedAndNameTheProblem() async throws {
        var e = await gateRouterError("typo") { _ = try GateRouterClient.fromConfigToml(text: "[providers.openai]\nbase_urll = \"x\"\n") }
        XCTAssertEqual(e?.kind, "Config")
        XCTAssertEqual(e?.code, "CONFIG")
        XCTAssertTrue(e?.detail.contains("base_urll") ?? false, e?.detail ?? "")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gaterouter-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        e = await gateRouterError("missing file") { _ = try GateRouterClient.fromConfigFile(path: dir.appendingPathComponent("missing.toml").path) }
        XCTAssertTrue(e?.detail.contains("missing.toml") ?? false, e?.detail ?? "")
        e = await gateRouterError("wrong type") { _ = try GateRouterClient.fromConfigJson(json: #"{"retry": {"max_retries": "many"}}"#) }
        XCTAssertEqual(e?.kind, "Config")

        let file = dir.appendingPathComponent("gaterouter.toml")
        try Emulator.toml().write(to: file, atomically: true, encoding: .utf8)
        let fromFile = try GateRouterClient.fromConfigFile(path: file.path)
        let fromJson = try GateRouterClient.fromConfigJson(json: #"{"providers":{"openai":{"kind":"openai","base_url":"\#(Emulator.base)/openai/v1","api_key":"emulator-key"}}}"#)
        let a = try await fromFile.chat(request: request("openai/gpt-4o-mini", "from file"))
        XCTAssertTrue(a.text.contains("from file"))
        let b = try await fromJson.chat(request: request("openai/gpt-4o-mini", "from json"))
        XCTAssertTrue(b.text.contains("from json"))
    }

    func testVersionIsExposed() {
        XCTAssertNotNil(gaterouterVersion().range(of: #"^\d+\.\d+\.\d+"#, options: .regularExpression), gaterouterVersion())
    }
}

/// XCTUnwrap for a value produced by an async expression.
func XCTUnwrapAsync<T>(_ value: T?, file: StaticString = #filePath, line: UInt = #line) async throws -> T {
    try XCTUnwrap(value, file: file, line: line)
}
