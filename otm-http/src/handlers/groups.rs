//! One message for several recipients over HTTP: `POST /api/v1/groups`
//! creates 2 to [`MAX_GROUP`] messages at once; `POST
//! /api/v1/groups/status` and `POST /api/v1/groups/burn` read or burn up to
//! [`MAX_GROUP`] messages, each with its own management token, in one
//! request (the group status page's calls).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use otm_core::api::{
    CreateGroupRequest, Created, GroupCreated, GroupManageRequest, GroupStatus, MemberStatus,
};
use otm_core::{ErrorCode, ManageToken, MessageId, MAX_GROUP};

use super::api::{
    creator, decode_create, malformed, rfc3339, status_body, unix_secs, ApiJson, ClientIp,
    MAX_ENVELOPE_B64,
};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::service::{CreateGroup, Op, Sealed};
use crate::{Service, ServiceError};

/// Largest body of a group create: [`MAX_GROUP`] maximum envelopes in
/// base64url with their verifiers, and the JSON around them.
pub const GROUP_BODY_LIMIT: usize = MAX_GROUP * (MAX_ENVELOPE_B64 + 256) + 1024;

/// How many group creates one router reads at a time (each body up to
/// [`GROUP_BODY_LIMIT`]); the others wait before their bodies are read.
pub(crate) const GROUP_BODIES_AT_ONCE: usize = 8;

/// `POST /api/v1/groups` on a store without groups: `501 unsupported`,
/// without reading the body.
pub(crate) async fn unsupported(State(otm): State<Service>) -> ApiError {
    let store = &otm.0.store;
    ServiceError::MissingCapability {
        what: "groups",
        backend: store.backend_name(),
    }
    .into()
}

/// `POST /api/v1/groups`: store 2 to [`MAX_GROUP`] sealed envelopes, all or
/// none, through the service's create pipeline.
pub(crate) async fn create(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    head: Parts,
    request: Result<ApiJson<CreateGroupRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = creator(&otm, &head, ip).await?;
    let group = match request.and_then(|ApiJson(req)| decode_group(req)) {
        Ok(group) => group,
        Err(e) => return Err(malformed(&otm, &caller, Op::Create, e).await),
    };
    let stored = otm.create_group(&caller, group).await?;
    let body = GroupCreated {
        members: stored
            .members
            .iter()
            .map(|m| Created {
                id: m.id.to_string(),
                path: format!("/otm/{}", m.id),
                expires_at: rfc3339(m.expires_at),
                expires_at_unix: unix_secs(m.expires_at),
                manage_token: m.manage_token.to_base64url().to_string(),
            })
            .collect(),
        group_secret: stored.secret.as_ref().map(|s| s.to_base64url().to_string()),
        expires_at: rfc3339(stored.expires_at),
        expires_at_unix: unix_secs(stored.expires_at),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A group create decoded member by member, as a single create is; a
/// member's error names its index.
fn decode_group(req: CreateGroupRequest) -> Result<CreateGroup, ApiError> {
    if req.members.len() > MAX_GROUP {
        return Err(ApiError::new(
            ErrorCode::BadField,
            format!("members: a group has at most {MAX_GROUP} messages"),
        ));
    }
    let mut members = Vec::with_capacity(req.members.len());
    for (n, member) in req.members.into_iter().enumerate() {
        let single = otm_core::api::CreateRequest {
            envelope: member.envelope,
            verifier: member.verifier,
            access_verifier: member.access_verifier,
            ttl_seconds: None,
            reference: None,
        };
        let create = decode_create(single).map_err(|e| e.prefixed(&format!("members[{n}]: ")))?;
        members.push(Sealed::new(create.envelope, create.verifier, create.access));
    }
    let mut group = CreateGroup::new(members);
    group.ttl = req.ttl_seconds.map(std::time::Duration::from_secs);
    group.reference = req.reference;
    Ok(group)
}

/// `POST /api/v1/groups/status`: the receipts of up to [`MAX_GROUP`]
/// messages, each under its own token.
pub(crate) async fn status(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    request: Result<ApiJson<GroupManageRequest>, ApiError>,
) -> Result<Json<GroupStatus>, ApiError> {
    manage(&otm, ip, request, false).await
}

/// `POST /api/v1/groups/burn`: burn every waiting message of up to
/// [`MAX_GROUP`], each under its own token, and answer their receipts.
pub(crate) async fn burn(
    State(otm): State<Service>,
    ClientIp(ip): ClientIp,
    request: Result<ApiJson<GroupManageRequest>, ApiError>,
) -> Result<Json<GroupStatus>, ApiError> {
    manage(&otm, ip, request, true).await
}

/// A group status or burn: decoded, then the service's, then each
/// receipt as the API shows it.
async fn manage(
    otm: &Service,
    ip: std::net::IpAddr,
    request: Result<ApiJson<GroupManageRequest>, ApiError>,
    burn: bool,
) -> Result<Json<GroupStatus>, ApiError> {
    let caller = Caller::Anonymous(ip);
    let members = match request.and_then(|ApiJson(req)| decode_members(req)) {
        Ok(members) => members,
        Err(e) => return Err(malformed(otm, &caller, Op::Read, e).await),
    };
    let receipts = if burn {
        otm.burn_group(&caller, &members).await?
    } else {
        otm.group_status(&caller, &members).await?
    };
    Ok(Json(GroupStatus {
        members: members
            .iter()
            .zip(receipts)
            .map(|((id, _), receipt)| MemberStatus {
                id: id.to_string(),
                status: receipt.as_ref().map(status_body),
            })
            .collect(),
    }))
}

/// The IDs and tokens of a group status or burn.
fn decode_members(req: GroupManageRequest) -> Result<Vec<(MessageId, ManageToken)>, ApiError> {
    if req.members.is_empty() || req.members.len() > MAX_GROUP {
        return Err(ApiError::new(
            ErrorCode::BadField,
            format!("members: name 1 to {MAX_GROUP} messages"),
        ));
    }
    req.members
        .into_iter()
        .enumerate()
        .map(|(n, m)| {
            let id: MessageId = m.id.parse().map_err(|e: otm_core::Error| {
                ApiError::new(ErrorCode::BadId, format!("members[{n}].id: {e}"))
            })?;
            let token = ManageToken::from_base64url(&m.manage_token).map_err(|e| {
                ApiError::new(
                    ErrorCode::BadField,
                    format!("members[{n}].manage_token: {e}"),
                )
            })?;
            Ok((id, token))
        })
        .collect()
}
