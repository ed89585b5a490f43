//! The object operations a put, take, burn or status is made of:
//! conditional puts, reads of the envelope and its metadata, the
//! attempt slots, the claim, and receipts.

use super::*;

/// All of an object's body.
pub(super) async fn body_bytes(body: ByteStream, op: &'static str) -> Result<Vec<u8>> {
    let body = body.collect().await.map_err(|e| StoreError::Unavailable {
        op,
        source: Box::new(e),
    })?;
    Ok(body.into_bytes().to_vec())
}

/// The metadata of a creator and a reference, when given.
pub(super) fn origin_metadata(
    creator: Option<&crate::Creator>,
    reference: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut metadata = Vec::new();
    if let Some(creator) = creator {
        metadata.push((META_CREATOR, encode_reference(&creator.to_string())));
    }
    if let Some(reference) = reference {
        metadata.push((META_REFERENCE, encode_reference(reference)));
    }
    metadata
}

impl S3Store {
    /// A `DeleteObject` request for `key` in this store's bucket.
    pub(super) fn delete_request(
        &self,
        key: &str,
    ) -> aws_sdk_s3::operation::delete_object::builders::DeleteObjectFluentBuilder {
        self.client.delete_object().bucket(&self.bucket).key(key)
    }

    /// A `HeadObject` request for `key` in this store's bucket.
    pub(super) fn head_request(
        &self,
        key: &str,
    ) -> aws_sdk_s3::operation::head_object::builders::HeadObjectFluentBuilder {
        self.client.head_object().bucket(&self.bucket).key(key)
    }

    /// `PutObject` with `If-None-Match: *`: `Some(etag)` if created, `None`
    /// if the key exists.
    pub(super) async fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: &[(&str, String)],
    ) -> std::result::Result<Option<String>, S3Err> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body));
        for (name, value) in metadata {
            req = req.metadata(*name, value);
        }
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            // 412: exists. 409: a concurrent conditional write is in progress.
            Err(e) if is_status(&e, 412) || is_status(&e, 409) => Ok(None),
            Err(e) => Err(S3Err::from(e)),
        }
    }

    /// Reads a message's metadata (`HeadObject`): never its body, so a
    /// caller without the access proof costs no transfer of ciphertext.
    pub(super) async fn fetch(&self, id: &MessageId) -> Result<Option<Found>> {
        let key = self.key_of(id);
        let (etag, meta) = match self.head_request(&key).send().await {
            Ok(out) => (
                out.e_tag().unwrap_or_default().to_owned(),
                out.metadata().cloned().unwrap_or_default(),
            ),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(classify("look up a message", e)),
        };
        let corrupt = |what: &'static str| StoreError::Backend {
            op: "read a message",
            source: what.into(),
        };
        let expires_at_ms = meta
            .get(META_EXPIRES)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("object has no otm-expires metadata"))?;
        let verifier = meta
            .get(META_VERIFIER)
            .and_then(|v| ClaimVerifier::from_base64url(v).ok())
            .ok_or_else(|| corrupt("object has no valid otm-verifier metadata"))?;
        let access = meta
            .get(META_ACCESS)
            .and_then(|v| AccessVerifier::from_base64url(v).ok());
        let gen = meta
            .get(META_GEN)
            .cloned()
            .ok_or_else(|| corrupt("object has no otm-gen metadata"))?;
        let manage = meta
            .get(META_MANAGE)
            .and_then(|v| ManageVerifier::from_base64url(v).ok());
        // A group member exists once its group committed.
        if let Some(commit) = meta.get(super::META_GROUP) {
            match self.head_request(commit).send().await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(classify("look up a group's commit", e)),
            }
        }
        Ok(Some(Found {
            etag,
            expires_at_ms,
            verifier,
            access,
            gen,
            manage,
            creator: super::decode_reference(meta.get(super::META_CREATOR)),
            reference: super::decode_reference(meta.get(super::META_REFERENCE)),
        }))
    }

    /// The envelope of the message version `found` (`GetObject` with
    /// `If-Match` its ETag): `None` when that version is gone or was
    /// replaced since it was looked up.
    pub(super) async fn download(&self, id: &MessageId, found: &Found) -> Result<Option<Vec<u8>>> {
        let op = "read a message";
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key_of(id))
            .if_match(&found.etag);
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if is_not_found(&e) || is_status(&e, 412) => return Ok(None),
            Err(e) => return Err(classify(op, e)),
        };
        Ok(Some(body_bytes(out.body, op).await?))
    }

    /// Deletes the message object if it still is the version `etag`.
    /// `Ok(true)` if this call deleted it.
    pub(super) async fn delete_version(&self, key: &str, etag: &str) -> Result<bool> {
        match self.delete_request(key).if_match(etag).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 412) || is_not_found(&e) => Ok(false),
            Err(e) => Err(classify("delete a message", e)),
        }
    }

    /// Makes this caller the one that removes the message: by conditional
    /// delete, or by creating the claim marker and then deleting.
    pub(super) async fn claim_and_delete(&self, id: &MessageId, found: &Found) -> Result<bool> {
        let key = self.key_of(id);
        // A request's answer is always claimed through its claim object
        // (see `requests`), whatever the store's method.
        let claim_object =
            self.method == ClaimMethod::ClaimObject || found.gen == super::requests::ANSWER_GEN;
        match claim_object {
            true => {
                let marker = format!("{key}.{}.claim", found.gen);
                let won = self
                    .put_if_absent(&marker, Vec::new(), &[])
                    .await
                    .map_err(|e| e.into_store("claim a message"))?
                    .is_some();
                if won {
                    // The marker decided; the delete only frees the space.
                    // The marker itself stays (the lifecycle rule removes
                    // it): deleting it would let a slower taker that read
                    // the message before this delete claim it again.
                    // The marker already decided; a failed delete leaves a
                    // dead object for the lifecycle rule, never a second winner.
                    if let Err(e) = self.delete_request(&key).send().await {
                        tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "deleting a claimed message failed");
                    }
                }
                Ok(won)
            }
            false => self.delete_version(&key, &found.etag).await,
        }
    }

    /// Reserves the next attempt slot; `None` when all are taken.
    pub(super) async fn reserve_slot(&self, id: &MessageId, gen: &str) -> Result<Option<u32>> {
        for n in 1..=self.opts.max_failed_attempts {
            let slot = format!("{}.{gen}.a{n}", self.key_of(id));
            let created = self
                .put_if_absent(&slot, Vec::new(), &[])
                .await
                .map_err(|e| e.into_store("count an attempt"))?;
            if created.is_some() {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Records what the sender may learn after an open or burn. Not atomic
    /// with the delete: a failure is logged and the status then reads as
    /// not found, which loses a receipt but never a message.
    pub(super) async fn write_receipt(&self, id: &MessageId, found: &Found, state: MessageState) {
        let Some(manage) = found.manage else { return };
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}.receipt", self.key_of(id)))
            .metadata(META_STATE, state.as_str())
            .metadata(META_CHANGED, unix_ms(SystemTime::now()).to_string())
            .metadata(META_EXPIRES, found.expires_at_ms.to_string())
            .metadata(META_MANAGE, manage.to_base64url());
        let request = match &found.reference {
            Some(r) => request.metadata(super::META_REFERENCE, super::encode_reference(r)),
            None => request,
        };
        let request = match &found.creator {
            Some(c) => request.metadata(super::META_CREATOR, super::encode_reference(c)),
            None => request,
        };
        let result = request.body(ByteStream::from(Vec::new())).send().await;
        if let Err(e) = result {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), "writing a receipt failed");
        }
    }

    /// Whether every attempt slot of this message version is taken (the
    /// message can never be taken again).
    pub(super) async fn exhausted(&self, id: &MessageId, found: &Found) -> Result<bool> {
        let last = format!(
            "{}.{}.a{}",
            self.key_of(id),
            found.gen,
            self.opts.max_failed_attempts
        );
        match self.head_request(&last).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(classify("count attempts", e)),
        }
    }
}
