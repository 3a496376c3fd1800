//! Small helpers shared by handlers and the store: the clock in milliseconds, new
//! UUIDv7 ids, and the checks of client-given ids and Ed25519 public keys.

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

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    gaterouter::usage::unix_ms_now() as i64
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
