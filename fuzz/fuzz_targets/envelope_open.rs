//! Arbitrary bytes as an envelope: parsing, validation and opening never
//! panic, and nothing but a genuine seal under this key ever opens.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use otm_core::{open, seal, validate, Header, Key, Secrets};

fn secrets() -> &'static Secrets {
    static S: OnceLock<Secrets> = OnceLock::new();
    S.get_or_init(|| Secrets::derive(&Key::from_bytes([7; 32]), None))
}

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    let valid = validate(data);
    let opened = open(secrets(), data);
    if valid.is_err() {
        assert!(opened.is_err());
    }
    // A forged envelope would have to break GCM; anything that opens must
    // round-trip through seal again.
    if let Ok(text) = opened {
        let again = seal(secrets(), &text).expect("opened text re-seals");
        assert_eq!(open(secrets(), &again).expect("re-sealed opens").as_str(), text.as_str());
    }
    // Treat the input as a message too: sealing any valid UTF-8 round-trips.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(env) = seal(secrets(), text) {
            assert_eq!(open(secrets(), &env).expect("own seal opens").as_str(), text);
        }
    }
});
