//! Amazon S3 and S3-compatible servers via `aws-sdk-s3`.
//!
//! Object layout under the store's prefix `P`:
//!
//! | key | what |
//! |---|---|
//! | `P{id}` | the envelope; metadata `otm-expires` (Unix ms), `otm-verifier` and `otm-access` (base64url), `otm-gen` (random per put), any `otm-manage`, `otm-reference` and `otm-creator` |
//! | `P{id}.{gen}.a{n}` | attempt slot `n` (1..=max), empty, created with `If-None-Match: *` |
//! | `P{id}.{gen}.claim` | claim marker (claim-object method only) |
//! | `P{id}.receipt` | receipt after open or burn: metadata `otm-state`, `otm-changed`, `otm-expires`, `otm-manage`, any `otm-reference` and `otm-creator` |
//! | `Pquota/{sha256 of key}/{window end}/{n}` | quota slot `n` (0..limit), empty, created with `If-None-Match: *` (see `count_quota`) |
//! | `P{id}.request`, `P{id}.answered` | a request for a secret and its one answer (see `requests.rs`); the answer is then the message `P{id}` |
//! | `P{first}.group` | the commit object of a group of messages whose first member is `first`: empty, created with `If-None-Match: *` once every member is stored; each member carries metadata `otm-group` naming it and is invisible until it exists (see `put_group`) |
//!
//! Every take first reserves the next free attempt slot, so no more than
//! `max_failed_attempts` proofs are ever compared for a message, however many
//! arrive at once. Exactly one taker then wins, by the claim method:
//!
//! - [`ClaimMethod::ConditionalDelete`]: `DeleteObject` with `If-Match: <etag>`;
//!   only the caller whose delete succeeds returns the envelope.
//! - [`ClaimMethod::ClaimObject`]: `PutObject` of the claim marker with
//!   `If-None-Match: *`; only its creator returns the envelope. For servers
//!   that ignore `If-Match` on delete.
//!
//! [`S3Store::connect`] probes the server and, with [`ClaimMethod::Auto`],
//! picks conditional delete when the server honours it and the claim object
//! otherwise; a server that ignores `If-None-Match` is refused: nothing safe
//! can be built on it.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter,
};
use aws_sdk_s3::Client;
use otm_core::{AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, ManageVerifier, MessageId};

mod config;
mod error;
mod lifecycle;
mod objects;
mod probe;
mod quota;
mod requests;

pub use config::{ClaimMethod, S3Config};
use error::{classify, is_not_found, is_status, retryable, S3Err};
pub use lifecycle::lifecycle_days_for;

use crate::{
    check_new, from_unix_ms, unix_ms, wrong_proof, BlobStore, MessageState, MessageStatus,
    NewMessage, Result, StoreError, StoreOptions,
};

/// A [`BlobStore`] in an S3 bucket. See the module documentation for the
/// object layout and how exactly-once is achieved.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    method: ClaimMethod,
    opts: StoreOptions,
}

const META_EXPIRES: &str = "otm-expires";
const META_VERIFIER: &str = "otm-verifier";
const META_ACCESS: &str = "otm-access";
const META_GEN: &str = "otm-gen";
const META_MANAGE: &str = "otm-manage";
const META_STATE: &str = "otm-state";
const META_CHANGED: &str = "otm-changed";
/// The embedder's reference, base64url (S3 metadata is ASCII).
const META_REFERENCE: &str = "otm-reference";
/// The creator's text form, base64url.
const META_CREATOR: &str = "otm-creator";
/// A group member's commit object key: the member exists only once it does.
const META_GROUP: &str = "otm-group";
const LIFECYCLE_RULE_PREFIX: &str = "otm-expiry";

/// What `HeadObject` found: a message version's metadata.
struct Found {
    etag: String,
    expires_at_ms: i64,
    verifier: ClaimVerifier,
    /// `None` for an object written before access verifiers: it matches no
    /// access proof.
    access: Option<AccessVerifier>,
    gen: String,
    manage: Option<ManageVerifier>,
    creator: Option<String>,
    reference: Option<String>,
}

impl S3Store {
    /// Builds the client from the standard AWS configuration (environment,
    /// profile, instance role) plus `config`, probes the server's
    /// conditional-request support and settles the claim method.
    pub async fn connect(config: S3Config) -> Result<Self> {
        // The SDK's HTTPS client on rustls with the ring provider: the one TLS
        // stack of the workspace (see the workspace manifest).
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client);
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some((id, secret)) = &config.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "otm-static",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // Many S3-compatible servers do not accept the SDK's default
            // streaming checksum trailers.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            // No automatic re-sends: a conditional request retried after a
            // lost reply would see its own success as a failure.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(config.timeout)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if shared.region().is_none() && config.region.is_none() {
            builder = builder.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &config.endpoint {
            if let Some(host) = endpoint
                .strip_prefix("http://")
                .and_then(|rest| crate::url::host_of(rest))
            {
                crate::unverified_transport(
                    "S3",
                    host,
                    config.allow_unverified,
                    "use an https:// endpoint",
                )?;
            }
            builder = builder.endpoint_url(endpoint);
        }
        let client = Client::from_conf(builder.build());
        let mut store = S3Store {
            client,
            bucket: config.bucket,
            prefix: config.prefix,
            method: config.claim_method,
            opts: config.options,
        };
        if config.create_bucket {
            store.create_bucket().await?;
        }
        store.check_versioning(config.allow_versioning).await?;
        store.method = store.probe(config.claim_method).await?;
        if let Some(days) = config.lifecycle_days {
            store.install_lifecycle_rule(days).await?;
            // AWS may take a few minutes to report a new rule; warn, do not fail.
            if store.lifecycle_rule_days().await? != Some(days) {
                tracing::warn!(bucket = %store.bucket, "the lifecycle rule just installed is not reported yet");
            }
        } else if !config.allow_no_lifecycle && !store.has_expiry_rule().await? {
            return Err(StoreError::Misconfigured {
                reason: format!(
                    "bucket {} has no enabled lifecycle rule that expires objects under `{}`, so \
                     messages never opened would stay in it forever; add lifecycle_days=N to the \
                     store URL (otm installs the rule), install one yourself, or accept this \
                     with allow_no_lifecycle=true",
                    store.bucket, store.prefix
                ),
            });
        }
        Ok(store)
    }

    /// The claim method in use after the connect-time probe.
    pub fn claim_method(&self) -> ClaimMethod {
        self.method
    }

    /// The S3 client (for inspection and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a message.
    pub fn key_of(&self, id: &MessageId) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Stores `message` under `id` if absent (replacing an expired one),
    /// as a member of the group whose commit object is `group` when given;
    /// the created version's ETag.
    async fn store_message(
        &self,
        id: &MessageId,
        message: &NewMessage,
        group: Option<&str>,
    ) -> Result<String> {
        let (expires_at_ms, _) = check_new(&self.opts, message)?;
        let key = self.key_of(id);
        let mut metadata = vec![
            (META_EXPIRES, expires_at_ms.to_string()),
            (META_VERIFIER, message.verifier.to_base64url()),
            (META_ACCESS, message.access.to_base64url()),
            (META_GEN, random_hex()?),
        ];
        if let Some(manage) = message.manage {
            metadata.push((META_MANAGE, manage.to_base64url()));
        }
        if let Some(group) = group {
            metadata.push((META_GROUP, group.to_owned()));
        }
        metadata.extend(objects::origin_metadata(
            message.creator.as_ref(),
            message.reference.as_deref(),
        ));
        for _ in 0..3 {
            let created = self
                .put_if_absent(&key, message.envelope.clone(), &metadata)
                .await
                .map_err(|e| e.into_store("store a message"))?;
            if let Some(etag) = created {
                return Ok(etag);
            }
            // Taken: by a live message (conflict) or an expired one (replace it).
            match self.fetch(id).await? {
                Some(found) if found.expires_at_ms > unix_ms(SystemTime::now()) => {
                    return Err(StoreError::Conflict)
                }
                Some(found) => {
                    self.delete_version(&key, &found.etag).await?;
                }
                None => {}
            }
        }
        Err(StoreError::Conflict)
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, id: &MessageId, message: NewMessage) -> Result<()> {
        self.store_message(id, &message, None).await.map(|_| ())
    }

    async fn take(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        // Metadata first: the access proof is checked before a byte of
        // ciphertext moves, so a wrong one costs one HEAD, like an
        // unknown ID.
        let Some(found) = self.fetch(id).await? else {
            return Err(StoreError::NotFound);
        };
        if found.expires_at_ms <= unix_ms(SystemTime::now()) {
            self.delete_version(&self.key_of(id), &found.etag).await?;
            return Err(StoreError::NotFound);
        }
        // Without the access proof the message is not there for this
        // caller: no slot is reserved, nothing is counted.
        if !found.access.is_some_and(|a| a.verify(access)) {
            return Err(StoreError::NotFound);
        }
        // Count first, compare second: only proofs holding a slot are
        // ever compared.
        let Some(slot) = self.reserve_slot(id, &found.gen).await? else {
            // Every slot is held: by concurrent takers (one of which may
            // still win) or by used-up attempts. Either way not this caller;
            // deleting here could rob a slot holder with the right proof.
            return Err(StoreError::NotFound);
        };
        // Slots are never deleted by the store (the lifecycle rule removes
        // them): freeing one would let a slow taker count an attempt again.
        if found.verifier.verify(proof) {
            // Read this very version before the claim deletes it; whoever
            // claims first is the one reader.
            let Some(body) = self.download(id, &found).await? else {
                return Err(StoreError::NotFound);
            };
            if !self.claim_and_delete(id, &found).await? {
                return Err(StoreError::NotFound);
            }
            self.write_receipt(id, &found, MessageState::Opened).await;
            return Ok(body);
        }
        if slot >= self.opts.max_failed_attempts {
            // The last attempt burns the message (whoever deletes it). If
            // the delete fails the object stays, but every slot is taken,
            // so it can never be taken: it is dead until the lifecycle rule.
            match self.claim_and_delete(id, &found).await {
                Ok(true) => self.write_receipt(id, &found, MessageState::Burned).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "burning a message after too many wrong proofs failed")
                }
            }
        }
        Err(wrong_proof(&self.opts, slot))
    }

    async fn burn(&self, id: &MessageId) -> Result<()> {
        let Some(found) = self.fetch(id).await? else {
            return Err(StoreError::NotFound);
        };
        if found.expires_at_ms <= unix_ms(SystemTime::now()) {
            self.delete_version(&self.key_of(id), &found.etag).await?;
            return Err(StoreError::NotFound);
        }
        if self.exhausted(id, &found).await? {
            return Err(StoreError::NotFound);
        }
        match self.claim_and_delete(id, &found).await? {
            true => {
                self.write_receipt(id, &found, MessageState::Burned).await;
                Ok(())
            }
            false => Err(StoreError::NotFound),
        }
    }

    async fn status(&self, id: &MessageId) -> Result<MessageStatus> {
        let now = unix_ms(SystemTime::now());
        let found = match self.fetch(id).await? {
            // An answer's copy that a late publication left after its take
            // (see `requests`): it was opened.
            Some(found) if found.gen == requests::ANSWER_GEN => {
                let claim = format!("{}.{}.claim", self.key_of(id), requests::ANSWER_GEN);
                match self.head_request(&claim).send().await {
                    Ok(_) => None,
                    Err(e) if is_not_found(&e) => Some(found),
                    Err(e) => return Err(classify("read a message's status", e)),
                }
            }
            other => other,
        };
        if let Some(found) = found {
            return Ok(MessageStatus {
                state: if found.expires_at_ms <= now {
                    MessageState::Expired
                } else if self.exhausted(id, &found).await? {
                    MessageState::Burned
                } else {
                    MessageState::Waiting
                },
                expires_at: from_unix_ms(found.expires_at_ms),
                changed_at: None,
                manage: found.manage,
                creator: crate::creator_from(found.creator.as_deref()),
                reference: found.reference.clone(),
            });
        }
        let key = format!("{}.receipt", self.key_of(id));
        let meta = match self.head_request(&key).send().await {
            Ok(out) => out.metadata().cloned().unwrap_or_default(),
            Err(e) if is_not_found(&e) => return Err(StoreError::NotFound),
            Err(e) => return Err(classify("read a receipt", e)),
        };
        let int = |name: &str| meta.get(name).and_then(|v| v.parse::<i64>().ok());
        let expires = int(META_EXPIRES).ok_or(StoreError::NotFound)?;
        if expires <= now {
            return Err(StoreError::NotFound);
        }
        Ok(MessageStatus {
            state: match meta.get(META_STATE).map(String::as_str) {
                Some("opened") => MessageState::Opened,
                _ => MessageState::Burned,
            },
            expires_at: from_unix_ms(expires),
            changed_at: int(META_CHANGED).map(from_unix_ms),
            manage: meta
                .get(META_MANAGE)
                .and_then(|v| ManageVerifier::from_base64url(v).ok()),
            creator: crate::creator_from(decode_reference(meta.get(META_CREATOR)).as_deref()),
            reference: decode_reference(meta.get(META_REFERENCE)),
        })
    }

    async fn check(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| classify("check the S3 bucket", e))?;
        Ok(())
    }

    fn quotas(&self) -> Option<&dyn crate::QuotaCounter> {
        Some(self)
    }

    fn requests(&self) -> Option<&dyn crate::RequestStore> {
        Some(self)
    }

    fn groups(&self) -> Option<&dyn crate::GroupStore> {
        Some(self)
    }

    fn backend_name(&self) -> &'static str {
        "s3"
    }

    fn options(&self) -> &StoreOptions {
        &self.opts
    }
}

/// A group on S3, which has no step over several objects: every member is
/// stored with metadata `otm-group` naming the group's commit object
/// `P{first}.group`, and a member is there for take, burn and status only
/// once that object exists (one more `HeadObject` per look-up of a group
/// member). The commit object is created last, with `If-None-Match: *`: the
/// group's one atomic step. A put cut off before it leaves members nobody
/// can see, for the lifecycle rule; one cut off after it leaves the whole
/// group.
#[async_trait]
impl crate::GroupStore for S3Store {
    async fn put_group(&self, messages: Vec<(MessageId, NewMessage)>) -> Result<()> {
        crate::check_group(&self.opts, &messages)?;
        let commit = format!("{}.group", self.key_of(&messages[0].0));
        let mut written = Vec::with_capacity(messages.len());
        for (id, message) in &messages {
            match self.store_message(id, message, Some(&commit)).await {
                Ok(etag) => written.push((self.key_of(id), etag)),
                Err(e) => {
                    self.unput(&written).await;
                    return Err(e);
                }
            }
        }
        let committed = self
            .put_if_absent(&commit, Vec::new(), &[])
            .await
            .map_err(|e| e.into_store("commit a group of messages"));
        match committed {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                // Only a reused first ID finds its commit object there.
                self.unput(&written).await;
                Err(StoreError::Conflict)
            }
            // The commit may have been made: look before removing members,
            // so that a committed group is never cut into parts.
            Err(e) => match self.head_request(&commit).send().await {
                Ok(_) => Ok(()),
                Err(missing) if is_not_found(&missing) => {
                    self.unput(&written).await;
                    Err(e)
                }
                Err(_) => Err(e),
            },
        }
    }
}

impl S3Store {
    /// Deletes the members of a group that did not commit (each exactly
    /// the version this put created; best effort: one left behind is
    /// invisible and goes with the lifecycle rule).
    async fn unput(&self, written: &[(String, String)]) {
        for (key, etag) in written {
            if let Err(e) = self.delete_version(key, etag).await {
                tracing::warn!(error = %e, "an uncommitted group member stays until the lifecycle rule");
            }
        }
    }
}

#[async_trait]
impl crate::QuotaCounter for S3Store {
    async fn count_quota(
        &self,
        key: &str,
        window: Duration,
        limit: u32,
        uses: u32,
    ) -> Result<bool> {
        self.count_in_slots(key, window, limit, uses.max(1)).await
    }
}

fn random_hex() -> Result<String> {
    let id = MessageId::generate().map_err(|e| StoreError::Backend {
        op: "draw random bytes",
        source: Box::new(e),
    })?;
    Ok(id.as_bytes().iter().map(|b| format!("{b:02x}")).collect())
}

/// [`NewMessage::reference`] (or a creator's text form) as S3 metadata:
/// base64url of its bytes.
fn encode_reference(reference: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(reference)
}

/// The reference back from its metadata value (`None` if absent or not ours).
fn decode_reference(value: Option<&String>) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value?)
        .ok()?;
    String::from_utf8(bytes).ok()
}
