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
    validate, AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageToken, MessageId,
    MAX_ENVELOPE_LEN, MAX_MESSAGE_CHARS,
};
use otm_store::{MessageState, MessageStatus, NewMessage, StoreError};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::limit::{client_ip, untrusted_forwarder};
use crate::metrics::Outcome;
use crate::Otm;
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

impl FromRequestParts<Otm> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, otm: &Otm) -> Result<Self, ApiError> {
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
pub(crate) async fn config(State(otm): State<Otm>) -> Json<PublicConfig> {
    let c = &otm.0.config;
    Json(PublicConfig {
        max_ttl_seconds: c.max_ttl.as_secs(),
        default_ttl_seconds: c.default_ttl.as_secs(),
        ttl_choices_seconds: c
            .effective_ttl_choices()
            .iter()
            .map(Duration::as_secs)
            .collect(),
        max_message_chars: MAX_MESSAGE_CHARS as u64,
        max_envelope_bytes: MAX_ENVELOPE_LEN as u64,
        max_failed_attempts: otm.0.store.options().max_failed_attempts,
        link_base: c.base_url.clone(),
    })
}

/// `POST /api/v1/messages`: store a sealed envelope.
pub(crate) async fn create(
    State(otm): State<Otm>,
    ClientIp(ip): ClientIp,
    request: Result<ApiJson<CreateRequest>, ApiError>,
) -> Result<Response, ApiError> {
    otm.0
        .create_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let ApiJson(req) = request.inspect_err(|_| otm.0.metrics.count(Outcome::BadRequest))?;
    let Checked {
        envelope,
        verifier,
        access,
        ttl,
    } = check_create(&otm, req).inspect_err(|_| otm.0.metrics.count(Outcome::BadRequest))?;
    let expires_at = SystemTime::now() + ttl;
    let manage = ManageToken::generate().map_err(|_| rng_failed())?;
    // A 128-bit ID collides only by a broken RNG or on purpose; retry anyway.
    let mut attempts = 0;
    let id = loop {
        let id = MessageId::generate().map_err(|_| rng_failed())?;
        let message = NewMessage {
            envelope: envelope.clone(),
            verifier,
            access,
            expires_at,
            manage: Some(manage.verifier()),
        };
        match otm.0.store.put(&id, message).await {
            Ok(()) => break id,
            Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
            Err(e) => return Err(otm.store_error(e)),
        }
    };
    otm.0.metrics.count(Outcome::Created);
    tracing::info!(id = %id, bytes = envelope.len(), ttl_s = ttl.as_secs(), "message created");
    let path = format!("/otm/{id}");
    let body = Created {
        id: id.to_string(),
        path,
        expires_at: rfc3339(expires_at),
        expires_at_unix: unix_secs(expires_at),
        manage_token: manage.to_base64url().to_string(),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, body.path.clone())],
        Json(body),
    )
        .into_response())
}

/// A create request, checked: the envelope, its two verifiers, the expiry.
struct Checked {
    envelope: Vec<u8>,
    verifier: ClaimVerifier,
    access: AccessVerifier,
    ttl: Duration,
}

fn check_create(otm: &Otm, req: CreateRequest) -> Result<Checked, ApiError> {
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
    validate(&envelope).map_err(|e| match e {
        otm_core::Error::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            e.to_string(),
        ),
        _ => ApiError::bad_request(ErrorCode::BadEnvelope, e.to_string()),
    })?;
    let verifier = ClaimVerifier::from_base64url(&req.verifier)
        .map_err(|e| ApiError::bad_request(ErrorCode::BadVerifier, format!("verifier: {e}")))?;
    let access = AccessVerifier::from_base64url(&req.access_verifier).map_err(|e| {
        ApiError::bad_request(ErrorCode::BadVerifier, format!("access_verifier: {e}"))
    })?;
    let config = &otm.0.config;
    let ttl = match req.ttl_seconds {
        None => config.default_ttl,
        Some(0) => {
            return Err(ApiError::bad_request(
                ErrorCode::BadTtl,
                "ttl_seconds must be at least 1",
            ))
        }
        Some(s) => Duration::from_secs(s),
    };
    if ttl > config.max_ttl {
        return Err(ApiError::bad_request(
            ErrorCode::TtlTooLong,
            format!(
                "ttl_seconds is {}; this server keeps messages at most {} ({} s)",
                ttl.as_secs(),
                humantime::format_duration(config.max_ttl),
                config.max_ttl.as_secs()
            ),
        ));
    }
    Ok(Checked {
        envelope,
        verifier,
        access,
        ttl,
    })
}

/// `POST /api/v1/messages/{id}/open`: hand the envelope to the holder of the
/// proof, exactly once.
pub(crate) async fn open(
    State(otm): State<Otm>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    request: Result<ApiJson<OpenRequest>, ApiError>,
) -> Result<Json<Opened>, ApiError> {
    otm.0
        .open_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let id: MessageId = id.parse().map_err(|e: otm_core::Error| {
        otm.0.metrics.count(Outcome::BadRequest);
        ApiError::bad_request(ErrorCode::BadId, e.to_string())
    })?;
    let ApiJson(req) = request.inspect_err(|_| otm.0.metrics.count(Outcome::BadRequest))?;
    let access = AccessProof::from_base64url(&req.access_proof).map_err(|e| {
        otm.0.metrics.count(Outcome::BadRequest);
        ApiError::bad_request(ErrorCode::BadProof, format!("access_proof: {e}"))
    })?;
    let proof = ClaimProof::from_base64url(&req.proof).map_err(|e| {
        otm.0.metrics.count(Outcome::BadRequest);
        ApiError::bad_request(ErrorCode::BadProof, format!("proof: {e}"))
    })?;
    // A wrong access proof is the store's NotFound: the same 404 as an
    // unknown, opened or expired message, with nothing counted.
    match otm.0.store.take(&id, &access, &proof).await {
        Ok(envelope) => {
            otm.0.metrics.count(Outcome::Opened);
            tracing::info!(id = %id, "message opened and deleted");
            Ok(Json(Opened {
                envelope: URL_SAFE_NO_PAD.encode(&envelope),
            }))
        }
        Err(e) => {
            match &e {
                StoreError::NotFound => otm.0.metrics.count(Outcome::NotFound),
                StoreError::WrongProof { attempts_left: 0 } => {
                    otm.0.metrics.count(Outcome::WrongProof);
                    otm.0.metrics.count(Outcome::Burned);
                    tracing::info!(id = %id, "message destroyed after too many wrong proofs");
                }
                StoreError::WrongProof { .. } => otm.0.metrics.count(Outcome::WrongProof),
                _ => {}
            }
            Err(otm.store_error(e))
        }
    }
}

fn rng_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "Random number generator failed.",
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The sender's `Authorization: Bearer <manage token>`.
pub(crate) struct Bearer(ManageToken);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
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
        let token = value
            .strip_prefix("Bearer ")
            .and_then(|t| ManageToken::from_base64url(t.trim()).ok())
            .ok_or_else(required)?;
        Ok(Bearer(token))
    }
}

fn status_body(s: &MessageStatus) -> Status {
    Status {
        state: s.state,
        expires_at: rfc3339(s.expires_at),
        expires_at_unix: unix_secs(s.expires_at),
        changed_at: s.changed_at.map(rfc3339),
    }
}

/// Looks up a message for its sender: the ID must parse, a status must exist
/// and the token must match its verifier (compared in constant time).
async fn managed(
    otm: &Otm,
    ip: std::net::IpAddr,
    id: &str,
    token: &ManageToken,
) -> Result<(MessageId, MessageStatus), ApiError> {
    otm.0
        .open_limiter
        .check(ip)
        .inspect_err(|_| otm.0.metrics.count(Outcome::RateLimited))?;
    let id: MessageId = id
        .parse()
        .map_err(|e: otm_core::Error| ApiError::bad_request(ErrorCode::BadId, e.to_string()))?;
    let status = match otm.0.store.status(&id).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "This message has expired, or the link is wrong.",
            ))
        }
        Err(e) => return Err(otm.store_error(e)),
    };
    match status.manage {
        Some(v) if v.verify(token) => Ok((id, status)),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::WrongToken,
            "This management token does not belong to this message.",
        )),
    }
}

/// `GET /api/v1/messages/{id}` with the management token: the read receipt.
pub(crate) async fn status(
    State(otm): State<Otm>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Bearer(token): Bearer,
) -> Result<Json<Status>, ApiError> {
    let (_, status) = managed(&otm, ip, &id, &token).await?;
    Ok(Json(status_body(&status)))
}

/// `DELETE /api/v1/messages/{id}` with the management token: burn it unread.
pub(crate) async fn burn(
    State(otm): State<Otm>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    Bearer(token): Bearer,
) -> Result<Response, ApiError> {
    let (id, status) = managed(&otm, ip, &id, &token).await?;
    let not_waiting = |status: &MessageStatus| {
        let body = NotWaiting {
            error: ErrorBody {
                error: ErrorCode::NotWaiting,
                message: format!(
                    "The message is {} and can no longer be destroyed.",
                    status.state
                ),
                attempts_left: None,
            },
            status: status_body(status),
        };
        (StatusCode::CONFLICT, Json(body)).into_response()
    };
    if status.state != MessageState::Waiting {
        return Ok(not_waiting(&status));
    }
    match otm.0.store.burn(&id).await {
        Ok(()) => {
            otm.0.metrics.count(Outcome::BurnedBySender);
            tracing::info!(id = %id, "message burned by its sender");
        }
        // Opened (or expired) between the status check and the delete.
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(otm.store_error(e)),
    }
    let after = otm
        .0
        .store
        .status(&id)
        .await
        .map_err(|e| otm.store_error(e))?;
    if after.state == MessageState::Burned {
        Ok(Json(status_body(&after)).into_response())
    } else {
        Ok(not_waiting(&after))
    }
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI_JSON,
    )
}
