//! The HTTP API's wire types: the JSON request and response bodies of
//! `/api/v1` and the stable error codes, shared by the server (otm-http),
//! the client (otm-client), the CLI, the load tool and the tests, and
//! described by `docs/openapi.json` (a test holds the two equal).
//!
//! Requests reject unknown fields (the server is strict); responses accept
//! them (a client keeps working when a newer server adds a field).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal => $status:literal,)+) => {
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

            /// The HTTP status every answer with this code has: the one
            /// table that pairs them (the server derives each response's
            /// status from it; the OpenAPI document lists the same).
            pub const fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
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
    NotFound = "not_found" => 404,
    /// 403: the right access proof but a wrong claim proof (a wrong passphrase); `attempts_left` says how many remain.
    WrongProof = "wrong_proof" => 403,
    /// 409: a message with this ID already exists (a create that collided).
    Conflict = "conflict" => 409,
    /// 409: burn of a message that was already opened, burned or expired.
    NotWaiting = "not_waiting" => 409,
    /// 409: an answer to a request for a secret that was already answered
    /// (by someone else, or earlier by the same responder); nothing was
    /// stored.
    AlreadyAnswered = "already_answered" => 409,
    /// 501: this server's store cannot do what was asked (requests for a
    /// secret on a store without them).
    Unsupported = "unsupported" => 501,
    /// 413: a body or envelope over the limit.
    TooLarge = "too_large" => 413,
    /// 400: a request the store cannot honour as given.
    Invalid = "invalid" => 400,
    /// 400: the body is not valid JSON.
    BadJson = "bad_json" => 400,
    /// 400: a JSON field is missing, unknown or of the wrong type.
    BadField = "bad_field" => 400,
    /// 400: the body could not be read.
    BadBody = "bad_body" => 400,
    /// 400: the envelope is not base64url or not a valid envelope.
    BadEnvelope = "bad_envelope" => 400,
    /// 400: the claim verifier is malformed.
    BadVerifier = "bad_verifier" => 400,
    /// 400: the claim proof is malformed.
    BadProof = "bad_proof" => 400,
    /// 400: the message ID is malformed.
    BadId = "bad_id" => 400,
    /// 400: the expiry is not a positive number of seconds.
    BadTtl = "bad_ttl" => 400,
    /// 400: the expiry is longer than the server allows.
    TtlTooLong = "ttl_too_long" => 400,
    /// 400: the reference is empty, longer than 256 bytes, or holds a
    /// control character.
    BadReference = "bad_reference" => 400,
    /// 403: this creator may not give a reference (by default, an
    /// anonymous one: a reference names the host's own records, so only a
    /// creator the host knows may set one).
    ReferenceNotAllowed = "reference_not_allowed" => 403,
    /// 400: the server's policy requires this sender to use a passphrase.
    PassphraseRequired = "passphrase_required" => 400,
    /// 403: the server's policy does not let this sender create messages.
    CreateDenied = "create_denied" => 403,
    /// 401: status or burn without the sender's token.
    TokenRequired = "token_required" => 401,
    /// 403: status or burn with a wrong token, as older servers answered
    /// it. This version answers a wrong token exactly like an unknown ID
    /// (`not_found`), so an ID alone tells nothing; the code stays for
    /// clients of older servers.
    WrongToken = "wrong_token" => 403,
    /// 415: the body is not sent as `application/json`.
    UnsupportedMediaType = "unsupported_media_type" => 415,
    /// 404: no such static asset.
    NoSuchAsset = "no_such_asset" => 404,
    /// 404: nothing at this path.
    NoRoute = "no_route" => 404,
    /// 405: the path does not take this method.
    MethodNotAllowed = "method_not_allowed" => 405,
    /// 408: the request did not arrive within the request timeout.
    RequestTimeout = "request_timeout" => 408,
    /// 429: too many requests from this client; see `Retry-After`.
    RateLimited = "rate_limited" => 429,
    /// 429: this creator used up its quota of messages for now.
    QuotaExceeded = "quota_exceeded" => 429,
    /// 503: the message store is unavailable; see `Retry-After`.
    StoreUnavailable = "store_unavailable" => 503,
    /// 500: an internal error (logged by the server, no detail sent).
    Internal = "internal" => 500,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ErrorCode::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format_args!("unknown error code {code:?}")))
    }
}

/// The body of every API error: `{"error": code, "message": text}`, and
/// `attempts_left` with [`ErrorCode::WrongProof`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable machine-readable code.
    pub error: ErrorCode,
    /// An explanation for people (wording may change between releases).
    pub message: String,
    /// With `wrong_proof`: how many wrong proofs are still allowed, the last
    /// of which destroys the message (0: it was just destroyed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// `GET /api/v1/config`: what a client needs to know before it creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicConfig {
    /// The longest expiry this server accepts, in seconds.
    pub max_ttl_seconds: u64,
    /// The expiry of a create that names none, in seconds.
    pub default_ttl_seconds: u64,
    /// The expiries the compose page offers, in seconds.
    pub ttl_choices_seconds: Vec<u64>,
    /// The longest message, in characters (Unicode scalar values).
    pub max_message_chars: u64,
    /// The largest envelope, in bytes.
    pub max_envelope_bytes: u64,
    /// Wrong claim proofs allowed per message; the one that reaches this
    /// number destroys it.
    pub max_failed_attempts: u32,
    /// The public base URL for links, or `None`: build links on the origin
    /// the client used.
    pub link_base: Option<String>,
    /// The most recipients of one message (`POST /api/v1/groups`):
    /// [`MAX_GROUP`](crate::MAX_GROUP), or 0 when this server's store
    /// cannot store a group all or none (and when an older server does not
    /// say).
    #[serde(default)]
    pub max_recipients: u32,
}

/// `POST /api/v1/messages`: a sealed envelope to store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The envelope (docs/FORMAT.md), unpadded base64url.
    pub envelope: String,
    /// The claim verifier, unpadded base64url (43 characters).
    pub verifier: String,
    /// The access verifier, unpadded base64url (43 characters).
    pub access_verifier: String,
    /// The expiry in seconds; the server's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The sender's own opaque reference (a user or ticket ID, 1 to 256
    /// bytes): stored with the message, returned to the sender in its
    /// status, never to a reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `201 Created`: the stored message's ID and the sender's token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The message ID (22 base64url characters).
    pub id: String,
    /// The reveal page's path relative to the mount point, `/otm/{id}`.
    pub path: String,
    /// The expiry, RFC 3339 (UTC, whole seconds).
    pub expires_at: String,
    /// The expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
    /// The sender's secret for status and burn, unpadded base64url. Shown
    /// once; the server keeps only its SHA-256.
    pub manage_token: String,
}

/// `POST /api/v1/messages/{id}/open`: the access proof and the claim proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The access proof (from the key alone), unpadded base64url (43
    /// characters). A wrong one is answered like an unknown message.
    pub access_proof: String,
    /// The claim proof (key and passphrase), unpadded base64url (43
    /// characters). A wrong one counts as a failed attempt.
    pub proof: String,
}

/// `200` to an open: the envelope, handed out exactly once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The envelope, unpadded base64url.
    pub envelope: String,
}

/// Where a message is in its life, as its sender's status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// Stored and not yet opened.
    Waiting,
    /// Taken by its reader (the envelope is gone).
    Opened,
    /// Destroyed by its sender or by too many wrong proofs.
    Burned,
    /// Past its expiry and not yet removed.
    Expired,
}

impl MessageState {
    /// Lowercase name: `waiting`, `opened`, `burned`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Waiting => "waiting",
            MessageState::Opened => "opened",
            MessageState::Burned => "burned",
            MessageState::Expired => "expired",
        }
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET` and `DELETE /api/v1/messages/{id}` (with the management token):
/// the sender's read receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The state.
    pub state: MessageState,
    /// The message's expiry, RFC 3339; the receipt lives until then.
    pub expires_at: String,
    /// The expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
    /// When it was opened or burned, RFC 3339, where known.
    pub changed_at: Option<String>,
    /// The reference given at create, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `409` to a burn of a message that is no longer waiting: the error and
/// the message's status in one body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotWaiting {
    /// `error` (always [`ErrorCode::NotWaiting`]) and `message`.
    #[serde(flatten)]
    pub error: ErrorBody,
    /// The status that made the burn impossible.
    #[serde(flatten)]
    pub status: Status,
}

/// One sealed message of a [`CreateGroupRequest`]: what a single create
/// carries, without the expiry and reference the group shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberRequest {
    /// The envelope (docs/FORMAT.md), unpadded base64url.
    pub envelope: String,
    /// The claim verifier, unpadded base64url (43 characters).
    pub verifier: String,
    /// The access verifier, unpadded base64url (43 characters).
    pub access_verifier: String,
}

/// `POST /api/v1/groups`: one message for several recipients, as 2 to
/// [`MAX_GROUP`](crate::MAX_GROUP) independent envelopes (each sealed with
/// its own key) stored all or none, with one expiry and one reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// The members, in order.
    pub members: Vec<GroupMemberRequest>,
    /// The expiry in seconds; the server's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The sender's own reference, kept with every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `201 Created` to a group: each member as a single create answers it, in
/// the order sent, and the secret the members' management tokens derive
/// from (FORMAT.md §9.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    /// The stored members, in the order of the request.
    pub members: Vec<Created>,
    /// The group secret, unpadded base64url (43 characters): each member's
    /// `manage_token` is `HMAC-SHA256(secret, "otm manage token v1" 0x00
    /// id)`, so the group status link carries it instead of every token.
    /// Absent when the tokens derive from the creator's own credential (an
    /// API token that manages what it creates). Shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_secret: Option<String>,
    /// The expiry every member shares, RFC 3339 (UTC, whole seconds).
    pub expires_at: String,
    /// The same expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// One message and its management token in a [`GroupManageRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberToken {
    /// The message ID.
    pub id: String,
    /// Its management token, unpadded base64url.
    pub manage_token: String,
}

/// `POST /api/v1/groups/status` and `POST /api/v1/groups/burn`: 1 to
/// [`MAX_GROUP`](crate::MAX_GROUP) messages the sender manages, each with
/// its own token, read (or burned) in one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupManageRequest {
    /// The messages, in the order the answer lists them.
    pub members: Vec<MemberToken>,
}

/// `200` to a group status or burn: each message's status, in the order
/// asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// One entry per message asked for.
    pub members: Vec<MemberStatus>,
}

/// One message of a [`GroupStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The message ID, as asked.
    pub id: String,
    /// Its status; `null` when there is no such message for this token
    /// (expired with its receipt, or a wrong link: the two read the same).
    pub status: Option<Status>,
}

/// `POST /api/v1/requests`: a request for a secret (FORMAT.md §14), as the
/// asker's side sends it. Nothing in it reads the answer: the note is
/// sealed for request-link holders, and the three verifiers are SHA-256
/// digests of proofs the server never sees before they are used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The sealed note (§14.3, 2076 bytes), unpadded base64url.
    pub note: String,
    /// SHA-256 of the responder's answer proof, unpadded base64url.
    pub answer_verifier: String,
    /// The answer's access verifier (from the receive secret), unpadded
    /// base64url.
    pub access_verifier: String,
    /// The answer's claim verifier (from the receive secret and the
    /// optional passphrase), unpadded base64url.
    pub verifier: String,
    /// How long the request (and its answer) lives, in seconds; the
    /// server's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The asker's own reference, as for a message; the answer inherits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `201 Created` to a request for a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// The request's ID (22 base64url characters); the answer is stored
    /// under it.
    pub id: String,
    /// The responder's page, relative to the mount point: `/request/{id}`.
    pub path: String,
    /// The asker's page, relative to the mount point: `/receive/{id}`.
    pub receive_path: String,
    /// The expiry, RFC 3339 (UTC, whole seconds).
    pub expires_at: String,
    /// The expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// `POST /api/v1/requests/{id}/read`: the responder's proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The answer proof (from the request link's token), unpadded
    /// base64url. A wrong one is answered like an unknown request.
    pub answer_proof: String,
}

/// What a request-link holder sees of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// The sealed note, unpadded base64url (opened with the request link's
    /// token).
    pub note: String,
    /// Who asked, as this server established it: `None` for an anonymous
    /// asker ("anyone could have made this request").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<crate::CreatorInfo>,
    /// The expiry, RFC 3339.
    pub expires_at: String,
    /// The expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
    /// Whether it was answered already (then a new answer is refused).
    pub answered: bool,
}

/// `POST /api/v1/requests/{id}/answer`: the responder's proof and the
/// sealed answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The answer proof, unpadded base64url.
    pub answer_proof: String,
    /// The sealed answer (FORMAT.md §14.6), unpadded base64url.
    pub answer: String,
}

/// `201 Created` to an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// When it was stored, RFC 3339.
    pub answered_at: String,
}

/// Where a request is in its life, as its asker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for its answer.
    Waiting,
    /// Answered; the answer waits to be opened.
    Answered,
    /// The answer was opened (it is gone).
    Opened,
    /// The answer was destroyed unread (too many wrong passphrases).
    Burned,
}

impl RequestState {
    /// Lowercase name: `waiting`, `answered`, `opened`, `burned`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Waiting => "waiting",
            RequestState::Answered => "answered",
            RequestState::Opened => "opened",
            RequestState::Burned => "burned",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /api/v1/requests/{id}` (with the answer's access proof as
/// `Authorization: Bearer`): the asker's view of a request. (`DELETE` on
/// the same path withdraws it: `204`.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// The state.
    pub state: RequestState,
    /// The request's expiry, RFC 3339.
    pub expires_at: String,
    /// The expiry in seconds since the Unix epoch.
    pub expires_at_unix: u64,
    /// When it was answered, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// When the answer was opened or destroyed, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<String>,
    /// The reference given when asking, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
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
