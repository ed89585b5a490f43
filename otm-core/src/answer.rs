//! What a server checks of requests for a secret without any key: the
//! sizes of the sealed note and answer, and an answer's structure
//! (FORMAT.md, section 14). Always built, so that a server and its store
//! need nothing of the request feature's cryptography.

use crate::envelope::{PADDING_BUCKETS, TAG_LEN};
use crate::{Error, Result};

/// The length of HPKE's `enc` in an answer (an X25519 public key).
const ENC_LEN: usize = 32;

/// The first three bytes of a sealed answer: `"OTA"` (otm answer).
pub const ANSWER_MAGIC: [u8; 3] = *b"OTA";
/// The answer format's version, byte 3 of a sealed answer.
pub const ANSWER_VERSION: u8 = 1;
/// Magic, version and `enc`: the bytes before the ciphertext.
pub const ANSWER_HEADER_LEN: usize = 4 + ENC_LEN;
/// The smallest sealed answer (the smallest bucket).
pub const MIN_ANSWER_LEN: usize = ANSWER_HEADER_LEN + PADDING_BUCKETS[0] + TAG_LEN;
/// The largest sealed answer (the largest bucket).
pub const MAX_ANSWER_LEN: usize = ANSWER_HEADER_LEN + PADDING_BUCKETS[7] + TAG_LEN;
/// The most characters a request's note may have.
pub const MAX_NOTE_CHARS: usize = 500;
/// The most UTF-8 bytes a request's note may have (500 characters of up to
/// four bytes).
pub const MAX_NOTE_BYTES: usize = 4 * MAX_NOTE_CHARS;
/// The padded block of a note: its length (4 bytes), the note, zeros; one
/// size for every note, so the stored note reveals nothing of its length.
pub const NOTE_BLOCK_LEN: usize = 2048;
/// A sealed note: nonce, padded block, tag.
pub const SEALED_NOTE_LEN: usize = 12 + NOTE_BLOCK_LEN + 16;
/// The path segment in front of the ID in a request link.
pub const REQUEST_PATH_PREFIX: &str = "/request/";
/// The path segment in front of the ID in a receive link.
pub const RECEIVE_PATH_PREFIX: &str = "/receive/";

/// Checks a sealed answer's structure without any key: length cap,
/// magic, version, a bucket size.
pub fn validate_answer(answer: &[u8]) -> Result<()> {
    if answer.len() > MAX_ANSWER_LEN {
        return Err(Error::TooLarge {
            len: answer.len(),
            max: MAX_ANSWER_LEN,
        });
    }
    if answer.len() < MIN_ANSWER_LEN {
        return Err(Error::Truncated {
            len: answer.len(),
            min: MIN_ANSWER_LEN,
        });
    }
    if answer[..3] != ANSWER_MAGIC {
        return Err(Error::BadMagic);
    }
    if answer[3] != ANSWER_VERSION {
        return Err(Error::UnsupportedVersion(answer[3]));
    }
    let block = answer.len() - ANSWER_HEADER_LEN - TAG_LEN;
    if !PADDING_BUCKETS.contains(&block) {
        return Err(Error::BadSize { len: answer.len() });
    }
    Ok(())
}
