// route / countTokens / estimateCost / flush, and the mobile hooks (spool dir, in-memory
// key, suspend/resume, network class) against the emulator and a real collector.
package dev.gaterouter

import dev.gaterouter.Support.request
import dev.gaterouter.Support.toml
import dev.gaterouter.Support.waitUntil
import java.io.File
import java.util.Base64
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir

class MobileTest {
    private val plain: GateRouterClient by lazy { GateRouterClient.fromConfigToml(toml()) }

    /** A reporting client for a fresh key `keyId`, registered with the collector. */
    private fun reporting(
        keyId: String,
        spool: File,
        reporting: String = "",
        options: (MobileOptions) -> MobileOptions = { it },
    ): GateRouterClient {
        val key = AppKey()
        Collector.registerKey(keyId, key)
        val config = toml(
            extra = "[identity]\norg = \"acme\"\n\n[reporting]\ncollector_url = \"${Collector.url}\"\n" +
                "batch_max_records = 50\nbatch_max_age_ms = 50\nretry_initial_backoff_ms = 20\nretry_max_backoff_ms = 200\n$reporting",
        )
        val base = MobileOptions(spoolDir = spool.absolutePath, signingKey = UsageSigningKey.fromSeed(key.seed), apiKeyId = keyId)
        return GateRouterClient.create(config, options(base))
    }

    private fun GateRouterClient.pending(): ULong = reportingStatus()!!.pendingRecords

    private fun timedMs(block: () -> Unit): Long {
        val t = System.nanoTime()
        block()
        return (System.nanoTime() - t) / 1_000_000
    }

    @Test
    fun `route explains auto and explicit decisions`() {
        val auto = plain.route(request("auto", "Hi! How are you today?"))
        assertEquals(RouteMode.AUTO, auto.mode)
        val score = auto.score!!
        assertTrue(score > 0.0 && score < 1.0, "score $score")
        assertNotNull(auto.tier)
        assertTrue(auto.features.isNotEmpty())
        assertEquals(auto.chosen, auto.candidates.first().model)
        assertTrue(auto.reason.isNotBlank())
        // The typed request and its JSON twin decide the same.
        assertEquals(auto, plain.routeJson("""{"model":"auto","messages":[{"role":"user","content":"Hi! How are you today?"}]}"""))

        val explicit = plain.route(request("anthropic/claude-sonnet-4-5", "hello"))
        assertEquals(RouteMode.EXPLICIT, explicit.mode)
        assertEquals("anthropic/claude-sonnet-4-5", explicit.chosen)
        assertNull(explicit.score)
        assertNull(explicit.tier)
        val unknown = assertThrows<GateRouterException.InvalidRequest> { plain.route(request("nosuch/model", "x")) }
        assertTrue(unknown.info.detail.contains("nosuch"), unknown.info.detail)
    }

    @Test
    fun `countTokens and estimateCost price a request before sending`() {
        // tests/vectors/chat_tokens.json `single_user`: 13 tokens on gpt-4o, exact.
        val count = plain.countTokens(request("openai/gpt-4o", "Hello, how are you?"))
        assertEquals(13uL, count.tokens)
        assertTrue(count.exact)
        val b = count.breakdown
        assertEquals(count.tokens, b.text + b.overhead + b.names + b.tools + b.images)

        val est = plain.estimateCost(request("openai/gpt-4o", "Hello, how are you?", maxTokens = 100u))
        assertEquals(count, est.prompt)
        assertEquals(100uL, est.maxCompletionTokens)
        assertEquals("openai/gpt-4o", est.max.pricedAs)
        assertEquals("USD", est.max.currency)
        // gpt-4o output is $10 per million tokens: 100 tokens = 1000 micro-dollars.
        assertEquals(1000uL, est.max.outputMicros)
        assertTrue(est.expected.totalMicros <= est.max.totalMicros)
        assertEquals(est, plain.estimateCostJson("""{"model":"openai/gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"Hello, how are you?"}]}"""))

        // auto prices the routed model.
        val autoReq = request("auto", "Hello, how are you?")
        assertEquals(plain.route(autoReq).chosen, plain.estimateCost(autoReq).expected.pricedAs)
        val bad = assertThrows<GateRouterException.InvalidRequest> { plain.countTokens(request("gpt-4o", "no provider")) }
        assertEquals("model", bad.info.field)
        assertThrows<GateRouterException> { plain.estimateCost(request("openai/no-such-model-xyz", "x")) }
    }

    @Test
    fun `flush and status without reporting`() = runBlocking {
        val r = plain.flush(1000u)
        assertTrue(r.drained)
        assertEquals(0uL, r.pending)
        assertNull(plain.reportingStatus())
        // Lifecycle hooks are harmless no-ops when there is nothing to report.
        plain.suspend()
        plain.setNetworkClass(NetworkClass.OFFLINE)
        plain.resume()
        plain.setNetworkClass(NetworkClass.WIFI)
    }

    @Test
    fun `refused records are counted and reported with the reason`(@TempDir tmp: File) = runBlocking {
        // Not a member of the org: the collector refuses every record.
        val client = reporting("k_kotlin_refused", File(tmp, "spool")) { it.copy(user = "ghost-kotlin") }
        repeat(2) { client.chat(request("openai/gpt-4o-mini", "refuse me $it")) }
        val r = client.flush(15_000u)
        assertTrue(r.drained, r.toString())
        assertEquals(listOf(0uL, 0uL, 2uL), listOf(r.delivered, r.pending, r.refused), r.toString())
        val reason = r.lastRefusal!!
        assertTrue(reason.contains("ghost-kotlin"), reason)
        assertEquals(listOf(RefusalCount(reason, 2uL)), r.refusals)
        assertEquals(2uL, client.usageStatus().refused)
        assertEquals(listOf(reason), client.takeRefusalWarnings())
        assertTrue(client.takeRefusalWarnings().isEmpty(), "each reason once")
        client.shutdown()
        Unit
    }

    @Test
    fun `records reach the collector, signed with the in-memory key`(@TempDir tmp: File) = runBlocking {
        val spool = File(tmp, "spool")
        val client = reporting("k_kotlin_flow", spool) { it.copy(user = "alice") }
        repeat(3) { client.chat(request("openai/gpt-4o-mini", "count me $it")) }
        val flushed = client.flush(15_000u)
        assertTrue(flushed.drained, "not drained: $flushed, ${client.reportingStatus()}")
        assertEquals(0uL, flushed.pending)
        assertEquals(3L, Collector.calls("k_kotlin_flow"))
        assertEquals(listOf("alice"), Collector.users("k_kotlin_flow"))
        val status = client.reportingStatus()!!
        assertEquals(spool.absolutePath, status.spoolDir)
        assertTrue(status.deliveredRecords >= 3uL, status.toString())
        assertNull(status.lastError)
        // The spool is where the app said.
        assertTrue(spool.isDirectory && spool.listFiles()!!.isNotEmpty())
        client.close()
    }

    @Test
    fun `feedback on a call reaches the collector beside it`(@TempDir tmp: File) = runBlocking {
        val client = reporting("k_kotlin_feedback", File(tmp, "spool"))
        val resp = client.chat(request("openai/gpt-4o-mini", "rate me"))
        val recordId = resp.usageRecordId ?: error("a response names its usage record")
        var streamed: String? = null
        client.chatFlow(request("openai/gpt-4o-mini", "rate me too")).collect { c -> if (c.usage != null) streamed = c.usageRecordId }
        assertNotNull(streamed, "the usage chunk names the record")
        client.feedback(recordId, 1.0, "thumbs_up", FeedbackSource.USER, emptyMap())
        client.feedback(streamed!!, 0.5, null, FeedbackSource.EVALUATOR, mapOf("grader" to "unit"))
        val bad = assertThrows<GateRouterException.InvalidRequest> { client.feedback(recordId, 1.5, null, FeedbackSource.USER, emptyMap()) }
        assertTrue(bad.info.detail.contains("`score`"), bad.info.detail)
        val flushed = client.flush(15_000u)
        assertTrue(flushed.drained && flushed.refused == 0uL, "$flushed")
        assertEquals(4uL, flushed.delivered, "2 calls + 2 feedback records: $flushed")
        assertEquals(2L to 0.75, Collector.outcomes("k_kotlin_feedback"))
        client.close()
    }

    @Test
    fun `shadow sampling returns the other arm's answer to rate`(@TempDir tmp: File) = runBlocking {
        // Every plain auto call of acme shadowed, no exploration; put back afterwards.
        Collector.putRouting("""{"learning":true,"explore_permille":0,"shadow_permille":1000}""")
        try {
            val client = reporting("k_kotlin_shadow", File(tmp, "spool"))
            val resp = client.chat(request("auto", "say hi"))
            val shadow = resp.shadow ?: error("a shadowed call has the other arm's answer: $resp")
            assertNull(resp.shadowError)
            assertNotEquals(resp.model, shadow.model)
            assertNotNull(shadow.usageRecordId)
            assertNotEquals(resp.usageRecordId, shadow.usageRecordId)
            assertTrue(shadow.text.isNotEmpty())
            client.feedback(resp.usageRecordId!!, 1.0, null, FeedbackSource.EVALUATOR, emptyMap())
            client.feedback(shadow.usageRecordId!!, 0.0, null, FeedbackSource.EVALUATOR, emptyMap())
            val flushed = client.flush(15_000u)
            assertTrue(flushed.drained && flushed.refused == 0uL, "$flushed")
            assertEquals(4uL, flushed.delivered, "call, shadow + 2 ratings: $flushed")
            assertEquals(2L, Collector.calls("k_kotlin_shadow"))
            client.close()
        } finally {
            Collector.putRouting("""{"learning":false,"explore_permille":50}""")
        }
    }

    @Test
    fun `the key never reaches the disk`(@TempDir tmp: File) = runBlocking {
        val key = AppKey()
        Collector.registerKey("k_kotlin_disk", key)
        val spool = File(tmp, "spool")
        val config = toml(extra = "[identity]\norg = \"acme\"\n\n[reporting]\ncollector_url = \"${Collector.url}\"\nbatch_max_age_ms = 50\n")
        val keyText = Base64.getEncoder().encodeToString(key.seed)
        val signingKey = UsageSigningKey.fromText(keyText)
        // The SDK derives the same public key as the JDK did: that is what the collector checks.
        assertEquals(key.publicKeyBase64, signingKey.publicKey())
        val options = MobileOptions(spoolDir = spool.absolutePath, signingKey = signingKey, apiKeyId = "k_kotlin_disk")
        // Printing or logging the options never shows the key.
        assertFalse(options.toString().contains(keyText), options.toString())
        val client = GateRouterClient.create(config, options)
        client.chat(request("openai/gpt-4o-mini", "x"))
        assertTrue(client.flush(15_000u).drained)
        assertEquals(1L, Collector.calls("k_kotlin_disk"))
        client.close()
        val leaks = tmp.walkTopDown().filter { it.isFile }.filter { f ->
            val bytes = f.readBytes()
            String(bytes, Charsets.ISO_8859_1).contains(keyText) || bytes.asList().windowed(32).any { it == key.seed.asList() }
        }.toList()
        assertTrue(leaks.isEmpty(), "key material in $leaks")
    }

    @Test
    fun `suspend holds records and resume delivers them`(@TempDir tmp: File) = runBlocking {
        val client = reporting("k_kotlin_suspend", File(tmp, "spool"))
        assertTrue(timedMs { client.suspend() } < 50)
        assertTrue(client.reportingStatus()!!.suspended)
        client.chat(request("openai/gpt-4o-mini", "while in the background 1"))
        client.chat(request("openai/gpt-4o-mini", "while in the background 2"))
        Thread.sleep(500) // ten batch ages
        assertEquals(2uL, client.pending())
        assertEquals(0L, Collector.calls("k_kotlin_suspend"), "sent while suspended")
        // flush does not wait while suspended.
        val start = System.nanoTime()
        val held = client.flush(10_000u)
        assertTrue((System.nanoTime() - start) / 1_000_000 < 2000, "flush blocked while suspended")
        assertFalse(held.drained)
        assertEquals(2uL, held.pending)

        assertTrue(timedMs { client.resume() } < 50)
        waitUntil("delivery after resume", 10_000) { client.pending() == 0uL }
        assertEquals(2L, Collector.calls("k_kotlin_suspend"))
        assertFalse(client.reportingStatus()!!.suspended)
        client.close()
    }

    @Test
    fun `offline holds, cellular batches bigger and waits longer`(@TempDir tmp: File) = runBlocking {
        val client = reporting(
            "k_kotlin_network",
            File(tmp, "spool"),
            reporting = "cellular_batch_max_records = 3\ncellular_batch_max_age_ms = 60000\n",
        )
        client.setNetworkClass(NetworkClass.OFFLINE)
        assertEquals(NetworkClass.OFFLINE, client.reportingStatus()!!.networkClass)
        client.chat(request("openai/gpt-4o-mini", "offline"))
        Thread.sleep(400)
        assertEquals(1uL, client.pending())
        assertEquals(0L, Collector.calls("k_kotlin_network"), "sent while offline")

        // Back on a network (cellular): what waited goes at once.
        client.setNetworkClass(NetworkClass.CELLULAR)
        waitUntil("the held record", 10_000) { client.pending() == 0uL }
        assertEquals(1L, Collector.calls("k_kotlin_network"))

        // On cellular two records wait for a batch of three (Wi-Fi would send in 50 ms).
        client.chat(request("openai/gpt-4o-mini", "cellular 1"))
        client.chat(request("openai/gpt-4o-mini", "cellular 2"))
        Thread.sleep(500)
        assertEquals(2uL, client.pending(), "cellular did not wait for a fuller batch")
        client.chat(request("openai/gpt-4o-mini", "cellular 3"))
        waitUntil("the full cellular batch", 10_000) { client.pending() == 0uL }
        assertEquals(4L, Collector.calls("k_kotlin_network"))

        // An explicit flush does not wait for the cellular batch.
        client.chat(request("openai/gpt-4o-mini", "cellular 4"))
        assertTrue(client.flush(10_000u).drained)
        assertEquals(5L, Collector.calls("k_kotlin_network"))
        client.close()
    }

    @Test
    fun `start options and their errors`(@TempDir tmp: File) {
        val spool = File(tmp, "spool")
        val client = reporting("k_kotlin_start", spool) { it.copy(startSuspended = true, networkClass = NetworkClass.CELLULAR) }
        val status = client.reportingStatus()!!
        assertTrue(status.suspended)
        assertEquals(NetworkClass.CELLULAR, status.networkClass)
        // One client per spool directory.
        val locked = assertThrows<GateRouterException.Config> { reporting("k_kotlin_start2", spool) }
        assertTrue(locked.info.detail.contains("in use"), locked.info.detail)
        client.close()

        val config = toml(extra = "[identity]\norg = \"acme\"\napi_key_id = \"k\"\n")
        val relative = assertThrows<GateRouterException.Config> { GateRouterClient.create(config, MobileOptions(spoolDir = "spool")) }
        assertTrue(relative.info.detail.contains("MobileOptions.spool_dir"), relative.info.detail)
        val short = assertThrows<GateRouterException.Config> { UsageSigningKey.fromSeed(ByteArray(31)) }
        assertTrue(short.info.detail.contains("31 bytes"), short.info.detail)
        val badKey = assertThrows<GateRouterException.Config> { UsageSigningKey.fromText("s3cr3t-n0t-a-key") }
        // The error says where the key came from, never what it was.
        assertTrue(badKey.info.detail.contains("UsageSigningKey.fromText") && !badKey.info.detail.contains("s3cr3t"), badKey.info.detail)
    }
}
