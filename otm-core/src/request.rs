//! Requests for a secret: someone asks, someone answers, and only the one
//! who asked can read the answer (FORMAT.md, section 14).
//!
//! The asker makes a [`ReceiveSecret`], which never leaves their side (it
//! travels only in the private receive link's fragment). From it come the
//! public key the answer is sealed to ([`RequestPublicKey`], in the request
//! link's fragment, with a short [`fingerprint`](RequestPublicKey::fingerprint)
//! to compare over another channel) and the secrets whose proofs take the
//! answer once from the server, like any message
//! ([`ReceiveSecret::answer_secrets`]).
//!
//! The answer is sealed with HPKE (RFC 9180, base mode, DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256, AES-128-GCM) to that key, with the request's ID, the format version
//! and a hash of the request's note bound into the key schedule (`info`),
//! so an answer cannot be moved to another request. Its text is padded to
//! the same buckets as a message and limited to the same 8000 characters.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;

use crate::answer::{
    validate_answer, ANSWER_HEADER_LEN, ANSWER_MAGIC, ANSWER_VERSION, MAX_NOTE_BYTES,
    MAX_NOTE_CHARS, NOTE_BLOCK_LEN, RECEIVE_PATH_PREFIX, REQUEST_PATH_PREFIX, SEALED_NOTE_LEN,
};
use crate::envelope::{char_count, pad, unpad};
use crate::hpke::{self, HpkeError, KeyPair, PUBLIC_KEY_LEN, TAG_LEN};
use crate::key::os_random;
use crate::link::{bad, check_base};
use crate::{b64, AnswerProof, Error, Key, MessageId, Passphrase, Result, Secrets};

/// A 32-byte secret of the request format: zeroized on drop, `Debug`
/// redacted, unpadded base64url in links (a malformed one is `$error`).
macro_rules! secret_32 {
    ($(#[$doc:meta])* $name:ident, $error:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Zeroizing<[u8; 32]>);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl $name {
            /// The length in bytes.
            pub const LEN: usize = 32;

            /// The value of these bytes.
            pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
                $name(Zeroizing::new(bytes))
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; Self::LEN] {
                &self.0
            }

            /// Unpadded base64url, as in the links.
            pub fn to_base64url(&self) -> Zeroizing<String> {
                Zeroizing::new(b64::encode(self.0.as_ref()))
            }

            /// Parses unpadded base64url of exactly 32 bytes.
            pub fn from_base64url(text: &str) -> Result<Self> {
                let bytes = b64::decode_exact::<{ Self::LEN }>(text)
                    .map_err(|reason| Error::$error { reason })?;
                Ok($name(Zeroizing::new(bytes)))
            }
        }
    };
}

secret_32! {
    /// The asker's secret: 32 random bytes that give the key pair answers
    /// are sealed to and the proofs that take the answer.
    ReceiveSecret, BadKey
}

/// HKDF-SHA256 of the receive secret (no salt) under `label`.
fn expand(secret: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, secret)
        .expand(label, out.as_mut())
        .expect("32 bytes");
    out
}

impl ReceiveSecret {
    /// A fresh secret from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        os_random(bytes.as_mut())?;
        Ok(ReceiveSecret(bytes))
    }

    /// The answer token of the request link: HKDF(secret, "otm request v1
    /// answer token"), so the asker can always make the link again.
    pub fn answer_token(&self) -> AnswerToken {
        AnswerToken(expand(&self.0, b"otm request v1 answer token"))
    }

    /// The X25519 key pair answers are sealed to: HPKE's `DeriveKeyPair` of
    /// HKDF(secret, "otm request v1 kem").
    fn key_pair(&self) -> KeyPair {
        hpke::derive_key_pair(expand(&self.0, b"otm request v1 kem").as_ref())
    }

    /// The public key answers are sealed to (the request link carries it).
    pub fn public_key(&self) -> RequestPublicKey {
        RequestPublicKey(self.key_pair().public.to_bytes())
    }

    /// The secrets of the answer as a stored message: the asker registers
    /// their access and claim verifiers when asking, and takes the answer
    /// with their proofs; their content key is not used (the answer is
    /// sealed with HPKE). The key is HKDF(secret, "otm request v1 answer
    /// key"); a passphrase, if any, goes in as for a message.
    pub fn answer_secrets(&self, passphrase: Option<&Passphrase>) -> Secrets {
        let key = Key::from_bytes(*expand(&self.0, b"otm request v1 answer key"));
        Secrets::derive(&key, passphrase)
    }

    /// Opens a sealed answer to the request `request_id` whose note is
    /// `note` ("" for none). Any wrong secret, request, note or altered
    /// byte is the one [`Error::DecryptionFailed`].
    pub fn open_answer(
        &self,
        request_id: &MessageId,
        note: &str,
        answer: &[u8],
    ) -> Result<Zeroizing<String>> {
        validate_answer(answer)?;
        let (header, ciphertext) = answer.split_at(ANSWER_HEADER_LEN);
        let mut enc = [0u8; PUBLIC_KEY_LEN];
        enc.copy_from_slice(&header[4..]);
        let pair = self.key_pair();
        let mut context = hpke::setup_recipient(&enc, &pair, &info(request_id, note))
            .map_err(|_| Error::DecryptionFailed)?;
        let block = context
            .open(header, ciphertext)
            .map_err(|_| Error::DecryptionFailed)?;
        unpad(&block)
    }
}

/// The asker's public key, from the request link: what answers are sealed to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestPublicKey([u8; PUBLIC_KEY_LEN]);

impl std::fmt::Debug for RequestPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestPublicKey({})", self.fingerprint())
    }
}

/// The alphabet of fingerprints: RFC 4648 base32, upper case.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl RequestPublicKey {
    /// The length in bytes.
    pub const LEN: usize = PUBLIC_KEY_LEN;

    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        RequestPublicKey(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// Unpadded base64url, as in the request link.
    pub fn to_base64url(&self) -> String {
        b64::encode(&self.0)
    }

    /// Parses unpadded base64url of exactly 32 bytes.
    pub fn from_base64url(text: &str) -> Result<Self> {
        b64::decode_exact::<{ Self::LEN }>(text)
            .map(RequestPublicKey)
            .map_err(|reason| Error::BadKey { reason })
    }

    /// A short fingerprint both people can compare over another channel:
    /// the first 80 bits of SHA-256("otm request fingerprint v1" || key), in
    /// base32, as four groups of four (`"K7QM-2XDA-…"`).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"otm request fingerprint v1")
            .chain_update(self.0)
            .finalize();
        let bits = digest[..10]
            .iter()
            .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
        let mut out = String::with_capacity(19);
        for i in 0..16 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let index = (bits >> (75 - 5 * i)) & 0x1f;
            out.push(BASE32[index as usize] as char);
        }
        out
    }

    /// Seals `text` as the answer to the request `request_id` whose note is
    /// `note` ("" for none), to this key.
    pub fn seal_answer(&self, request_id: &MessageId, note: &str, text: &str) -> Result<Vec<u8>> {
        let mut ikm = Zeroizing::new([0u8; 32]);
        os_random(ikm.as_mut())?;
        self.seal_answer_with(request_id, note, text, ikm.as_ref())
    }

    /// [`seal_answer`](Self::seal_answer) with the ephemeral key from `ikm_e`:
    /// only the vectors may fix it.
    pub(crate) fn seal_answer_with(
        &self,
        request_id: &MessageId,
        note: &str,
        text: &str,
        ikm_e: &[u8],
    ) -> Result<Vec<u8>> {
        let block = pad(text)?;
        let recipient = PublicKey::from(self.0);
        let (enc, mut context) =
            hpke::setup_sender_with(&recipient, &info(request_id, note), ikm_e).map_err(
                |e| match e {
                    HpkeError::LowOrderKey => Error::BadKey {
                        reason: "the request's public key is of low order",
                    },
                    HpkeError::Open => Error::DecryptionFailed,
                },
            )?;
        let mut out = Vec::with_capacity(ANSWER_HEADER_LEN + block.len() + TAG_LEN);
        out.extend_from_slice(&ANSWER_MAGIC);
        out.push(ANSWER_VERSION);
        out.extend_from_slice(&enc);
        let sealed = context.seal(&out, &block);
        out.extend_from_slice(&sealed);
        Ok(out)
    }
}

secret_32! {
    /// The right to answer a request, in the request link's fragment (`t=`):
    /// 32 bytes from the receive secret ([`ReceiveSecret::answer_token`]).
    /// From it come the [`AnswerProof`] a responder presents (its verifier is
    /// all the server keeps) and the key the note is sealed with, which never
    /// reaches the server. Zeroized on drop.
    AnswerToken, BadToken
}

impl AnswerToken {
    /// The proof a responder presents: HKDF(token, "otm request v1 answer
    /// proof"). The asker registers its verifier when asking.
    pub fn proof(&self) -> AnswerProof {
        AnswerProof::from_array(*expand(&self.0, b"otm request v1 answer proof"))
    }

    fn note_cipher(&self) -> Aes256Gcm {
        let key = expand(&self.0, b"otm request v1 note key");
        Aes256Gcm::new_from_slice(key.as_ref()).expect("a 32-byte key")
    }

    /// Seals the request's note (plain text, at most [`MAX_NOTE_CHARS`]
    /// characters) for request-link holders: AES-256-GCM under HKDF(token,
    /// "otm request v1 note key"), a fresh nonce, the request's public key
    /// as associated data, padded to one size. The note is sealed before
    /// the server gives the request its ID, so it is bound to the key the
    /// request link carries.
    pub fn seal_note(&self, public_key: &RequestPublicKey, note: &str) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        os_random(&mut nonce)?;
        self.seal_note_with(public_key, note, nonce)
    }

    /// [`seal_note`](Self::seal_note) with a fixed nonce: only the vectors.
    pub(crate) fn seal_note_with(
        &self,
        public_key: &RequestPublicKey,
        note: &str,
        nonce: [u8; 12],
    ) -> Result<Vec<u8>> {
        let chars = char_count(note);
        if chars > MAX_NOTE_CHARS {
            return Err(Error::MessageTooLong {
                chars,
                max: MAX_NOTE_CHARS,
            });
        }
        let mut block = Zeroizing::new(vec![0u8; NOTE_BLOCK_LEN]);
        block[..4].copy_from_slice(&(note.len() as u32).to_be_bytes());
        block[4..4 + note.len()].copy_from_slice(note.as_bytes());
        let sealed = self
            .note_cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &block,
                    aad: &note_aad(public_key),
                },
            )
            .map_err(|_| Error::DecryptionFailed)?;
        let mut out = Vec::with_capacity(SEALED_NOTE_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed note; a wrong token, public key or altered byte is
    /// the one [`Error::DecryptionFailed`].
    pub fn open_note(
        &self,
        public_key: &RequestPublicKey,
        sealed: &[u8],
    ) -> Result<Zeroizing<String>> {
        if sealed.len() != SEALED_NOTE_LEN {
            return Err(Error::BadSize { len: sealed.len() });
        }
        let (nonce, body) = sealed.split_at(12);
        let block = Zeroizing::new(
            self.note_cipher()
                .decrypt(
                    nonce.into(),
                    Payload {
                        msg: body,
                        aad: &note_aad(public_key),
                    },
                )
                .map_err(|_| Error::DecryptionFailed)?,
        );
        let len = u32::from_be_bytes([block[0], block[1], block[2], block[3]]) as usize;
        let malformed = |reason| Error::MalformedPlaintext { reason };
        if len > MAX_NOTE_BYTES {
            return Err(malformed("the note's length is over the limit"));
        }
        if block[4 + len..].iter().any(|&b| b != 0) {
            return Err(malformed("the note's padding is not all zero"));
        }
        let note = std::str::from_utf8(&block[4..4 + len])
            .map_err(|_| malformed("the note is not valid UTF-8"))?;
        if char_count(note) > MAX_NOTE_CHARS {
            return Err(malformed("the note has more characters than allowed"));
        }
        Ok(Zeroizing::new(note.to_owned()))
    }
}

/// Associated data of a sealed note: `"otm note v1" || 0x00 || public key`.
fn note_aad(public_key: &RequestPublicKey) -> Vec<u8> {
    let mut aad = Vec::with_capacity(12 + PUBLIC_KEY_LEN);
    aad.extend_from_slice(b"otm note v1\0");
    aad.extend_from_slice(&public_key.0);
    aad
}

/// The link the asker shares: `{base}/request/{id}#pk={key}&t={token}`. It
/// lets its holder read the note and answer once, never read the answer.
#[derive(Clone, Debug)]
pub struct RequestLink {
    /// Scheme, host and any path before `/request/`, without a trailing slash.
    pub base: String,
    /// The request ID.
    pub id: MessageId,
    /// The asker's public key (answers are sealed to it).
    pub public_key: RequestPublicKey,
    /// The right to answer.
    pub token: AnswerToken,
}

/// Splits `{base}{prefix}{id}#{fragment}` (a query after the ID ignored).
fn split_link<'a>(
    text: &'a str,
    prefix: &str,
    what: &'static str,
) -> Result<(&'a str, MessageId, &'a str)> {
    let (url, fragment) = text.trim().split_once('#').ok_or(bad(what))?;
    let url = url.split_once('?').map_or(url, |(before, _)| before);
    let url = url.strip_suffix('/').unwrap_or(url);
    let at = url.rfind(prefix).ok_or(bad(what))?;
    let base = check_base(url[..at].trim_end_matches('/'))?;
    let id: MessageId = url[at + prefix.len()..]
        .parse()
        .map_err(|_| bad("the ID in the link is malformed"))?;
    Ok((base, id, fragment))
}

/// The `name=value` pairs of a fragment, each name once, no others.
fn fragment_params<'a>(fragment: &'a str, names: &[&str]) -> Result<Vec<Option<&'a str>>> {
    let mut values = vec![None; names.len()];
    for part in fragment.split('&') {
        let (name, value) = part
            .split_once('=')
            .ok_or(bad("a fragment parameter has no value"))?;
        let at = names
            .iter()
            .position(|n| *n == name)
            .ok_or(bad("unknown fragment parameter"))?;
        if values[at].replace(value).is_some() {
            return Err(bad("a fragment parameter is given twice"));
        }
    }
    Ok(values)
}

impl RequestLink {
    /// A request link for `base` (an `http://` or `https://` URL).
    pub fn new(base: &str, id: MessageId, secret: &ReceiveSecret) -> Result<Self> {
        let base = check_base(base.trim().trim_end_matches('/'))?;
        Ok(RequestLink {
            base: base.to_owned(),
            id,
            public_key: secret.public_key(),
            token: secret.answer_token(),
        })
    }

    /// The whole link, zeroized on drop (it carries the token).
    pub fn to_url(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}{REQUEST_PATH_PREFIX}{}#pk={}&t={}",
            self.base,
            self.id,
            self.public_key.to_base64url(),
            self.token.to_base64url().as_str()
        ))
    }

    /// Parses a request link strictly (both `pk` and `t`, nothing else).
    pub fn parse(text: &str) -> Result<Self> {
        let (base, id, fragment) = split_link(
            text,
            REQUEST_PATH_PREFIX,
            "not a request link: /request/{id}#pk=…&t=… expected",
        )?;
        let values = fragment_params(fragment, &["pk", "t"])?;
        let public_key = values[0]
            .and_then(|v| RequestPublicKey::from_base64url(v).ok())
            .ok_or(bad("the request link's key is missing or malformed"))?;
        let token = values[1]
            .and_then(|v| AnswerToken::from_base64url(v).ok())
            .ok_or(bad("the request link's token is missing or malformed"))?;
        Ok(RequestLink {
            base: base.to_owned(),
            id,
            public_key,
            token,
        })
    }
}

/// The asker's private link: `{base}/receive/{id}#r={secret}` (and `&p=1`
/// when the answer needs the asker's passphrase). It reads the answer once,
/// withdraws the request, and makes the request link again.
#[derive(Debug)]
pub struct ReceiveLink {
    /// Scheme, host and any path before `/receive/`, without a trailing slash.
    pub base: String,
    /// The request ID.
    pub id: MessageId,
    /// The receive secret.
    pub secret: ReceiveSecret,
    /// Whether taking the answer needs the asker's passphrase.
    pub passphrase: bool,
}

impl ReceiveLink {
    /// A receive link for `base`.
    pub fn new(base: &str, id: MessageId, secret: ReceiveSecret, passphrase: bool) -> Result<Self> {
        let base = check_base(base.trim().trim_end_matches('/'))?;
        Ok(ReceiveLink {
            base: base.to_owned(),
            id,
            secret,
            passphrase,
        })
    }

    /// The whole link, zeroized on drop (it carries the secret).
    pub fn to_url(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}{RECEIVE_PATH_PREFIX}{}#r={}{}",
            self.base,
            self.id,
            self.secret.to_base64url().as_str(),
            if self.passphrase { "&p=1" } else { "" }
        ))
    }

    /// Parses a receive link strictly.
    pub fn parse(text: &str) -> Result<Self> {
        let (base, id, fragment) = split_link(
            text,
            RECEIVE_PATH_PREFIX,
            "not a receive link: /receive/{id}#r=… expected",
        )?;
        let values = fragment_params(fragment, &["r", "p"])?;
        let secret = values[0]
            .and_then(|v| ReceiveSecret::from_base64url(v).ok())
            .ok_or(bad("the receive link's secret is missing or malformed"))?;
        let passphrase = match values[1] {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => return Err(bad("p must be 0 or 1")),
        };
        Ok(ReceiveLink {
            base: base.to_owned(),
            id,
            secret,
            passphrase,
        })
    }
}

/// HPKE `info` of an answer: `"otm answer v1" || 0x00 || request ID (16
/// bytes) || SHA-256(note as UTF-8)`.
fn info(request_id: &MessageId, note: &str) -> Vec<u8> {
    let mut info = Vec::with_capacity(14 + 16 + 32);
    info.extend_from_slice(b"otm answer v1\0");
    info.extend_from_slice(request_id.as_bytes());
    info.extend_from_slice(&Sha256::digest(note.as_bytes()));
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> MessageId {
        MessageId::from_bytes([byte; MessageId::LEN])
    }

    #[test]
    fn an_answer_opens_with_the_receive_secret_for_its_request_and_note_only() {
        let secret = ReceiveSecret::generate().unwrap();
        let key = secret.public_key();
        let answer = key
            .seal_answer(&id(1), "VPN, Berlin", "hunter2 🌍")
            .unwrap();
        assert_eq!(answer.len(), ANSWER_HEADER_LEN + 256 + TAG_LEN);
        assert_eq!(
            secret
                .open_answer(&id(1), "VPN, Berlin", &answer)
                .unwrap()
                .as_str(),
            "hunter2 🌍"
        );
        for (what, got) in [
            (
                "another request",
                secret.open_answer(&id(2), "VPN, Berlin", &answer),
            ),
            (
                "another note",
                secret.open_answer(&id(1), "VPN, Munich", &answer),
            ),
            (
                "another secret",
                ReceiveSecret::generate()
                    .unwrap()
                    .open_answer(&id(1), "VPN, Berlin", &answer),
            ),
        ] {
            assert_eq!(got.unwrap_err(), Error::DecryptionFailed, "{what}");
        }
        for at in [0, 3, 4, 35, 36, answer.len() - 1] {
            let mut bad = answer.clone();
            bad[at] ^= 1;
            assert!(
                secret.open_answer(&id(1), "VPN, Berlin", &bad).is_err(),
                "byte {at}"
            );
        }
        // Two answers of one text differ (a fresh ephemeral key each).
        assert_ne!(
            answer,
            key.seal_answer(&id(1), "VPN, Berlin", "hunter2 🌍")
                .unwrap()
        );
    }

    #[test]
    fn answers_are_padded_and_limited_like_messages() {
        let secret = ReceiveSecret::generate().unwrap();
        let key = secret.public_key();
        let long = "ß".repeat(8000);
        let answer = key.seal_answer(&id(1), "", &long).unwrap();
        assert_eq!(answer.len(), ANSWER_HEADER_LEN + 16384 + TAG_LEN);
        assert_eq!(
            secret.open_answer(&id(1), "", &answer).unwrap().as_str(),
            long
        );
        assert!(matches!(
            key.seal_answer(&id(1), "", &"x".repeat(8001)),
            Err(Error::MessageTooLong { chars: 8001, .. })
        ));
        assert!(matches!(
            validate_answer(&answer[..100]),
            Err(Error::Truncated { .. })
        ));
        let mut other = answer.clone();
        other[3] = 2;
        assert_eq!(validate_answer(&other), Err(Error::UnsupportedVersion(2)));
        other[0] = b'X';
        assert_eq!(validate_answer(&other), Err(Error::BadMagic));
        assert!(matches!(
            validate_answer(&answer[..answer.len() - 1]),
            Err(Error::BadSize { .. })
        ));
    }

    #[test]
    fn the_note_opens_with_the_token_for_its_request_only_and_hides_its_length() {
        let secret = ReceiveSecret::generate().unwrap();
        let token = secret.answer_token();
        let pk = secret.public_key();
        let short = token.seal_note(&pk, "VPN").unwrap();
        let long = token.seal_note(&pk, &"ü".repeat(500)).unwrap();
        assert_eq!(short.len(), SEALED_NOTE_LEN);
        assert_eq!(long.len(), SEALED_NOTE_LEN);
        assert_eq!(token.open_note(&pk, &short).unwrap().as_str(), "VPN");
        assert_eq!(
            token.open_note(&pk, &long).unwrap().as_str(),
            "ü".repeat(500)
        );
        let another_key = ReceiveSecret::generate().unwrap().public_key();
        assert_eq!(
            token.open_note(&another_key, &short).unwrap_err(),
            Error::DecryptionFailed
        );
        let other = ReceiveSecret::generate().unwrap().answer_token();
        assert_eq!(
            other.open_note(&pk, &short).unwrap_err(),
            Error::DecryptionFailed
        );
        assert!(matches!(
            token.seal_note(&pk, &"x".repeat(501)),
            Err(Error::MessageTooLong { chars: 501, .. })
        ));
        assert!(matches!(
            token.open_note(&pk, &short[1..]),
            Err(Error::BadSize { .. })
        ));
        // The proof a responder presents is the token's, checked by its verifier.
        assert!(token
            .proof()
            .verifier()
            .verify(&secret.answer_token().proof()));
        assert!(!token.proof().verifier().verify(&other.proof()));
    }

    #[test]
    fn request_and_receive_links_round_trip_and_are_parsed_strictly() {
        let secret = ReceiveSecret::from_bytes([9; 32]);
        let request = RequestLink::new("https://otm.example/", id(5), &secret).unwrap();
        let url = request.to_url();
        assert!(
            url.starts_with("https://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ#pk="),
            "{}",
            *url
        );
        let back = RequestLink::parse(&url).unwrap();
        assert_eq!(back.id, id(5));
        assert_eq!(back.public_key, secret.public_key());
        assert_eq!(back.token.as_bytes(), secret.answer_token().as_bytes());
        // The request link holds nothing that reads the answer.
        assert!(!url.contains(secret.to_base64url().as_str()));

        let receive = ReceiveLink::new(
            "https://otm.example",
            id(5),
            ReceiveSecret::from_bytes([9; 32]),
            true,
        )
        .unwrap();
        let url = receive.to_url();
        assert!(url.ends_with("&p=1"), "{}", *url);
        let back = ReceiveLink::parse(&url).unwrap();
        assert_eq!(back.secret.as_bytes(), &[9; 32]);
        assert!(back.passphrase);

        let pk = secret.public_key().to_base64url();
        let t = secret.answer_token().to_base64url();
        for bad in [
            format!("https://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ#pk={pk}"),
            format!(
                "https://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ#pk={pk}&t={}&x=1",
                t.as_str()
            ),
            format!(
                "https://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ#pk={pk}&pk={pk}&t={}",
                t.as_str()
            ),
            format!(
                "https://otm.example/otm/BQUFBQUFBQUFBQUFBQUFBQ#pk={pk}&t={}",
                t.as_str()
            ),
            format!(
                "ftp://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ#pk={pk}&t={}",
                t.as_str()
            ),
            "https://otm.example/request/BQUFBQUFBQUFBQUFBQUFBQ".to_owned(),
        ] {
            assert!(RequestLink::parse(&bad).is_err(), "{bad}");
        }
        for bad in [
            "https://otm.example/receive/BQUFBQUFBQUFBQUFBQUFBQ#r=short",
            "https://otm.example/receive/BQUFBQUFBQUFBQUFBQUFBQ#p=1",
            "https://otm.example/receive/BQUFBQUFBQUFBQUFBQUFBQ#r=CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk&p=2",
        ] {
            assert!(ReceiveLink::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_fingerprints_and_proofs_come_from_the_secret_alone() {
        let secret = ReceiveSecret::from_bytes([7; 32]);
        let again = ReceiveSecret::from_base64url(&secret.to_base64url()).unwrap();
        assert_eq!(secret.public_key(), again.public_key());
        let key = secret.public_key();
        assert_eq!(
            RequestPublicKey::from_base64url(&key.to_base64url()).unwrap(),
            key
        );
        let fp = key.fingerprint();
        assert_eq!(fp.len(), 19);
        assert!(
            fp.split('-')
                .all(|g| g.len() == 4 && g.bytes().all(|b| BASE32.contains(&b))),
            "{fp}"
        );
        assert_ne!(
            fp,
            ReceiveSecret::from_bytes([8; 32])
                .public_key()
                .fingerprint()
        );
        // The answer's proofs: fixed by the secret, apart from the key pair.
        let a = secret.answer_secrets(None);
        assert_eq!(
            a.access_verifier().as_bytes(),
            again.answer_secrets(None).access_verifier().as_bytes()
        );
        let phrase = Passphrase::new("correct horse").unwrap();
        assert_ne!(
            secret
                .answer_secrets(Some(&phrase))
                .claim_verifier()
                .as_bytes(),
            a.claim_verifier().as_bytes()
        );
        assert!(format!("{secret:?}").contains(".."));
        // A low-order public key cannot be sealed to.
        let zero = RequestPublicKey::from_bytes([0; 32]);
        assert!(zero.seal_answer(&id(1), "", "x").is_err());
    }
}
