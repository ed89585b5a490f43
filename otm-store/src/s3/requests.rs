//! Requests for a secret on S3, where no two objects change in one step.
//!
//! | key | what |
//! |---|---|
//! | `P{id}.request` | the request: body the sealed note; metadata `otm-expires`, `otm-answer` (the answer verifier), `otm-access`, `otm-verifier`, any `otm-reference` and `otm-creator` |
//! | `P{id}.answered` | the decision: created once with `If-None-Match: *`; body the answer, metadata `otm-changed` (when) |
//! | `P{id}` | the answer as a message (generation `answer`), published from the decision |
//!
//! - **One answer.** Answering creates `P{id}.answered` with
//!   `If-None-Match: *`: of any number of responders exactly one creates
//!   it; every other gets `412` and is told the request was answered. The
//!   object stays until the bucket's lifecycle rule removes it, so no later
//!   answer is ever stored, also after the answer was taken.
//! - **Nothing lost.** The answer is durable in the decision before it is
//!   published as the message `P{id}`. A responder that dies in between
//!   leaves it unpublished; the next reading of the request (its status,
//!   the asker's page) publishes it again from the decision.
//! - **Read once.** Every answer message has the generation `answer`, and
//!   taking it always goes through the claim object `P{id}.answer.claim`
//!   (whatever the store's claim method): a second copy published by a
//!   late repair after the answer was taken can never be claimed.
//! - **Withdrawal** first creates the decision itself (empty, so that no
//!   answer can come after), then removes the request and destroys an
//!   answer not yet taken.

use super::*;
use crate::{check_answer, check_request, NewRequest, RequestStore, StoredRequest, ANSWER_MANAGE};
use otm_core::AnswerVerifier;

/// The generation of every answer message: its claim object is
/// `P{id}.answer.claim`.
pub(super) const ANSWER_GEN: &str = "answer";
const META_ANSWER: &str = "otm-answer";
const META_WITHDRAWN: &str = "otm-withdrawn";

/// The decision object, as a HEAD finds it.
struct Decision {
    at_ms: i64,
    withdrawn: bool,
}

impl S3Store {
    fn request_key(&self, id: &MessageId) -> String {
        format!("{}.request", self.key_of(id))
    }

    fn decision_key(&self, id: &MessageId) -> String {
        format!("{}.answered", self.key_of(id))
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
        let note = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                op,
                source: Box::new(e),
            })?
            .into_bytes()
            .to_vec();
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
        if let Some(creator) = &request.creator {
            metadata.push((META_CREATOR, encode_reference(&creator.to_string())));
        }
        if let Some(reference) = &request.reference {
            metadata.push((META_REFERENCE, encode_reference(reference)));
        }
        metadata
    }

    /// Publishes the answer held by the decision as the message `P{id}`,
    /// unless it is there, was taken (its claim object exists) or had its
    /// attempts used up. Checks the message before the claim: a take
    /// creates the claim before it deletes the message, so a message found
    /// missing with no claim after it was never published (a copy made
    /// anyway, by a race with a take, can never be claimed).
    async fn republish(&self, id: &MessageId, request: &NewRequest) -> Result<()> {
        let key = self.key_of(id);
        if self.fetch(id).await?.is_some() {
            return Ok(());
        }
        let claim = format!("{key}.{ANSWER_GEN}.claim");
        match self.head_request(&claim).send().await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(classify("read a request's answer", e)),
        }
        let last = format!("{key}.{ANSWER_GEN}.a{}", self.opts.max_failed_attempts);
        match self.head_request(&last).send().await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(classify("read a request's answer", e)),
        }
        let op = "publish a request's answer";
        let body = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.decision_key(id))
            .send()
            .await
        {
            Ok(out) => out
                .body
                .collect()
                .await
                .map_err(|e| StoreError::Unavailable {
                    op,
                    source: Box::new(e),
                })?
                .into_bytes()
                .to_vec(),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(classify(op, e)),
        };
        if body.is_empty() {
            return Ok(());
        }
        self.put_if_absent(&key, body, &Self::answer_metadata(request))
            .await
            .map_err(|e| e.into_store(op))?;
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
        if let Some(creator) = &request.creator {
            metadata.push((META_CREATOR, encode_reference(&creator.to_string())));
        }
        if let Some(reference) = &request.reference {
            metadata.push((META_REFERENCE, encode_reference(reference)));
        }
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
            Some(d) => {
                // An answer whose responder died before publishing it is
                // published now.
                self.republish(id, &request).await?;
                Some(from_unix_ms(d.at_ms))
            }
            None => None,
        };
        Ok(StoredRequest {
            request,
            answered_at,
        })
    }

    async fn answer_request(&self, id: &MessageId, answer: Vec<u8>) -> Result<()> {
        check_answer(&answer)?;
        let (_, request) = self.live_request(id).await?;
        let now = unix_ms(SystemTime::now());
        let decided = self
            .put_if_absent(
                &self.decision_key(id),
                answer.clone(),
                &[(META_CHANGED, now.to_string())],
            )
            .await
            .map_err(|e| e.into_store("answer a request"))?;
        if decided.is_none() {
            return match self.fetch_decision(id).await? {
                Some(d) if d.withdrawn => Err(StoreError::NotFound),
                _ => Err(StoreError::AlreadyAnswered),
            };
        }
        // The decision holds the answer; a failure from here on is
        // repaired by the next reading of the request.
        self.put_if_absent(&self.key_of(id), answer, &Self::answer_metadata(&request))
            .await
            .map_err(|e| e.into_store("publish a request's answer"))?;
        Ok(())
    }

    async fn withdraw_request(&self, id: &MessageId) -> Result<()> {
        let (etag, _) = self.live_request(id).await?;
        let now = unix_ms(SystemTime::now());
        // No answer after this: decide for "withdrawn" if nobody answered.
        let blocked = self
            .put_if_absent(
                &self.decision_key(id),
                Vec::new(),
                &[
                    (META_CHANGED, now.to_string()),
                    (META_WITHDRAWN, "1".to_owned()),
                ],
            )
            .await
            .map_err(|e| e.into_store("withdraw a request"))?;
        if blocked.is_none() {
            if let Some(d) = self.fetch_decision(id).await? {
                if d.withdrawn {
                    return Err(StoreError::NotFound);
                }
            }
            // Answered: the answer goes too, if not taken yet (its claim
            // object makes a copy a late repair may still publish
            // unclaimable).
            let claim = format!("{}.{ANSWER_GEN}.claim", self.key_of(id));
            let claimed = self
                .put_if_absent(&claim, Vec::new(), &[])
                .await
                .map_err(|e| e.into_store("withdraw a request"))?;
            if claimed.is_some() {
                self.delete_request(&self.key_of(id))
                    .send()
                    .await
                    .map_err(|e| classify("withdraw a request", e))?;
            }
        }
        self.delete_version(&self.request_key(id), &etag).await?;
        Ok(())
    }
}
