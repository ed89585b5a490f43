//! Strict base64url (RFC 4648 §5, no padding) helpers shared by the text forms.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes exactly `N` bytes. The engine rejects padding, foreign characters
/// and non-canonical trailing bits, so every value has exactly one text form.
pub(crate) fn decode_exact<const N: usize>(text: &str) -> Result<[u8; N], &'static str> {
    let expected = encoded_len(N);
    if text.len() != expected {
        return Err(match text.len() < expected {
            true => "too short",
            false => "too long",
        });
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("contains a character outside the base64url alphabet");
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(n) if n == N => Ok(out),
        _ => Err("not canonical base64url"),
    }
}

/// Length of the unpadded base64url text for `n` bytes.
pub(crate) const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}
