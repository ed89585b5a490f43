//! Key schedule: the link key and an optional passphrase become the content
//! key and the claim proof (see `docs/FORMAT.md`, "Key schedule").

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::key::{AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, Key};
use crate::{Error, Result};

/// PBKDF2-HMAC-SHA256 iterations for the passphrase in format version 1.
///
/// Fixed by the format (not stored in the envelope), so a tampered envelope
/// cannot make a reader burn CPU; changing it needs a new format version.
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Maximum passphrase length in Unicode scalar values (after NFC normalisation).
pub const MAX_PASSPHRASE_CHARS: usize = 1024;

pub(crate) const INFO_SALT: &[u8] = b"otm v1 passphrase salt";
pub(crate) const INFO_CONTENT: &[u8] = b"otm v1 content key";
pub(crate) const INFO_CLAIM: &[u8] = b"otm v1 claim proof";
pub(crate) const INFO_ACCESS: &[u8] = b"otm v1 access proof";

/// A passphrase, normalised to Unicode NFC so that the same words typed on
/// different systems give the same bytes. Zeroized on drop; `Debug` redacted.
///
/// ```
/// use otm_core::Passphrase;
/// assert!(Passphrase::new("correct horse").is_ok());
/// assert!(Passphrase::new("").is_err());
/// // "é" composed and decomposed are the same passphrase.
/// assert_eq!(
///     Passphrase::new("caf\u{e9}")?.as_str(),
///     Passphrase::new("cafe\u{301}")?.as_str()
/// );
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Normalises (NFC) and checks a passphrase: not empty, at most
    /// [`MAX_PASSPHRASE_CHARS`] characters.
    pub fn new(text: &str) -> Result<Self> {
        let normalized: String = text.nfc().collect();
        let chars = normalized.chars().count();
        let checked = if chars == 0 {
            Err(Error::BadPassphrase {
                reason: "it is empty",
            })
        } else if chars > MAX_PASSPHRASE_CHARS {
            Err(Error::BadPassphrase {
                reason: "it is longer than 1024 characters",
            })
        } else {
            Ok(())
        };
        let phrase = Passphrase(normalized);
        checked.map(|()| phrase)
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// Everything derived from a link key and optional passphrase: the AES-256-GCM
/// content key, the claim proof (key and passphrase) and the access proof
/// (key alone). Zeroized on drop.
///
/// Deriving with a passphrase runs PBKDF2 with [`PBKDF2_ITERATIONS`] rounds
/// (a few hundred milliseconds); derive once and reuse for claim and open.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    content_key: [u8; 32],
    claim: ClaimProof,
    access: AccessProof,
    #[zeroize(skip)]
    passphrase: bool,
}

impl Secrets {
    /// Runs the key schedule of format version 1.
    pub fn derive(key: &Key, passphrase: Option<&Passphrase>) -> Self {
        let mut ikm = Zeroizing::new(Vec::with_capacity(64));
        ikm.extend_from_slice(key.as_bytes());
        if let Some(phrase) = passphrase {
            let salt = passphrase_salt(key);
            let mut stretched = Zeroizing::new([0u8; 32]);
            pbkdf2::pbkdf2_hmac::<Sha256>(
                phrase.as_str().as_bytes(),
                &salt,
                PBKDF2_ITERATIONS,
                stretched.as_mut(),
            );
            ikm.extend_from_slice(stretched.as_ref());
        }
        let hk = Hkdf::<Sha256>::new(None, &ikm);
        let mut content_key = [0u8; 32];
        let mut claim = [0u8; 32];
        // 32-byte outputs are far below HKDF's 255*32 limit, so expand cannot fail.
        hk.expand(INFO_CONTENT, &mut content_key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(INFO_CLAIM, &mut claim)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        // The access proof comes from the key alone, so a reader who has the
        // link but mistypes the passphrase still proves the link (and spends
        // an attempt), while someone with only the ID proves nothing.
        let mut access = [0u8; 32];
        Hkdf::<Sha256>::new(None, key.as_bytes())
            .expand(INFO_ACCESS, &mut access)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let secrets = Secrets {
            content_key,
            claim: ClaimProof::from_array(claim),
            access: AccessProof::from_array(access),
            passphrase: passphrase.is_some(),
        };
        content_key.zeroize();
        claim.zeroize();
        access.zeroize();
        secrets
    }

    /// The proof a reader presents to the server to consume the message.
    pub fn claim_proof(&self) -> &ClaimProof {
        &self.claim
    }

    /// The verifier the creator uploads with the envelope.
    pub fn claim_verifier(&self) -> ClaimVerifier {
        self.claim.verifier()
    }

    /// The proof that the reader holds the link's key (the passphrase does
    /// not enter it): without it, a server answers as for an unknown message.
    pub fn access_proof(&self) -> &AccessProof {
        &self.access
    }

    /// The access verifier the creator uploads with the envelope.
    pub fn access_verifier(&self) -> AccessVerifier {
        self.access.verifier()
    }

    /// Whether a passphrase went into these secrets.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase
    }

    pub(crate) fn content_key(&self) -> &[u8; 32] {
        &self.content_key
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("passphrase", &self.passphrase)
            .finish_non_exhaustive()
    }
}

/// The PBKDF2 salt: 16 bytes of HKDF-SHA256 over the link key. Each key is
/// fresh and random, so each message gets its own salt without storing one.
pub(crate) fn passphrase_salt(key: &Key) -> [u8; 16] {
    let mut salt = [0u8; 16];
    Hkdf::<Sha256>::new(None, key.as_bytes())
        .expand(INFO_SALT, &mut salt)
        .expect("16 bytes is a valid HKDF-SHA256 output length");
    salt
}
