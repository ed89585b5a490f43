//! One message for several recipients: 2 to [`MAX_GROUP`] independent
//! messages created at once, all or none, each with its own key, link and
//! receipt; the sender follows them with one group status link (FORMAT.md
//! §9.6) whose labels the server never sees.
//!
//! A group is one create through the same pipeline as a single message:
//! one rate-limit count, one policy decision (which sees
//! [`CreateAsk::recipients`]), the limits and the format checked for every
//! member, the quota counted once per member in one atomic step, then the
//! store's [`GroupStore::put_group`](otm_store::GroupStore::put_group).

use std::time::{Duration, SystemTime};

use otm_core::{
    AccessVerifier, ClaimVerifier, ErrorCode, GroupLink, GroupMember, Key, Link, ManageSecret,
    ManageToken, MessageId, Secrets, SendOptions, SentGroup, Stored, MAX_GROUP,
};
use otm_store::{NewMessage, StoreError};

use super::create::check_limits;
use super::{Create, Op, Receipt, Service, ServiceError};
use crate::caller::Caller;
use crate::metrics::Outcome;
use crate::policy::CreateAsk;

/// The fewest messages a group holds.
const MIN_GROUP: usize = 2;

/// One sealed message of a [`CreateGroup`]: the envelope and its two
/// verifiers (what a single [`Create`] carries, without the expiry and
/// reference the group shares).
#[derive(Clone)]
#[non_exhaustive]
pub struct Sealed {
    /// The sealed envelope (checked against the format, never opened).
    pub envelope: Vec<u8>,
    /// The claim verifier.
    pub verifier: ClaimVerifier,
    /// The access verifier.
    pub access: AccessVerifier,
}

impl Sealed {
    /// A member from its envelope and verifiers.
    pub fn new(envelope: Vec<u8>, verifier: ClaimVerifier, access: AccessVerifier) -> Self {
        Sealed {
            envelope,
            verifier,
            access,
        }
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print ciphertext.
        f.debug_struct("Sealed")
            .field("envelope_len", &self.envelope.len())
            .finish_non_exhaustive()
    }
}

/// A group create: 2 to [`MAX_GROUP`] sealed messages, one expiry, one
/// reference (see [`Service::create_group`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CreateGroup {
    /// The members, in order.
    pub members: Vec<Sealed>,
    /// How long to keep them (`None`: the server's default).
    pub ttl: Option<Duration>,
    /// The creator's own reference, kept with every member (as
    /// [`Create::reference`]).
    pub reference: Option<String>,
}

impl CreateGroup {
    /// A group of `members`, for the default expiry, without a reference.
    pub fn new(members: Vec<Sealed>) -> Self {
        CreateGroup {
            members,
            ttl: None,
            reference: None,
        }
    }

    /// Sets [`CreateGroup::ttl`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`CreateGroup::reference`].
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

/// A stored group: each member's ID and management token, in the order
/// created, and the secret the tokens derive from.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoredGroup {
    /// The members, in the order of the [`CreateGroup`].
    pub members: Vec<Stored>,
    /// The fresh secret each member's token derives from
    /// (`secret.token_for(id)`), for the group status link; `None` when the
    /// tokens derive from the creator's own credential
    /// ([`CreateLimits::manage_secret`](crate::policy::CreateLimits::manage_secret)),
    /// which never leaves the server.
    pub secret: Option<ManageSecret>,
    /// The expiry all members share.
    pub expires_at: SystemTime,
}

impl StoredGroup {
    /// The sender's group status link on `base`, with one label per member
    /// (`None`: unlabelled; fewer labels than members leave the rest
    /// unlabelled). Labels live only in the link.
    pub fn link(&self, base: &str, labels: &[Option<&str>]) -> otm_core::Result<GroupLink> {
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(n, m)| GroupMember {
                id: m.id,
                token: m.manage_token.clone(),
                label: labels.get(n).copied().flatten().map(str::to_owned),
            })
            .collect();
        GroupLink::new(base, self.secret.clone(), members)
    }
}

impl Service {
    /// Stores 2 to [`MAX_GROUP`] sealed messages for `caller`, all or none,
    /// through the create pipeline: one rate-limit count; one decision of
    /// the create policy for the whole group ([`CreateAsk::recipients`]);
    /// the limits it allows and the format checked for every member; the
    /// quota counted once per member, in one atomic step; then the store.
    /// Each member is an independent message (its own ID, key and receipt),
    /// stored with a management token derived from a fresh group secret
    /// (or from the creator's credential, when the policy derives tokens
    /// from it). A store without [`GroupStore`](otm_store::GroupStore) is
    /// [`ServiceError::MissingCapability`] (`501 unsupported` over HTTP).
    pub async fn create_group(
        &self,
        caller: &Caller,
        group: CreateGroup,
    ) -> Result<StoredGroup, ServiceError> {
        self.admit(caller, Op::Create).await?;
        self.create_group_admitted(caller, group).await
    }

    /// [`create_group`](Service::create_group) after the rate limit.
    async fn create_group_admitted(
        &self,
        caller: &Caller,
        group: CreateGroup,
    ) -> Result<StoredGroup, ServiceError> {
        let store = &self.0.store;
        let groups = store.groups().ok_or(ServiceError::MissingCapability {
            what: "groups",
            backend: store.backend_name(),
        })?;
        let n = group.members.len();
        if !(MIN_GROUP..=MAX_GROUP).contains(&n) {
            return Err(self.failed(ServiceError::invalid(
                ErrorCode::BadField,
                format!("members: a group has {MIN_GROUP} to {MAX_GROUP} messages, not {n}"),
            )));
        }
        let ask = CreateAsk {
            ttl: group.ttl,
            envelope_bytes: group
                .members
                .iter()
                .map(|m| m.envelope.len())
                .max()
                .unwrap_or(0),
            passphrase: group
                .members
                .iter()
                .all(|m| otm_core::validate(&m.envelope).is_ok_and(|info| info.passphrase)),
            reference: group.reference.as_deref(),
            request: false,
            recipients: n,
        };
        let limits = self.decide_ask(caller, &ask).await?;
        let creator = self.creator(caller, &limits, group.reference.is_some())?;
        let default_ttl = self.0.config.default_ttl;
        let mut ttl = Duration::ZERO;
        for (i, member) in group.members.iter().enumerate() {
            // A member's own fault names it; the group's (its expiry, its
            // reference) is the same for every member.
            let numbered = |e: ServiceError| match e {
                ServiceError::Invalid { code, message }
                    if matches!(
                        code,
                        ErrorCode::BadEnvelope
                            | ErrorCode::TooLarge
                            | ErrorCode::PassphraseRequired
                    ) =>
                {
                    ServiceError::Invalid {
                        code,
                        message: format!("members[{i}]: {message}"),
                    }
                }
                e => e,
            };
            check_limits(&limits, &member.envelope, group.ttl, default_ttl)
                .map_err(|e| self.failed(numbered(e)))?;
            let create = Create {
                envelope: member.envelope.clone(),
                verifier: member.verifier,
                access: member.access,
                ttl: group.ttl,
                reference: group.reference.clone(),
            };
            ttl = self.check(&create).map_err(|e| self.failed(numbered(e)))?;
        }
        let uses = u32::try_from(n).unwrap_or(u32::MAX);
        self.count_quota(&limits, uses).await?;

        let (secret, shown) = match &limits.manage_secret {
            Some(secret) => (secret.clone(), false),
            None => (
                ManageSecret::generate().map_err(|_| ServiceError::Random)?,
                true,
            ),
        };
        let expires_at = SystemTime::now() + ttl;
        let bytes: usize = group.members.iter().map(|m| m.envelope.len()).sum();
        // 128-bit IDs collide only by a broken RNG or on purpose; retry anyway.
        let mut attempts = 0;
        let ids = loop {
            let ids = (0..n)
                .map(|_| MessageId::generate().map_err(|_| ServiceError::Random))
                .collect::<Result<Vec<_>, _>>()?;
            let messages = ids
                .iter()
                .zip(&group.members)
                .map(|(id, member)| {
                    let message = NewMessage {
                        envelope: member.envelope.clone(),
                        verifier: member.verifier,
                        access: member.access,
                        expires_at,
                        manage: Some(secret.token_for(id).verifier()),
                        creator: Some(creator.clone()),
                        reference: group.reference.clone(),
                    };
                    (*id, message)
                })
                .collect();
            match groups.put_group(messages).await {
                Ok(()) => break ids,
                Err(StoreError::Conflict) if attempts < 3 => attempts += 1,
                Err(e) => return Err(self.failed(e.into())),
            }
        };
        for _ in 0..n {
            self.0.metrics.count(Outcome::Created);
        }
        self.changed();
        tracing::info!(first = %ids[0], members = n, %caller, bytes, ttl_s = ttl.as_secs(), "group of messages created");
        Ok(StoredGroup {
            members: ids
                .iter()
                .map(|id| Stored {
                    id: *id,
                    manage_token: secret.token_for(id),
                    expires_at,
                })
                .collect(),
            secret: shown.then_some(secret),
            expires_at,
        })
    }

    /// Seals `text` in this process once per recipient, each with its own
    /// fresh key (and the passphrase of `options`), and creates the group
    /// for `caller` like [`create_group`](Service::create_group). `labels`
    /// names the recipients (2 to [`MAX_GROUP`] of them; `None` for an
    /// unlabelled one); they go into the group status link only, never to
    /// the store. The share links and the status link are on
    /// [`Config::base_url`](crate::Config::base_url). The sealing (PBKDF2
    /// per recipient with a passphrase) runs on a blocking thread.
    pub async fn send_group(
        &self,
        caller: &Caller,
        text: &str,
        labels: &[Option<&str>],
        options: &SendOptions<'_>,
    ) -> Result<SentGroup, ServiceError> {
        let base = self.base_url()?;
        let n = labels.len();
        if !(MIN_GROUP..=MAX_GROUP).contains(&n) {
            return Err(ServiceError::invalid(
                ErrorCode::BadField,
                format!("a group has {MIN_GROUP} to {MAX_GROUP} recipients, not {n}"),
            ));
        }
        for label in labels.iter().flatten() {
            otm_core::check_label(label)
                .map_err(|e| ServiceError::invalid(ErrorCode::BadField, e.to_string()))?;
        }
        let store = &self.0.store;
        if store.groups().is_none() {
            return Err(ServiceError::MissingCapability {
                what: "groups",
                backend: store.backend_name(),
            });
        }
        // Before the sealing, which costs more than anything after it.
        self.admit(caller, Op::Create).await?;
        let text = otm_core::Zeroizing::new(text.to_owned());
        let passphrase = options.passphrase.cloned();
        let sealed = tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|_| {
                    let key = Key::generate()?;
                    let secrets = Secrets::derive(&key, passphrase.as_ref());
                    let envelope = otm_core::seal(&secrets, &text)?;
                    Ok((
                        key,
                        Sealed::new(
                            envelope,
                            secrets.claim_verifier(),
                            secrets.access_verifier(),
                        ),
                    ))
                })
                .collect::<otm_core::Result<Vec<_>>>()
        })
        .await
        .map_err(|_| ServiceError::Random)?
        .map_err(|e| self.sealing_failed(e))?;
        let (keys, members): (Vec<Key>, Vec<Sealed>) = sealed.into_iter().unzip();
        let mut group = CreateGroup::new(members);
        group.ttl = options.ttl;
        group.reference = options.reference.map(str::to_owned);
        let stored = self.create_group_admitted(caller, group).await?;
        let bad_base = |e: otm_core::Error| {
            ServiceError::invalid(ErrorCode::Invalid, format!("Config::base_url: {e}"))
        };
        let links = stored
            .members
            .iter()
            .zip(keys)
            .map(|(m, key)| Link::new(&base, m.id, key, options.passphrase.is_some()))
            .collect::<otm_core::Result<Vec<_>>>()
            .map_err(bad_base)?;
        Ok(SentGroup {
            links,
            group_link: stored.link(&base, labels).map_err(bad_base)?,
            expires_at: stored.expires_at,
        })
    }

    /// The receipts of up to [`MAX_GROUP`] messages (a group's, or any the
    /// sender manages), each checked against its own management token, in
    /// one rate-limit count. `None` for a message with no receipt under
    /// that token: expired with its receipt, never created, or a wrong
    /// token (the three read the same).
    pub async fn group_status(
        &self,
        caller: &Caller,
        members: &[(MessageId, ManageToken)],
    ) -> Result<Vec<Option<Receipt>>, ServiceError> {
        self.admit(caller, Op::Read).await?;
        check_count(members.len())?;
        let mut receipts = Vec::with_capacity(members.len());
        for (id, token) in members {
            receipts.push(found(self.checked_status(id, token).await)?);
        }
        Ok(receipts)
    }

    /// Burns every waiting message of up to [`MAX_GROUP`], each checked
    /// against its own token, in one rate-limit count, and returns each
    /// one's receipt afterwards (`burned`, or the state that kept it from
    /// being burned: opened or expired already; `None` as in
    /// [`group_status`](Service::group_status)).
    pub async fn burn_group(
        &self,
        caller: &Caller,
        members: &[(MessageId, ManageToken)],
    ) -> Result<Vec<Option<Receipt>>, ServiceError> {
        self.admit(caller, Op::Read).await?;
        check_count(members.len())?;
        let mut receipts = Vec::with_capacity(members.len());
        for (id, token) in members {
            let receipt = match self.checked_burn(id, token).await {
                Err(ServiceError::NotWaiting(receipt)) => Ok(receipt),
                other => other,
            };
            receipts.push(found(receipt)?);
        }
        Ok(receipts)
    }
}

/// A group status or burn names 1 to [`MAX_GROUP`] messages.
fn check_count(n: usize) -> Result<(), ServiceError> {
    if (1..=MAX_GROUP).contains(&n) {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            ErrorCode::BadField,
            format!("members: name 1 to {MAX_GROUP} messages, not {n}"),
        ))
    }
}

/// A receipt, `None` for a message that has none under its token.
fn found(receipt: Result<Receipt, ServiceError>) -> Result<Option<Receipt>, ServiceError> {
    match receipt {
        Ok(receipt) => Ok(Some(receipt)),
        Err(ServiceError::Gone | ServiceError::WrongToken) => Ok(None),
        Err(e) => Err(e),
    }
}
