//! Requests for a secret on S3, where no two objects change in one step.
//!
//! | key | what |
//! |---|---|
//! | `P{id}.request` | the request: body the sealed note; metadata `otm-expires`, `otm-answer` (the answer verifier), `otm-access`, `otm-verifier`, any `otm-reference` and `otm-creator` |
//! | `P{id}.pending.{n}` | a responder's answer before the decision (`n` random per answer) |
//! | `P{id}.answered` | the decision: empty, created once with `If-None-Match: *`; metadata `otm-changed` (when) and `otm-pending` (whose answer), or `otm-withdrawn` |
//! | `P{id}` | the answer as a message (generation `answer`), published from the winner's pending object |
//!
//! - **One answer.** A responder writes its answer to a pending object of
//!   its own, then creates the decision with `If-None-Match: *`, naming it:
//!   of any number of responders exactly one creates it; every other is told
//!   the request was answered and deletes its pending object. The decision
//!   stays until the bucket's lifecycle rule removes it, so no later answer
//!   is ever stored, also after the answer was taken.
//! - **Nothing lost.** The winner publishes its pending object as the
//!   message `P{id}` and deletes it. A responder that dies in between leaves
//!   the answer in its pending object, which the decision names;
//!   [`RequestStore::repair_request`], which the service runs once a
//!   proof is verified, publishes it.
//! - **Read once.** Every answer message has the generation `answer`, and
//!   taking it always goes through the claim object `P{id}.answer.claim`
//!   (whatever the store's claim method): a copy published by a late repair
//!   after the answer was taken can never be claimed, and reads as opened.
//! - **Withdrawal** removes the request object first, then creates the
//!   decision itself (withdrawn: no answer after it) or, when there was an
//!   answer, claims and deletes it and its pending object. A withdrawal cut
//!   short after the first step leaves what follows to the lifecycle rule
//!   (the request is gone either way; an answer left behind opens only with
//!   the receive link).

use super::*;
use crate::{check_answer, check_request, NewRequest, RequestStore, StoredRequest, ANSWER_MANAGE};
use otm_core::AnswerVerifier;

/// The generation of every answer message: its claim object is
/// `P{id}.answer.claim`.
pub(super) const ANSWER_GEN: &str = "answer";
const META_ANSWER: &str = "otm-answer";
const META_WITHDRAWN: &str = "otm-withdrawn";
const META_PENDING: &str = "otm-pending";

/// The decision object, as a HEAD finds it.
struct Decision {
    at_ms: i64,
    withdrawn: bool,
    /// The winning answer's pending object's name.
    pending: Option<String>,
}

impl S3Store {
    fn request_key(&self, id: &MessageId) -> String {
        format!("{}.request", self.key_of(id))
    }

    fn decision_key(&self, id: &MessageId) -> String {
        format!("{}.answered", self.key_of(id))
    }

    fn pending_key(&self, id: &MessageId, n: &str) -> String {
        format!("{}.pending.{n}", self.key_of(id))
    }

    fn answer_claim_key(&self, id: &MessageId) -> String {
        format!("{}.{ANSWER_GEN}.claim", self.key_of(id))
    }

    /// Creates `key` if absent (`PutObject` with `If-None-Match: *`):
    /// `true` if this call created it, `false` if it exists. A `409` (a
    /// concurrent conditional write to it still in progress, which may yet
    /// fail) is asked again, not taken for "exists".
    async fn create_once(
        &self,
        key: &str,
        metadata: &[(&str, String)],
        op: &'static str,
    ) -> Result<bool> {
        for attempt in 0..20u64 {
            let mut req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .if_none_match("*")
                .body(ByteStream::from(Vec::new()));
            for (name, value) in metadata {
                req = req.metadata(*name, value);
            }
            match req.send().await {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 412) => return Ok(false),
                Err(e) if is_status(&e, 409) => {
                    tokio::time::sleep(Duration::from_millis(10 * (attempt + 1))).await;
                }
                Err(e) => return Err(classify(op, e)),
            }
        }
        Err(StoreError::Unavailable {
            op,
            source: "a conditional write to the same object kept conflicting".into(),
        })
    }

    /// Whether `key` exists (`HeadObject`).
    async fn exists(&self, key: &str, op: &'static str) -> Result<bool> {
        match self.head_request(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(classify(op, e)),
        }
    }

    /// The request object: its ETag and the request, live or not.
    async fn fetch_request(&self, id: &MessageId) -> Result<Option<(String, NewRequest)>> {
        let op = "read a request";
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.request_key(id))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify(op, e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let meta = out.metadata().cloned().unwrap_or_default();
        let corrupt = |what: &'static str| StoreError::Backend {
            op,
            source: what.into(),
        };
        let expires_at_ms: i64 = meta
            .get(META_EXPIRES)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("a request has no otm-expires metadata"))?;
        let answer = meta
            .get(META_ANSWER)
            .and_then(|v| AnswerVerifier::from_base64url(v).ok())
            .ok_or_else(|| corrupt("a request has no valid otm-answer metadata"))?;
        let access = meta
            .get(META_ACCESS)
            .and_then(|v| AccessVerifier::from_base64url(v).ok())
            .ok_or_else(|| corrupt("a request has no valid otm-access metadata"))?;
        let verifier = meta
            .get(META_VERIFIER)
            .and_then(|v| ClaimVerifier::from_base64url(v).ok())
            .ok_or_else(|| corrupt("a request has no valid otm-verifier metadata"))?;
        let note = super::objects::body_bytes(out.body, op).await?;
        Ok(Some((
            etag,
            NewRequest {
                note,
                answer,
                access,
                verifier,
                expires_at: from_unix_ms(expires_at_ms),
                creator: crate::creator_from(decode_reference(meta.get(META_CREATOR)).as_deref()),
                reference: decode_reference(meta.get(META_REFERENCE)),
            },
        )))
    }

    /// The request object while it is live: [`StoreError::NotFound`] when
    /// there is none or it expired.
    async fn live_request(&self, id: &MessageId) -> Result<(String, NewRequest)> {
        match self.fetch_request(id).await? {
            Some((etag, request)) if unix_ms(request.expires_at) > unix_ms(SystemTime::now()) => {
                Ok((etag, request))
            }
            _ => Err(StoreError::NotFound),
        }
    }

    /// The decision, if one was made.
    async fn fetch_decision(&self, id: &MessageId) -> Result<Option<Decision>> {
        match self.head_request(&self.decision_key(id)).send().await {
            Ok(out) => {
                let meta = out.metadata().cloned().unwrap_or_default();
                Ok(Some(Decision {
                    at_ms: meta
                        .get(META_CHANGED)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    withdrawn: meta.contains_key(META_WITHDRAWN),
                    pending: meta.get(META_PENDING).cloned(),
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify("read a request's answer", e)),
        }
    }

    /// The answer message's metadata, inherited from its request.
    fn answer_metadata(request: &NewRequest) -> Vec<(&'static str, String)> {
        let mut metadata = vec![
            (META_EXPIRES, unix_ms(request.expires_at).to_string()),
            (META_VERIFIER, request.verifier.to_base64url()),
            (META_ACCESS, request.access.to_base64url()),
            (META_GEN, ANSWER_GEN.to_owned()),
            (META_MANAGE, ANSWER_MANAGE.to_base64url()),
        ];
        metadata.extend(super::objects::origin_metadata(
            request.creator.as_ref(),
            request.reference.as_deref(),
        ));
        metadata
    }

    /// Publishes the pending answer `pending` as the message `P{id}`,
    /// unless it is there, was taken (its claim object exists) or had its
    /// attempts used up, then deletes the pending object. Checks the
    /// message before the claim: a take creates the claim before it
    /// deletes the message, so a message found missing with no claim after
    /// it was never published; a copy made anyway, by a race with a take,
    /// can never be claimed, and is deleted here when the claim shows up.
    async fn publish(&self, id: &MessageId, request: &NewRequest, pending: &str) -> Result<()> {
        let op = "publish a request's answer";
        let key = self.key_of(id);
        let pending_key = self.pending_key(id, pending);
        let unpublished = self.fetch(id).await?.is_none()
            && !self.exists(&self.answer_claim_key(id), op).await?
            && !self
                .exists(
                    &format!("{key}.{ANSWER_GEN}.a{}", self.opts.max_failed_attempts),
                    op,
                )
                .await?;
        if unpublished {
            let body = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&pending_key)
                .send()
                .await
            {
                Ok(out) => super::objects::body_bytes(out.body, op).await?,
                // Published and cleaned up by someone else meanwhile.
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(classify(op, e)),
            };
            let created = self
                .put_if_absent(&key, body, &Self::answer_metadata(request))
                .await
                .map_err(|e| e.into_store(op))?;
            if let Some(etag) = created {
                if self.exists(&self.answer_claim_key(id), op).await? {
                    self.delete_version(&key, &etag).await?;
                }
            }
        }
        self.delete_request(&pending_key)
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(())
    }
}

#[async_trait]
impl RequestStore for S3Store {
    async fn put_request(&self, id: &MessageId, request: NewRequest) -> Result<()> {
        let (expires_at_ms, _) = check_request(&request)?;
        let key = self.request_key(id);
        let mut metadata = vec![
            (META_EXPIRES, expires_at_ms.to_string()),
            (META_ANSWER, request.answer.to_base64url()),
            (META_ACCESS, request.access.to_base64url()),
            (META_VERIFIER, request.verifier.to_base64url()),
        ];
        metadata.extend(super::objects::origin_metadata(
            request.creator.as_ref(),
            request.reference.as_deref(),
        ));
        for _ in 0..3 {
            let created = self
                .put_if_absent(&key, request.note.clone(), &metadata)
                .await
                .map_err(|e| e.into_store("store a request"))?;
            if created.is_some() {
                return Ok(());
            }
            // Taken: by a live request (conflict) or an expired one, which
            // goes with its decision (the lifecycle rule takes the rest).
            match self.fetch_request(id).await? {
                Some((_, old)) if unix_ms(old.expires_at) > unix_ms(SystemTime::now()) => {
                    return Err(StoreError::Conflict)
                }
                Some((etag, _)) => {
                    let _ = self
                        .delete_request(&self.decision_key(id))
                        .send()
                        .await
                        .map_err(|e| classify("replace an expired request", e))?;
                    self.delete_version(&key, &etag).await?;
                }
                None => {}
            }
        }
        Err(StoreError::Conflict)
    }

    async fn request(&self, id: &MessageId) -> Result<StoredRequest> {
        let (_, request) = self.live_request(id).await?;
        let answered_at = match self.fetch_decision(id).await? {
            Some(d) if d.withdrawn => return Err(StoreError::NotFound),
            Some(d) => Some(from_unix_ms(d.at_ms)),
            None => None,
        };
        Ok(StoredRequest {
            request,
            answered_at,
        })
    }

    async fn repair_request(&self, id: &MessageId) -> Result<()> {
        let (_, request) = self.live_request(id).await?;
        match self.fetch_decision(id).await? {
            Some(Decision {
                withdrawn: false,
                pending: Some(pending),
                ..
            }) => {
                if self
                    .exists(&self.pending_key(id, &pending), "repair a request")
                    .await?
                {
                    self.publish(id, &request, &pending).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&self.opts, &answer)?;
        let op = "answer a request";
        let (_, request) = self.live_request(id).await?;
        let pending = random_hex()?;
        let pending_key = self.pending_key(id, &pending);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&pending_key)
            .body(ByteStream::from(answer))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        let now = unix_ms(SystemTime::now());
        let decided = self
            .create_once(
                &self.decision_key(id),
                &[
                    (META_CHANGED, now.to_string()),
                    (META_PENDING, pending.clone()),
                ],
                op,
            )
            .await?;
        if !decided {
            self.delete_request(&pending_key)
                .send()
                .await
                .map_err(|e| classify(op, e))?;
            return match self.fetch_decision(id).await? {
                Some(d) if !d.withdrawn => Err(StoreError::AlreadyAnswered),
                _ => Err(StoreError::NotFound),
            };
        }
        // Decided: the answer is this one. A failure from here on leaves it
        // pending, for `repair_request` to publish.
        self.publish(id, &request, &pending).await
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let op = "withdraw a request";
        let (etag, _) = self.live_request(id).await?;
        if !self.delete_version(&self.request_key(id), &etag).await? {
            return Err(StoreError::NotFound);
        }
        let now = unix_ms(SystemTime::now());
        let blocked = self
            .create_once(
                &self.decision_key(id),
                &[
                    (META_CHANGED, now.to_string()),
                    (META_WITHDRAWN, "1".to_owned()),
                ],
                op,
            )
            .await?;
        if blocked {
            return Ok(());
        }
        // Answered: the answer goes too, if not taken yet. Its claim object
        // keeps any copy a late publication makes unclaimable.
        let claimed = self
            .put_if_absent(&self.answer_claim_key(id), Vec::new(), &[])
            .await
            .map_err(|e| e.into_store(op))?;
        if claimed.is_some() {
            self.delete_request(&self.key_of(id))
                .send()
                .await
                .map_err(|e| classify(op, e))?;
        }
        if let Some(Decision {
            pending: Some(pending),
            ..
        }) = self.fetch_decision(id).await?
        {
            self.delete_request(&self.pending_key(id, &pending))
                .send()
                .await
                .map_err(|e| classify(op, e))?;
        }
        Ok(())
    }
}
