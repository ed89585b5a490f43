//! The link key, message IDs and claim values.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{b64, Error, Result};

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(Error::Rng)
}

/// The 256-bit random key that travels in the link fragment and never reaches the server.
///
/// It is zeroized on drop and its `Debug` output is redacted.
///
/// ```
/// let key = otm_core::Key::generate()?;
/// let text = key.to_base64url();
/// assert_eq!(text.len(), 43);
/// assert_eq!(format!("{key:?}"), "Key(..)");
/// let again = otm_core::Key::from_base64url(&text)?;
/// assert_eq!(again.as_bytes(), key.as_bytes());
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; Key::LEN]);

impl Key {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;
    /// Length of a key's base64url text form.
    pub const TEXT_LEN: usize = b64::encoded_len(Self::LEN);

    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut key = Key([0; Self::LEN]);
        os_random(&mut key.0)?;
        Ok(key)
    }

    /// A key from raw bytes (for test vectors and other clients).
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Key(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The key as unpadded base64url text (43 characters), zeroized on drop.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(&self.0))
    }

    /// Parses the 43-character unpadded base64url form strictly.
    pub fn from_base64url(text: &str) -> Result<Self> {
        b64::decode_exact::<{ Self::LEN }>(text)
            .map(Key)
            .map_err(|reason| Error::BadKey { reason })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A message's identifier on the server: 128 random bits, 22 base64url characters.
///
/// IDs are not secret on their own (the key is), but they are unguessable, and
/// the text form is parsed strictly so a malformed ID never reaches a store.
///
/// ```
/// use otm_core::MessageId;
/// let id = MessageId::generate()?;
/// let text = id.to_string();
/// assert_eq!(text.len(), MessageId::TEXT_LEN);
/// assert_eq!(text.parse::<MessageId>()?, id);
/// assert!("not-an-id".parse::<MessageId>().is_err());
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; MessageId::LEN]);

impl MessageId {
    /// Length of an ID in bytes.
    pub const LEN: usize = 16;
    /// Length of an ID's text form.
    pub const TEXT_LEN: usize = b64::encoded_len(Self::LEN);

    /// A fresh random ID from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut id = [0; Self::LEN];
        os_random(&mut id)?;
        Ok(MessageId(id))
    }

    /// An ID from raw bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        MessageId(bytes)
    }

    /// The raw ID bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&b64::encode(&self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        b64::decode_exact::<{ Self::LEN }>(text)
            .map(MessageId)
            .map_err(|reason| Error::BadId { reason })
    }
}

/// A secret proof and the verifier a store keeps for it (`SHA-256(proof)`),
/// compared in constant time. The two pairs of the format, claim and access,
/// share this shape and nothing else: neither can stand in for the other.
macro_rules! proof_and_verifier {
    (
        $(#[$proof_doc:meta])* proof $proof:ident,
        $(#[$verifier_doc:meta])* verifier $verifier:ident,
    ) => {
        $(#[$proof_doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $proof([u8; $proof::LEN]);

        impl $proof {
            /// Length in bytes.
            pub const LEN: usize = 32;
            /// Length of the text form.
            pub const TEXT_LEN: usize = b64::encoded_len(Self::LEN);

            // Without the feature `request` nothing derives an answer proof
            // (a server only parses and verifies them).
            #[cfg_attr(not(feature = "request"), allow(dead_code))]
            pub(crate) fn from_array(bytes: [u8; Self::LEN]) -> Self {
                $proof(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; Self::LEN] {
                &self.0
            }

            /// Unpadded base64url text (43 characters), zeroized on drop.
            pub fn to_base64url(&self) -> Zeroizing<String> {
                Zeroizing::new(b64::encode(&self.0))
            }

            /// Parses the unpadded base64url form strictly.
            pub fn from_base64url(text: &str) -> Result<Self> {
                b64::decode_exact::<{ Self::LEN }>(text)
                    .map($proof)
                    .map_err(|reason| Error::BadClaim { reason })
            }

            /// The verifier a store keeps for this proof: `SHA-256(proof)`.
            pub fn verifier(&self) -> $verifier {
                $verifier(Sha256::digest(self.0).into())
            }
        }

        impl fmt::Debug for $proof {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($proof), "(..)"))
            }
        }

        $(#[$verifier_doc])*
        #[derive(Clone, Copy)]
        pub struct $verifier([u8; $verifier::LEN]);

        impl $verifier {
            /// Length in bytes.
            pub const LEN: usize = 32;
            /// Length of the text form.
            pub const TEXT_LEN: usize = b64::encoded_len(Self::LEN);

            /// A verifier from raw bytes (as read back from a store).
            pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
                $verifier(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; Self::LEN] {
                &self.0
            }

            /// Unpadded base64url text (43 characters).
            pub fn to_base64url(&self) -> String {
                b64::encode(&self.0)
            }

            /// Parses the unpadded base64url form strictly.
            pub fn from_base64url(text: &str) -> Result<Self> {
                b64::decode_exact::<{ Self::LEN }>(text)
                    .map($verifier)
                    .map_err(|reason| Error::BadClaim { reason })
            }

            /// Checks a proof in constant time.
            pub fn verify(&self, proof: &$proof) -> bool {
                let candidate: [u8; 32] = Sha256::digest(proof.as_bytes()).into();
                bool::from(self.0.ct_eq(&candidate))
            }
        }

        impl fmt::Debug for $verifier {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($verifier), "({})"), b64::encode(&self.0))
            }
        }
    };
}

proof_and_verifier! {
    /// The value a reader presents to consume a message, derived from the link
    /// key and the passphrase when one is set. A wrong one (with the right
    /// [`AccessProof`]) counts as a failed attempt. Secret: zeroized on drop,
    /// `Debug` redacted.
    proof ClaimProof,
    /// What the server stores to check a [`ClaimProof`]: `SHA-256(proof)`.
    ///
    /// It has no `==`: compare proofs only with [`ClaimVerifier::verify`], which
    /// runs in constant time.
    ///
    /// Knowing the verifier does not let anyone compute the proof, so a leaked
    /// database cannot be used to consume messages.
    ///
    /// ```
    /// # use otm_core::{Key, Secrets};
    /// let secrets = Secrets::derive(&Key::generate()?, None);
    /// let verifier = secrets.claim_verifier();
    /// assert!(verifier.verify(secrets.claim_proof()));
    /// let other = Secrets::derive(&Key::generate()?, None);
    /// assert!(!verifier.verify(other.claim_proof()));
    /// # Ok::<(), otm_core::Error>(())
    /// ```
    verifier ClaimVerifier,
}

proof_and_verifier! {
    /// The value that shows a reader holds the link's key, derived from the key
    /// alone (never from the passphrase). Without it a store answers as for an
    /// unknown message: nothing is counted, burned or revealed, so knowing a
    /// message ID (it is in the URL path, and so in proxy logs and link
    /// previews) is not enough to destroy the message. Secret: zeroized on
    /// drop, `Debug` redacted.
    proof AccessProof,
    /// What the server stores to check an [`AccessProof`]: `SHA-256(proof)`.
    ///
    /// It has no `==`: compare only with [`AccessVerifier::verify`], which
    /// runs in constant time.
    ///
    /// ```
    /// # use otm_core::{Key, Passphrase, Secrets};
    /// let key = Key::generate()?;
    /// let secrets = Secrets::derive(&key, None);
    /// let verifier = secrets.access_verifier();
    /// assert!(verifier.verify(secrets.access_proof()));
    /// // The passphrase does not enter it.
    /// let with = Secrets::derive(&key, Some(&Passphrase::new("correct horse")?));
    /// assert!(verifier.verify(with.access_proof()));
    /// # Ok::<(), otm_core::Error>(())
    /// ```
    verifier AccessVerifier,
}

proof_and_verifier! {
    /// The value that shows a responder holds a request link: derived from
    /// the link's answer token, presented to read the request and to answer
    /// it. Without it a store answers as for an unknown request. Secret:
    /// zeroized on drop, `Debug` redacted.
    proof AnswerProof,
    /// What the server stores to check an [`AnswerProof`]: `SHA-256(proof)`.
    /// It has no `==`: compare only with [`AnswerVerifier::verify`], which
    /// runs in constant time.
    verifier AnswerVerifier,
}

/// The sender's secret for managing a message (status, burn): 256 random
/// bits, shown once at create. The server keeps only its
/// [`ManageToken::verifier`] (SHA-256) and checks it in constant time.
/// Zeroized on drop; `Debug` redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ManageToken([u8; ManageToken::LEN]);

impl ManageToken {
    /// Length in bytes.
    pub const LEN: usize = 32;
    /// Length of the text form.
    pub const TEXT_LEN: usize = b64::encoded_len(Self::LEN);

    /// A fresh token from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut token = ManageToken([0; Self::LEN]);
        os_random(&mut token.0)?;
        Ok(token)
    }

    /// Unpadded base64url text (43 characters), zeroized on drop.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(&self.0))
    }

    /// Parses the unpadded base64url form strictly.
    pub fn from_base64url(text: &str) -> Result<Self> {
        b64::decode_exact::<{ Self::LEN }>(text)
            .map(ManageToken)
            .map_err(|reason| Error::BadToken { reason })
    }

    /// `SHA-256(token)`, what a store keeps. It checks a presented token
    /// with [`ManageVerifier::verify`].
    pub fn verifier(&self) -> ManageVerifier {
        ManageVerifier(Sha256::digest(self.0).into())
    }
}

impl PartialEq for ManageToken {
    /// In constant time.
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for ManageToken {}

/// A sender's long-lived secret (such as an API token) from which the
/// management token of each message it creates is derived:
/// `HMAC-SHA256(secret, "otm manage token v1" || 0x00 || id)` (the ID as its
/// 16 bytes). A server that
/// lets one credential manage the messages it created keeps, as always,
/// only each message's [`ManageVerifier`], and derives the token again from
/// the credential on status or burn; nothing about the credential is
/// stored with the message. Whoever holds the secret can derive the token
/// of any message created under it. Zeroized on drop; `Debug` redacted.
///
/// ```
/// # use otm_core::{ManageSecret, MessageId};
/// let secret = ManageSecret::new(b"otm_an-api-token-of-enough-length")?;
/// let (a, b) = (MessageId::generate()?, MessageId::generate()?);
/// let verifier = secret.token_for(&a).verifier();
/// assert!(verifier.verify(&secret.token_for(&a)));
/// assert!(!verifier.verify(&secret.token_for(&b)));
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ManageSecret(Vec<u8>);

impl ManageSecret {
    /// The shortest secret accepted, in bytes (128 bits of a random token).
    pub const MIN_LEN: usize = 16;

    /// A secret from `bytes`: at least [`MIN_LEN`](Self::MIN_LEN) bytes,
    /// which should be random (an API token is).
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::BadToken {
                reason: "a management secret must be at least 16 bytes",
            });
        }
        Ok(ManageSecret(bytes.to_vec()))
    }

    /// Length in bytes of a secret made by [`generate`](Self::generate)
    /// (a group's, FORMAT.md §9.6).
    pub const GENERATED_LEN: usize = 32;

    /// A fresh secret of [`GENERATED_LEN`](Self::GENERATED_LEN) bytes from
    /// the operating system's random number generator (a group's: each
    /// member's token derives from it).
    pub fn generate() -> Result<Self> {
        let mut bytes = vec![0; Self::GENERATED_LEN];
        os_random(&mut bytes)?;
        Ok(ManageSecret(bytes))
    }

    /// Unpadded base64url text, zeroized on drop.
    pub fn to_base64url(&self) -> Zeroizing<String> {
        Zeroizing::new(b64::encode(&self.0))
    }

    /// Parses the unpadded base64url form of a generated secret
    /// ([`GENERATED_LEN`](Self::GENERATED_LEN) bytes) strictly.
    pub fn from_base64url(text: &str) -> Result<Self> {
        let bytes = b64::decode_exact::<{ Self::GENERATED_LEN }>(text)
            .map_err(|reason| Error::BadToken { reason })?;
        let secret = ManageSecret(bytes.to_vec());
        let mut bytes = bytes;
        bytes.zeroize();
        Ok(secret)
    }

    /// The management token of message `id` under this secret.
    pub fn token_for(&self, id: &MessageId) -> ManageToken {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"otm manage token v1\0");
        mac.update(id.as_bytes());
        ManageToken(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for ManageSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManageSecret(..)")
    }
}

impl PartialEq for ManageSecret {
    /// In constant time (for equal lengths).
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for ManageSecret {}

impl fmt::Debug for ManageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManageToken(..)")
    }
}

/// What a store keeps to check a [`ManageToken`]: `SHA-256(token)`. Its own
/// type, so a management verifier can never stand in for a claim verifier
/// (or the other way round).
///
/// It has no `==`: check tokens only with [`ManageVerifier::verify`], which
/// runs in constant time.
///
/// ```
/// # use otm_core::ManageToken;
/// let token = ManageToken::generate()?;
/// let verifier = token.verifier();
/// assert!(verifier.verify(&token));
/// assert!(!verifier.verify(&ManageToken::generate()?));
/// # Ok::<(), otm_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct ManageVerifier([u8; ManageVerifier::LEN]);

impl ManageVerifier {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// A verifier from raw bytes (as read back from a store).
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        ManageVerifier(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// Unpadded base64url text (43 characters).
    pub fn to_base64url(&self) -> String {
        b64::encode(&self.0)
    }

    /// Parses the unpadded base64url form strictly.
    pub fn from_base64url(text: &str) -> Result<Self> {
        b64::decode_exact::<{ Self::LEN }>(text)
            .map(ManageVerifier)
            .map_err(|reason| Error::BadToken { reason })
    }

    /// Checks a management token in constant time.
    pub fn verify(&self, token: &ManageToken) -> bool {
        let candidate: [u8; 32] = Sha256::digest(token.0).into();
        bool::from(self.0.ct_eq(&candidate))
    }
}

impl fmt::Debug for ManageVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManageVerifier({})", b64::encode(&self.0))
    }
}
