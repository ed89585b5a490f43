//! Arbitrary text as a link, fragment or ID: parsing never panics, and a
//! parsed link formats back to a link that parses to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otm_core::{Fragment, Link, MessageId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<MessageId>() {
        assert_eq!(id.to_string(), text);
    }
    if let Ok(fragment) = Fragment::parse(text) {
        let again = Fragment::parse(&fragment.to_text()).expect("formatted fragment parses");
        assert_eq!(again.key.as_bytes(), fragment.key.as_bytes());
        assert_eq!(again.passphrase, fragment.passphrase);
    }
    if let Ok(link) = Link::parse(text) {
        let again = Link::parse(&link.to_url()).expect("formatted link parses");
        assert_eq!(again.id, link.id);
        assert_eq!(again.base, link.base);
        assert_eq!(again.key.as_bytes(), link.key.as_bytes());
        assert_eq!(again.passphrase, link.passphrase);
    }
});
