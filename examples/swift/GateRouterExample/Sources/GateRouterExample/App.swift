// What an app does with GateRouter, end to end:
//   gaterouter-example keygen   make the usage-signing key (once, at install), keep it in the
//                               secure store, print its public key for the collector
//   gaterouter-example run      chat, stream, go offline (backgrounded), come back, flush
// Environment: GATEROUTER_EMULATOR_URL (provider base), GATEROUTER_COLLECTOR_URL,
// GATEROUTER_API_KEY_ID, GATEROUTER_EXAMPLE_DATA (the app's data directory, for the spool).
import Foundation
import GateRouter

let account = "usage-signing-key"

func env(_ name: String) throws -> String {
    guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else {
        throw SecureStoreError(description: "set \(name)")
    }
    return v
}

func keygen() throws {
    let store = try platformSecureStore()
    var seed = try store.read(account: account)
    if seed == nil {
        var rng = SystemRandomNumberGenerator()
        let fresh = Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
        try store.write(account: account, secret: fresh)
        seed = fresh
    }
    print(try UsageSigningKey.fromSeed(seed: seed!).publicKey())
}

func run() async throws {
    let emulator = try env("GATEROUTER_EMULATOR_URL")
    let collector = try env("GATEROUTER_COLLECTOR_URL")
    let keyId = try env("GATEROUTER_API_KEY_ID")
    let data = URL(fileURLWithPath: try env("GATEROUTER_EXAMPLE_DATA"))

    // The key comes from the secure store into memory; the SDK never writes it to disk.
    guard let seed = try platformSecureStore().read(account: account) else {
        throw SecureStoreError(description: "no signing key in the secure store: run `gaterouter-example keygen` first")
    }
    let key = try UsageSigningKey.fromSeed(seed: seed)

    let config = """
        [providers.openai]
        kind = "openai"
        base_url = "\(emulator)/openai/v1"
        api_key = "emulator-key"

        [identity]
        org = "acme"

        [reporting]
        collector_url = "\(collector)"
        batch_max_age_ms = 200
        """
    let client = try GateRouterClient.create(configToml: config, options: MobileOptions(
        spoolDir: data.appendingPathComponent("spool").path, signingKey: key, apiKeyId: keyId, networkClass: .wifi))

    let answer = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini",
                                                            messages: [ChatMessage(role: .user, content: "Hello from Swift")]))
    print("chat: \(answer.text) [\(answer.usage.totalTokens) tokens]")

    print("stream: ", terminator: "")
    var streamed = ""
    for try await chunk in try client.chatStream(request: ChatRequest(model: "openai/gpt-4o-mini",
                                                                       messages: [ChatMessage(role: .user, content: "Stream to Swift")])) {
        streamed += chunk.text ?? ""
        print(chunk.text ?? "", terminator: "")
    }
    print()
    guard streamed.contains("Stream to Swift") else { throw SecureStoreError(description: "unexpected stream: \(streamed)") }

    // The app goes to the background and loses its network: records wait in the spool.
    client.suspend()
    client.setNetworkClass(network: .offline)
    _ = try await client.chat(request: ChatRequest(model: "openai/gpt-4o-mini",
                                                   messages: [ChatMessage(role: .user, content: "While offline")]))
    let offline = client.reportingStatus()!
    print("offline: suspended=\(offline.suspended) network=\(offline.networkClass) pending=\(offline.pendingRecords)")

    // Back in the foreground on Wi-Fi: everything waiting is delivered.
    client.setNetworkClass(network: .wifi)
    client.resume()
    // The delivery report: delivered, still pending, refused by the collector (and why).
    let flushed = try await client.flush(timeoutMs: 15_000)
    print("flush: drained=\(flushed.drained) pending=\(flushed.pending) delivered=\(flushed.delivered) refused=\(flushed.refused) last_refusal=\(flushed.lastRefusal ?? "-")")
    _ = try await client.shutdown()
    if !flushed.drained || flushed.refused > 0 || flushed.delivered < 3 { exit(1) }
}

@main
struct GateRouterExample {
    static func main() async {
        do {
            switch CommandLine.arguments.dropFirst().first {
            case "keygen": try keygen()
            case "run": try await run()
            default:
                FileHandle.standardError.write(Data("usage: gaterouter-example keygen | run\n".utf8))
                exit(2)
            }
        } catch {
            FileHandle.standardError.write(Data("gaterouter-example: \(error)\n".utf8))
            exit(1)
        }
    }
}
