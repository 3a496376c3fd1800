// route / countTokens / estimateCost / flush, and the mobile hooks (spool dir, in-memory
// key, suspend/resume, network class) against the emulator and a real collector. The same
// checks as bindings/kotlin MobileTest.kt.
import Foundation
import XCTest
#if canImport(CryptoKit)
import CryptoKit
#endif
@testable import GateRouter

final class MobileTests: XCTestCase {
    static let plain = try! GateRouterClient.fromConfigToml(text: Emulator.toml())
    var plain: GateRouterClient { Self.plain }
    private var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("gaterouter-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tmp)
    }

    /// A reporting client for a fresh key `keyId`, registered with the collector.
    private func reporting(_ keyId: String, spool: URL, reporting: String = "",
                           _ options: (inout MobileOptions) -> Void = { _ in }) async throws -> GateRouterClient {
        let key = try AppKey()
        try await Collector.registerKey(keyId, key)
        let config = Emulator.toml(extra: "[identity]\norg = \"acme\"\n\n[reporting]\ncollector_url = \"\(Collector.url)\"\n"
            + "batch_max_records = 50\nbatch_max_age_ms = 50\nretry_initial_backoff_ms = 20\nretry_max_backoff_ms = 200\n\(reporting)")
        var o = MobileOptions(spoolDir: spool.path, signingKey: key.signingKey, apiKeyId: keyId)
        options(&o)
        return try GateRouterClient.create(configToml: config, options: o)
    }

    private func pending(_ c: GateRouterClient) throws -> UInt64 { try XCTUnwrap(c.reportingStatus()).pendingRecords }

    func testRouteExplainsAutoAndExplicitDecisions() async throws {
        let auto = try plain.route(request: request("auto", "Hi! How are you today?"))
        XCTAssertEqual(auto.mode, .auto)
        let score = try XCTUnwrap(auto.score)
        XCTAssertTrue(score > 0 && score < 1, "score \(score)")
        XCTAssertNotNil(auto.tier)
        XCTAssertFalse(auto.features.isEmpty)
        XCTAssertEqual(auto.chosen, auto.candidates.first?.model)
        XCTAssertFalse(auto.reason.trimmingCharacters(in: .whitespaces).isEmpty)
        // The typed request and its JSON twin decide the same.
        XCTAssertEqual(auto, try plain.routeJson(requestJson: #"{"model":"auto","messages":[{"role":"user","content":"Hi! How are you today?"}]}"#))

        let explicit = try plain.route(request: request("anthropic/claude-sonnet-4-5", "hello"))
        XCTAssertEqual(explicit.mode, .explicit)
        XCTAssertEqual(explicit.chosen, "anthropic/claude-sonnet-4-5")
        XCTAssertNil(explicit.score)
        XCTAssertNil(explicit.tier)
        let unknown = await gateRouterError("unknown provider") { _ = try self.plain.route(request: request("nosuch/model", "x")) }
        XCTAssertEqual(unknown?.kind, "InvalidRequest")
        XCTAssertTrue(unknown?.detail.contains("nosuch") ?? false, unknown?.detail ?? "")
    }

    func testCountTokensAndEstimateCostPriceARequestBeforeSending() async throws {
        // tests/vectors/chat_tokens.json `single_user`: 13 tokens on gpt-4o, exact.
        let count = try plain.countTokens(request: request("openai/gpt-4o", "Hello, how are you?"))
        XCTAssertEqual(count.tokens, 13)
        XCTAssertTrue(count.exact)
        let b = count.breakdown
        XCTAssertEqual(count.tokens, b.text + b.overhead + b.names + b.tools + b.images)

        let est = try plain.estimateCost(request: request("openai/gpt-4o", "Hello, how are you?", maxTokens: 100))
        XCTAssertEqual(est.prompt, count)
        XCTAssertEqual(est.maxCompletionTokens, 100)
        XCTAssertEqual(est.max.pricedAs, "openai/gpt-4o")
        XCTAssertEqual(est.max.currency, "USD")
        // gpt-4o output is $10 per million tokens: 100 tokens = 1000 micro-dollars.
        XCTAssertEqual(est.max.outputMicros, 1000)
        XCTAssertLessThanOrEqual(est.expected.totalMicros, est.max.totalMicros)
        XCTAssertEqual(est, try plain.estimateCostJson(requestJson: #"{"model":"openai/gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"Hello, how are you?"}]}"#))

        // auto prices the routed model.
        let autoReq = request("auto", "Hello, how are you?")
        XCTAssertEqual(try plain.route(request: autoReq).chosen, try plain.estimateCost(request: autoReq).expected.pricedAs)
        let bad = await gateRouterError("no provider") { _ = try self.plain.countTokens(request: request("gpt-4o", "no provider")) }
        XCTAssertEqual(bad?.kind, "InvalidRequest")
        XCTAssertEqual(bad?.field, "model")
        let unpriced = await gateRouterError("unknown model") { _ = try self.plain.estimateCost(request: request("openai/no-such-model-xyz", "x")) }
        XCTAssertNotNil(unpriced)
    }

    func testFlushAndStatusWithoutReporting() async throws {
        let r = try await plain.flush(timeoutMs: 1000)
        XCTAssertTrue(r.drained)
        XCTAssertEqual(r.pending, 0)
        XCTAssertEqual(r.refused, 0)
        XCTAssertNil(plain.reportingStatus())
        // Lifecycle hooks are harmless no-ops when there is nothing to report.
        plain.suspend()
        plain.setNetworkClass(network: .offline)
        plain.resume()
        plain.setNetworkClass(network: .wifi)
    }

    func testRecordsReachTheCollectorSignedWithTheInMemoryKey() async throws {
        let spool = tmp.appendingPathComponent("spool")
        let client = try await reporting("k_swift_flow", spool: spool) { $0.user = "alice" }
        for i in 0..<3 { _ = try await client.chat(request: request("openai/gpt-4o-mini", "count me \(i)")) }
        let flushed = try await client.flush(timeoutMs: 15_000)
        XCTAssertTrue(flushed.drained, "not drained: \(flushed), \(String(describing: client.reportingStatus()))")
        XCTAssertEqual(flushed.pending, 0)
        XCTAssertEqual(flushed.refused, 0, "refused: \(String(describing: flushed.lastRefusal))")
        XCTAssertGreaterThan(flushed.delivered, 0)
        let calls = try await Collector.calls("k_swift_flow")
        XCTAssertEqual(calls, 3)
        let users = try await Collector.users("k_swift_flow")
        XCTAssertEqual(users, ["alice"])
        let status = try XCTUnwrap(client.reportingStatus())
        XCTAssertEqual(status.spoolDir, spool.path)
        XCTAssertGreaterThanOrEqual(status.deliveredRecords, 3)
        XCTAssertEqual(status.deadLetters, 0)
        XCTAssertNil(status.lastError)
        // The spool is where the app said.
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: spool.path).isEmpty)
        let final = try await client.shutdown()
        XCTAssertTrue(final.drained)
    }

    func testShadowSamplingReturnsTheOtherArmsAnswerToRate() async throws {
        // Every plain auto call of acme shadowed, no exploration; put back afterwards.
        try await Collector.putRouting(#"{"learning":true,"explore_permille":0,"shadow_permille":1000}"#)
        do {
            let client = try await reporting("k_swift_shadow", spool: tmp.appendingPathComponent("spool"))
            let resp = try await client.chat(request: request("auto", "say hi"))
            let shadow = try XCTUnwrap(resp.shadow, "a shadowed call has the other arm's answer: \(resp)")
            XCTAssertNil(resp.shadowError)
            XCTAssertNotEqual(resp.model, shadow.model)
            let shadowId = try XCTUnwrap(shadow.usageRecordId)
            let recordId = try XCTUnwrap(resp.usageRecordId)
            XCTAssertNotEqual(recordId, shadowId)
            XCTAssertFalse(shadow.text.isEmpty)
            _ = try client.feedback(recordId: recordId, score: 1.0, label: nil, source: .evaluator, tags: [:])
            _ = try client.feedback(recordId: shadowId, score: 0.0, label: nil, source: .evaluator, tags: [:])
            let flushed = try await client.flush(timeoutMs: 15_000)
            XCTAssertTrue(flushed.drained && flushed.refused == 0, "\(flushed)")
            XCTAssertEqual(flushed.delivered, 4, "call, shadow + 2 ratings: \(flushed)")
            let calls = try await Collector.calls("k_swift_shadow")
            XCTAssertEqual(calls, 2)
            _ = try await client.shutdown()
        } catch {
            try await Collector.putRouting(#"{"learning":false,"explore_permille":50}"#)
            throw error
        }
        try await Collector.putRouting(#"{"learning":false,"explore_permille":50}"#)
    }

    func testFeedbackOnACallReachesTheCollectorBesideIt() async throws {
        let client = try await reporting("k_swift_feedback", spool: tmp.appendingPathComponent("spool"))
        let resp = try await client.chat(request: request("openai/gpt-4o-mini", "rate me"))
        let recordId = try XCTUnwrap(resp.usageRecordId, "a response names its usage record")
        var streamed: String?
        for try await chunk in try client.chatStream(request: request("openai/gpt-4o-mini", "rate me too")) where chunk.usage != nil {
            streamed = chunk.usageRecordId
        }
        let streamedId = try XCTUnwrap(streamed, "the usage chunk names the record")
        _ = try client.feedback(recordId: recordId, score: 1.0, label: "thumbs_up", source: .user, tags: [:])
        _ = try client.feedback(recordId: streamedId, score: 0.5, label: nil, source: .evaluator, tags: ["grader": "unit"])
        let e = await gateRouterError("score out of range") {
            _ = try client.feedback(recordId: recordId, score: 1.5, label: nil, source: .user, tags: [:])
        }
        XCTAssertEqual(e?.kind, "InvalidRequest")
        XCTAssertTrue(e?.detail.contains("`score`") ?? false, e?.detail ?? "")
        let flushed = try await client.flush(timeoutMs: 15_000)
        XCTAssertTrue(flushed.drained && flushed.refused == 0, "\(flushed)")
        XCTAssertEqual(flushed.delivered, 4, "2 calls + 2 feedback records: \(flushed)")
        let (rated, mean) = try await Collector.outcomes("k_swift_feedback")
        XCTAssertEqual(rated, 2)
        XCTAssertEqual(mean, 0.75)
        _ = try await client.shutdown()
    }

    func testTheKeyNeverReachesTheDisk() async throws {
        let key = try AppKey()
        try await Collector.registerKey("k_swift_disk", key)
        let spool = tmp.appendingPathComponent("spool")
        let config = Emulator.toml(extra: "[identity]\norg = \"acme\"\n\n[reporting]\ncollector_url = \"\(Collector.url)\"\nbatch_max_age_ms = 50\n")
        let keyText = key.seed.base64EncodedString()
        let signingKey = try UsageSigningKey.fromText(text: keyText)
        XCTAssertEqual(signingKey.publicKey(), key.publicKeyBase64)
        #if canImport(CryptoKit)
        // An independent implementation (CryptoKit, as an iOS app holds the key) agrees.
        let ck = try Curve25519.Signing.PrivateKey(rawRepresentation: key.seed)
        XCTAssertEqual(signingKey.publicKey(), ck.publicKey.rawRepresentation.base64EncodedString())
        #endif
        let options = MobileOptions(spoolDir: spool.path, signingKey: signingKey, apiKeyId: "k_swift_disk")
        // Printing or logging the options never shows the key.
        XCTAssertFalse("\(options)".contains(keyText), "\(options)")
        XCTAssertFalse(String(reflecting: options).contains(keyText))
        let client = try GateRouterClient.create(configToml: config, options: options)
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "x"))
        let flushed = try await client.flush(timeoutMs: 15_000)
        XCTAssertTrue(flushed.drained)
        let calls = try await Collector.calls("k_swift_disk")
        XCTAssertEqual(calls, 1)
        _ = try await client.shutdown()
        let seed = [UInt8](key.seed)
        var leaks: [String] = []
        let files = FileManager.default.enumerator(at: tmp, includingPropertiesForKeys: [.isRegularFileKey])!
        for case let f as URL in files where (try? f.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            let bytes = [UInt8](try Data(contentsOf: f))
            let text = String(decoding: bytes, as: UTF8.self)
            let raw = bytes.count >= 32 && (0...(bytes.count - 32)).contains { Array(bytes[$0..<($0 + 32)]) == seed }
            if text.contains(keyText) || raw { leaks.append(f.path) }
        }
        XCTAssertEqual(leaks, [], "key material on disk")
    }

    func testSuspendHoldsRecordsAndResumeDeliversThem() async throws {
        let client = try await reporting("k_swift_suspend", spool: tmp.appendingPathComponent("spool"))
        XCTAssertLessThan(millis { client.suspend() }, 50)
        XCTAssertTrue(try XCTUnwrap(client.reportingStatus()).suspended)
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "while in the background 1"))
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "while in the background 2"))
        try await Task.sleep(nanoseconds: 500_000_000) // ten batch ages
        XCTAssertEqual(try pending(client), 2)
        var calls = try await Collector.calls("k_swift_suspend")
        XCTAssertEqual(calls, 0, "sent while suspended")
        // flush does not wait while suspended.
        let start = Date()
        let held = try await client.flush(timeoutMs: 10_000)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "flush blocked while suspended")
        XCTAssertFalse(held.drained)
        XCTAssertEqual(held.pending, 2)

        XCTAssertLessThan(millis { client.resume() }, 50)
        try await waitUntil("delivery after resume", ms: 10_000) { try self.pending(client) == 0 }
        calls = try await Collector.calls("k_swift_suspend")
        XCTAssertEqual(calls, 2)
        XCTAssertFalse(try XCTUnwrap(client.reportingStatus()).suspended)
        _ = try await client.shutdown()
    }

    func testOfflineHoldsCellularBatchesBiggerAndWaitsLonger() async throws {
        let client = try await reporting("k_swift_network", spool: tmp.appendingPathComponent("spool"),
                                         reporting: "cellular_batch_max_records = 3\ncellular_batch_max_age_ms = 60000\n")
        client.setNetworkClass(network: .offline)
        XCTAssertEqual(try XCTUnwrap(client.reportingStatus()).networkClass, .offline)
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "offline"))
        try await Task.sleep(nanoseconds: 400_000_000)
        XCTAssertEqual(try pending(client), 1)
        var calls = try await Collector.calls("k_swift_network")
        XCTAssertEqual(calls, 0, "sent while offline")

        // Back on a network (cellular): what waited goes at once.
        client.setNetworkClass(network: .cellular)
        try await waitUntil("the held record", ms: 10_000) { try self.pending(client) == 0 }
        calls = try await Collector.calls("k_swift_network")
        XCTAssertEqual(calls, 1)

        // On cellular two records wait for a batch of three (Wi-Fi would send in 50 ms).
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "cellular 1"))
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "cellular 2"))
        try await Task.sleep(nanoseconds: 500_000_000)
        XCTAssertEqual(try pending(client), 2, "cellular did not wait for a fuller batch")
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "cellular 3"))
        try await waitUntil("the full cellular batch", ms: 10_000) { try self.pending(client) == 0 }
        calls = try await Collector.calls("k_swift_network")
        XCTAssertEqual(calls, 4)

        // An explicit flush does not wait for the cellular batch.
        _ = try await client.chat(request: request("openai/gpt-4o-mini", "cellular 4"))
        let flushed = try await client.flush(timeoutMs: 10_000)
        XCTAssertTrue(flushed.drained)
        calls = try await Collector.calls("k_swift_network")
        XCTAssertEqual(calls, 5)
        _ = try await client.shutdown()
    }

    func testStartOptionsAndTheirErrors() async throws {
        let spool = tmp.appendingPathComponent("spool")
        let client = try await reporting("k_swift_start", spool: spool) {
            $0.startSuspended = true
            $0.networkClass = .cellular
        }
        let status = try XCTUnwrap(client.reportingStatus())
        XCTAssertTrue(status.suspended)
        XCTAssertEqual(status.networkClass, .cellular)
        // One client per spool directory.
        let locked = await gateRouterError("second client on the spool") { _ = try await self.reporting("k_swift_start2", spool: spool) }
        XCTAssertEqual(locked?.kind, "Config")
        XCTAssertTrue(locked?.detail.contains("in use") ?? false, locked?.detail ?? "")
        _ = try await client.shutdown()

        let config = Emulator.toml(extra: "[identity]\norg = \"acme\"\napi_key_id = \"k\"\n")
        let relative = await gateRouterError("relative spool") { _ = try GateRouterClient.create(configToml: config, options: MobileOptions(spoolDir: "spool")) }
        XCTAssertEqual(relative?.kind, "Config")
        XCTAssertTrue(relative?.detail.contains("MobileOptions.spool_dir") ?? false, relative?.detail ?? "")
        let short = await gateRouterError("short seed") { _ = try UsageSigningKey.fromSeed(seed: Data(count: 31)) }
        XCTAssertEqual(short?.kind, "Config")
        XCTAssertTrue(short?.detail.contains("31 bytes") ?? false, short?.detail ?? "")
        let badKey = await gateRouterError("not a key") { _ = try UsageSigningKey.fromText(text: "s3cr3t-n0t-a-key") }
        // The error says where the key came from, never what it was.
        XCTAssertTrue((badKey?.detail.contains("UsageSigningKey.fromText") ?? false) && !(badKey?.detail.contains("s3cr3t") ?? true), badKey?.detail ?? "")
    }
}
