// The Kotlin suite: the generated bindings + the cdylib + the provider emulator, on the JVM.
package dev.gaterouter

import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.util.Collections
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.TimeoutCancellationException
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource

class GateRouterTest {
    companion object {
        private lateinit var emulator: Process
        private lateinit var base: String
        private val http: HttpClient = HttpClient.newHttpClient()

        @JvmStatic
        @BeforeAll
        fun startEmulator() {
            val bin = System.getProperty("gaterouter.emulator") ?: error("set -Dgaterouter.emulator")
            emulator = ProcessBuilder(bin, "--listen", "127.0.0.1:0")
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start()
            val banner = emulator.inputStream.bufferedReader().readLine() ?: error("emulator printed nothing")
            assertTrue(banner.startsWith("listening on "), "unexpected emulator banner: $banner")
            base = banner.removePrefix("listening on ").trim()
        }

        @JvmStatic
        @AfterAll
        fun stopEmulator() {
            emulator.destroy()
            if (!emulator.waitFor(5, TimeUnit.SECONDS)) emulator.destroyForcibly()
        }

        /** A TOML config pointing the four providers at the emulator. */
        fun toml(extra: String = ""): String = buildString {
            for ((name, kind, path) in listOf(
                Triple("openai", "openai", "/openai/v1"),
                Triple("anthropic", "anthropic", "/anthropic"),
                Triple("gemini", "gemini", "/gemini/v1beta"),
                Triple("deepseek", "openai", "/deepseek/v1"),
            )) {
                append("[providers.$name]\nkind = \"$kind\"\nbase_url = \"$base$path\"\napi_key = \"emulator-key\"\n\n")
            }
            append("[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n")
            append(extra)
        }

        fun fault(json: String) {
            val req = HttpRequest.newBuilder(URI.create("$base/_emulator/faults"))
                .header("content-type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json))
                .build()
            val resp = http.send(req, HttpResponse.BodyHandlers.ofString())
            assertTrue(resp.statusCode() < 300, "fault not queued: ${resp.statusCode()} ${resp.body()}")
        }

        fun user(text: String) = ChatMessage(role = Role.USER, content = text)

        fun request(model: String, text: String) = ChatRequest(model = model, messages = listOf(user(text)))

        val weather = Tool(
            name = "get_weather",
            description = "Weather for a city",
            parametersJson = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""",
        )

        val client: GateRouterClient by lazy { GateRouterClient.fromConfigToml(toml()) }
        val noRetry: GateRouterClient by lazy { GateRouterClient.fromConfigToml(toml("max_retries = 0\n")) }
    }

    /** Records every callback, and the thread it arrived on. */
    class Recorder : ChatStreamListener {
        val chunks: MutableList<ChatChunk> = Collections.synchronizedList(mutableListOf())
        val threads: MutableSet<String> = Collections.synchronizedSet(mutableSetOf())
        val done = CompletableFuture<Result<Usage?>>()
        var calls = 0

        override fun onChunk(chunk: ChatChunk) {
            threads += Thread.currentThread().name
            chunks += chunk
            calls++
        }

        override fun onComplete(usage: Usage?) {
            calls++
            done.complete(Result.success(usage))
        }

        override fun onError(error: GateRouterException) {
            calls++
            done.complete(Result.failure(error))
        }

        fun await(): Result<Usage?> = done.get(20, TimeUnit.SECONDS)
    }

    @ParameterizedTest
    @ValueSource(strings = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"])
    fun `chat answers through every provider`(model: String) = runBlocking {
        val resp = client.chat(request(model, "Why is the sky blue?"))
        assertEquals(model, resp.model)
        assertTrue(resp.text.contains("Why is the sky blue?"), resp.text)
        assertEquals(FinishReason.STOP, resp.finishReason)
        assertTrue(resp.usage.promptTokens > 0u && resp.usage.completionTokens > 0u)
        assertEquals(resp.usage.promptTokens + resp.usage.completionTokens, resp.usage.totalTokens)
        assertEquals(Role.ASSISTANT, resp.message.role)
        assertEquals(resp.text, resp.message.content)
    }

    @Test
    fun `options reach the provider`() = runBlocking {
        val resp = client.chat(
            ChatRequest(
                model = "openai/gpt-4o-mini",
                messages = listOf(ChatMessage(role = Role.SYSTEM, content = "be brief"), user("one two STOP three")),
                stop = listOf("STOP"),
                maxTokens = 50u,
                temperature = 0.2,
            ),
        )
        assertFalse(resp.text.contains("three"), resp.text)
        val short = client.chat(ChatRequest(model = "openai/gpt-4o-mini", messages = listOf(user("a long question ".repeat(20))), maxTokens = 3u))
        assertEquals(FinishReason.LENGTH, short.finishReason)
        assertEquals(3uL, short.usage.completionTokens)
    }

    @Test
    fun `json mode via responseFormatJson`() = runBlocking {
        val resp = client.chat(
            ChatRequest(
                model = "openai/gpt-4o-mini",
                messages = listOf(user("answer in json")),
                responseFormatJson = """{"type":"json_object"}""",
            ),
        )
        assertTrue(resp.text.trim().startsWith("{") && resp.text.contains("\"reply\""), resp.text)
    }

    @ParameterizedTest
    @ValueSource(strings = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"])
    fun `tool call round trip`(model: String) = runBlocking {
        val messages = mutableListOf(user("Weather in Paris?"))
        val first = client.chat(ChatRequest(model = model, messages = messages, tools = listOf(weather)))
        assertEquals(FinishReason.TOOL_CALLS, first.finishReason)
        val call = first.toolCalls.single()
        assertEquals("get_weather", call.name)
        assertTrue(call.arguments.contains("\"city\""), call.arguments)
        messages += first.message
        messages += ChatMessage(role = Role.TOOL, content = "18C", toolCallId = call.id)
        val second = client.chat(ChatRequest(model = model, messages = messages, tools = listOf(weather)))
        assertEquals(FinishReason.STOP, second.finishReason)
        assertTrue(second.text.contains("18C"), second.text)
    }

    @Test
    fun `images and tool choice convert to the core request`() = runBlocking {
        val plain = client.chat(request("openai/gpt-4o-mini", "what is this"))
        val withImage = client.chat(
            ChatRequest(
                model = "openai/gpt-4o-mini",
                messages = listOf(
                    ChatMessage(
                        role = Role.USER,
                        content = "what is this",
                        images = listOf(ImageInput(url = "data:image/png;base64,iVBORw0KGgo=", detail = ImageDetail.LOW)),
                    ),
                ),
            ),
        )
        // The emulator counts 85 prompt tokens per image part.
        assertEquals(plain.usage.promptTokens + 85u, withImage.usage.promptTokens)
        val noTools = client.chat(ChatRequest(model = "openai/gpt-4o-mini", messages = listOf(user("Weather?")), tools = listOf(weather), toolChoice = ToolChoice.Disabled))
        assertEquals(FinishReason.STOP, noTools.finishReason)
        assertTrue(noTools.toolCalls.isEmpty())
        val other = weather.copy(name = "get_time", parametersJson = """{"type":"object","properties":{}}""")
        val forced = client.chat(
            ChatRequest(model = "anthropic/claude-sonnet-4-5", messages = listOf(user("Weather?")), tools = listOf(weather, other), toolChoice = ToolChoice.Function("get_time")),
        )
        assertEquals("get_time", forced.toolCalls.single().name)
    }

    @Test
    fun `chatJson keeps full OpenAI fidelity`() = runBlocking {
        val out = client.chatJson(
            """{"model":"openai/gpt-4o-mini","messages":[{"role":"developer","content":"x"},
               {"role":"user","content":[{"type":"text","text":"hello json"}]}],"max_completion_tokens":40}""",
        )
        assertTrue(out.contains("\"object\":\"chat.completion\""), out)
        assertTrue(out.contains("hello json"), out)
        val e = assertThrows<GateRouterException.InvalidRequest> {
            runBlocking { client.chatJson("""{"model":"openai/gpt-4o","messages":[],"temprature":1}""") }
        }
        assertTrue(e.info.detail.contains("temprature"), e.info.detail)
    }

    @ParameterizedTest
    @ValueSource(strings = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "deepseek/deepseek-chat"])
    fun `stream via callback matches chat and ends with usage`(model: String) = runBlocking {
        val whole = client.chat(request(model, "Tell a fox story"))
        val rec = Recorder()
        val handle = client.chatStream(request(model, "Tell a fox story"), rec)
        val usage = rec.await().getOrThrow()
        assertEquals(whole.text, rec.chunks.joinToString("") { it.text ?: "" })
        val last = rec.chunks.last()
        assertNull(last.text)
        assertNotNull(last.usage)
        assertEquals(last.usage, usage)
        assertEquals(whole.usage.completionTokens, usage!!.completionTokens)
        assertEquals(FinishReason.STOP, rec.chunks.mapNotNull { it.finishReason }.single())
        // Callbacks run on the binding's worker threads (JNA attaches them as `Thread-N`),
        // never on the caller's thread.
        assertTrue(rec.threads.isNotEmpty())
        assertFalse(Thread.currentThread().name in rec.threads, rec.threads.toString())
        Thread.sleep(50)
        assertTrue(handle.isFinished())
    }

    @Test
    fun `chatFlow collects the stream`() = runBlocking {
        val chunks = client.chatFlow(request("anthropic/claude-sonnet-4-5", "flow please")).toList()
        assertTrue(chunks.joinToString("") { it.text ?: "" }.contains("flow please"))
        assertNotNull(chunks.last().usage)
    }

    @Test
    fun `streamed tool calls arrive as fragments`() {
        val rec = Recorder()
        client.chatStream(ChatRequest(model = "openai/gpt-4o-mini", messages = listOf(user("Weather?")), tools = listOf(weather)), rec)
        rec.await().getOrThrow()
        val deltas = rec.chunks.flatMap { it.toolCalls }
        assertEquals("get_weather", deltas.firstNotNullOf { it.name })
        assertTrue(deltas.joinToString("") { it.arguments ?: "" }.contains("\"city\""))
        assertEquals(FinishReason.TOOL_CALLS, rec.chunks.mapNotNull { it.finishReason }.single())
    }

    @Test
    fun `rate limit is typed with retry after`() {
        fault("""{"fault":"rate_limit","provider":"openai","times":1,"retry_after":2}""")
        val e = assertThrows<GateRouterException.RateLimited> {
            runBlocking { noRetry.chat(request("openai/gpt-4o", "x")) }
        }
        assertEquals("RATE_LIMITED", e.info.code)
        assertEquals("openai", e.info.provider)
        assertEquals(429.toUShort(), e.info.status)
        assertEquals(2000uL, e.info.retryAfterMs)
        assertNotNull(e.info.providerMessage, "the provider's own text")
        assertTrue(e.message!!.contains("RATE_LIMITED"), e.message)
    }

    @Test
    fun `close cancels a call in flight and refuses later calls`() = runBlocking {
        val c = GateRouterClient.fromConfigToml(toml())
        fault("""{"fault":"slow","provider":"deepseek","delay_ms":3000,"times":1}""")
        val call = async { runCatching { c.chat(request("deepseek/deepseek-chat", "x")) } }
        delay(200)
        val t0 = System.nanoTime()
        val report = c.close(0u)
        assertTrue(report.drained, report.toString())
        val e = call.await().exceptionOrNull()
        assertTrue(e is GateRouterException.ClientClosed && e.info.code == "CLIENT_CLOSED", "$e")
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 2_000, "the slow call was cut")
        val later = assertThrows<GateRouterException.ClientClosed> { runBlocking { c.chat(request("openai/gpt-4o", "x")) } }
        assertEquals("CLIENT_CLOSED", later.info.code)
        assertEquals(report, c.close(0u), "idempotent")
    }

    @ParameterizedTest
    @ValueSource(strings = ["openai", "anthropic", "gemini"])
    fun `provider errors map to their variant`(provider: String) {
        val model = mapOf("openai" to "openai/gpt-4o", "anthropic" to "anthropic/claude-haiku-4-5", "gemini" to "gemini/gemini-2.5-pro")[provider]!!
        val cases = listOf(
            "auth" to GateRouterException.Auth::class,
            "server_error" to GateRouterException.ProviderUnavailable::class,
            "context_length" to GateRouterException.ContextLengthExceeded::class,
            "bad_request" to GateRouterException.InvalidRequest::class,
            "malformed_json" to GateRouterException.InvalidResponse::class,
        )
        for ((kind, expected) in cases) {
            fault("""{"fault":"$kind","provider":"$provider","times":1}""")
            val e = assertThrows<GateRouterException> { runBlocking { noRetry.chat(request(model, "x")) } }
            assertEquals(expected, e::class, "$kind on $provider gave ${e.message}")
            val providerField = when (e) {
                is GateRouterException.Auth -> e.info.provider
                is GateRouterException.ProviderUnavailable -> e.info.provider
                is GateRouterException.ContextLengthExceeded -> e.info.provider
                is GateRouterException.InvalidRequest -> e.info.provider
                is GateRouterException.InvalidResponse -> e.info.provider
                else -> null
            }
            assertEquals(provider, providerField, "$kind on $provider")
            // Any error answers info() and code() without matching its kind.
            assertEquals(provider, e.info().provider, "$kind on $provider: info()")
            assertEquals(e.info().code, e.code())
        }
    }

    @Test
    fun `a cut stream ends with StreamInterrupted`() {
        // Directives in the prompt: slow_stream makes the emulator flush the first events
        // before the cut (else the cut can come before the headers, which is retried as a
        // connection failure). No retries, so a cut at connect time would show as such.
        val rec = Recorder()
        val prompt = "x [[emulator:slow_stream;delay_ms=20]] [[emulator:cut_stream;after_events=2]]"
        noRetry.chatStream(request("anthropic/claude-sonnet-4-5", prompt), rec)
        val err = rec.await().exceptionOrNull()
        assertTrue(err is GateRouterException.StreamInterrupted, "got $err")
    }

    @Test
    fun `stream open errors arrive through onError`() {
        fault("""{"fault":"rate_limit","provider":"gemini","times":1,"retry_after":1}""")
        val rec = Recorder()
        noRetry.chatStream(request("gemini/gemini-2.5-flash", "x"), rec)
        val err = rec.await().exceptionOrNull()
        assertTrue(err is GateRouterException.RateLimited, "got $err")
        assertEquals(1000uL, (err as GateRouterException.RateLimited).info.retryAfterMs)
        assertEquals(1, rec.calls)
    }

    @Test
    fun `timeouts are typed`() {
        val c = GateRouterClient.fromConfigToml(toml("max_retries = 0\n\n[timeouts]\nrequest_ms = 300\n"))
        fault("""{"fault":"slow","provider":"openai","delay_ms":2000,"times":1}""")
        assertThrows<GateRouterException.Timeout> { runBlocking { c.chat(request("openai/gpt-4o", "x")) } }
    }

    @Test
    fun `cancel stops a running stream without further callbacks`() {
        fault("""{"fault":"slow_stream","provider":"openai","delay_ms":150,"times":1}""")
        val rec = Recorder()
        val handle = client.chatStream(request("openai/gpt-4o", "a rather long prompt so that there are several chunks to stream"), rec)
        val deadline = System.nanoTime() + 10_000_000_000
        while (rec.chunks.isEmpty() && System.nanoTime() < deadline) Thread.sleep(10)
        assertTrue(rec.chunks.isNotEmpty(), "no chunk arrived")
        handle.cancel()
        handle.cancel() // idempotent
        val seen = rec.calls
        Thread.sleep(600)
        assertEquals(seen, rec.calls, "callbacks arrived after cancel()")
        assertFalse(rec.done.isDone)
        assertTrue(handle.isFinished())
    }

    @Test
    fun `a listener that throws ends its stream and nothing else`() {
        var calls = 0
        val handle = client.chatStream(request("openai/gpt-4o-mini", "a prompt long enough for several chunks of text"), object : ChatStreamListener {
            override fun onChunk(chunk: ChatChunk) {
                calls++
                throw IllegalStateException("app bug in onChunk")
            }
            override fun onComplete(usage: Usage?) { calls++ }
            override fun onError(error: GateRouterException) { calls++ }
        })
        val deadline = System.nanoTime() + 10_000_000_000
        while (!handle.isFinished() && System.nanoTime() < deadline) Thread.sleep(10)
        assertTrue(handle.isFinished())
        assertEquals(1, calls)
        // The runtime and the client are unaffected.
        runBlocking { assertTrue(client.chat(request("openai/gpt-4o-mini", "still alive")).text.contains("still alive")) }
    }

    @Test
    fun `cancelling the coroutine returns promptly`() {
        fault("""{"fault":"slow","provider":"openai","delay_ms":3000,"times":1}""")
        val started = System.nanoTime()
        assertThrows<TimeoutCancellationException> {
            runBlocking { withTimeout(200) { client.chat(request("openai/gpt-4o", "x")) } }
        }
        val ms = (System.nanoTime() - started) / 1_000_000
        assertTrue(ms < 2000, "cancellation took ${ms}ms")
    }

    @Test
    fun `invalid requests name the field`() {
        val empty = assertThrows<GateRouterException.InvalidRequest> {
            runBlocking { client.chat(ChatRequest(model = "openai/gpt-4o", messages = emptyList())) }
        }
        assertEquals("messages", empty.info.field)
        val hot = assertThrows<GateRouterException.InvalidRequest> {
            runBlocking { client.chat(ChatRequest(model = "openai/gpt-4o", messages = listOf(user("x")), temperature = 3.0)) }
        }
        assertEquals("temperature", hot.info.field)
        val badSchema = assertThrows<GateRouterException.InvalidRequest> {
            runBlocking { client.chat(ChatRequest(model = "openai/gpt-4o", messages = listOf(user("x")), tools = listOf(weather.copy(parametersJson = "{oops")))) }
        }
        assertEquals("tools[0].parameters_json", badSchema.info.field)
        // chatStream checks the request before it returns, on the caller's thread.
        val rec = Recorder()
        val streamErr = assertThrows<GateRouterException.InvalidRequest> {
            client.chatStream(ChatRequest(model = "openai/gpt-4o", messages = listOf(ChatMessage(role = Role.TOOL, content = "x"))), rec)
        }
        assertEquals("messages[0].tool_call_id", streamErr.info.field)
        assertEquals(0, rec.calls)
        val unknown = assertThrows<GateRouterException.InvalidRequest> {
            runBlocking { client.chat(request("nosuch/model", "x")) }
        }
        assertTrue(unknown.info.detail.contains("nosuch"), unknown.info.detail)
    }

    @Test
    fun `config errors are typed and name the problem`(@TempDir dir: File) {
        val bad = assertThrows<GateRouterException.Config> { GateRouterClient.fromConfigToml("[providers.openai]\nbase_urll = \"x\"\n") }
        assertTrue(bad.info.detail.contains("base_urll"), bad.info.detail)
        assertEquals("CONFIG", bad.info.code)
        val missing = assertThrows<GateRouterException.Config> { GateRouterClient.fromConfigFile(File(dir, "missing.toml").path) }
        assertTrue(missing.info.detail.contains("missing.toml"), missing.info.detail)
        assertThrows<GateRouterException.Config> { GateRouterClient.fromConfigJson("""{"retry": {"max_retries": "many"}}""") }

        val file = File(dir, "gaterouter.toml").apply { writeText(toml()) }
        val fromFile = GateRouterClient.fromConfigFile(file.path)
        val json = """{"providers":{"openai":{"kind":"openai","base_url":"$base/openai/v1","api_key":"emulator-key"}}}"""
        val fromJson = GateRouterClient.fromConfigJson(json)
        runBlocking {
            assertTrue(fromFile.chat(request("openai/gpt-4o-mini", "from file")).text.contains("from file"))
            assertTrue(fromJson.chat(request("openai/gpt-4o-mini", "from json")).text.contains("from json"))
        }
        fromFile.close()
        fromJson.close()
    }

    @Test
    fun `version is exposed`() {
        assertTrue(gaterouterVersion().matches(Regex("""\d+\.\d+\.\d+.*""")))
    }
}
