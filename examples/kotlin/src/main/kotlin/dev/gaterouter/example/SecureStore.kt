// Where the app keeps its usage-signing key. On Android: the Keystore (an AES key that never
// leaves it) wrapping the secret in the app's private files, e.g. androidx.security's
// EncryptedFile; on this JVM (where the example runs in CI) a file-backed stand-in with
// owner-only permissions.
package dev.gaterouter.example

import java.io.File
import java.nio.file.Files
import java.nio.file.attribute.PosixFilePermission
import java.nio.file.attribute.PosixFilePermissions

/** The platform's secure store: small secrets by account name. */
interface SecureStore {
    /** The secret stored under [account], or null when there is none. */
    fun read(account: String): ByteArray?

    /** Stores (or replaces) the secret under [account]. */
    fun write(account: String, secret: ByteArray)
}

/**
 * JVM stand-in: one file per account in a directory only the owner can enter (0700), each
 * file 0600. Refuses to read a secret that other users could read, as ssh does.
 */
class FileSecureStore(private val dir: File) : SecureStore {
    init {
        dir.mkdirs()
        Files.setPosixFilePermissions(dir.toPath(), PosixFilePermissions.fromString("rwx------"))
    }

    private fun file(account: String) = File(dir, "$account.secret")

    override fun read(account: String): ByteArray? {
        val f = file(account)
        if (!f.exists()) return null
        val perms = Files.getPosixFilePermissions(f.toPath())
        val others = perms - setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE)
        check(others.isEmpty()) { "${f.path} is readable by other users ($perms): chmod 600 it" }
        return f.readBytes()
    }

    override fun write(account: String, secret: ByteArray) {
        val f = file(account)
        f.delete()
        Files.createFile(f.toPath(), PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")))
        f.writeBytes(secret)
    }
}

/** The store this platform offers (Android: an EncryptedFile-backed store, see bindings/README.md). */
fun platformSecureStore(): SecureStore =
    FileSecureStore(File(System.getenv("GATEROUTER_EXAMPLE_STORE") ?: "${System.getProperty("user.home")}/.gaterouter-example/secure-store"))
