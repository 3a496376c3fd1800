// Shared by the mobile and vector suites: the provider emulator and a real usage collector
// (target/debug/gaterouter-collector on SQLite), started once per JVM and stopped at exit.
package dev.gaterouter

import java.io.File
import java.net.ServerSocket
import java.net.URI
import java.net.URLEncoder
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.security.KeyPairGenerator
import java.util.Base64
import java.util.concurrent.TimeUnit
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.long
import org.junit.jupiter.api.Assertions.assertTrue

object Support {
    val http: HttpClient = HttpClient.newHttpClient()

    private fun stopAtExit(p: Process) {
        Runtime.getRuntime().addShutdownHook(Thread {
            p.destroy()
            if (!p.waitFor(5, TimeUnit.SECONDS)) p.destroyForcibly()
        })
    }

    /** Base URL of the provider emulator. */
    val emulator: String by lazy {
        val bin = System.getProperty("gaterouter.emulator") ?: error("set -Dgaterouter.emulator")
        val p = ProcessBuilder(bin, "--listen", "127.0.0.1:0").redirectError(ProcessBuilder.Redirect.DISCARD).start()
        stopAtExit(p)
        val banner = p.inputStream.bufferedReader().readLine() ?: error("emulator printed nothing")
        banner.removePrefix("listening on ").trim()
    }

    /** The four providers pointed at `base`, plus `extra` TOML. */
    fun toml(base: String = emulator, extra: String = ""): String = buildString {
        for ((name, kind, path) in listOf(
            Triple("openai", "openai", "/openai/v1"),
            Triple("anthropic", "anthropic", "/anthropic"),
            Triple("gemini", "gemini", "/gemini/v1beta"),
            Triple("deepseek", "openai", "/deepseek/v1"),
        )) {
            append("[providers.$name]\nkind = \"$kind\"\nbase_url = \"$base$path\"\napi_key = \"emulator-key\"\n\n")
        }
        append("[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\n")
        append(extra)
    }

    fun user(text: String) = ChatMessage(role = Role.USER, content = text)

    fun request(model: String, text: String, maxTokens: UInt? = null) =
        ChatRequest(model = model, messages = listOf(user(text)), maxTokens = maxTokens)

    fun json(text: String): JsonElement = Json.parseToJsonElement(text)

    /** A JSON vector file from tests/vectors. */
    fun vector(name: String): JsonObject {
        val dir = System.getProperty("gaterouter.vectors") ?: error("set -Dgaterouter.vectors")
        return json(File(dir, name).readText()).jsonObject
    }

    /** Poll `cond` every 20 ms for up to `ms`. */
    fun waitUntil(what: String, ms: Long, cond: () -> Boolean) {
        val end = System.nanoTime() + ms * 1_000_000
        while (!cond()) {
            check(System.nanoTime() < end) { "timed out after ${ms}ms waiting for $what" }
            Thread.sleep(20)
        }
    }
}

/** An Ed25519 key made by the JDK, as an app would keep it: the raw seed and the public key. */
class AppKey {
    val seed: ByteArray
    val publicKeyBase64: String

    init {
        val kp = KeyPairGenerator.getInstance("Ed25519").generateKeyPair()
        // PKCS#8 of Ed25519 ends with the 32-byte seed; X.509 SubjectPublicKeyInfo with the key.
        seed = kp.private.encoded.takeLast(32).toByteArray()
        publicKeyBase64 = Base64.getEncoder().encodeToString(kp.public.encoded.takeLast(32).toByteArray())
    }
}

/** The real collector on SQLite in a temp dir, with org `acme`. */
object Collector {
    const val ADMIN = "kotlin-suite-admin-token"

    val url: String by lazy {
        val bin = System.getProperty("gaterouter.collector") ?: error("set -Dgaterouter.collector")
        val dir = Files.createTempDirectory("gaterouter-collector").toFile()
        val port = ServerSocket(0).use { it.localPort }
        val pb = ProcessBuilder(bin, "--listen", "127.0.0.1:$port", "--db", "sqlite://${File(dir, "c.db").path}")
            .redirectErrorStream(true)
            .redirectOutput(File(dir, "collector.log"))
        pb.environment()["GATEROUTER_COLLECTOR_ADMIN_TOKEN"] = ADMIN
        val p = pb.start()
        Runtime.getRuntime().addShutdownHook(Thread {
            p.destroy()
            if (!p.waitFor(5, TimeUnit.SECONDS)) p.destroyForcibly()
            dir.deleteRecursively()
        })
        val base = "http://127.0.0.1:$port"
        Support.waitUntil("the collector on $base (log: ${dir.path}/collector.log)", 20_000) {
            check(p.isAlive) { "the collector exited: ${File(dir, "collector.log").readText()}" }
            runCatching { get(base, "/healthz").first == 200 }.getOrDefault(false)
        }
        val (s, v) = post(base, "/v1/admin/orgs", """{"id":"acme","name":"Acme"}""")
        assertTrue(s in 200..201, "org not created: $s $v")
        // Records naming a member must name a registered one (the collector checks the tree).
        val (us, uv) = post(base, "/v1/admin/users", """{"id":"alice","org_id":"acme"}""")
        assertTrue(us in 200..201, "user not created: $us $uv")
        base
    }

    private fun get(base: String, path: String): Pair<Int, String> {
        val req = HttpRequest.newBuilder(URI.create(base + path)).header("authorization", "Bearer $ADMIN").GET().build()
        val resp = Support.http.send(req, HttpResponse.BodyHandlers.ofString())
        return resp.statusCode() to resp.body()
    }

    private fun post(base: String, path: String, body: String): Pair<Int, String> {
        val req = HttpRequest.newBuilder(URI.create(base + path))
            .header("authorization", "Bearer $ADMIN")
            .header("content-type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build()
        val resp = Support.http.send(req, HttpResponse.BodyHandlers.ofString())
        return resp.statusCode() to resp.body()
    }

    /** Set org acme's routing learning settings (`PUT /v1/admin/orgs/acme/routing`). */
    fun putRouting(body: String) {
        val req = HttpRequest.newBuilder(URI.create("$url/v1/admin/orgs/acme/routing"))
            .header("authorization", "Bearer $ADMIN")
            .header("content-type", "application/json")
            .PUT(HttpRequest.BodyPublishers.ofString(body))
            .build()
        val resp = Support.http.send(req, HttpResponse.BodyHandlers.ofString())
        assertTrue(resp.statusCode() == 200, "routing settings: ${resp.statusCode()} ${resp.body()}")
    }

    /** Register an API key of org acme with the app key's public half. */
    fun registerKey(id: String, key: AppKey) {
        val (s, v) = post(url, "/v1/admin/keys", """{"id":"$id","org_id":"acme","public_key":"${key.publicKeyBase64}"}""")
        assertTrue(s in 200..201, "key not created: $s $v")
    }

    /** Calls the collector has stored for one API key (analytics summary). */
    fun calls(keyId: String): Long {
        val (s, body) = get(url, "/v1/analytics/summary?key=" + URLEncoder.encode(keyId, "UTF-8"))
        check(s == 200) { "summary: $s $body" }
        val rows = Support.json(body).jsonObject["rows"]!!.jsonArray
        return rows.sumOf { it.jsonObject["calls"]!!.jsonPrimitive.long }
    }

    /** (rated calls, mean score) of one key's calls, from the outcomes analytics. */
    fun outcomes(keyId: String): Pair<Long, Double?> {
        val (s, body) = get(url, "/v1/analytics/outcomes?by=key&key=" + URLEncoder.encode(keyId, "UTF-8"))
        check(s == 200) { "outcomes: $s $body" }
        val row = Support.json(body).jsonObject["rows"]!!.jsonArray.firstOrNull()?.jsonObject ?: return 0L to null
        val mean = row["mean_score"]!!.jsonPrimitive.content.toDoubleOrNull()
        return row["rated_calls"]!!.jsonPrimitive.long to mean
    }

    /** Users seen for one key, from the per-user analytics. */
    fun users(keyId: String): List<String> {
        val (s, body) = get(url, "/v1/analytics/users?key=" + URLEncoder.encode(keyId, "UTF-8"))
        check(s == 200) { "users: $s $body" }
        return Support.json(body).jsonObject["rows"]!!.jsonArray.map { it.jsonObject["user"]!!.jsonPrimitive.content }
    }
}
