// The shared JSON vectors (tests/vectors/) give the same results from Kotlin as from Rust,
// Python and Node: token counts, chat prompt tokens, costs, routing scores and weights version.
package dev.gaterouter

import dev.gaterouter.Support.toml
import dev.gaterouter.Support.vector
import kotlin.math.abs
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.boolean
import kotlinx.serialization.json.double
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class VectorsTest {
    // Routing and counting need no network: the providers only have to be configured.
    private val client: GateRouterClient by lazy { GateRouterClient.fromConfigToml(toml(base = "http://127.0.0.1:9")) }

    private fun JsonObject.str(k: String) = this[k]!!.jsonPrimitive.content
    private fun JsonObject.num(k: String) = this[k]!!.jsonPrimitive.long

    @Test
    fun `text token counts`() {
        val texts = vector("tokens.json")["texts"]!!.jsonArray
        assertTrue(texts.size >= 10)
        for (t in texts.map { it.jsonObject }) {
            for ((encoding, model) in listOf("o200k_base" to "openai/gpt-4o", "cl100k_base" to "openai/gpt-4")) {
                val c = countTextTokens(t.str("text"), model)
                assertEquals(t.num(encoding).toULong(), c.tokens, "${t.str("name")} / $encoding")
                assertTrue(c.exact, "${t.str("name")} / $encoding")
            }
        }
    }

    @Test
    fun `chat prompt tokens`() {
        val cases = vector("chat_tokens.json")["cases"]!!.jsonArray
        assertTrue(cases.size >= 10)
        var checked = 0
        for (case in cases.map { it.jsonObject }) {
            val req = case["request"]!!.jsonObject
            for ((model, expected) in case["expected_prompt_tokens"]!!.jsonObject) {
                val json = JsonObject(req + ("model" to JsonPrimitive(model))).toString()
                val c = client.countTokensJson(json)
                assertEquals(expected.jsonPrimitive.long.toULong(), c.tokens, "${case.str("name")} on $model")
                assertEquals(case["exact"]!!.jsonPrimitive.boolean, c.exact, "${case.str("name")} on $model: exact")
                checked++
            }
        }
        assertTrue(checked >= 30, "only $checked counts checked")
    }

    @Test
    fun `costs`() {
        val cases = vector("cost.json")["cases"]!!.jsonArray
        assertTrue(cases.size >= 10)
        for (case in cases.map { it.jsonObject }) {
            val u = case["usage"]!!.jsonObject
            val usage = Usage(
                promptTokens = u.num("prompt_tokens").toULong(),
                completionTokens = u.num("completion_tokens").toULong(),
                totalTokens = u.num("total_tokens").toULong(),
                cachedPromptTokens = u.num("cached_prompt_tokens").toULong(),
                cacheWriteTokens = u.num("cache_write_tokens").toULong(),
                reasoningTokens = u.num("reasoning_tokens").toULong(),
            )
            val o = case["options"]!!.jsonObject
            val cost = calculateCost(usage, case.str("model"), CostOptions(batch = o["batch"]!!.jsonPrimitive.boolean, cacheWrite1h = o["cache_write_1h"]!!.jsonPrimitive.boolean))
            val got = mapOf(
                "input_micros" to cost.inputMicros,
                "cached_input_micros" to cost.cachedInputMicros,
                "cache_write_micros" to cost.cacheWriteMicros,
                "output_micros" to cost.outputMicros,
                "reasoning_micros" to cost.reasoningMicros,
                "total_micros" to cost.totalMicros,
                "tier_above_input_tokens" to cost.tierAboveInputTokens,
            )
            for ((field, expected) in case["expected"]!!.jsonObject) {
                val want = if (expected is JsonNull) null else expected.jsonPrimitive.long.toULong()
                assertEquals(want, got[field], "${case.str("name")}: $field")
            }
        }
    }

    @Test
    fun `routing scores and tiers`() {
        val v = vector("routing.json")
        val tolerance = v["tolerance"]?.jsonPrimitive?.double ?: 1e-6
        val cases = v["cases"]!!.jsonArray
        assertTrue(cases.size >= 10)
        for (case in cases.map { it.jsonObject }) {
            val d = client.routeJson(case["request"]!!.toString())
            val want = case["score"]!!.jsonPrimitive.double
            assertTrue(abs(d.score!! - want) <= tolerance, "${case.str("name")}: score ${d.score} != $want")
            assertEquals(case.str("tier"), d.tier!!.name.lowercase(), case.str("name"))
        }
    }

    @Test
    fun `auto decisions name the builtin weights version`() {
        // routing_weights_version.json is checked against the core by bindings/ffi/tests/shim.rs.
        val builtin = vector("routing_weights_version.json").str("builtin_weights_version")
        val first = vector("routing.json")["cases"]!!.jsonArray[0].jsonObject
        val d = client.routeJson(first["request"]!!.toString())
        assertEquals(builtin, d.weightsVersion)
        assertEquals(null, d.learning) // no organization learning
        assertEquals(null, client.route(Support.request("openai/gpt-4o-mini", "hello")).weightsVersion)
    }
}
