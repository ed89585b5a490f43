//! HPKE (RFC 9180), base mode, with one cipher suite:
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (KEM 0x0020, KDF
//! 0x0001, AEAD 0x0001), the suite of the RFC's appendix A.1, whose test
//! vectors this module is checked against (and the browser's, `otm-hpke.js`,
//! against the same file). docs/FORMAT.md says why this suite.
//!
//! Written from the RFC on the primitives otm-core already uses (hkdf, the
//! RustCrypto AES-GCM) and x25519-dalek; no I/O. Secrets (the private keys,
//! the shared secret, the key schedule's outputs) are zeroized when dropped.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// The length of an X25519 public key, and so of `enc`.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;
/// The length of the AEAD's tag.
pub(crate) const TAG_LEN: usize = 16;

const KEM_ID: u16 = 0x0020;
const KDF_ID: u16 = 0x0001;
const AEAD_ID: u16 = 0x0001;
const NK: usize = 16;
const NN: usize = 12;
const NH: usize = 32;

/// Why an HPKE operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HpkeError {
    /// The Diffie–Hellman result was all zeros (a low-order public key).
    LowOrderKey,
    /// The ciphertext does not open with this context (tampered, or not
    /// sealed to this key with this info and associated data).
    Open,
}

/// `"KEM" || I2OSP(kem_id, 2)`.
fn kem_suite() -> [u8; 5] {
    let [a, b] = KEM_ID.to_be_bytes();
    [b'K', b'E', b'M', a, b]
}

/// `"HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)`.
fn hpke_suite() -> [u8; 10] {
    let mut out = [0u8; 10];
    out[..4].copy_from_slice(b"HPKE");
    out[4..6].copy_from_slice(&KEM_ID.to_be_bytes());
    out[6..8].copy_from_slice(&KDF_ID.to_be_bytes());
    out[8..].copy_from_slice(&AEAD_ID.to_be_bytes());
    out
}

/// `LabeledExtract(salt, label, ikm)`: the pseudorandom key.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; NH]> {
    let mut input = Zeroizing::new(Vec::with_capacity(
        7 + suite.len() + label.len() + ikm.len(),
    ));
    input.extend_from_slice(b"HPKE-v1");
    input.extend_from_slice(suite);
    input.extend_from_slice(label);
    input.extend_from_slice(ikm);
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), &input);
    let mut out = Zeroizing::new([0u8; NH]);
    out.copy_from_slice(&prk);
    out
}

/// `LabeledExpand(prk, label, info, L)` into `out` (L = `out.len()`).
fn labeled_expand(suite: &[u8], prk: &[u8; NH], label: &[u8], info: &[u8], out: &mut [u8]) {
    let length = u16::try_from(out.len()).expect("HPKE expands at most 255 × 32 bytes");
    let mut labeled = Vec::with_capacity(9 + suite.len() + label.len() + info.len());
    labeled.extend_from_slice(&length.to_be_bytes());
    labeled.extend_from_slice(b"HPKE-v1");
    labeled.extend_from_slice(suite);
    labeled.extend_from_slice(label);
    labeled.extend_from_slice(info);
    Hkdf::<Sha256>::from_prk(prk)
        .expect("a 32-byte PRK")
        .expand(&labeled, out)
        .expect("at most 255 × 32 bytes");
}

/// An X25519 key pair.
pub(crate) struct KeyPair {
    pub(crate) secret: StaticSecret,
    pub(crate) public: PublicKey,
}

/// `DeriveKeyPair(ikm)` of DHKEM(X25519, HKDF-SHA256).
pub(crate) fn derive_key_pair(ikm: &[u8]) -> KeyPair {
    let suite = kem_suite();
    let prk = labeled_extract(&suite, b"", b"dkp_prk", ikm);
    let mut sk = Zeroizing::new([0u8; 32]);
    labeled_expand(&suite, &prk, b"sk", b"", sk.as_mut());
    let secret = StaticSecret::from(*sk);
    let public = PublicKey::from(&secret);
    KeyPair { secret, public }
}

/// `ExtractAndExpand(dh, kem_context)`: the KEM's shared secret.
fn extract_and_expand(dh: &[u8; 32], kem_context: &[u8]) -> Zeroizing<[u8; NH]> {
    let suite = kem_suite();
    let prk = labeled_extract(&suite, b"", b"eae_prk", dh);
    let mut shared = Zeroizing::new([0u8; NH]);
    labeled_expand(&suite, &prk, b"shared_secret", kem_context, shared.as_mut());
    shared
}

/// `DH(sk, pk)`, refusing an all-zero result (RFC 9180, section 7.1.4).
fn dh(secret: &StaticSecret, public: &PublicKey) -> Result<Zeroizing<[u8; 32]>, HpkeError> {
    let shared = secret.diffie_hellman(public);
    if !shared.was_contributory() {
        return Err(HpkeError::LowOrderKey);
    }
    Ok(Zeroizing::new(*shared.as_bytes()))
}

/// An encryption context of the base mode (sender's or recipient's).
pub(crate) struct Context {
    key: Zeroizing<[u8; NK]>,
    base_nonce: Zeroizing<[u8; NN]>,
    /// Checked against the RFC's vectors; otm itself exports nothing.
    #[cfg_attr(not(test), allow(dead_code))]
    exporter_secret: Zeroizing<[u8; NH]>,
    seq: u64,
}

/// `KeySchedule(mode_base, shared_secret, info, "", "")`.
fn key_schedule(shared_secret: &[u8; NH], info: &[u8]) -> Context {
    let suite = hpke_suite();
    let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&suite, b"", b"info_hash", info);
    let mut context = Vec::with_capacity(1 + 2 * NH);
    context.push(0x00); // mode_base
    context.extend_from_slice(psk_id_hash.as_ref());
    context.extend_from_slice(info_hash.as_ref());
    let secret = labeled_extract(&suite, shared_secret, b"secret", b"");
    let mut key = Zeroizing::new([0u8; NK]);
    let mut base_nonce = Zeroizing::new([0u8; NN]);
    let mut exporter_secret = Zeroizing::new([0u8; NH]);
    labeled_expand(&suite, &secret, b"key", &context, key.as_mut());
    labeled_expand(
        &suite,
        &secret,
        b"base_nonce",
        &context,
        base_nonce.as_mut(),
    );
    labeled_expand(&suite, &secret, b"exp", &context, exporter_secret.as_mut());
    Context {
        key,
        base_nonce,
        exporter_secret,
        seq: 0,
    }
}

/// `SetupBaseS(pkR, info)` with the ephemeral key pair derived from `ikm_e`:
/// 32 fresh random bytes from the caller (fixed ones reproduce the RFC's
/// vectors; `SetupBaseS` draws them itself, which is the same thing).
pub(crate) fn setup_sender_with(
    recipient: &PublicKey,
    info: &[u8],
    ikm_e: &[u8],
) -> Result<([u8; PUBLIC_KEY_LEN], Context), HpkeError> {
    let ephemeral = derive_key_pair(ikm_e);
    let dh = dh(&ephemeral.secret, recipient)?;
    let enc = ephemeral.public.to_bytes();
    let mut kem_context = [0u8; 2 * PUBLIC_KEY_LEN];
    kem_context[..PUBLIC_KEY_LEN].copy_from_slice(&enc);
    kem_context[PUBLIC_KEY_LEN..].copy_from_slice(recipient.as_bytes());
    let shared = extract_and_expand(&dh, &kem_context);
    Ok((enc, key_schedule(&shared, info)))
}

/// `SetupBaseR(enc, skR, info)`.
pub(crate) fn setup_recipient(
    enc: &[u8; PUBLIC_KEY_LEN],
    recipient: &KeyPair,
    info: &[u8],
) -> Result<Context, HpkeError> {
    let ephemeral = PublicKey::from(*enc);
    let dh = dh(&recipient.secret, &ephemeral)?;
    let mut kem_context = [0u8; 2 * PUBLIC_KEY_LEN];
    kem_context[..PUBLIC_KEY_LEN].copy_from_slice(enc);
    kem_context[PUBLIC_KEY_LEN..].copy_from_slice(recipient.public.as_bytes());
    let shared = extract_and_expand(&dh, &kem_context);
    Ok(key_schedule(&shared, info))
}

impl Context {
    /// The nonce of the current sequence number.
    fn nonce(&self) -> [u8; NN] {
        let mut nonce = *self.base_nonce;
        for (n, s) in nonce[NN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// `ContextS.Seal(aad, pt)`.
    pub(crate) fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes128Gcm::new_from_slice(self.key.as_ref()).expect("a 16-byte key");
        let nonce = self.nonce();
        let sealed = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("AES-GCM seals any length HPKE allows");
        self.seq += 1;
        sealed
    }

    /// `ContextR.Open(aad, ct)`.
    pub(crate) fn open(
        &mut self,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HpkeError> {
        let cipher = Aes128Gcm::new_from_slice(self.key.as_ref()).expect("a 16-byte key");
        let nonce = self.nonce();
        let opened = cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| HpkeError::Open)?;
        self.seq += 1;
        Ok(Zeroizing::new(opened))
    }

    /// `Context.Export(exporter_context, L)`.
    #[cfg(test)]
    pub(crate) fn export(&self, exporter_context: &[u8], length: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; length]);
        labeled_expand(
            &hpke_suite(),
            &self.exporter_secret,
            b"sec",
            exporter_context,
            &mut out,
        );
        out
    }

    /// Moves to sequence number `seq` (the vectors skip some).
    #[cfg(test)]
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 9180, appendix A.1.1: every value of the base mode, both sides.
    #[test]
    fn rfc_9180_vectors_of_this_suite() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/hpke_rfc9180_a1.json")).unwrap();
        let setup = &v["setup"];
        let field = |name: &str| hex(setup[name].as_str().unwrap());
        assert_eq!(setup["kem_id"], "32");
        assert_eq!(setup["kdf_id"], "1");
        assert_eq!(setup["aead_id"], "1");
        assert_eq!(setup["mode"], "0");

        let e = derive_key_pair(&field("ikmE"));
        assert_eq!(e.secret.to_bytes().to_vec(), field("skEm"));
        assert_eq!(e.public.as_bytes().to_vec(), field("pkEm"));
        let r = derive_key_pair(&field("ikmR"));
        assert_eq!(r.secret.to_bytes().to_vec(), field("skRm"));
        assert_eq!(r.public.as_bytes().to_vec(), field("pkRm"));

        let info = field("info");
        let (enc, mut sender) = setup_sender_with(&r.public, &info, &field("ikmE")).unwrap();
        assert_eq!(enc.to_vec(), field("enc"));
        assert_eq!(sender.key.to_vec(), field("key"));
        assert_eq!(sender.base_nonce.to_vec(), field("base_nonce"));
        assert_eq!(sender.exporter_secret.to_vec(), field("exporter_secret"));
        let mut recipient = setup_recipient(&enc, &r, &info).unwrap();

        for e in v["encryptions"].as_array().unwrap() {
            let seq = e["seq"].as_u64().unwrap();
            let (aad, pt, ct) = (
                hex(e["aad"].as_str().unwrap()),
                hex(e["pt"].as_str().unwrap()),
                hex(e["ct"].as_str().unwrap()),
            );
            sender.set_seq(seq);
            recipient.set_seq(seq);
            assert_eq!(sender.nonce().to_vec(), hex(e["nonce"].as_str().unwrap()));
            assert_eq!(sender.seal(&aad, &pt), ct, "seal #{seq}");
            assert_eq!(
                recipient.open(&aad, &ct).unwrap().to_vec(),
                pt,
                "open #{seq}"
            );
        }
        for x in v["exports"].as_array().unwrap() {
            let got = recipient.export(
                &hex(x["context"].as_str().unwrap()),
                x["length"].as_u64().unwrap() as usize,
            );
            assert_eq!(got.to_vec(), hex(x["value"].as_str().unwrap()));
        }
    }

    #[test]
    fn a_wrong_key_info_or_aad_does_not_open_and_a_low_order_key_is_refused() {
        let setup_sender = |pk: &PublicKey, info: &[u8]| {
            let mut ikm = [0u8; 32];
            crate::key::os_random(&mut ikm).unwrap();
            setup_sender_with(pk, info, &ikm)
        };
        let r = derive_key_pair(b"recipient ikm, 32 bytes or more..");
        let (enc, mut s) = setup_sender(&r.public, b"info").unwrap();
        let ct = s.seal(b"aad", b"the answer");
        assert_eq!(
            setup_recipient(&enc, &r, b"info")
                .unwrap()
                .open(b"aad", &ct)
                .unwrap()
                .to_vec(),
            b"the answer"
        );
        let other = derive_key_pair(b"somebody else's ikm, 32 bytes....");
        let mut wrong_key = setup_recipient(&enc, &other, b"info").unwrap();
        assert_eq!(wrong_key.open(b"aad", &ct).unwrap_err(), HpkeError::Open);
        let mut wrong_info = setup_recipient(&enc, &r, b"other info").unwrap();
        assert_eq!(wrong_info.open(b"aad", &ct).unwrap_err(), HpkeError::Open);
        let mut wrong_aad = setup_recipient(&enc, &r, b"info").unwrap();
        assert_eq!(wrong_aad.open(b"other", &ct).unwrap_err(), HpkeError::Open);
        let mut flipped = ct.clone();
        flipped[0] ^= 1;
        let mut tampered = setup_recipient(&enc, &r, b"info").unwrap();
        assert_eq!(
            tampered.open(b"aad", &flipped).unwrap_err(),
            HpkeError::Open
        );
        // The all-zero point (and other small-order points) give no secret.
        let zero = [0u8; 32];
        assert!(matches!(
            setup_recipient(&zero, &r, b"info"),
            Err(HpkeError::LowOrderKey)
        ));
        assert!(matches!(
            setup_sender(&PublicKey::from(zero), b"info"),
            Err(HpkeError::LowOrderKey)
        ));
        // Two sealings to one key differ (fresh ephemeral keys).
        let (enc2, _) = setup_sender(&r.public, b"info").unwrap();
        assert_ne!(enc, enc2);
    }
}
