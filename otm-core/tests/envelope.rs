//! Behaviour of the public API: round trips, tamper detection, limits,
//! passphrases and strict parsing.

use otm_core::{
    bucket_for, char_count, open, seal, validate, ClaimProof, ClaimVerifier, Error, Fragment, Key,
    Link, MessageId, Passphrase, Secrets, MAX_ENVELOPE_LEN, MAX_MESSAGE_CHARS, PADDING_BUCKETS,
};
use proptest::prelude::*;
use std::sync::OnceLock;

fn plain() -> (Key, Secrets) {
    let key = Key::generate().unwrap();
    let secrets = Secrets::derive(&key, None);
    (key, secrets)
}

/// PBKDF2 with 600k rounds is slow on purpose; derive one passphrase secret
/// per test binary and reuse it.
fn with_phrase() -> &'static (Key, Secrets) {
    static CELL: OnceLock<(Key, Secrets)> = OnceLock::new();
    CELL.get_or_init(|| {
        let key = Key::generate().unwrap();
        let phrase = Passphrase::new("hunter2 but longer").unwrap();
        let secrets = Secrets::derive(&key, Some(&phrase));
        (key, secrets)
    })
}

/// Text of at most 8000 Unicode scalar values, mixing 1- to 4-byte characters.
fn message() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..=MAX_MESSAGE_CHARS)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_message_round_trips(text in message()) {
        let (_, secrets) = plain();
        let envelope = seal(&secrets, &text).unwrap();
        prop_assert!(envelope.len() <= MAX_ENVELOPE_LEN);
        prop_assert_eq!(validate(&envelope).unwrap().bucket, bucket_for(text.len()).unwrap());
        let opened = open(&secrets, &envelope).unwrap();
        prop_assert_eq!(opened.as_str(), text.as_str());
    }

    #[test]
    fn any_message_round_trips_with_passphrase(text in message()) {
        let (_, secrets) = with_phrase();
        let envelope = seal(secrets, &text).unwrap();
        prop_assert!(validate(&envelope).unwrap().passphrase);
        let opened = open(secrets, &envelope).unwrap();
        prop_assert_eq!(opened.as_str(), text.as_str());
    }

    #[test]
    fn flipping_any_bit_makes_open_fail(text in "[ -~]{0,600}", pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (_, secrets) = plain();
        let mut envelope = seal(&secrets, &text).unwrap();
        let i = pos.index(envelope.len());
        envelope[i] ^= 1 << bit;
        prop_assert!(open(&secrets, &envelope).is_err());
    }

    #[test]
    fn open_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let (_, secrets) = plain();
        prop_assert!(open(&secrets, &bytes).is_err());
    }

    #[test]
    fn link_and_fragment_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = Link::parse(&text);
        let _ = Fragment::parse(&text);
        let _ = text.parse::<MessageId>();
    }
}

#[test]
fn every_bit_of_a_small_envelope_is_authenticated() {
    let (_, secrets) = plain();
    let envelope = seal(&secrets, "short").unwrap();
    for i in 0..envelope.len() {
        for bit in 0..8 {
            let mut e = envelope.clone();
            e[i] ^= 1 << bit;
            assert!(open(&secrets, &e).is_err(), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn length_is_hidden_within_a_bucket() {
    let (_, secrets) = plain();
    let a = seal(&secrets, "a").unwrap();
    let b = seal(&secrets, &"b".repeat(252)).unwrap();
    let c = seal(&secrets, &"c".repeat(253)).unwrap();
    assert_eq!(a.len(), b.len());
    assert!(c.len() > b.len());
    let max = seal(&secrets, &"\u{10FFFF}".repeat(MAX_MESSAGE_CHARS)).unwrap();
    assert_eq!(max.len(), MAX_ENVELOPE_LEN);
    assert_eq!(PADDING_BUCKETS.len(), 8);
}

#[test]
fn limit_counts_unicode_scalar_values() {
    let (_, secrets) = plain();
    // 8000 emoji are 16000 UTF-16 units and 32000 bytes, yet 8000 characters.
    let emoji = "😀".repeat(MAX_MESSAGE_CHARS);
    assert_eq!(char_count(&emoji), MAX_MESSAGE_CHARS);
    assert!(seal(&secrets, &emoji).is_ok());
    let over = "x".repeat(MAX_MESSAGE_CHARS + 1);
    assert_eq!(
        seal(&secrets, &over).unwrap_err(),
        Error::MessageTooLong {
            chars: 8001,
            max: 8000
        }
    );
    // A combining sequence counts as its scalar values, as in JavaScript.
    assert_eq!(char_count("e\u{301}"), 2);
}

#[test]
fn wrong_key_and_passphrase_mismatches_are_clear() {
    let (_, secrets) = plain();
    let envelope = seal(&secrets, "hi").unwrap();
    let (_, other) = plain();
    assert_eq!(
        open(&other, &envelope).unwrap_err(),
        Error::DecryptionFailed
    );
    let (key, phrased) = with_phrase();
    assert_eq!(
        open(phrased, &envelope).unwrap_err(),
        Error::PassphraseNotExpected
    );
    let sealed = seal(phrased, "hi").unwrap();
    let no_phrase = Secrets::derive(key, None);
    assert_eq!(
        open(&no_phrase, &sealed).unwrap_err(),
        Error::PassphraseRequired
    );
    let wrong = Secrets::derive(key, Some(&Passphrase::new("hunter3 but longer").unwrap()));
    assert_eq!(open(&wrong, &sealed).unwrap_err(), Error::DecryptionFailed);
    // Neither the link key alone nor the passphrase with another key yields the proof.
    assert_ne!(
        no_phrase.claim_proof().as_bytes(),
        phrased.claim_proof().as_bytes()
    );
    assert!(!phrased.claim_verifier().verify(wrong.claim_proof()));
    assert!(!phrased.claim_verifier().verify(no_phrase.claim_proof()));
    assert!(phrased.claim_verifier().verify(phrased.claim_proof()));
}

#[test]
fn structural_errors_are_specific() {
    let (_, secrets) = plain();
    let envelope = seal(&secrets, "hello").unwrap();
    assert!(matches!(validate(&[]), Err(Error::Truncated { .. })));
    assert!(matches!(
        validate(&envelope[..16]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        validate(b"PNG\x01aaaaaaaaaaaaaaaaaaaa"),
        Err(Error::BadMagic)
    ));
    let mut v9 = envelope.clone();
    v9[3] = 9;
    assert_eq!(validate(&v9).unwrap_err(), Error::UnsupportedVersion(9));
    let mut flags = envelope.clone();
    flags[4] = 0x03;
    assert_eq!(validate(&flags).unwrap_err(), Error::UnknownFlags(0x03));
    let mut long = envelope.clone();
    long.extend_from_slice(&[0; 7]);
    assert_eq!(validate(&long).unwrap_err(), Error::BadSize { len: 296 });
    let huge = [b'O', b'T', b'M', 1].repeat(MAX_ENVELOPE_LEN);
    assert!(matches!(validate(&huge), Err(Error::TooLarge { .. })));
}

#[test]
fn ids_are_strict_and_random() {
    let a = MessageId::generate().unwrap();
    let b = MessageId::generate().unwrap();
    assert_ne!(a, b);
    let text = a.to_string();
    assert_eq!(text.len(), 22);
    assert_eq!(text.parse::<MessageId>().unwrap(), a);
    for bad in [
        "",
        "short",
        &format!("{text}A"),
        &text.replace(&text[..1], "+"),
        "AAAAAAAAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAB",
    ] {
        assert!(
            matches!(bad.parse::<MessageId>(), Err(Error::BadId { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn secrets_and_keys_do_not_leak_through_debug() {
    let (key, secrets) = plain();
    let phrase = Passphrase::new("topsecret").unwrap();
    let all = format!("{key:?} {secrets:?} {:?} {phrase:?}", secrets.claim_proof());
    assert!(!all.contains(key.to_base64url().as_str()));
    assert!(!all.contains("topsecret"));
    assert!(!all.contains(secrets.claim_proof().to_base64url().as_str()));
    assert_eq!(format!("{key:?}"), "Key(..)");
}

#[test]
fn claim_values_round_trip_as_text() {
    let (_, secrets) = plain();
    let proof = ClaimProof::from_base64url(&secrets.claim_proof().to_base64url()).unwrap();
    let verifier = ClaimVerifier::from_base64url(&secrets.claim_verifier().to_base64url()).unwrap();
    assert!(verifier.verify(&proof));
    assert!(matches!(
        ClaimProof::from_base64url("abc"),
        Err(Error::BadClaim { .. })
    ));
    assert!(matches!(
        ClaimVerifier::from_base64url(&"!".repeat(43)),
        Err(Error::BadClaim { .. })
    ));
}

#[test]
fn links_round_trip_and_parse_strictly() {
    let id = MessageId::generate().unwrap();
    let key = Key::generate().unwrap();
    let link = Link::new("https://example.org/tools/", id, key.clone(), true).unwrap();
    let url = link.to_url();
    assert_eq!(
        url.as_str(),
        format!(
            "https://example.org/tools/otm/{id}#key={}&p=1",
            key.to_base64url().as_str()
        )
    );
    let back = Link::parse(&url).unwrap();
    assert_eq!(back.base, "https://example.org/tools");
    assert_eq!(back.id, id);
    assert_eq!(back.key.as_bytes(), key.as_bytes());
    assert!(back.passphrase);
    // A query string added by a chat app is ignored.
    let k = key.to_base64url();
    let q = Link::parse(&format!("http://h:8080/otm/{id}?utm=x#key={}", k.as_str())).unwrap();
    assert!(!q.passphrase);
    // Bare fragments and bare keys.
    assert!(!Fragment::parse(k.as_str()).unwrap().passphrase);
    assert!(
        Fragment::parse(&format!("#key={}&p=1", k.as_str()))
            .unwrap()
            .passphrase
    );

    let bad = |s: String| match Link::parse(&s) {
        Err(Error::BadLink { reason }) => reason,
        other => panic!("{s}: {other:?}"),
    };
    assert!(bad(format!("https://h/otm/{id}")).contains("no #key="));
    assert!(bad(format!("ftp://h/otm/{id}#key={}", k.as_str())).contains("http"));
    assert!(bad(format!("https://h/x/{id}#key={}", k.as_str())).contains("/otm/"));
    assert!(bad(format!("https://h/otm/abc#key={}", k.as_str())).contains("ID"));
    assert!(bad(format!("https://h/otm/{id}#key=abc")).contains("key"));
    assert!(bad(format!("https://h/otm/{id}#key={0}&key={0}", k.as_str())).contains("twice"));
    assert!(bad(format!("https://h/otm/{id}#key={}&zz=1", k.as_str())).contains("unknown"));
    assert!(bad(format!("https://h/otm/{id}#key={}&p=2", k.as_str())).contains("0 or 1"));
    assert!(bad(format!("https:///otm/{id}#key={}", k.as_str())).contains("http"));
}

#[test]
fn passphrases_are_checked() {
    assert!(matches!(
        Passphrase::new(""),
        Err(Error::BadPassphrase { .. })
    ));
    assert!(matches!(
        Passphrase::new(&"a".repeat(1025)),
        Err(Error::BadPassphrase { .. })
    ));
    assert!(Passphrase::new(&"a".repeat(1024)).is_ok());
}

#[test]
fn link_edge_cases_found_in_review() {
    let id = MessageId::generate().unwrap();
    let k = Key::generate().unwrap();
    let kt = k.to_base64url();
    // A base with ? or # would produce a link that cannot be parsed back.
    assert!(Link::new("https://h/?a", id, k.clone(), false).is_err());
    assert!(Link::new("https://h/#a", id, k.clone(), false).is_err());
    // Doubled slashes before /otm/ do not leave a trailing slash on the base.
    let l = Link::parse(&format!("https://h//otm/{id}#key={}", kt.as_str())).unwrap();
    assert_eq!(l.base, "https://h");
    // Exactly one # separates the fragment.
    assert!(Link::parse(&format!("https://h/otm/{id}##key={}", kt.as_str())).is_err());
    assert!(Link::parse(&format!("https://h/otm/{id}# key={}", kt.as_str())).is_err());
    assert_eq!(bucket_for(usize::MAX), None);
}
