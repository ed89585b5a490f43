//! The JSON API of requests for a secret, under `/api/v1/requests`: ask
//! (through the create pipeline), read and answer (with the request link's
//! answer proof), status and withdraw (with the answer's access proof as
//! `Authorization: Bearer`). The answer is then taken like any message,
//! with `POST /api/v1/messages/{id}/open`.

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::api::{
    AnswerRequest, Answered, AskRequest, Asked, ReadRequest, RequestInfo, RequestStatus,
};
use otm_core::{
    AccessProof, AccessVerifier, AnswerProof, AnswerVerifier, ClaimVerifier, CreatorInfo,
    ErrorCode, MessageId, MAX_ANSWER_LEN, SEALED_NOTE_LEN,
};

use super::api::{creator, malformed, refuse, rfc3339, unix_secs, ApiJson, ClientIp};
use crate::caller::{Authorization, Caller};
use crate::error::ApiError;
use crate::service::{Ask, Op};
use crate::{Service, ServiceError};

/// Longest base64url text of a sealed note or answer this API decodes.
const MAX_NOTE_B64: usize = (SEALED_NOTE_LEN * 4).div_ceil(3);
const MAX_ANSWER_B64: usize = (MAX_ANSWER_LEN * 4).div_ceil(3);

/// An ID from the path.
fn parse_id(id: &str) -> Result<MessageId, ApiError> {
    id.parse()
        .map_err(|e: otm_core::Error| ApiError::new(ErrorCode::BadId, e.to_string()))
}

/// Unpadded base64url of at most `max` characters.
fn decode_b64(text: &str, max: usize, field: &str, code: ErrorCode) -> Result<Vec<u8>, ApiError> {
    if text.len() > max {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("{field} is longer than any valid one"),
        ));
    }
    super::b64::decode(text.as_bytes())
        .ok_or_else(|| ApiError::new(code, format!("{field} is not unpadded base64url")))
}

/// A request-link holder's, or the asker's, failure: a wrong proof is
/// answered exactly like an unknown or expired request.
fn request_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Gone => ApiError::new(
            ErrorCode::NotFound,
            "This request was withdrawn or has expired, or the link is not complete.",
        ),
        e => e.into(),
    }
}

/// `POST /api/v1/requests`: a request for a secret, through the create
/// pipeline.
pub(crate) async fn ask(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    head: Parts,
    request: Result<ApiJson<AskRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = creator(&otm, &head, ip).await?;
    let decoded = request.and_then(|ApiJson(req)| {
        let note = decode_b64(&req.note, MAX_NOTE_B64, "note", ErrorCode::BadField)?;
        let verifier = |text: &str, field: &str| {
            <[u8; 32]>::try_from(decode_b64(text, 43, field, ErrorCode::BadVerifier)?.as_slice())
                .map_err(|_| {
                    ApiError::new(ErrorCode::BadVerifier, format!("{field}: not 32 bytes"))
                })
        };
        let mut ask = Ask::new(
            note,
            AnswerVerifier::from_bytes(verifier(&req.answer_verifier, "answer_verifier")?),
            AccessVerifier::from_bytes(verifier(&req.access_verifier, "access_verifier")?),
            ClaimVerifier::from_bytes(verifier(&req.verifier, "verifier")?),
        );
        ask.ttl = req.ttl_seconds.map(Duration::from_secs);
        ask.reference = req.reference;
        Ok(ask)
    });
    let ask = match decoded {
        Ok(ask) => ask,
        Err(e) => return Err(malformed(&otm, &caller, Op::Create, e).await),
    };
    let asked = otm.ask(&caller, ask).await?;
    let body = Asked {
        id: asked.id.to_string(),
        path: format!("/request/{}", asked.id),
        receive_path: format!("/receive/{}", asked.id),
        expires_at: rfc3339(asked.expires_at),
        expires_at_unix: unix_secs(asked.expires_at),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, body.path.clone())],
        Json(body),
    )
        .into_response())
}

/// The answer proof of a request-link holder's call.
fn answer_proof(text: &str) -> Result<AnswerProof, ApiError> {
    AnswerProof::from_base64url(text)
        .map_err(|e| ApiError::new(ErrorCode::BadProof, format!("answer_proof: {e}")))
}

/// `POST /api/v1/requests/{id}/read`: the request as its responder sees
/// it. Responders are always anonymous.
pub(crate) async fn read(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    request: Result<ApiJson<ReadRequest>, ApiError>,
) -> Result<Json<RequestInfo>, ApiError> {
    let caller = Caller::Anonymous(ip);
    let decoded =
        request.and_then(|ApiJson(r)| Ok((parse_id(&id)?, answer_proof(&r.answer_proof)?)));
    let (id, proof) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return Err(malformed(&otm, &caller, Op::Read, e).await),
    };
    let view = otm
        .read_request(&caller, &id, &proof)
        .await
        .map_err(request_error)?;
    Ok(Json(RequestInfo {
        note: URL_SAFE_NO_PAD.encode(&view.note),
        creator: view.creator.as_ref().map(CreatorInfo::from),
        expires_at: rfc3339(view.expires_at),
        expires_at_unix: unix_secs(view.expires_at),
        answered: view.answered,
    }))
}

/// `POST /api/v1/requests/{id}/answer`: the one answer, sealed to the
/// asker.
pub(crate) async fn answer(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    request: Result<ApiJson<AnswerRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = Caller::Anonymous(ip);
    let decoded = request.and_then(|ApiJson(r)| {
        let sealed = decode_b64(&r.answer, MAX_ANSWER_B64, "answer", ErrorCode::BadEnvelope)?;
        Ok((parse_id(&id)?, answer_proof(&r.answer_proof)?, sealed))
    });
    let (id, proof, sealed) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => return Err(malformed(&otm, &caller, Op::Read, e).await),
    };
    let at = otm
        .answer(&caller, &id, &proof, sealed)
        .await
        .map_err(request_error)?;
    Ok((
        StatusCode::CREATED,
        Json(Answered {
            answered_at: rfc3339(at),
        }),
    )
        .into_response())
}

/// The ID and the answer's access proof (`Authorization: Bearer`) of the
/// asker's call.
async fn asker(
    otm: &Service,
    ip: IpAddr,
    id: &str,
    head: &Parts,
) -> Result<(Caller, MessageId, AccessProof), ApiError> {
    let caller = Caller::Anonymous(ip);
    let decoded = (|| {
        let id = parse_id(id)?;
        let Authorization::Bearer(value) = Authorization::of(&head.headers) else {
            return Err(ApiError::new(
                ErrorCode::TokenRequired,
                "Send the access proof of the receive link as Authorization: Bearer <proof>.",
            ));
        };
        let proof = AccessProof::from_base64url(value)
            .map_err(|e| ApiError::new(ErrorCode::BadProof, format!("access proof: {e}")))?;
        Ok((id, proof))
    })();
    match decoded {
        Ok((id, proof)) => Ok((caller, id, proof)),
        Err(e) => Err(refuse(otm, &caller, Op::Read, e).await),
    }
}

/// `GET /api/v1/requests/{id}` with the answer's access proof: the asker's
/// view of the request.
pub(crate) async fn status(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<Json<RequestStatus>, ApiError> {
    let (caller, id, proof) = asker(&otm, ip, &id, &head).await?;
    let receipt = otm
        .request_status(&caller, &id, &proof)
        .await
        .map_err(request_error)?;
    Ok(Json(RequestStatus {
        state: receipt.state,
        expires_at: rfc3339(receipt.expires_at),
        expires_at_unix: unix_secs(receipt.expires_at),
        answered_at: receipt.answered_at.map(rfc3339),
        changed_at: receipt.changed_at.map(rfc3339),
        reference: receipt.reference,
    }))
}

/// `DELETE /api/v1/requests/{id}` with the answer's access proof: withdraw
/// the request (and destroy an answer not yet opened).
pub(crate) async fn withdraw(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    head: Parts,
) -> Result<StatusCode, ApiError> {
    let (caller, id, proof) = asker(&otm, ip, &id, &head).await?;
    otm.withdraw(&caller, &id, &proof)
        .await
        .map_err(request_error)?;
    Ok(StatusCode::NO_CONTENT)
}
