// The shared JSON vectors (tests/vectors/) give the same results from Swift as from Rust,
// Python, Node and Kotlin: token counts, chat prompt tokens, costs, routing scores, and the
// usage-record signing key (records.json: seed -> Ed25519 public key).
import Foundation
import XCTest
@testable import GateRouter

final class VectorsTests: XCTestCase {
    // Routing and counting need no network: the providers only have to be configured.
    static let client = try! GateRouterClient.fromConfigToml(text: Emulator.toml(base: "http://127.0.0.1:9"))
    var client: GateRouterClient { Self.client }

    private func u64(_ any: Any?) -> UInt64? { (any as? NSNumber)?.uint64Value }

    func testTextTokenCounts() throws {
        let texts = try XCTUnwrap(vector("tokens.json")["texts"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(texts.count, 10)
        for t in texts {
            let text = try XCTUnwrap(t["text"] as? String)
            let name = t["name"] as? String ?? "?"
            for (encoding, model) in [("o200k_base", "openai/gpt-4o"), ("cl100k_base", "openai/gpt-4")] {
                let c = countTextTokens(text: text, model: model)
                XCTAssertEqual(c.tokens, u64(t[encoding]), "\(name) / \(encoding)")
                XCTAssertTrue(c.exact, "\(name) / \(encoding)")
            }
        }
    }

    func testChatPromptTokens() throws {
        let cases = try XCTUnwrap(vector("chat_tokens.json")["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        var checked = 0
        for c in cases {
            var req = try XCTUnwrap(c["request"] as? [String: Any])
            for (model, expected) in try XCTUnwrap(c["expected_prompt_tokens"] as? [String: Any]) {
                req["model"] = model
                let got = try client.countTokensJson(requestJson: try json(req))
                XCTAssertEqual(got.tokens, u64(expected), "\(c["name"] ?? "") on \(model)")
                XCTAssertEqual(got.exact, c["exact"] as? Bool, "\(c["name"] ?? "") on \(model): exact")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 30, "only \(checked) counts checked")
    }

    func testCosts() throws {
        let cases = try XCTUnwrap(vector("cost.json")["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let u = try XCTUnwrap(c["usage"] as? [String: Any])
            let usage = Usage(promptTokens: u64(u["prompt_tokens"])!, completionTokens: u64(u["completion_tokens"])!,
                              totalTokens: u64(u["total_tokens"])!, cachedPromptTokens: u64(u["cached_prompt_tokens"])!,
                              cacheWriteTokens: u64(u["cache_write_tokens"])!, reasoningTokens: u64(u["reasoning_tokens"])!)
            let o = try XCTUnwrap(c["options"] as? [String: Bool])
            let cost = try calculateCost(usage: usage, model: try XCTUnwrap(c["model"] as? String),
                                         options: CostOptions(batch: o["batch"]!, cacheWrite1h: o["cache_write_1h"]!))
            let got: [String: UInt64?] = [
                "input_micros": cost.inputMicros, "cached_input_micros": cost.cachedInputMicros,
                "cache_write_micros": cost.cacheWriteMicros, "output_micros": cost.outputMicros,
                "reasoning_micros": cost.reasoningMicros, "total_micros": cost.totalMicros,
                "tier_above_input_tokens": cost.tierAboveInputTokens,
            ]
            for (field, expected) in try XCTUnwrap(c["expected"] as? [String: Any]) {
                let want: UInt64? = expected is NSNull ? nil : u64(expected)
                XCTAssertTrue(got.keys.contains(field), "\(name): unknown field \(field)")
                XCTAssertEqual(got[field] ?? nil, want, "\(name): \(field)")
            }
        }
    }

    func testRoutingScoresAndTiers() throws {
        let v = try vector("routing.json")
        let tolerance = (v["tolerance"] as? Double) ?? 1e-6
        let cases = try XCTUnwrap(v["cases"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 10)
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let d = try client.routeJson(requestJson: try json(try XCTUnwrap(c["request"])))
            XCTAssertEqual(try XCTUnwrap(d.score, name), try XCTUnwrap(c["score"] as? Double), accuracy: tolerance, name)
            XCTAssertEqual(d.tier.map { "\($0)" }, c["tier"] as? String, name)
        }
    }

    /// routing_weights_version.json is checked against the core by bindings/ffi/tests/shim.rs.
    func testAutoDecisionsNameTheBuiltinWeightsVersion() throws {
        let builtin = try XCTUnwrap(vector("routing_weights_version.json")["builtin_weights_version"] as? String)
        let cases = try XCTUnwrap(vector("routing.json")["cases"] as? [[String: Any]])
        let d = try client.routeJson(requestJson: try json(try XCTUnwrap(cases.first?["request"])))
        XCTAssertEqual(d.weightsVersion, builtin)
        XCTAssertNil(d.learning)  // no organization learning
    }

    /// records.json was made with Python `cryptography`: the SDK derives the same Ed25519 public
    /// key from the same seed, given as bytes or as text, so the collector will accept its
    /// signatures. (Record canonical bytes and signatures are not exposed through the mobile
    /// API; the Rust, Python and Node suites check those fields of this file.)
    func testRecordSigningKeyVector() throws {
        let v = try vector("records.json")
        let seedText = try XCTUnwrap(v["seed_base64"] as? String)
        let publicKey = try XCTUnwrap(v["public_key"] as? String)
        XCTAssertEqual(try UsageSigningKey.fromText(text: seedText).publicKey(), publicKey)
        XCTAssertEqual(try UsageSigningKey.fromSeed(seed: try XCTUnwrap(Data(base64Encoded: seedText))).publicKey(), publicKey)
        XCTAssertEqual(try UsageSigningKey.fromText(text: try XCTUnwrap(v["private_key_pem"] as? String)).publicKey(), publicKey)
        XCTAssertGreaterThanOrEqual((v["vectors"] as? [Any])?.count ?? 0, 1)
    }
}
