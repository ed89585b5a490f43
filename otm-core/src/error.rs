//! The one error type of `otm-core`.

/// Everything that can go wrong in `otm-core`.
///
/// Every failure of authenticated decryption (wrong key, wrong passphrase,
/// any altered byte) is the single opaque [`Error::DecryptionFailed`], so an
/// attacker learns nothing from which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope is shorter than the smallest valid envelope.
    #[error("envelope is truncated: {len} bytes, at least {min} are needed")]
    Truncated {
        /// Length that was given.
        len: usize,
        /// Smallest valid length.
        min: usize,
    },
    /// The envelope does not start with the otm magic bytes.
    #[error("not an otm envelope: the magic bytes are wrong")]
    BadMagic,
    /// The envelope has a version this library cannot read.
    #[error("unsupported envelope version {0} (this library reads version 1)")]
    UnsupportedVersion(u8),
    /// The header has flag bits this version does not define.
    #[error("envelope header has unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The envelope length is not one of the padded sizes (trailing or missing bytes).
    #[error("envelope length {len} is not a valid padded size")]
    BadSize {
        /// Length that was given.
        len: usize,
    },
    /// The envelope is larger than [`crate::MAX_ENVELOPE_LEN`].
    #[error("envelope of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Length that was given.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Authenticated decryption failed: wrong key, wrong passphrase, or altered bytes.
    #[error("decryption failed: wrong key or passphrase, or the envelope was altered")]
    DecryptionFailed,
    /// The decrypted plaintext does not follow the format (a broken sender).
    #[error("decrypted content is malformed: {reason}")]
    MalformedPlaintext {
        /// What is wrong.
        reason: &'static str,
    },
    /// The message has more characters than [`crate::MAX_MESSAGE_CHARS`].
    #[error("message has {chars} characters; the maximum is {max}")]
    MessageTooLong {
        /// Characters (Unicode scalar values) in the message.
        chars: usize,
        /// The maximum.
        max: usize,
    },
    /// The envelope is protected by a passphrase but none was given.
    #[error("this message is protected by a passphrase, but none was given")]
    PassphraseRequired,
    /// A passphrase was given for a message that has none.
    #[error("this message has no passphrase, but one was given")]
    PassphraseNotExpected,
    /// The passphrase is empty or too long.
    #[error("bad passphrase: {reason}")]
    BadPassphrase {
        /// What is wrong.
        reason: &'static str,
    },
    /// A key in text form could not be parsed.
    #[error("bad key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// A message ID in text form could not be parsed.
    #[error("bad message ID: {reason}")]
    BadId {
        /// What is wrong.
        reason: &'static str,
    },
    /// A claim proof or verifier in text form could not be parsed.
    #[error("bad claim value: {reason}")]
    BadClaim {
        /// What is wrong.
        reason: &'static str,
    },
    /// A management token in text form could not be parsed.
    #[error("bad management token: {reason}")]
    BadToken {
        /// What is wrong.
        reason: &'static str,
    },
    /// A share link could not be parsed.
    #[error("bad link: {reason}")]
    BadLink {
        /// What is wrong.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Rng(#[source] getrandom::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
