//! The JSON API under `/api/v1`.

use otm_core::api::{
    CreateRequest, Created, ErrorBody, NotWaiting, OpenRequest, Opened, PublicConfig, Status,
};
use otm_core::ErrorCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::{
    AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageSecret, ManageToken, MessageId,
    MAX_ENVELOPE_LEN,
};
use otm_store::MessageStatus;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::limit::{client_ip, untrusted_forwarder};
use crate::metrics::Outcome;
use crate::policy::{CreateLimits, Decision};
use crate::service::NewEnvelope;
use crate::{Service, ServiceError};
use std::sync::atomic::Ordering;

/// Longest base64url text of a valid envelope.
pub(crate) const MAX_ENVELOPE_B64: usize = (MAX_ENVELOPE_LEN * 4).div_ceil(3);

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

/// The client address for rate limits.
pub(crate) struct ClientIp(pub(crate) std::net::IpAddr);

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

/// `GET /api/v1/config`: what the compose page needs to know.
pub(crate) async fn config(State(otm): State<Service>) -> Json<PublicConfig> {
    Json(otm.public_config())
}

/// `POST /api/v1/messages`: store a sealed envelope, if the create policy
/// (when there is one) lets this sender.
pub(crate) async fn create(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    head: Parts,
    request: Result<ApiJson<CreateRequest>, ApiError>,
) -> Result<Response, ApiError> {
    otm.0
        .create_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let limits = match &otm.0.config.create_policy {
        None => CreateLimits::default(),
        Some(policy) => match policy.0.decide(&head).await {
            Decision::Allow(limits) => limits,
            Decision::Deny { message } => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::CreateDenied,
                    message,
                ))
            }
        },
    };
    let ApiJson(req) = request.inspect_err(|_| otm.0.metrics.count(Outcome::BadRequest))?;
    let (envelope, verifier, access) =
        decode_create(&req).inspect_err(|_| otm.0.metrics.count(Outcome::BadRequest))?;
    let ttl = req.ttl_seconds.map(Duration::from_secs);
    limits
        .check(&envelope, ttl, otm.0.config.default_ttl)
        .map_err(|e| otm.failed(e))?;
    if let Some(quota) = &limits.quota {
        // Counted only once the request is known to be well formed.
        let key = format!("create:{}", quota.creator);
        let counted = otm
            .store()
            .count_quota(&key, quota.per, quota.max)
            .await
            .map_err(|e| ApiError::from(otm.failed(e.into())))?;
        if !counted {
            otm.0.metrics.count(Outcome::RateLimited);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::QuotaExceeded,
                format!(
                    "You may create {} messages per {}.",
                    quota.max,
                    humantime::format_duration(quota.per)
                ),
            ));
        }
    }
    let new = NewEnvelope {
        envelope,
        verifier,
        access,
        ttl,
    };
    let stored = otm
        .create_under(new, req.reference.as_deref(), limits.manage_secret.as_ref())
        .await?;
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

/// The wire forms of a create request decoded: the envelope's base64url
/// (bounded before decoding) and the two verifiers. The service checks the
/// rest.
fn decode_create(
    req: &CreateRequest,
) -> Result<(Vec<u8>, ClaimVerifier, AccessVerifier), ApiError> {
    if req.envelope.len() > MAX_ENVELOPE_B64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("The envelope is larger than the maximum of {MAX_ENVELOPE_LEN} bytes."),
        ));
    }
    let envelope = URL_SAFE_NO_PAD
        .decode(req.envelope.as_bytes())
        .map_err(|_| {
            ApiError::bad_request(ErrorCode::BadEnvelope, "envelope is not unpadded base64url")
        })?;
    let verifier = ClaimVerifier::from_base64url(&req.verifier)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadVerifier, format!("verifier: {e}")))?;
    let access = AccessVerifier::from_base64url(&req.access_verifier).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadVerifier, format!("access_verifier: {e}"))
    })?;
    Ok((envelope, verifier, access))
}

/// `POST /api/v1/messages/{id}/open`: hand the envelope to the holder of the
/// proof, exactly once.
pub(crate) async fn open(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    request: Result<ApiJson<OpenRequest>, ApiError>,
) -> Result<Json<Opened>, ApiError> {
    otm.0
        .open_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let bad = |e: ApiError| {
        otm.0.metrics.count(Outcome::BadRequest);
        e
    };
    let id: MessageId = id.parse().map_err(|e: otm_core::Error| {
        bad(ApiError::bad_request(ErrorCode::BadId, e.to_string()))
    })?;
    let ApiJson(req) = request.map_err(bad)?;
    let access = AccessProof::from_base64url(&req.access_proof).map_err(|e| {
        bad(ApiError::bad_request(
            ErrorCode::BadProof,
            format!("access_proof: {e}"),
        ))
    })?;
    let proof = ClaimProof::from_base64url(&req.proof).map_err(|e| {
        bad(ApiError::bad_request(
            ErrorCode::BadProof,
            format!("proof: {e}"),
        ))
    })?;
    // A wrong access proof is the same 404 as an unknown, opened or expired
    // message, with nothing counted.
    let envelope = otm.open(&id, &access, &proof).await?;
    Ok(Json(Opened {
        envelope: URL_SAFE_NO_PAD.encode(&envelope),
    }))
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The sender's `Authorization: Bearer …`: a message's own management
/// token, or a credential the create policy knows (an API token, say) from
/// which the token of each message it created is derived.
pub(crate) enum Sender {
    /// A management token.
    Token(ManageToken),
    /// The create policy's [`ManageSecret`] for this request.
    Secret(ManageSecret),
}

impl Sender {
    /// The management token this sender presents for message `id`.
    fn token_for(&self, id: &MessageId) -> ManageToken {
        match self {
            Sender::Token(token) => token.clone(),
            Sender::Secret(secret) => secret.token_for(id),
        }
    }
}

impl Sender {
    /// The sender in a request's head. Called after the rate limit: the
    /// create policy's lookup may be costly.
    async fn of(parts: &Parts, otm: &Service) -> Result<Self, ApiError> {
        let required = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::TokenRequired,
                "Send the management token as Authorization: Bearer <token>.",
            )
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(required)?;
        let (scheme, presented) = value.split_once(' ').ok_or_else(required)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(required());
        }
        if let Ok(token) = ManageToken::from_base64url(presented.trim()) {
            return Ok(Sender::Token(token));
        }
        let Some(policy) = &otm.0.config.create_policy else {
            return Err(required());
        };
        policy
            .0
            .manage_secret(parts)
            .await
            .map(Sender::Secret)
            .ok_or_else(required)
    }
}

fn status_body(s: &MessageStatus) -> Status {
    Status {
        state: s.state,
        expires_at: rfc3339(s.expires_at),
        expires_at_unix: unix_secs(s.expires_at),
        changed_at: s.changed_at.map(rfc3339),
        reference: s.reference.clone(),
    }
}

/// A sender's request: the rate limit, then its ID and the management
/// token it presents for that ID; the service checks the token.
async fn sender_request(
    otm: &Service,
    ip: std::net::IpAddr,
    id: &str,
    head: &Parts,
) -> Result<(MessageId, ManageToken), ApiError> {
    otm.0
        .open_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let id: MessageId = id
        .parse()
        .map_err(|e: otm_core::Error| ApiError::bad_request(ErrorCode::BadId, e.to_string()))?;
    let sender = Sender::of(head, otm).await?;
    let token = sender.token_for(&id);
    Ok((id, token))
}

/// A sender's request that found no message: expired (its receipt too), or
/// a wrong link.
fn sender_error(e: ServiceError) -> Response {
    match e {
        ServiceError::Gone => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "This message has expired, or the link is wrong.",
        )
        .into_response(),
        ServiceError::NotWaiting(status) => {
            let body = NotWaiting {
                error: ErrorBody {
                    error: ErrorCode::NotWaiting,
                    message: format!(
                        "The message is {} and can no longer be destroyed.",
                        status.state
                    ),
                    attempts_left: None,
                },
                status: status_body(&status),
            };
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
        e => ApiError::from(e).into_response(),
    }
}

/// `GET /api/v1/messages/{id}` with the management token: the read receipt.
pub(crate) async fn status(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<Json<Status>, Response> {
    let (id, token) = sender_request(&otm, ip, &id, &head)
        .await
        .map_err(IntoResponse::into_response)?;
    let status = otm.status(&id, &token).await.map_err(sender_error)?;
    Ok(Json(status_body(&status)))
}

/// `DELETE /api/v1/messages/{id}` with the management token: burn it unread.
pub(crate) async fn burn(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<Json<Status>, Response> {
    let (id, token) = sender_request(&otm, ip, &id, &head)
        .await
        .map_err(IntoResponse::into_response)?;
    let status = otm.burn(&id, &token).await.map_err(sender_error)?;
    Ok(Json(status_body(&status)))
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI_JSON,
    )
}
