// Where the app keeps its usage-signing key. On iOS/macOS that is the Keychain; on Linux
// (where this example runs in CI) a file-backed stand-in with owner-only permissions.
import Foundation
#if canImport(Security)
import Security
#endif

/// The platform's secure store: small secrets by account name.
protocol SecureStore {
    /// The secret stored under `account`, or nil when there is none.
    func read(account: String) throws -> Data?
    /// Stores (or replaces) the secret under `account`.
    func write(account: String, secret: Data) throws
}

struct SecureStoreError: Error, CustomStringConvertible {
    let description: String
}

#if canImport(Security)
/// The Keychain: a generic password per account, readable after the first unlock, never
/// synced or backed up to another device.
struct KeychainStore: SecureStore {
    let service: String

    private func query(_ account: String) -> [String: Any] {
        [kSecClass as String: kSecClassGenericPassword, kSecAttrService as String: service, kSecAttrAccount as String: account]
    }

    func read(account: String) throws -> Data? {
        var q = query(account)
        q[kSecReturnData as String] = true
        q[kSecMatchLimit as String] = kSecMatchLimitOne
        var item: CFTypeRef?
        let status = SecItemCopyMatching(q as CFDictionary, &item)
        if status == errSecItemNotFound { return nil }
        guard status == errSecSuccess else { throw SecureStoreError(description: "Keychain read of \(account): OSStatus \(status)") }
        return item as? Data
    }

    func write(account: String, secret: Data) throws {
        SecItemDelete(query(account) as CFDictionary)
        var q = query(account)
        q[kSecValueData as String] = secret
        q[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
        let status = SecItemAdd(q as CFDictionary, nil)
        guard status == errSecSuccess else { throw SecureStoreError(description: "Keychain write of \(account): OSStatus \(status)") }
    }
}
#endif

/// Linux stand-in: one file per account in a directory only the owner can enter (0700),
/// each file 0600. Refuses to read a secret that other users could read, as ssh does.
struct FileSecureStore: SecureStore {
    let directory: URL

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    private func file(_ account: String) -> URL { directory.appendingPathComponent("\(account).secret") }

    func read(account: String) throws -> Data? {
        let path = file(account).path
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? 0o777
        guard mode & 0o077 == 0 else {
            throw SecureStoreError(description: "\(path) is readable by other users (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        return try Data(contentsOf: file(account))
    }

    func write(account: String, secret: Data) throws {
        let path = file(account).path
        guard FileManager.default.createFile(atPath: path, contents: secret, attributes: [.posixPermissions: 0o600]) else {
            throw SecureStoreError(description: "cannot write \(path)")
        }
    }
}

/// The store this platform offers.
func platformSecureStore() throws -> SecureStore {
    #if canImport(Security)
    return KeychainStore(service: "dev.gaterouter.example")
    #else
    let dir = ProcessInfo.processInfo.environment["GATEROUTER_EXAMPLE_STORE"]
        ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".gaterouter-example/secure-store").path
    return try FileSecureStore(directory: URL(fileURLWithPath: dir))
    #endif
}
