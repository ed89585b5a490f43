//! Envelope format version 1: header, length-hiding padding, AES-256-GCM.
//!
//! ```text
//! offset  size  field
//! 0       3     magic "OTM"
//! 3       1     version = 1
//! 4       1     flags (bit 0: passphrase; other bits must be zero)
//! 5       12    nonce
//! 17      B     AES-256-GCM ciphertext of the padded block (B is a bucket size)
//! 17+B    16    GCM tag
//! ```
//! The 17 header bytes are the GCM associated data.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::{Zeroize, Zeroizing};

use crate::key::os_random;
use crate::secrets::Secrets;
use crate::{Error, Result};

/// The magic bytes every envelope starts with.
pub const MAGIC: [u8; 3] = *b"OTM";
/// The format version this library writes.
pub const VERSION: u8 = 1;
/// Header length of a version 1 envelope.
pub const HEADER_LEN: usize = 17;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of the big-endian message length that starts the padded block.
const LEN_PREFIX: usize = 4;

/// Most characters (Unicode scalar values) a message may have.
pub const MAX_MESSAGE_CHARS: usize = 8000;

/// Sizes of the padded block (length prefix + UTF-8 + zero bytes). A message
/// takes the smallest bucket that holds it, so its envelope reveals only which
/// of these eight sizes it fell into. 8000 characters of at most 4 UTF-8 bytes
/// each plus the prefix fit the last bucket.
pub const PADDING_BUCKETS: [usize; 8] = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768];

/// The smallest valid envelope length.
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + PADDING_BUCKETS[0] + TAG_LEN;
/// The largest valid envelope length: servers can reject bigger uploads
/// before reading or storing anything.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + PADDING_BUCKETS[7] + TAG_LEN;

/// Header flags of version 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// Bit 0: the content key also depends on a passphrase.
    pub const PASSPHRASE: u8 = 0x01;
    const KNOWN: u8 = Self::PASSPHRASE;

    /// Whether the message needs a passphrase.
    pub fn passphrase(self) -> bool {
        self.0 & Self::PASSPHRASE != 0
    }

    /// The raw flag byte.
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// A parsed envelope header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Header {
    /// A version 1 header.
    V1 {
        /// The flags.
        flags: Flags,
        /// The GCM nonce.
        nonce: [u8; NONCE_LEN],
    },
    /// A well-formed magic with a version this library does not know.
    Unknown {
        /// The version byte.
        version: u8,
    },
}

impl Header {
    /// Parses the header at the start of `bytes` (the rest is not looked at).
    pub fn parse(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < MAGIC.len() + 1 {
            return Err(Error::Truncated {
                len: bytes.len(),
                min: MIN_ENVELOPE_LEN,
            });
        }
        if bytes[..3] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = bytes[3];
        if version != VERSION {
            return Ok(Header::Unknown { version });
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                len: bytes.len(),
                min: MIN_ENVELOPE_LEN,
            });
        }
        let flags = bytes[4];
        if flags & !Flags::KNOWN != 0 {
            return Err(Error::UnknownFlags(flags));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[5..HEADER_LEN]);
        Ok(Header::V1 {
            flags: Flags(flags),
            nonce,
        })
    }
}

/// What a server can learn from an envelope without the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// Whether the reader will need a passphrase.
    pub passphrase: bool,
    /// The padded block size (the size bucket).
    pub bucket: usize,
}

/// Checks an envelope's structure without a key: magic, version, flags and a
/// length that is one of the padded sizes. Servers call it to refuse garbage
/// before storing anything.
///
/// ```
/// # use otm_core::{seal, validate, Key, Secrets, Error};
/// let secrets = Secrets::derive(&Key::generate()?, None);
/// let envelope = seal(&secrets, "hello")?;
/// assert_eq!(validate(&envelope)?.bucket, 256);
/// assert!(matches!(validate(b"nonsense"), Err(Error::BadMagic)));
/// # Ok::<(), otm_core::Error>(())
/// ```
pub fn validate(envelope: &[u8]) -> Result<EnvelopeInfo> {
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(Error::TooLarge {
            len: envelope.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    let flags = match Header::parse(envelope)? {
        Header::V1 { flags, .. } => flags,
        Header::Unknown { version } => return Err(Error::UnsupportedVersion(version)),
    };
    if envelope.len() < MIN_ENVELOPE_LEN {
        return Err(Error::Truncated {
            len: envelope.len(),
            min: MIN_ENVELOPE_LEN,
        });
    }
    let bucket = envelope.len() - HEADER_LEN - TAG_LEN;
    if !PADDING_BUCKETS.contains(&bucket) {
        return Err(Error::BadSize {
            len: envelope.len(),
        });
    }
    Ok(EnvelopeInfo {
        passphrase: flags.passphrase(),
        bucket,
    })
}

/// Counts characters the way the format does: Unicode scalar values (what
/// `str::chars` yields and what JavaScript's `Array.from(text).length` counts).
pub fn char_count(text: &str) -> usize {
    text.chars().count()
}

/// The bucket a message of `utf8_len` bytes is padded to.
pub fn bucket_for(utf8_len: usize) -> Option<usize> {
    PADDING_BUCKETS.iter().copied().find(|&b| {
        utf8_len
            .checked_add(LEN_PREFIX)
            .is_some_and(|need| b >= need)
    })
}

/// Seals a message with a fresh random nonce.
///
/// ```
/// use otm_core::{open, seal, Key, Passphrase, Secrets};
/// let key = Key::generate()?;
/// let secrets = Secrets::derive(&key, None);
/// let envelope = seal(&secrets, "the code is 1234")?;
/// assert_eq!(open(&secrets, &envelope)?.as_str(), "the code is 1234");
/// # Ok::<(), otm_core::Error>(())
/// ```
pub fn seal(secrets: &Secrets, message: &str) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    os_random(&mut nonce)?;
    seal_with_nonce(secrets, message, nonce)
}

/// Seals with a given nonce. Only test vectors may fix the nonce: reusing a
/// nonce under one key breaks GCM.
pub(crate) fn seal_with_nonce(
    secrets: &Secrets,
    message: &str,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    let block = pad(message)?;
    let flags = if secrets.has_passphrase() {
        Flags::PASSPHRASE
    } else {
        0
    };
    let mut out = Vec::with_capacity(HEADER_LEN + block.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&nonce);
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&out);
    out.extend_from_slice(&block);

    let cipher = Aes256Gcm::new(secrets.content_key().into());
    match cipher.encrypt_in_place_detached(
        Nonce::from_slice(&nonce),
        &header,
        &mut out[HEADER_LEN..],
    ) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            // Unreachable for these sizes; never leave plaintext behind.
            out.zeroize();
            Err(Error::DecryptionFailed)
        }
    }
}

/// Opens an envelope. The plaintext is returned in a buffer zeroized on drop.
///
/// Fails with [`Error::PassphraseRequired`] or [`Error::PassphraseNotExpected`]
/// when the secrets do not match the envelope's passphrase flag, and with the
/// single [`Error::DecryptionFailed`] for any wrong key, wrong passphrase or
/// altered byte.
pub fn open(secrets: &Secrets, envelope: &[u8]) -> Result<Zeroizing<String>> {
    let info = validate(envelope)?;
    let Header::V1 { nonce, .. } = Header::parse(envelope)? else {
        // validate() already refused other versions.
        return Err(Error::UnsupportedVersion(envelope[3]));
    };
    match (info.passphrase, secrets.has_passphrase()) {
        (true, false) => return Err(Error::PassphraseRequired),
        (false, true) => return Err(Error::PassphraseNotExpected),
        _ => {}
    }
    let (header, rest) = envelope.split_at(HEADER_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut block = Zeroizing::new(body.to_vec());
    let cipher = Aes256Gcm::new(secrets.content_key().into());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            header,
            block.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| Error::DecryptionFailed)?;
    unpad(&block)
}

/// The padded block of a message (section 6.2 of FORMAT.md): its UTF-8
/// length (4 bytes, big-endian), the text, and zeros up to the smallest
/// bucket that holds it. Fails for more than [`MAX_MESSAGE_CHARS`].
pub(crate) fn pad(message: &str) -> Result<Zeroizing<Vec<u8>>> {
    let chars = char_count(message);
    if chars > MAX_MESSAGE_CHARS {
        return Err(Error::MessageTooLong {
            chars,
            max: MAX_MESSAGE_CHARS,
        });
    }
    let text = message.as_bytes();
    // Cannot fail: 8000 scalar values are at most 32000 bytes.
    let bucket = bucket_for(text.len()).ok_or(Error::MessageTooLong {
        chars,
        max: MAX_MESSAGE_CHARS,
    })?;
    let mut block = Zeroizing::new(Vec::with_capacity(bucket));
    block.extend_from_slice(&(text.len() as u32).to_be_bytes());
    block.extend_from_slice(text);
    block.resize(bucket, 0);
    Ok(block)
}

/// The text of a decrypted padded block, checked as strictly as
/// [`open`] checks it (smallest bucket, zero padding, UTF-8, the limit).
pub(crate) fn unpad(block: &[u8]) -> Result<Zeroizing<String>> {
    if block.len() < LEN_PREFIX {
        return Err(Error::MalformedPlaintext {
            reason: "the padded block has no length prefix",
        });
    }
    let len = u32::from_be_bytes([block[0], block[1], block[2], block[3]]) as usize;
    if len > block.len() - LEN_PREFIX {
        return Err(Error::MalformedPlaintext {
            reason: "length prefix exceeds the padded block",
        });
    }
    if bucket_for(len) != Some(block.len()) {
        return Err(Error::MalformedPlaintext {
            reason: "message is not in the smallest bucket that holds it",
        });
    }
    let end = LEN_PREFIX + len;
    if block[end..].iter().any(|&b| b != 0) {
        return Err(Error::MalformedPlaintext {
            reason: "padding is not all zero",
        });
    }
    let text =
        std::str::from_utf8(&block[LEN_PREFIX..end]).map_err(|_| Error::MalformedPlaintext {
            reason: "message is not valid UTF-8",
        })?;
    let chars = char_count(text);
    if chars > MAX_MESSAGE_CHARS {
        return Err(Error::MessageTooLong {
            chars,
            max: MAX_MESSAGE_CHARS,
        });
    }
    Ok(Zeroizing::new(text.to_owned()))
}
