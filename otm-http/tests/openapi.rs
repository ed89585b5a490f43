//! `docs/openapi.json` against the code: the error codes it lists are exactly
//! [`ErrorCode::ALL`], and every JSON body it documents for `/api/v1` has
//! exactly the fields, the required fields and the JSON types of the wire
//! struct in `otm_core::api` that the router sends or takes.

use std::collections::BTreeSet;

use otm_core::api::{
    AnswerRequest, Answered, AskRequest, Asked, CreateGroupRequest, CreateRequest, Created,
    ErrorBody, GroupCreated, GroupManageRequest, GroupMemberRequest, GroupStatus, MemberStatus,
    MemberToken, MessageState, NotWaiting, OpenRequest, Opened, PublicConfig, ReadRequest,
    RequestInfo, RequestState, RequestStatus, Status,
};
use otm_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

fn doc() -> Value {
    serde_json::from_str(otm_http::OPENAPI_JSON).expect("the OpenAPI document is JSON")
}

/// Follows a `$ref` into `components`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let path = r.strip_prefix("#/").expect("a local $ref");
            let target = path.split('/').fold(doc, |v, part| &v[part]);
            assert!(!target.is_null(), "{r} resolves to nothing");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// An object schema flattened: its properties (each resolved) and its
/// required names, `allOf` parts merged.
struct Flat {
    properties: Map<String, Value>,
    required: BTreeSet<String>,
    closed: bool,
}

fn flatten(doc: &Value, schema: &Value) -> Flat {
    let schema = resolve(doc, schema);
    let mut flat = Flat {
        properties: Map::new(),
        required: BTreeSet::new(),
        closed: schema["additionalProperties"] == Value::Bool(false),
    };
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            let f = flatten(doc, part);
            flat.properties.extend(f.properties);
            flat.required.extend(f.required);
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (name, p) in props {
            flat.properties
                .insert(name.clone(), resolve(doc, p).clone());
        }
    }
    if let Some(req) = schema["required"].as_array() {
        flat.required
            .extend(req.iter().map(|v| v.as_str().unwrap().to_owned()));
    }
    flat
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value fits the property's schema: its `type` (one or a list) and its
/// `enum`, when given.
fn check_value(what: &str, name: &str, schema: &Value, value: &Value) {
    let ty = json_type(value);
    match &schema["type"] {
        Value::String(t) => assert_eq!(t, ty, "{what}.{name}: documented {t}, sent {value}"),
        Value::Array(ts) => assert!(
            ts.iter().any(|t| t == ty),
            "{what}.{name}: documented {ts:?}, sent {value}"
        ),
        Value::Null => assert!(
            schema["enum"].is_array(),
            "{what}.{name}: the schema gives no type"
        ),
        other => panic!("{what}.{name}: odd type {other}"),
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(
            allowed.contains(value),
            "{what}.{name}: {value} not in {allowed:?}"
        );
    }
}

/// A struct against a schema: `full` has every optional field set, `bare`
/// none. The documented properties are exactly `full`'s fields, the
/// documented required fields exactly `bare`'s, every value has the
/// documented type, and both samples read back as they were written.
fn check<T>(doc: &Value, what: &str, schema: &Value, full: T, bare: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let flat = flatten(doc, schema);
    let full_json = serde_json::to_value(&full).unwrap();
    let bare_json = serde_json::to_value(&bare).unwrap();
    let fields: BTreeSet<String> = full_json.as_object().unwrap().keys().cloned().collect();
    let documented: BTreeSet<String> = flat.properties.keys().cloned().collect();
    assert_eq!(
        documented, fields,
        "{what}: documented properties vs struct fields"
    );
    let always: BTreeSet<String> = bare_json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        flat.required, always,
        "{what}: documented required vs fields always sent"
    );
    for sample in [&full_json, &bare_json] {
        for (name, value) in sample.as_object().unwrap() {
            check_value(what, name, &flat.properties[name], value);
        }
    }
    assert_eq!(
        serde_json::from_value::<T>(full_json.clone()).unwrap(),
        full
    );
    assert_eq!(serde_json::from_value::<T>(bare_json).unwrap(), bare);
    // A closed schema (additionalProperties: false) is a struct that refuses
    // unknown fields, and the other way round.
    let mut extra = full_json;
    extra["not_a_field"] = Value::Bool(true);
    assert_eq!(
        serde_json::from_value::<T>(extra).is_err(),
        flat.closed,
        "{what}: additionalProperties vs deny_unknown_fields"
    );
}

/// The schema of a documented JSON body: a request (`status` None) or a
/// response.
fn body_schema<'a>(doc: &'a Value, path: &str, method: &str, status: Option<&str>) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(!op.is_null(), "{method} {path} is not documented");
    let body = match status {
        None => &op["requestBody"],
        Some(s) => &op["responses"][s],
    };
    let schema = &resolve(doc, body)["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} {status:?} has no JSON schema"
    );
    schema
}

const ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";
const B64_43: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn status(changed: bool) -> Status {
    Status {
        state: if changed {
            MessageState::Opened
        } else {
            MessageState::Waiting
        },
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
        changed_at: changed.then(|| "2026-11-30T12:00:00Z".into()),
        reference: changed.then(|| "ticket 4711".into()),
    }
}

#[test]
fn the_openapi_document_lists_exactly_the_error_codes() {
    let doc = doc();
    let listed: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["enum"]
        .as_array()
        .expect("the Error schema enumerates its codes")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, codes);
}

#[test]
fn every_documented_body_matches_its_wire_struct() {
    let doc = doc();
    let m = "/api/v1/messages";
    let one = "/api/v1/messages/{id}";
    let open = "/api/v1/messages/{id}/open";

    let config = PublicConfig {
        max_ttl_seconds: 604_800,
        default_ttl_seconds: 86_400,
        ttl_choices_seconds: vec![3_600, 86_400],
        max_message_chars: 8_000,
        max_envelope_bytes: 32_801,
        max_failed_attempts: 5,
        link_base: Some("https://otm.example".into()),
        max_recipients: 20,
    };
    let bare_config = PublicConfig {
        link_base: None,
        ..config.clone()
    };
    let schema = body_schema(&doc, "/api/v1/config", "get", Some("200"));
    check(&doc, "PublicConfig", schema, config, bare_config);

    let create = CreateRequest {
        envelope: "AAAA".into(),
        verifier: B64_43.into(),
        access_verifier: B64_43.into(),
        ttl_seconds: Some(3_600),
        reference: Some("ticket 4711".into()),
    };
    let bare_create = CreateRequest {
        ttl_seconds: None,
        reference: None,
        ..create.clone()
    };
    let schema = body_schema(&doc, m, "post", None);
    check(&doc, "CreateRequest", schema, create, bare_create);

    let created = Created {
        id: ID.into(),
        path: format!("/otm/{ID}"),
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
        manage_token: B64_43.into(),
    };
    let schema = body_schema(&doc, m, "post", Some("201"));
    check(&doc, "Created", schema, created.clone(), created);

    let req = OpenRequest {
        access_proof: B64_43.into(),
        proof: B64_43.into(),
    };
    let schema = body_schema(&doc, open, "post", None);
    check(&doc, "OpenRequest", schema, req.clone(), req);

    let opened = Opened {
        envelope: "AAAA".into(),
    };
    let schema = body_schema(&doc, open, "post", Some("200"));
    check(&doc, "Opened", schema, opened.clone(), opened);

    for method in ["get", "delete"] {
        let schema = body_schema(&doc, one, method, Some("200"));
        check(&doc, "Status", schema, status(true), status(false));
    }

    let wrong = ErrorBody {
        error: ErrorCode::WrongProof,
        message: "Wrong passphrase. 2 attempts left.".into(),
        attempts_left: Some(2),
    };
    let schema = body_schema(&doc, open, "post", Some("403"));
    check(&doc, "WrongProof", schema, wrong.clone(), wrong);

    let not_waiting = |changed| NotWaiting {
        error: ErrorBody {
            error: ErrorCode::NotWaiting,
            message: "The message is opened and can no longer be destroyed.".into(),
            attempts_left: None,
        },
        status: status(changed),
    };
    let schema = body_schema(&doc, one, "delete", Some("409"));
    check(
        &doc,
        "NotWaiting",
        schema,
        not_waiting(true),
        not_waiting(false),
    );
}

#[test]
fn every_documented_request_body_matches_its_wire_struct() {
    let doc = doc();
    let ask = AskRequest {
        note: "AAAA".into(),
        answer_verifier: B64_43.into(),
        access_verifier: B64_43.into(),
        verifier: B64_43.into(),
        ttl_seconds: Some(3_600),
        reference: Some("ticket 4711".into()),
    };
    let bare = AskRequest {
        ttl_seconds: None,
        reference: None,
        ..ask.clone()
    };
    let schema = body_schema(&doc, "/api/v1/requests", "post", None);
    check(&doc, "AskRequest", schema, ask, bare);
    let asked = Asked {
        id: ID.into(),
        path: format!("/request/{ID}"),
        receive_path: format!("/receive/{ID}"),
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
    };
    let schema = body_schema(&doc, "/api/v1/requests", "post", Some("201"));
    check(&doc, "Asked", schema, asked.clone(), asked);

    let read = "/api/v1/requests/{id}/read";
    let req = ReadRequest {
        answer_proof: B64_43.into(),
    };
    let schema = body_schema(&doc, read, "post", None);
    check(&doc, "ReadRequest", schema, req.clone(), req);
    let info = RequestInfo {
        note: "AAAA".into(),
        creator: Some((&otm_core::Creator::Identity("ana".into())).into()),
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
        answered: false,
    };
    let anonymous = RequestInfo {
        creator: None,
        ..info.clone()
    };
    let schema = body_schema(&doc, read, "post", Some("200"));
    check(&doc, "RequestInfo", schema, info, anonymous);

    let answer = "/api/v1/requests/{id}/answer";
    let req = AnswerRequest {
        answer_proof: B64_43.into(),
        answer: "AAAA".into(),
    };
    let schema = body_schema(&doc, answer, "post", None);
    check(&doc, "AnswerRequest", schema, req.clone(), req);
    let answered = Answered {
        answered_at: "2026-11-30T12:00:00Z".into(),
    };
    let schema = body_schema(&doc, answer, "post", Some("201"));
    check(&doc, "Answered", schema, answered.clone(), answered);

    let full = RequestStatus {
        state: RequestState::Opened,
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
        answered_at: Some("2026-11-30T11:00:00Z".into()),
        changed_at: Some("2026-11-30T12:00:00Z".into()),
        reference: Some("ticket 4711".into()),
    };
    let waiting = RequestStatus {
        state: RequestState::Waiting,
        answered_at: None,
        changed_at: None,
        reference: None,
        ..full.clone()
    };
    let schema = body_schema(&doc, "/api/v1/requests/{id}", "get", Some("200"));
    check(&doc, "RequestStatus", schema, full, waiting);
}

#[test]
fn the_group_bodies_match_their_wire_structs() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let member = GroupMemberRequest {
        envelope: "AAAA".into(),
        verifier: B64_43.into(),
        access_verifier: B64_43.into(),
    };
    check(
        &doc,
        "GroupMemberRequest",
        &schemas["GroupMemberRequest"],
        member.clone(),
        member.clone(),
    );
    let create = CreateGroupRequest {
        members: vec![member.clone(), member],
        ttl_seconds: Some(3_600),
        reference: Some("ticket 4711".into()),
    };
    let bare = CreateGroupRequest {
        ttl_seconds: None,
        reference: None,
        ..create.clone()
    };
    let schema = body_schema(&doc, "/api/v1/groups", "post", None);
    check(&doc, "CreateGroupRequest", schema, create, bare);
    let one = Created {
        id: ID.into(),
        path: format!("/otm/{ID}"),
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
        manage_token: B64_43.into(),
    };
    let created = GroupCreated {
        members: vec![one.clone(), one],
        group_secret: Some(B64_43.into()),
        expires_at: "2026-12-01T00:00:00Z".into(),
        expires_at_unix: 1_796_083_200,
    };
    let derived = GroupCreated {
        group_secret: None,
        ..created.clone()
    };
    let schema = body_schema(&doc, "/api/v1/groups", "post", Some("201"));
    check(&doc, "GroupCreated", schema, created, derived);

    let token = MemberToken {
        id: ID.into(),
        manage_token: B64_43.into(),
    };
    check(
        &doc,
        "MemberToken",
        &schemas["MemberToken"],
        token.clone(),
        token.clone(),
    );
    let manage = GroupManageRequest {
        members: vec![token],
    };
    for path in ["/api/v1/groups/status", "/api/v1/groups/burn"] {
        let schema = body_schema(&doc, path, "post", None);
        check(
            &doc,
            "GroupManageRequest",
            schema,
            manage.clone(),
            manage.clone(),
        );
        let answer = GroupStatus {
            members: vec![
                MemberStatus {
                    id: ID.into(),
                    status: Some(status(true)),
                },
                MemberStatus {
                    id: ID.into(),
                    status: None,
                },
            ],
        };
        let schema = body_schema(&doc, path, "post", Some("200"));
        check(&doc, "GroupStatus", schema, answer.clone(), answer);
    }
    // A member's status is a Status or null.
    let entry = &schemas["MemberStatus"];
    let required: Vec<&str> = entry["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["id", "status"]);
    let one_of = entry["properties"]["status"]["oneOf"].as_array().unwrap();
    assert_eq!(one_of[0]["$ref"], "#/components/schemas/Status");
    assert_eq!(one_of[1]["type"], "null");
    let sample = serde_json::to_value(MemberStatus {
        id: ID.into(),
        status: None,
    })
    .unwrap();
    assert_eq!(sample["status"], Value::Null, "null is sent, not left out");
}

/// Every other documented JSON response of `/api/v1` is the plain error body.
#[test]
fn every_other_documented_error_is_the_error_body() {
    let doc = doc();
    let special = [
        ("/api/v1/config", "get", "200"),
        ("/api/v1/messages", "post", "201"),
        ("/api/v1/messages/{id}/open", "post", "200"),
        ("/api/v1/messages/{id}/open", "post", "403"),
        ("/api/v1/messages/{id}", "get", "200"),
        ("/api/v1/messages/{id}", "delete", "200"),
        ("/api/v1/messages/{id}", "delete", "409"),
        ("/api/v1/requests", "post", "201"),
        ("/api/v1/requests/{id}/read", "post", "200"),
        ("/api/v1/requests/{id}/answer", "post", "201"),
        ("/api/v1/requests/{id}", "get", "200"),
        ("/api/v1/requests/{id}", "delete", "204"),
    ];
    let mut errors = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/messages") && !path.starts_with("/api/v1/requests") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if special.contains(&(path.as_str(), method.as_str(), status.as_str())) {
                    continue;
                }
                let schema = body_schema(&doc, path, method, Some(status));
                let sample = ErrorBody {
                    error: ErrorCode::Internal,
                    message: "x".into(),
                    attempts_left: None,
                };
                let what = format!("{method} {path} {status}");
                assert!(!response.is_null());
                check(&doc, &what, schema, sample.clone(), sample);
                errors += 1;
            }
        }
    }
    assert!(errors > 10, "only {errors} error responses documented");
}

/// The webhook body is documented (OpenAPI 3.1 `webhooks`) exactly as the
/// wire type otm sends and receivers decode, and its `type` lists every
/// event kind.
#[test]
fn the_webhook_body_is_documented_as_sent() {
    use otm_core::webhook::{WebhookBody, WebhookData};
    let doc = doc();
    let schema = &doc["webhooks"]["messageEvent"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let body = |reference: Option<&str>| WebhookBody {
        kind: "message.opened".into(),
        timestamp: "2026-12-02T00:00:00.123Z".into(),
        data: WebhookData {
            message_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            creator: reference.map(|_| (&otm_core::Creator::Token("ci".into())).into()),
            reference: reference.map(str::to_owned),
        },
    };
    check(
        &doc,
        "WebhookBody",
        schema,
        body(Some("ticket 7")),
        body(None),
    );
    let token = otm_core::Creator::Token("ci".into());
    check(
        &doc,
        "Creator",
        &doc["components"]["schemas"]["Creator"],
        otm_core::CreatorInfo::from(&token),
        otm_core::CreatorInfo::from(&otm_core::Creator::Server),
    );
    let data = resolve(&doc, &resolve(&doc, schema)["properties"]["data"]);
    let full = serde_json::to_value(body(Some("r")).data).unwrap();
    let documented: BTreeSet<&str> = data["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let sent: BTreeSet<&str> = full
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, sent, "WebhookData");
    let kinds: BTreeSet<&str> = resolve(&doc, schema)["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: BTreeSet<&str> = otm_core::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, all);
}
