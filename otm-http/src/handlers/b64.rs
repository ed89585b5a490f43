//! Unpadded base64url (RFC 4648 §5) of the API's large fields (envelopes,
//! request notes and answers), with SIMD: on a create and an open it was
//! the largest cost of the server's own code after the JSON around it
//! (BENCHMARKS.md, "Server CPU per cycle"). As strict as the `base64`
//! crate's `URL_SAFE_NO_PAD` used for the small fields: no padding, no
//! other alphabet, canonical trailing bits (the tests compare the two).

use base64_simd::URL_SAFE_NO_PAD;

/// The bytes of `text`, or `None` if it is not unpadded base64url.
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode_to_vec(text).ok()
}

/// Appends the unpadded base64url of `bytes` to `out`.
pub(crate) fn encode_append(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_append(bytes, out);
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as REFERENCE;
    use base64::Engine;

    /// Every length up to a few SIMD blocks and beyond, encoded alike.
    #[test]
    fn encodes_like_the_base64_crate() {
        for len in (0..200).chain([2081, 8192]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let mut out = String::from("prefix:");
            super::encode_append(&bytes, &mut out);
            assert_eq!(out, format!("prefix:{}", REFERENCE.encode(&bytes)));
            assert_eq!(super::decode(&out.as_bytes()[7..]).unwrap(), bytes);
        }
    }

    /// What the `base64` crate refuses, this refuses: padding, the standard
    /// alphabet, spaces, a lone last character, non-canonical trailing bits,
    /// anything not ASCII; in short texts and in long ones (the SIMD path).
    #[test]
    fn refuses_what_the_base64_crate_refuses() {
        let long = REFERENCE.encode([0x5au8; 300]);
        let mut texts: Vec<String> = [
            "", "A", "AA", "AAA", "AAAA", "AB", "AC", "AAB", "AAC", "AQ", "AR", "AAE", "AAF",
            "AA==", "AAA=", "AA=A", "+/+/", "-_-_", "a b", "a\nb", "ü", "AA\u{0}A", "====",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (at, bad) in [(0, "+"), (100, "/"), (150, "="), (399, "!"), (200, " ")] {
            let mut t = long.clone();
            t.replace_range(at..at + 1, bad);
            texts.push(t);
        }
        texts.push(long.clone());
        texts.push(format!("{long}A"));
        texts.push(format!("{long}=="));
        // The last character with trailing bits set.
        let short = REFERENCE.encode([0xffu8; 301]);
        texts.push(format!("{}{}", &short[..short.len() - 1], "B"));
        for text in &texts {
            assert_eq!(
                super::decode(text.as_bytes()),
                REFERENCE.decode(text).ok(),
                "{text:?}"
            );
        }
    }
}
