// The first hour of a Kotlin user (issue 16), the twin of tests/first-hour/first_hour.py:
// a collector with examples/org.toml applied (the helpdesk bot's key made and pasted in),
// the SDK configured with README.md's minimal gaterouter.toml (the block marked
// `name=minimal-config`), one call through the emulator, and the record visible in the
// collector's analytics under the key's department. Then a wrong [identity] value must be a
// typed Config error naming the field.
package dev.gaterouter

import java.io.File
import java.net.ServerSocket
import java.net.URI
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FirstHourTest {
    private val admin = "kotlin-first-hour-admin-token"
    private val bin = File(System.getProperty("gaterouter.collector") ?: error("set -Dgaterouter.collector")).parentFile
    private val repo = File(System.getProperty("gaterouter.vectors") ?: error("set -Dgaterouter.vectors")).parentFile.parentFile
    private val dir: File = Files.createTempDirectory("gaterouter-first-hour").toFile()
    private val port = ServerSocket(0).use { it.localPort }
    private val url = "http://127.0.0.1:$port"
    private lateinit var collector: Process

    private fun cli(vararg args: String): String {
        val pb = ProcessBuilder(File(bin, "gaterouter").path, *args).directory(dir).redirectErrorStream(true)
        pb.environment().putAll(mapOf("GATEROUTER_ADMIN_TOKEN" to admin, "GATEROUTER_COLLECTOR_URL" to url))
        val p = pb.start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0) { "gaterouter ${args.joinToString(" ")} failed: $out" }
        return out
    }

    /** README.md's block marked `name=minimal-config`, with the emulator and collector ports of this run. */
    private fun readmeConfig(): String {
        val lines = File(repo, "README.md").readLines()
        val marker = lines.indexOfFirst { it.contains("readme-check:") && it.contains("name=minimal-config") }
        check(marker >= 0) { "README.md has no block marked name=minimal-config" }
        val body = lines.drop(marker + 2).takeWhile { !it.startsWith("```") }.joinToString("\n")
        val emulatorPort = URI.create(Support.emulator).port
        return body.replace("127.0.0.1:8787", "127.0.0.1:$port").replace("127.0.0.1:8080", "127.0.0.1:$emulatorPort")
            // A relative path is read from the process's working directory; an app passes an absolute one.
            .replace("signing_key_file = \"helpdesk.key\"", "signing_key_file = \"${File(dir, "helpdesk.key").path}\"")
    }

    @BeforeAll
    fun setUp() {
        val pb = ProcessBuilder(File(bin, "gaterouter-collector").path, "--listen", "127.0.0.1:$port", "--db", "sqlite://${File(dir, "acme.db").path}")
            .redirectErrorStream(true).redirectOutput(File(dir, "collector.log"))
        pb.environment()["GATEROUTER_COLLECTOR_ADMIN_TOKEN"] = admin
        collector = pb.start()
        Support.waitUntil("the collector on $url", 20_000) {
            check(collector.isAlive) { "the collector exited: ${File(dir, "collector.log").readText()}" }
            runCatching { get("/healthz").first == 200 }.getOrDefault(false)
        }
        // README.md, "Set up your organization": a key for the helpdesk bot, pasted into org.toml.
        val pub = Regex("public key.*: (\\S+)").find(cli("keys", "new", "--out", "helpdesk.key"))!!.groupValues[1]
        val org = File(repo, "examples/org.toml").readText()
        val pasted = Regex("(id = \"k_helpdesk_bot\"(?:\\n(?!\\[).*)*?\\npublic_key = )\"[^\"]*\"").replace(org) { it.groupValues[1] + "\"$pub\"" }
        check(pasted != org) { "k_helpdesk_bot's public_key not found in examples/org.toml" }
        File(dir, "org.toml").writeText(pasted)
        cli("admin", "apply", "org.toml")
    }

    @AfterAll
    fun tearDown() {
        collector.destroy()
        if (!collector.waitFor(5, TimeUnit.SECONDS)) collector.destroyForcibly()
        dir.deleteRecursively()
    }

    private fun get(path: String): Pair<Int, String> {
        val req = HttpRequest.newBuilder(URI.create(url + path)).header("authorization", "Bearer $admin").GET().build()
        val resp = Support.http.send(req, HttpResponse.BodyHandlers.ofString())
        return resp.statusCode() to resp.body()
    }

    private fun departmentCalls(): Map<String, Long> {
        val (s, body) = get("/v1/analytics/breakdown?org=acme&by=department")
        check(s == 200) { "breakdown: $s $body" }
        return Support.json(body).jsonObject["rows"]!!.jsonArray.associate {
            val row = it.jsonObject
            row["group"]!!.jsonPrimitive.content to row["calls"]!!.jsonPrimitive.long
        }
    }

    @Test
    fun `first call with the README's minimal config lands under the key's department`() = runBlocking {
        val file = File(dir, "gaterouter.toml").apply { writeText(readmeConfig()) }
        val client = GateRouterClient.fromConfigFile(file.path)   // as bindings/README.md
        val resp = client.chat(Support.request("openai/gpt-4o-mini", "Where is my parcel?"))
        assertTrue(resp.text.isNotEmpty())
        client.flush(10_000u)
        var calls = emptyMap<String, Long>()
        Support.waitUntil("the record under department support (analytics: $calls)", 15_000) {
            calls = departmentCalls(); calls["support"] == 1L
        }
        assertEquals(1L, calls["support"], "analytics by department: $calls")
        client.close()
    }

    @Test
    fun `a wrong identity value is a Config error naming the field`() = runBlocking {
        val wrong = readmeConfig().replace("[identity]\n", "[identity]\ndepartment = \"eng\"\n")
        val file = File(dir, "wrong.toml").apply { writeText(wrong) }
        val e = assertThrows<GateRouterException.Config> {
            // At client start, or at the first policy fetch: either way before an answer.
            val client = GateRouterClient.fromConfigFile(file.path)
            runBlocking { client.chat(Support.request("openai/gpt-4o-mini", "Where is my parcel?")) }
        }
        assertTrue(e.info.detail.contains("identity.department"), "the error names the field: ${e.info.detail}")
    }
}
