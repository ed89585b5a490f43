//! The HTTP API's error codes: the stable `error` strings of every JSON error
//! body (`{"error": code, "message": text}`), shared by the server
//! (otm-http), its clients and the tests, and listed in `docs/openapi.json`.

use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)+) => {
        /// A stable, machine-readable API error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order documented.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it appears in the JSON body (snake_case).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The code a JSON body names, if it is one of these.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// 404: never existed, expired, already opened or burned (one answer for all).
    NotFound = "not_found",
    /// 403: a wrong claim proof (key or passphrase); `attempts_left` says how many remain.
    WrongProof = "wrong_proof",
    /// 409: a message with this ID already exists (a create that collided).
    Conflict = "conflict",
    /// 409: burn of a message that was already opened or burned.
    NotWaiting = "not_waiting",
    /// 413: a body or envelope over the limit.
    TooLarge = "too_large",
    /// 400: a request the store cannot honour as given.
    Invalid = "invalid",
    /// 400: the body is not valid JSON.
    BadJson = "bad_json",
    /// 400: a JSON field is missing, unknown or of the wrong type.
    BadField = "bad_field",
    /// 400: the body could not be read.
    BadBody = "bad_body",
    /// 400: the envelope is not base64url or not a valid envelope.
    BadEnvelope = "bad_envelope",
    /// 400: the claim verifier is malformed.
    BadVerifier = "bad_verifier",
    /// 400: the claim proof is malformed.
    BadProof = "bad_proof",
    /// 400: the message ID is malformed.
    BadId = "bad_id",
    /// 400: the expiry is not a positive number of seconds.
    BadTtl = "bad_ttl",
    /// 400: the expiry is longer than the server allows.
    TtlTooLong = "ttl_too_long",
    /// 401: status or burn without the sender's token.
    TokenRequired = "token_required",
    /// 403: status or burn with a wrong token.
    WrongToken = "wrong_token",
    /// 415: the body is not sent as `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// 404: no such static asset.
    NoSuchAsset = "no_such_asset",
    /// 404: nothing at this path.
    NoRoute = "no_route",
    /// 405: the path does not take this method.
    MethodNotAllowed = "method_not_allowed",
    /// 408: the request did not arrive within the request timeout.
    RequestTimeout = "request_timeout",
    /// 429: too many requests from this client; see `Retry-After`.
    RateLimited = "rate_limited",
    /// 503: the message store is unavailable; see `Retry-After`.
    StoreUnavailable = "store_unavailable",
    /// 500: an internal error (logged by the server, no detail sent).
    Internal = "internal",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(*code));
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!(ErrorCode::from_code("no_such_code"), None);
    }
}
