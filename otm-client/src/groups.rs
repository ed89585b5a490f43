//! One message for several recipients (FORMAT.md §9.6): seal one text for
//! each recipient here, store them all or none, and follow or burn them
//! with the group status link.

use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::api::{
    CreateGroupRequest, GroupCreated, GroupManageRequest, GroupMemberRequest, GroupStatus,
    MemberToken,
};
use otm_core::{
    GroupLink, GroupMember, Key, Link, ManageSecret, ManageToken, MessageId, Secrets, SendOptions,
    SentGroup, MAX_GROUP,
};
use reqwest::{Method, StatusCode};

use crate::{unexpected_json, Client, Error, Receipt, Result};

impl Client {
    /// Seals `text` here once per recipient, each with its own fresh key
    /// (and the passphrase of `options`), stores them all or none with
    /// `POST /api/v1/groups`, and returns one share link per recipient and
    /// the group status link. `labels` names the recipients (2 to
    /// [`MAX_GROUP`]; `None` for an unnamed one): they go into the group
    /// status link only, never to the server. A server whose store cannot
    /// keep groups answers [`Error::Refused`] with
    /// [`ErrorCode::Unsupported`](otm_core::ErrorCode::Unsupported).
    pub async fn send_group(
        &self,
        text: &str,
        labels: &[Option<&str>],
        options: &SendOptions<'_>,
    ) -> Result<SentGroup> {
        if !(2..=MAX_GROUP).contains(&labels.len()) {
            return Err(otm_core::Error::BadLink {
                reason: "a group has 2 to 20 recipients",
            }
            .into());
        }
        for label in labels.iter().flatten() {
            otm_core::check_label(label)?;
        }
        let mut keys = Vec::with_capacity(labels.len());
        let mut members = Vec::with_capacity(labels.len());
        for _ in labels {
            let key = Key::generate()?;
            let secrets = Secrets::derive(&key, options.passphrase);
            let envelope = otm_core::seal(&secrets, text)?;
            members.push(GroupMemberRequest {
                envelope: URL_SAFE_NO_PAD.encode(&envelope),
                verifier: secrets.claim_verifier().to_base64url(),
                access_verifier: secrets.access_verifier().to_base64url(),
            });
            keys.push(key);
        }
        let config = self.cached_config().await?;
        let body = CreateGroupRequest {
            members,
            ttl_seconds: options.ttl.map(|t| t.as_secs().max(1)),
            reference: options.reference.map(str::to_owned),
        };
        let response = self.post_as_creator("/api/v1/groups", &body).await?;
        let created: GroupCreated = self.answer(response, StatusCode::CREATED).await?;
        let bad = |what: &str| Error::Unexpected {
            status: 201,
            detail: format!("the answer's {what} is malformed"),
        };
        if created.members.len() != labels.len() {
            return Err(bad("members"));
        }
        let secret = created
            .group_secret
            .as_deref()
            .map(ManageSecret::from_base64url)
            .transpose()
            .map_err(|_| bad("group_secret"))?;
        let base = config.link_base.as_deref().unwrap_or(&self.base);
        let mut links = Vec::with_capacity(labels.len());
        let mut group = Vec::with_capacity(labels.len());
        for ((member, key), label) in created.members.iter().zip(keys).zip(labels) {
            let id: MessageId = member.id.parse().map_err(|_| bad("id"))?;
            let token = ManageToken::from_base64url(&member.manage_token)
                .map_err(|_| bad("manage_token"))?;
            links.push(Link::new(base, id, key, options.passphrase.is_some())?);
            group.push(GroupMember {
                id,
                token,
                label: label.map(str::to_owned),
            });
        }
        Ok(SentGroup {
            links,
            group_link: GroupLink::new(base, secret, group)?,
            expires_at: UNIX_EPOCH + Duration::from_secs(created.expires_at_unix),
        })
    }

    /// `POST /api/v1/groups/status`: each member's receipt, in the link's
    /// order; `None` for one with no receipt under its token (expired with
    /// its receipt, or a wrong link). The request goes to this client's
    /// server.
    pub async fn group_status(&self, link: &GroupLink) -> Result<Vec<Option<Receipt>>> {
        self.manage_group("/api/v1/groups/status", link).await
    }

    /// `POST /api/v1/groups/burn`: destroys every member still waiting and
    /// returns each one's receipt afterwards (`burned`, or the state that
    /// kept it: opened or expired), as [`group_status`](Client::group_status).
    pub async fn burn_group(&self, link: &GroupLink) -> Result<Vec<Option<Receipt>>> {
        self.manage_group("/api/v1/groups/burn", link).await
    }

    async fn manage_group(&self, path: &str, link: &GroupLink) -> Result<Vec<Option<Receipt>>> {
        let body = GroupManageRequest {
            members: link
                .members
                .iter()
                .map(|m| MemberToken {
                    id: m.id.to_string(),
                    manage_token: m.token.to_base64url().to_string(),
                })
                .collect(),
        };
        let body = otm_core::Zeroizing::new(serde_json::to_vec(&body).map_err(unexpected_json)?);
        let response = self
            .request(Method::POST, path, Some(body.to_vec()))
            .await?;
        let status: GroupStatus = self.answer(response, StatusCode::OK).await?;
        if status.members.len() != link.members.len() {
            return Err(Error::Unexpected {
                status: 200,
                detail: "the answer does not list every message asked for".into(),
            });
        }
        status
            .members
            .iter()
            .map(|m| m.status.as_ref().map(Receipt::from_wire).transpose())
            .collect()
    }
}
