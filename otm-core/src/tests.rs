//! Unit tests that need crate internals: the JSON vectors (which fix the
//! nonce) and the Wycheproof known-answer tests for the AEAD as otm calls it.

use std::path::PathBuf;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use serde_json::{json, Value};

use crate::envelope::seal_with_nonce;
use crate::secrets::passphrase_salt;
use crate::{b64, open, Error, Key, Passphrase, Secrets, PBKDF2_ITERATIONS};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

const VECTORS: &str = "envelope_v1_vectors.json";

fn error_name(err: &Error) -> &'static str {
    match err {
        Error::Truncated { .. } => "Truncated",
        Error::BadMagic => "BadMagic",
        Error::UnsupportedVersion(_) => "UnsupportedVersion",
        Error::UnknownFlags(_) => "UnknownFlags",
        Error::BadSize { .. } => "BadSize",
        Error::TooLarge { .. } => "TooLarge",
        Error::DecryptionFailed => "DecryptionFailed",
        Error::PassphraseRequired => "PassphraseRequired",
        Error::PassphraseNotExpected => "PassphraseNotExpected",
        _ => "Other",
    }
}

fn secrets_for(key_b64: &str, passphrase: &Value) -> Secrets {
    let key = Key::from_base64url(key_b64).expect("vector key parses");
    let phrase = passphrase
        .as_str()
        .map(|p| Passphrase::new(p).expect("vector passphrase is valid"));
    Secrets::derive(&key, phrase.as_ref())
}

fn b64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("vector base64url decodes")
}

/// The vector set, computed from the implementation. Run
/// `OTM_REGENERATE_VECTORS=1 cargo test -p otm-core regenerate -- --ignored`
/// to rewrite the committed file (only when the format changes).
fn build_vectors() -> Value {
    let key_a = Key::from_bytes(std::array::from_fn(|i| i as u8));
    let key_b = Key::from_bytes(std::array::from_fn(|i| 0xA0 ^ (i as u8 * 7)));
    let nonce_a: [u8; 12] = std::array::from_fn(|i| 0x10 + i as u8);
    let nonce_b: [u8; 12] = std::array::from_fn(|i| 0xF0 - i as u8);
    let boundary = "x".repeat(252);
    let over = "y".repeat(253);
    let max4 = "\u{1F600}".repeat(8000);
    type Case<'a> = (&'a str, &'a Key, Option<&'a str>, [u8; 12], &'a str);
    let cases: Vec<Case> = vec![
        ("plain_hello", &key_a, None, nonce_a, "hello, otm"),
        ("plain_empty", &key_a, None, nonce_b, ""),
        (
            "plain_unicode",
            &key_b,
            None,
            nonce_a,
            "Grüße 🌍 — 秘密\nline two\ttab",
        ),
        (
            "plain_bucket_edge_252_bytes",
            &key_b,
            None,
            nonce_b,
            &boundary,
        ),
        ("plain_bucket_over_253_bytes", &key_a, None, nonce_a, &over),
        ("plain_max_8000_chars_4_byte", &key_b, None, nonce_a, &max4),
        (
            "passphrase_ascii",
            &key_a,
            Some("correct horse battery staple"),
            nonce_a,
            "with a passphrase",
        ),
        (
            "passphrase_nfd_input",
            &key_b,
            Some("cafe\u{301} 🔑"),
            nonce_b,
            "NFC makes é one code point",
        ),
    ];
    let mut ok = Vec::new();
    let mut envelopes = Vec::new();
    for (name, key, phrase, nonce, message) in &cases {
        let passphrase = phrase.map(|p| Passphrase::new(p).unwrap());
        let secrets = Secrets::derive(key, passphrase.as_ref());
        let envelope = seal_with_nonce(&secrets, message, *nonce).unwrap();
        envelopes.push(envelope.clone());
        ok.push(json!({
            "name": name,
            "key": key.to_base64url().as_str(),
            "passphrase": phrase,
            "passphrase_nfc_utf8_hex": passphrase.as_ref().map(|p| hex::encode(p.as_str())),
            "pbkdf2_salt_hex": phrase.map(|_| hex::encode(passphrase_salt(key))),
            "nonce_hex": hex::encode(nonce),
            "message": message,
            "chars": crate::char_count(message),
            "content_key_hex": hex::encode(secrets.content_key()),
            "claim_proof": secrets.claim_proof().to_base64url().as_str(),
            "claim_verifier": secrets.claim_verifier().to_base64url(),
            "access_proof": secrets.access_proof().to_base64url().as_str(),
            "access_verifier": secrets.access_verifier().to_base64url(),
            "envelope": b64::encode(&envelope),
            "envelope_len": envelope.len(),
        }));
    }
    let hello = &envelopes[0];
    let with_phrase = &envelopes[6];
    let key_a_text = key_a.to_base64url().to_string();
    let key_b_text = key_b.to_base64url().to_string();
    let mutate = |env: &Vec<u8>, f: &dyn Fn(&mut Vec<u8>)| {
        let mut e = env.clone();
        f(&mut e);
        b64::encode(&e)
    };
    let fail = vec![
        json!({"name": "fail_tampered_tag", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| { let n = e.len() - 1; e[n] ^= 0x01; }), "error": "DecryptionFailed"}),
        json!({"name": "fail_tampered_ciphertext", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e[40] ^= 0x80), "error": "DecryptionFailed"}),
        json!({"name": "fail_tampered_nonce", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e[5] ^= 0x01), "error": "DecryptionFailed"}),
        json!({"name": "fail_truncated_last_byte", "key": key_a_text, "passphrase": null,
               "envelope": mutate(&envelopes[4], &|e| { e.pop(); }), "error": "BadSize"}),
        json!({"name": "fail_truncated_below_minimum", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| { e.pop(); }), "error": "Truncated"}),
        json!({"name": "fail_trailing_byte", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e.push(0)), "error": "BadSize"}),
        json!({"name": "fail_truncated_header", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e.truncate(10)), "error": "Truncated"}),
        json!({"name": "fail_wrong_version", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e[3] = 2), "error": "UnsupportedVersion"}),
        json!({"name": "fail_bad_magic", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e[0] = b'X'), "error": "BadMagic"}),
        json!({"name": "fail_unknown_flags", "key": key_a_text, "passphrase": null,
               "envelope": mutate(hello, &|e| e[4] = 0x80), "error": "UnknownFlags"}),
        json!({"name": "fail_wrong_key", "key": key_b_text, "passphrase": null,
               "envelope": b64::encode(hello), "error": "DecryptionFailed"}),
        json!({"name": "fail_wrong_passphrase", "key": key_a_text, "passphrase": "correct horse battery stapler",
               "envelope": b64::encode(with_phrase), "error": "DecryptionFailed"}),
        json!({"name": "fail_missing_passphrase", "key": key_a_text, "passphrase": null,
               "envelope": b64::encode(with_phrase), "error": "PassphraseRequired"}),
        json!({"name": "fail_flag_stripped", "key": key_a_text, "passphrase": "correct horse battery staple",
               "envelope": mutate(with_phrase, &|e| e[4] = 0), "error": "PassphraseNotExpected"}),
    ];
    json!({
        "description": "otm envelope format v1 test vectors (docs/FORMAT.md). Binary values are unpadded base64url unless the field name ends in _hex.",
        "format_version": 1,
        "pbkdf2_iterations": PBKDF2_ITERATIONS,
        "vectors": ok,
        "fail": fail,
    })
}

#[test]
#[ignore = "rewrites the committed vectors; run only when the format changes"]
fn regenerate_vectors() {
    if std::env::var_os("OTM_REGENERATE_VECTORS").is_none() {
        eprintln!("set OTM_REGENERATE_VECTORS=1 to rewrite {VECTORS}");
        return;
    }
    let text = serde_json::to_string_pretty(&build_vectors()).unwrap();
    std::fs::write(data(VECTORS), text + "\n").unwrap();
}

fn load_vectors() -> Value {
    let text = std::fs::read_to_string(data(VECTORS)).expect("committed vectors exist");
    serde_json::from_str(&text).expect("vectors are JSON")
}

#[test]
fn committed_vectors_match_the_implementation() {
    // The committed file is the contract shared with the browser: the
    // implementation must reproduce it byte for byte.
    assert_eq!(load_vectors(), build_vectors());
}

#[test]
fn positive_vectors_open_and_reseal_identically() {
    let vectors = load_vectors();
    let list = vectors["vectors"].as_array().unwrap();
    assert!(list.len() >= 8);
    for v in list {
        let name = v["name"].as_str().unwrap();
        let secrets = secrets_for(v["key"].as_str().unwrap(), &v["passphrase"]);
        assert_eq!(
            hex::encode(secrets.content_key()),
            v["content_key_hex"],
            "{name}"
        );
        assert_eq!(
            secrets.claim_proof().to_base64url().as_str(),
            v["claim_proof"],
            "{name}"
        );
        assert_eq!(
            secrets.claim_verifier().to_base64url(),
            v["claim_verifier"],
            "{name}"
        );
        // The access proof from the spec's formula directly (HKDF over the
        // key alone), not through Secrets.
        let key = Key::from_base64url(v["key"].as_str().unwrap()).unwrap();
        let mut access = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, key.as_bytes())
            .expand(b"otm v1 access proof", &mut access)
            .unwrap();
        assert_eq!(b64::encode(&access), v["access_proof"], "{name}");
        assert_eq!(
            secrets.access_proof().to_base64url().as_str(),
            v["access_proof"],
            "{name}"
        );
        assert_eq!(
            secrets.access_verifier().to_base64url(),
            v["access_verifier"],
            "{name}"
        );
        let envelope = b64_decode(v["envelope"].as_str().unwrap());
        let opened = open(&secrets, &envelope).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opened.as_str(), v["message"], "{name}");
        let nonce: [u8; 12] = hex::decode(v["nonce_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let resealed = seal_with_nonce(&secrets, &opened, nonce).unwrap();
        assert_eq!(resealed, envelope, "{name}");
    }
}

/// One key with and without a passphrase: the same access proof, unrelated
/// claim proofs (a wrong passphrase still proves the link; only the claim
/// fails and counts).
#[test]
fn the_passphrase_enters_the_claim_but_not_the_access_proof() {
    let vectors = load_vectors();
    let list = vectors["vectors"].as_array().unwrap();
    let mut pairs = 0;
    for a in list {
        for b in list {
            if a["key"] == b["key"] && a["passphrase"].is_null() && !b["passphrase"].is_null() {
                assert_eq!(a["access_proof"], b["access_proof"]);
                assert_ne!(a["claim_proof"], b["claim_proof"]);
                pairs += 1;
            }
        }
    }
    assert!(
        pairs > 0,
        "no vector pair shares a key with and without a passphrase"
    );
    for a in list {
        for b in list {
            if a["key"] != b["key"] {
                assert_ne!(a["access_proof"], b["access_proof"]);
            }
        }
    }
}

#[test]
fn fail_vectors_fail_with_the_named_error() {
    let vectors = load_vectors();
    let list = vectors["fail"].as_array().unwrap();
    assert!(list.len() >= 10);
    for v in list {
        let name = v["name"].as_str().unwrap();
        assert!(name.starts_with("fail_"));
        let secrets = secrets_for(v["key"].as_str().unwrap(), &v["passphrase"]);
        let envelope = b64_decode(v["envelope"].as_str().unwrap());
        let err = open(&secrets, &envelope).expect_err(name);
        assert_eq!(error_name(&err), v["error"], "{name}: {err}");
    }
}

#[test]
fn wycheproof_aes_256_gcm_known_answers() {
    let text = std::fs::read_to_string(data("wycheproof_aes_gcm_test.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        // otm uses 256-bit keys with 96-bit nonces and 128-bit tags only.
        if group["keySize"] != 256 || group["ivSize"] != 96 || group["tagSize"] != 128 {
            continue;
        }
        for t in group["tests"].as_array().unwrap() {
            let h = |f: &str| hex::decode(t[f].as_str().unwrap()).unwrap();
            let id = &t["tcId"];
            let cipher = Aes256Gcm::new_from_slice(&h("key")).unwrap();
            let iv = h("iv");
            let nonce = Nonce::from_slice(&iv);
            let mut ct = h("ct");
            let tag = h("tag");
            let opened =
                cipher.decrypt_in_place_detached(nonce, &h("aad"), &mut ct, Tag::from_slice(&tag));
            if t["result"] == "valid" {
                opened.unwrap_or_else(|_| panic!("tcId {id} must open"));
                assert_eq!(ct, h("msg"), "tcId {id} plaintext");
                let mut msg = h("msg");
                let sealed_tag = cipher
                    .encrypt_in_place_detached(nonce, &h("aad"), &mut msg)
                    .unwrap();
                assert_eq!(msg, h("ct"), "tcId {id} ciphertext");
                assert_eq!(sealed_tag.as_slice(), &tag[..], "tcId {id} tag");
                valid += 1;
            } else {
                assert!(opened.is_err(), "tcId {id} must be rejected");
                invalid += 1;
            }
        }
    }
    assert!(
        valid >= 39 && invalid >= 27,
        "ran {valid} valid, {invalid} invalid"
    );
}

/// The derivation of [`ManageSecret::token_for`], checked against Python's
/// `hmac` (`hmac.new(secret, b"otm manage token v1\0" + id, sha256)`).
#[test]
fn manage_secret_known_answer() {
    let secret = crate::ManageSecret::new(b"otm_an-api-token-of-enough-length").unwrap();
    let id = crate::MessageId::from_bytes(core::array::from_fn(|i| i as u8));
    assert_eq!(
        &*secret.token_for(&id).to_base64url(),
        "xSF3-lGYcZgD2zWz2H9ZVNWktBsdnZIVrIlSjOhFgKQ"
    );
    assert!(crate::ManageSecret::new(&[7; 15]).is_err());
    assert_eq!(format!("{secret:?}"), "ManageSecret(..)");
}

// ---------------------------------------------------------------------------
// Answers to requests (FORMAT.md, section 14): otm's own vectors, shared with
// the browser's implementation like the envelope's.

#[cfg(feature = "request")]
mod answers {
    use super::*;
    use crate::MessageId;

    const ANSWER_VECTORS: &str = "answer_v1_vectors.json";

    /// The answer vectors as the implementation makes them (fixed receive
    /// secrets, request IDs and ephemeral keys).
    fn build_answer_vectors() -> Value {
        use crate::request::ReceiveSecret;
        /// Name, receive secret, request ID, note, text, ephemeral key input.
        type Case<'a> = (&'a str, [u8; 32], [u8; 16], &'a str, &'a str, [u8; 32]);
        let long = "0123456789".repeat(30);
        let cases: [Case; 4] = [
            ("plain", [0x11; 32], [0x01; 16], "", "hunter2", [0xa1; 32]),
            (
                "with_note",
                [0x22; 32],
                [0x02; 16],
                "The VPN password for the Berlin office",
                "correct horse battery staple",
                [0xa2; 32],
            ),
            (
                "unicode",
                [0x33; 32],
                [0x03; 16],
                "Zugang für Ana 🌍",
                "Grüße 🌍 秘密 كلمة",
                [0xa3; 32],
            ),
            (
                "second_bucket",
                [0x44; 32],
                [0x04; 16],
                "",
                &long,
                [0xa4; 32],
            ),
        ];
        let vectors: Vec<Value> = cases
            .iter()
            .map(|(name, secret, id, note, text, ikm)| {
                let receive = ReceiveSecret::from_bytes(*secret);
                let key = receive.public_key();
                let id = MessageId::from_bytes(*id);
                let answer = key.seal_answer_with(&id, note, text, ikm).unwrap();
                let secrets = receive.answer_secrets(None);
                let token = receive.answer_token();
                let note_nonce = [secret[0] ^ 0x5a; 12];
                let sealed_note = token.seal_note_with(&key, note, note_nonce).unwrap();
                let request_link =
                    crate::RequestLink::new("https://otm.example/base", id, &receive).unwrap();
                let receive_link = crate::ReceiveLink::new(
                    "https://otm.example/base",
                    id,
                    ReceiveSecret::from_bytes(*secret),
                    false,
                )
                .unwrap();
                json!({
                    "name": name,
                    "receive_secret": receive.to_base64url().as_str(),
                    "request_id": id.to_string(),
                    "note": note,
                    "text": text,
                    "ikm_e": b64::encode(ikm),
                    "public_key": key.to_base64url(),
                    "fingerprint": key.fingerprint(),
                    "access_verifier": b64::encode(secrets.access_verifier().as_bytes()),
                    "claim_verifier": b64::encode(secrets.claim_verifier().as_bytes()),
                    "answer": b64::encode(&answer),
                    "answer_token": token.to_base64url().as_str(),
                    "answer_verifier": token.proof().verifier().to_base64url(),
                    "note_nonce": b64::encode(&note_nonce),
                    "sealed_note": b64::encode(&sealed_note),
                    "request_link": request_link.to_url().as_str(),
                    "receive_link": receive_link.to_url().as_str(),
                })
            })
            .collect();
        json!({
            "format": "otm answer v1 (FORMAT.md, section 14)",
            "vectors": vectors,
        })
    }

    #[test]
    #[ignore = "rewrites the committed vectors; run only when the format changes"]
    fn regenerate_answer_vectors() {
        if std::env::var_os("OTM_REGENERATE_VECTORS").is_none() {
            eprintln!("set OTM_REGENERATE_VECTORS=1 to rewrite {ANSWER_VECTORS}");
            return;
        }
        let text = serde_json::to_string_pretty(&build_answer_vectors()).unwrap();
        std::fs::write(data(ANSWER_VECTORS), text + "\n").unwrap();
    }

    #[test]
    fn committed_answer_vectors_match_and_open() {
        let text = std::fs::read_to_string(data(ANSWER_VECTORS)).expect("committed answer vectors");
        let committed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(committed, build_answer_vectors());
        for v in committed["vectors"].as_array().unwrap() {
            let receive = crate::request::ReceiveSecret::from_base64url(
                v["receive_secret"].as_str().unwrap(),
            )
            .unwrap();
            let id: MessageId = v["request_id"].as_str().unwrap().parse().unwrap();
            let answer = b64_decode(v["answer"].as_str().unwrap());
            let opened = receive
                .open_answer(&id, v["note"].as_str().unwrap(), &answer)
                .unwrap();
            assert_eq!(opened.as_str(), v["text"].as_str().unwrap());
            let note = receive
                .answer_token()
                .open_note(
                    &receive.public_key(),
                    &b64_decode(v["sealed_note"].as_str().unwrap()),
                )
                .unwrap();
            assert_eq!(note.as_str(), v["note"].as_str().unwrap());
            let link = crate::RequestLink::parse(v["request_link"].as_str().unwrap()).unwrap();
            assert_eq!(link.public_key, receive.public_key());
            let link = crate::ReceiveLink::parse(v["receive_link"].as_str().unwrap()).unwrap();
            assert_eq!(link.secret.as_bytes(), receive.as_bytes());
        }
    }
}
