//! The JSON API under `/api/v1`: each handler decodes its request, says
//! who sent it (a [`Caller`]), calls the [`Service`] and encodes the
//! answer. A request refused before it reaches the service (malformed, or
//! a credential the policy refuses) still counts against its caller's rate
//! limit.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use otm_core::api::{
    CreateRequest, Created, ErrorBody, NotWaiting, OpenRequest, PublicConfig, Status,
};
use otm_core::{
    AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ErrorCode, ManageToken, MessageId,
    MAX_ENVELOPE_LEN,
};
use serde::de::DeserializeOwned;

use crate::caller::{Authorization, Caller};
use crate::error::ApiError;
use crate::limit::{client_ip, untrusted_forwarder};
use crate::service::{Create, Op, Receipt};
use crate::{Service, ServiceError};

/// Longest base64url text of a valid envelope.
pub(crate) const MAX_ENVELOPE_B64: usize = (MAX_ENVELOPE_LEN * 4).div_ceil(3);

/// Largest request body the API reads: a maximum envelope in base64url plus
/// the JSON around it.
pub const API_BODY_LIMIT: usize = MAX_ENVELOPE_B64 + 1024;

/// The OpenAPI document of the JSON API (`otm-http/openapi.json`, linked
/// from `docs/openapi.json`).
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// `Json` whose rejections are [`ApiError`]s with JSON bodies.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(ApiError::from)
    }
}

/// The client address: the peer, or behind trusted proxies the client
/// they name.
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<Service> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, otm: &Service) -> Result<Self, ApiError> {
        let trusted = &otm.0.config.trusted_proxies;
        let warned = &otm.0.forwarding_warned;
        if !warned.load(Ordering::Relaxed) {
            if let Some(peer) = untrusted_forwarder(parts, trusted) {
                if !warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %peer,
                        "X-Forwarded-For from a peer that is not a trusted proxy is ignored: \
                         behind a proxy every client shares its rate-limit bucket; trust the \
                         proxy (--trusted-proxy, Config::trusted_proxies). Logged once."
                    );
                }
            }
        }
        Ok(ClientIp(client_ip(parts, trusted)))
    }
}

/// A request refused before the service: counted against `caller`'s rate
/// limit for `op` (so flooding with malformed requests is limited too),
/// then answered with `error` (or the 429).
pub(crate) async fn refuse(otm: &Service, caller: &Caller, op: Op, error: ApiError) -> ApiError {
    match otm.admit(caller, op).await {
        Err(limited) => limited.into(),
        Ok(()) => error,
    }
}

/// [`refuse`] for a malformed request, counted as one in the metrics.
pub(crate) async fn malformed(otm: &Service, caller: &Caller, op: Op, error: ApiError) -> ApiError {
    let error = refuse(otm, caller, op, error).await;
    if error.code() != ErrorCode::RateLimited {
        otm.count_bad_request();
    }
    error
}

/// Who sent `head`: what the create policy identifies, or the anonymous
/// client at `ip` when there is no policy.
async fn identify(
    otm: &Service,
    head: &Parts,
    ip: IpAddr,
) -> Result<Caller, crate::policy::Refusal> {
    match &otm.0.config.create_policy {
        Some(policy) => policy.0.identify(head, ip).await,
        None => Ok(Caller::Anonymous(ip)),
    }
}

/// Who sent a create (or a request for a secret): what the create policy
/// identifies; a refusal is `403 create_denied`, counted against the
/// client's address.
pub(crate) async fn creator(otm: &Service, head: &Parts, ip: IpAddr) -> Result<Caller, ApiError> {
    match identify(otm, head, ip).await {
        Ok(caller) => Ok(caller),
        Err(refusal) => {
            let denied = ApiError::new(ErrorCode::CreateDenied, refusal.message);
            Err(refuse(otm, &Caller::Anonymous(ip), Op::Create, denied).await)
        }
    }
}

/// `GET /api/v1/config`: what the compose page needs to know.
pub(crate) async fn config(State(otm): State<Service>) -> Json<PublicConfig> {
    Json(otm.public_config())
}

/// `POST /api/v1/messages`: store a sealed envelope through the service's
/// create pipeline.
pub(crate) async fn create(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    head: Parts,
    request: Result<ApiJson<CreateRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = creator(&otm, &head, ip).await?;
    let request = match request.and_then(|ApiJson(req)| decode_create(req)) {
        Ok(request) => request,
        Err(e) => return Err(malformed(&otm, &caller, Op::Create, e).await),
    };
    let stored = otm.create(&caller, request).await?;
    let path = format!("/otm/{}", stored.id);
    let body = Created {
        id: stored.id.to_string(),
        path,
        expires_at: rfc3339(stored.expires_at),
        expires_at_unix: unix_secs(stored.expires_at),
        manage_token: stored.manage_token.to_base64url().to_string(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, body.path.clone())],
        Json(body),
    )
        .into_response())
}

/// The wire form of a create request decoded: the envelope's base64url
/// (bounded before decoding), the two verifiers, the expiry and the
/// reference. The service checks the rest.
pub(crate) fn decode_create(req: CreateRequest) -> Result<Create, ApiError> {
    if req.envelope.len() > MAX_ENVELOPE_B64 {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("The envelope is larger than the maximum of {MAX_ENVELOPE_LEN} bytes."),
        ));
    }
    let envelope = super::b64::decode(req.envelope.as_bytes()).ok_or_else(|| {
        ApiError::new(ErrorCode::BadEnvelope, "envelope is not unpadded base64url")
    })?;
    let verifier = ClaimVerifier::from_base64url(&req.verifier)
        .map_err(|e| ApiError::new(ErrorCode::BadVerifier, format!("verifier: {e}")))?;
    let access = AccessVerifier::from_base64url(&req.access_verifier)
        .map_err(|e| ApiError::new(ErrorCode::BadVerifier, format!("access_verifier: {e}")))?;
    let mut create = Create::new(envelope, verifier, access);
    create.ttl = req.ttl_seconds.map(Duration::from_secs);
    create.reference = req.reference;
    Ok(create)
}

/// `POST /api/v1/messages/{id}/open`: hand the envelope to the holder of the
/// proof, exactly once. Readers are always anonymous.
pub(crate) async fn open(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    request: Result<ApiJson<OpenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = Caller::Anonymous(ip);
    let decoded = (|| {
        let id: MessageId = id
            .parse()
            .map_err(|e: otm_core::Error| ApiError::new(ErrorCode::BadId, e.to_string()))?;
        let ApiJson(req) = request?;
        let access = AccessProof::from_base64url(&req.access_proof)
            .map_err(|e| ApiError::new(ErrorCode::BadProof, format!("access_proof: {e}")))?;
        let proof = ClaimProof::from_base64url(&req.proof)
            .map_err(|e| ApiError::new(ErrorCode::BadProof, format!("proof: {e}")))?;
        Ok((id, access, proof))
    })();
    let (id, access, proof) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return Err(malformed(&otm, &caller, Op::Read, e).await),
    };
    // A wrong access proof is the same 404 as an unknown, opened or expired
    // message, with nothing counted.
    let envelope = otm.open(&caller, &id, &access, &proof).await?;
    Ok(opened_body(&envelope))
}

/// The `200` of an open: an [`Opened`](otm_core::api::Opened), `{"envelope":"…"}`, written into
/// one buffer as the envelope is encoded. The unpadded base64url alphabet
/// (RFC 4648 §5: letters, digits, `-`, `_`) holds no character JSON
/// escapes, so the text needs no serializer scanning it a second time:
/// on an open that scan and its copies were the largest cost of the
/// server's own code (BENCHMARKS.md, "Server CPU per cycle").
fn opened_body(envelope: &[u8]) -> Response {
    const HEAD: &str = "{\"envelope\":\"";
    const TAIL: &str = "\"}";
    let mut body = String::with_capacity(HEAD.len() + envelope.len().div_ceil(3) * 4 + TAIL.len());
    body.push_str(HEAD);
    super::b64::encode_append(envelope, &mut body);
    body.push_str(TAIL);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn status_body(s: &Receipt) -> Status {
    Status {
        state: s.state,
        expires_at: rfc3339(s.expires_at),
        expires_at_unix: unix_secs(s.expires_at),
        changed_at: s.changed_at.map(rfc3339),
        reference: s.reference.clone(),
    }
}

/// What a status or burn request presents: a message's own management
/// token, or a credential the create policy identifies as a caller that
/// manages what it created (an API token), from which the token of each
/// of its messages is derived.
enum Presented {
    Token(ManageToken),
    Derived,
    Nothing,
}

/// A sender's request decoded: who sent it, the ID and the management
/// token presented for that ID. The service checks the token.
async fn sender_request(
    otm: &Service,
    ip: IpAddr,
    id: &str,
    head: &Parts,
) -> Result<(Caller, MessageId, ManageToken), ApiError> {
    let (caller, presented) = match Authorization::of(&head.headers) {
        Authorization::Bearer(value) => match ManageToken::from_base64url(value) {
            Ok(token) => (Caller::Anonymous(ip), Presented::Token(token)),
            Err(_) => match identify(otm, head, ip).await {
                Ok(caller) if caller.manage_secret().is_some() => (caller, Presented::Derived),
                _ => (Caller::Anonymous(ip), Presented::Nothing),
            },
        },
        Authorization::Absent | Authorization::Other => (Caller::Anonymous(ip), Presented::Nothing),
    };
    let id: MessageId = match id.parse() {
        Ok(id) => id,
        Err(e) => {
            let e: otm_core::Error = e;
            let bad = ApiError::new(ErrorCode::BadId, e.to_string());
            return Err(refuse(otm, &caller, Op::Read, bad).await);
        }
    };
    let token = match (&presented, caller.manage_secret()) {
        (Presented::Token(token), _) => token.clone(),
        (Presented::Derived, Some(secret)) => secret.token_for(&id),
        _ => {
            let required = ApiError::new(
                ErrorCode::TokenRequired,
                "Send the management token as Authorization: Bearer <token>.",
            );
            return Err(refuse(otm, &caller, Op::Read, required).await);
        }
    };
    Ok((caller, id, token))
}

/// A sender's request that found no message: expired (its receipt too), or
/// a wrong link. A wrong management token is answered exactly like an
/// unknown ID (status, headers, body), so that an ID alone never tells
/// whether its message still exists.
fn sender_error(e: ServiceError) -> Response {
    match e {
        ServiceError::Gone | ServiceError::WrongToken => ApiError::new(
            ErrorCode::NotFound,
            "This message has expired, or the link is wrong.",
        )
        .into_response(),
        ServiceError::NotWaiting(status) => {
            let code = ErrorCode::NotWaiting;
            let body = NotWaiting {
                error: ErrorBody {
                    error: code,
                    message: format!(
                        "The message is {} and can no longer be destroyed.",
                        status.state
                    ),
                    attempts_left: None,
                },
                status: status_body(&status),
            };
            let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::CONFLICT);
            (status, Json(body)).into_response()
        }
        e => ApiError::from(e).into_response(),
    }
}

/// What a sender asks of its message.
#[derive(Clone, Copy)]
enum SenderOp {
    Status,
    Burn,
}

/// A sender's request: decoded, then the service's status or burn, and the
/// receipt as the API shows it.
async fn sender(
    otm: &Service,
    ip: IpAddr,
    id: &str,
    head: &Parts,
    op: SenderOp,
) -> Result<Json<Status>, Response> {
    let (caller, id, token) = sender_request(otm, ip, id, head)
        .await
        .map_err(IntoResponse::into_response)?;
    let receipt = match op {
        SenderOp::Status => otm.status(&caller, &id, &token).await,
        SenderOp::Burn => otm.burn(&caller, &id, &token).await,
    };
    Ok(Json(status_body(&receipt.map_err(sender_error)?)))
}

/// `GET /api/v1/messages/{id}` with the management token: the read receipt.
pub(crate) async fn status(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<Json<Status>, Response> {
    sender(&otm, ip, &id, &head, SenderOp::Status).await
}

/// `DELETE /api/v1/messages/{id}` with the management token: burn it unread.
pub(crate) async fn burn(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<Json<Status>, Response> {
    sender(&otm, ip, &id, &head, SenderOp::Burn).await
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use otm_core::api::Opened;

    /// The body written by hand is the JSON serde writes for an
    /// [`Opened`], for every length of envelope (each base64 tail).
    #[tokio::test]
    async fn an_opened_body_is_the_serialized_opened() {
        for len in [0usize, 1, 2, 3, 4, 100, 2081, MAX_ENVELOPE_LEN] {
            let envelope: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let response = opened_body(&envelope);
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let expected = Opened {
                envelope: URL_SAFE_NO_PAD.encode(&envelope),
            };
            assert_eq!(body, serde_json::to_vec(&expected).unwrap(), "length {len}");
            let parsed: Opened = serde_json::from_slice(&body).unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(parsed.envelope).unwrap(), envelope);
        }
    }
}
