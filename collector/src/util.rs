//! Small helpers shared by handlers and the store: new UUIDv7 ids, and the checks of client-given ids and Ed25519 public keys; and the one
//! write of a new secret key file (`gaterouter admin keys`, `gaterouter keys new`).

use crate::error::ApiError;

/// Check a client-given id: 1..=128 bytes without control characters.
pub(crate) fn check_id(field: &str, v: &str) -> Result<(), ApiError> {
    if v.trim().is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1..=128 bytes without control characters"
        )));
    }
    Ok(())
}

/// A new UUIDv7 (time-ordered) id.
pub(crate) fn uuid_v7() -> String {
    gaterouter::usage::RecordId::new_v7().0
}

/// Check a base64 Ed25519 public key.
pub fn check_public_key(pk: &str) -> Result<(), ApiError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(pk.trim())
        .map_err(|_| {
            ApiError::bad_request(
                "`public_key` is not standard base64 (e.g. from `gaterouter keygen`)",
            )
        })?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| {
        ApiError::bad_request("`public_key` must decode to 32 bytes (an Ed25519 public key)")
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&arr)
        .map_err(|_| ApiError::bad_request("`public_key` is not a valid Ed25519 point"))?;
    Ok(())
}

/// Write a new secret file, readable by its owner only (mode 0600 on Unix); never
/// overwrites on Unix (`create_new`: an existing file is an `AlreadyExists` error).
pub fn write_secret_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_is_private_and_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_secret_file(&path, "seed").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "seed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let e = write_secret_file(&path, "other").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "seed");
        }
    }
}
