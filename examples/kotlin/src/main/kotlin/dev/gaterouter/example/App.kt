// What an app does with GateRouter, end to end:
//   keygen   make the usage-signing key (once, at install), keep it in the secure store,
//            print its public key for the collector
//   run      chat, stream (Flow), go offline (backgrounded), come back, flush
// Environment: GATEROUTER_EMULATOR_URL (provider base), GATEROUTER_COLLECTOR_URL,
// GATEROUTER_API_KEY_ID, GATEROUTER_EXAMPLE_DATA (the app's data directory, for the spool).
package dev.gaterouter.example

import dev.gaterouter.ChatMessage
import dev.gaterouter.ChatRequest
import dev.gaterouter.GateRouterClient
import dev.gaterouter.MobileOptions
import dev.gaterouter.NetworkClass
import dev.gaterouter.Role
import dev.gaterouter.UsageSigningKey
import dev.gaterouter.chatFlow
import java.io.File
import java.security.SecureRandom
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking

const val ACCOUNT = "usage-signing-key"

fun env(name: String): String = System.getenv(name)?.takeIf { it.isNotEmpty() } ?: error("set $name")

fun keygen() {
    val store = platformSecureStore()
    val seed = store.read(ACCOUNT) ?: ByteArray(32).also {
        SecureRandom().nextBytes(it)
        store.write(ACCOUNT, it)
    }
    println(UsageSigningKey.fromSeed(seed).publicKey())
}

fun ask(text: String) = ChatRequest(model = "openai/gpt-4o-mini", messages = listOf(ChatMessage(role = Role.USER, content = text)))

fun run(): Int = runBlocking {
    val emulator = env("GATEROUTER_EMULATOR_URL")
    val collector = env("GATEROUTER_COLLECTOR_URL")
    val keyId = env("GATEROUTER_API_KEY_ID")
    val data = File(env("GATEROUTER_EXAMPLE_DATA"))

    // The key comes from the secure store into memory; the SDK never writes it to disk.
    val seed = platformSecureStore().read(ACCOUNT) ?: error("no signing key in the secure store: run `keygen` first")
    val key = UsageSigningKey.fromSeed(seed)

    val config = """
        [providers.openai]
        kind = "openai"
        base_url = "$emulator/openai/v1"
        api_key = "emulator-key"

        [identity]
        org = "acme"

        [reporting]
        collector_url = "$collector"
        batch_max_age_ms = 200
    """.trimIndent()
    val client = GateRouterClient.create(
        config,
        MobileOptions(spoolDir = File(data, "spool").absolutePath, signingKey = key, apiKeyId = keyId, networkClass = NetworkClass.WIFI),
    )

    val answer = client.chat(ask("Hello from Kotlin"))
    println("chat: ${answer.text} [${answer.usage.totalTokens} tokens]")

    print("stream: ")
    val streamed = StringBuilder()
    client.chatFlow(ask("Stream to Kotlin")).collect { chunk ->
        streamed.append(chunk.text ?: "")
        print(chunk.text ?: "")
    }
    println()
    check(streamed.contains("Stream to Kotlin")) { "unexpected stream: $streamed" }

    // The app goes to the background and loses its network: records wait in the spool.
    client.suspend()
    client.setNetworkClass(NetworkClass.OFFLINE)
    client.chat(ask("While offline"))
    val offline = client.reportingStatus()!!
    println("offline: suspended=${offline.suspended} network=${offline.networkClass} pending=${offline.pendingRecords}")

    // Back in the foreground on Wi-Fi: everything waiting is delivered.
    client.setNetworkClass(NetworkClass.WIFI)
    client.resume()
    // The delivery report: delivered, still pending, refused by the collector (and why).
    val flushed = client.flush(15_000u)
    println("flush: drained=${flushed.drained} pending=${flushed.pending} delivered=${flushed.delivered} refused=${flushed.refused} last_refusal=${flushed.lastRefusal ?: "-"}")
    client.shutdown()
    client.close()
    if (flushed.drained && flushed.refused == 0uL && flushed.delivered >= 3uL) 0 else 1
}

fun main(args: Array<String>) {
    when (args.firstOrNull()) {
        "keygen" -> keygen()
        "run" -> exitProcess(run())
        else -> {
            System.err.println("usage: gaterouter-example keygen | run")
            exitProcess(2)
        }
    }
}
