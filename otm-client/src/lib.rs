//! # otm-client
//!
//! A typed async client for the HTTP API of an otm server (`/api/v1`, see
//! `docs/openapi.json`). Messages are sealed **in this process** with
//! [`otm_core`]: the server only ever receives ciphertext, and the key
//! travels only inside the link this client returns.
//!
//! ```no_run
//! use otm_client::{Client, SendOptions};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), otm_client::Error> {
//! let client = Client::new("https://otm.example")?;
//! let sent = client
//!     .send("the door code is 4711", &SendOptions::new().ttl(Duration::from_secs(3600)))
//!     .await?;
//! println!("share: {}", sent.link.to_url().as_str());
//! println!("keep:  {}", sent.manage_link.to_url().as_str());
//!
//! // The reader, elsewhere:
//! let link = otm_core::Link::parse(&sent.link.to_url())?;
//! let text = Client::new(&link.base)?.open(&link, None).await?;
//! assert_eq!(text.as_str(), "the door code is 4711");
//!
//! // The sender: was it read?
//! let receipt = client.status(&sent.manage_link).await?;
//! println!("{}", receipt.state);
//! # Ok(()) }
//! ```
//!
//! ## Behaviour
//! - TLS through rustls (ring), with the Mozilla roots (webpki-roots).
//! - **No redirect is followed**: a 3xx is [`Error::Redirected`]. A followed
//!   redirect would hand a claim proof or management token to another origin.
//! - Every request has a timeout (30 s by default, 10 s to connect);
//!   [`ClientBuilder`] changes them.
//! - Every refusal of the API is a typed [`Error`] carrying the server's
//!   [`ErrorCode`](otm_core::ErrorCode); [`Error::is_retryable`] says which
//!   ones are worth retrying.
//! - The wire types are [`otm_core::api`]'s, the same the server uses.

mod error;
mod groups;
#[cfg(feature = "request")]
mod requests;
mod types;

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::api::{CreateRequest, Created, OpenRequest, Opened, PublicConfig, Status};
use otm_core::{
    AccessProof, ClaimProof, Key, Link, ManageLink, ManageToken, MessageId, Passphrase, Secrets,
    Zeroizing,
};
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use error::{BoxError, Error};
pub use otm_core::{GroupLink, SendOptions, Sent, SentGroup, Stored};
#[cfg(feature = "request")]
pub use requests::{AskOptions, Asked, Request, RequestReceipt};
pub use types::Receipt;

use error::refusal;

/// The result of every client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default timeout of a whole request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout of connecting (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Client`] with other timeouts or user agent.
#[derive(Debug)]
pub struct ClientBuilder {
    base: String,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    api_token: Option<ApiToken>,
}

/// A server's API token (never printed).
#[derive(Clone)]
struct ApiToken(Zeroizing<String>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(..)")
    }
}

impl ClientBuilder {
    /// Timeout of a whole request (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout of connecting (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `otm-client/VERSION`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The server's API token (`otm_…`), sent as `Authorization: Bearer`
    /// with creates (for servers where only token holders may create) and
    /// with [`status_by_id`](Client::status_by_id) and
    /// [`burn_by_id`](Client::burn_by_id) (a token with the manage scope).
    pub fn api_token(mut self, token: &str) -> Self {
        self.api_token = Some(ApiToken(Zeroizing::new(token.trim().to_owned())));
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client> {
        let base = normalise_base(&self.base)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .build()
            .map_err(|e| Error::Unreachable {
                base: base.clone(),
                source: Box::new(e),
            })?;
        Ok(Client {
            http,
            base,
            timeout: self.timeout,
            config: Arc::default(),
            api_token: self.api_token,
        })
    }
}

/// `scheme://host[:port][/path]` without a trailing slash; no query, no
/// fragment, no credentials.
fn normalise_base(base: &str) -> Result<String> {
    let url = Url::parse(base).map_err(|e| Error::InvalidBase(format!("{base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidBase(format!(
            "{base:?}: the scheme must be http or https"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidBase(format!(
            "{base:?}: a server URL has no query or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::InvalidBase(format!(
            "{base:?}: a server URL has no user name or password"
        )));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A client of one otm server. Cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// The server's configuration, fetched once by [`Client::send`].
    config: Arc<Mutex<Option<Arc<PublicConfig>>>>,
    api_token: Option<ApiToken>,
}

impl Client {
    /// A client of the server at `base` (e.g. `https://otm.example`, or the
    /// URL of the mount point when the API is mounted under a prefix), with
    /// the default timeouts.
    pub fn new(base: &str) -> Result<Client> {
        Self::builder(base).build()
    }

    /// A builder for other timeouts or user agent.
    pub fn builder(base: &str) -> ClientBuilder {
        ClientBuilder {
            base: base.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("otm-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            api_token: None,
        }
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether requests to this server would cross the network unencrypted:
    /// an `http://` base whose host, as the URL parser reads it (past any
    /// `user@`, percent-encoding and case), is not this machine
    /// (`localhost`, a `*.localhost` name, a loopback address). A caller
    /// that sends proofs or tokens refuses such a server unless told
    /// otherwise (the `otm` command's `--insecure-http`).
    pub fn is_plain_http_to_another_host(&self) -> bool {
        let Ok(url) = Url::parse(&self.base) else {
            return true;
        };
        if url.scheme() != "http" {
            return false;
        }
        let host = url.host_str().unwrap_or_default();
        let local = host == "localhost"
            || host.ends_with(".localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !local
    }

    /// `GET /api/v1/config`: the server's limits and link base.
    pub async fn config(&self) -> Result<PublicConfig> {
        let response = self.request(Method::GET, "/api/v1/config", None).await?;
        let config: PublicConfig = self.answer(response, StatusCode::OK).await?;
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(config.clone()));
        Ok(config)
    }

    async fn cached_config(&self) -> Result<Arc<PublicConfig>> {
        if let Some(c) = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        Ok(Arc::new(self.config().await?))
    }

    /// Seals `text` here with a fresh key (and the passphrase, if given),
    /// stores the envelope, and returns the link to share and the sender's
    /// status link. Links use the server's announced `link_base`, else this
    /// client's base URL.
    pub async fn send(&self, text: &str, options: &SendOptions<'_>) -> Result<Sent> {
        let key = Key::generate()?;
        let secrets = Secrets::derive(&key, options.passphrase);
        let envelope = otm_core::seal(&secrets, text)?;
        let config = self.cached_config().await?;
        let stored = self
            .create(&envelope, &secrets, options.ttl, options.reference)
            .await?;
        let base = config.link_base.as_deref().unwrap_or(&self.base);
        let link = Link::new(base, stored.id, key, options.passphrase.is_some())?;
        let manage_link = ManageLink::new(base, stored.id, stored.manage_token)?;
        Ok(Sent {
            link,
            manage_link,
            expires_at: stored.expires_at,
        })
    }

    /// `POST /api/v1/messages`: stores an envelope the caller sealed with
    /// `secrets` (see [`otm_core::seal`]), with their claim and access
    /// verifiers, for `ttl` (the server's default when `None`) and with the
    /// sender's own `reference` (see [`SendOptions::reference`]).
    /// [`Client::send`] does the sealing for you.
    pub async fn create(
        &self,
        envelope: &[u8],
        secrets: &Secrets,
        ttl: Option<Duration>,
        reference: Option<&str>,
    ) -> Result<Stored> {
        let body = CreateRequest {
            envelope: URL_SAFE_NO_PAD.encode(envelope),
            verifier: secrets.claim_verifier().to_base64url(),
            access_verifier: secrets.access_verifier().to_base64url(),
            ttl_seconds: ttl.map(|t| t.as_secs().max(1)),
            reference: reference.map(str::to_owned),
        };
        let response = self.post_as_creator("/api/v1/messages", &body).await?;
        let created: Created = self.answer(response, StatusCode::CREATED).await?;
        let bad = |what: &str| Error::Unexpected {
            status: 201,
            detail: format!("the answer's {what} is malformed"),
        };
        Ok(Stored {
            id: created.id.parse().map_err(|_| bad("id"))?,
            manage_token: ManageToken::from_base64url(&created.manage_token)
                .map_err(|_| bad("manage_token"))?,
            expires_at: UNIX_EPOCH + Duration::from_secs(created.expires_at_unix),
        })
    }

    /// Opens `link` once: claims the envelope with the proof derived from
    /// the link's key (and the passphrase) and decrypts it here. The request
    /// goes to this client's server (use [`Client::new`] with `link.base`
    /// for the link's own).
    ///
    /// After this returns `Ok`, the message is gone from the server. A link
    /// that says it needs a passphrase, opened without one, fails here with
    /// [`otm_core::Error::PassphraseRequired`] and costs no attempt.
    pub async fn open(
        &self,
        link: &Link,
        passphrase: Option<&Passphrase>,
    ) -> Result<Zeroizing<String>> {
        // The link says it needs a passphrase: do not spend an attempt without.
        if link.passphrase && passphrase.is_none() {
            return Err(otm_core::Error::PassphraseRequired.into());
        }
        let secrets = Secrets::derive(&link.key, passphrase);
        let envelope = self
            .claim(&link.id, secrets.access_proof(), secrets.claim_proof())
            .await?;
        Ok(otm_core::open(&secrets, &envelope)?)
    }

    /// `POST /api/v1/messages/{id}/open`: hands over the envelope to the
    /// holder of both proofs, exactly once. A wrong `access` proof is
    /// [`Error::Gone`] (the server answers as for an unknown message and
    /// counts nothing); a wrong `proof` with the right access proof is
    /// [`Error::WrongProof`]. [`Client::open`] derives the proofs and
    /// decrypts for you.
    pub async fn claim(
        &self,
        id: &MessageId,
        access: &AccessProof,
        proof: &ClaimProof,
    ) -> Result<Vec<u8>> {
        let body = OpenRequest {
            access_proof: access.to_base64url().to_string(),
            proof: proof.to_base64url().to_string(),
        };
        let body = Zeroizing::new(serde_json::to_vec(&body).map_err(unexpected_json)?);
        let path = format!("/api/v1/messages/{id}/open");
        let response = self
            .request(Method::POST, &path, Some(body.to_vec()))
            .await?;
        let opened: Opened = self.answer(response, StatusCode::OK).await?;
        URL_SAFE_NO_PAD
            .decode(opened.envelope.as_bytes())
            .map_err(|_| Error::Unexpected {
                status: 200,
                detail: "the envelope is not base64url".into(),
            })
    }

    /// `GET /api/v1/messages/{id}` with the link's token: was it opened?
    /// Only `link`'s ID and token are used; the request goes to this
    /// client's server.
    pub async fn status(&self, link: &ManageLink) -> Result<Receipt> {
        self.manage(Method::GET, link).await
    }

    /// `DELETE /api/v1/messages/{id}` with the link's token: destroys the
    /// message unread. A message that is no longer waiting is
    /// [`Error::NotWaiting`] with its receipt.
    pub async fn burn(&self, link: &ManageLink) -> Result<Receipt> {
        self.manage(Method::DELETE, link).await
    }

    /// `GET /api/v1/messages/{id}` with this client's API token rather
    /// than the message's management token: for a token with the `manage`
    /// scope on otm-server (or a credential the server's create policy
    /// accepts), for the messages created with it. [`Error::NoApiToken`]
    /// without a token; [`Error::Gone`] for a message it did not create
    /// (answered like an unknown ID).
    pub async fn status_by_id(&self, id: &MessageId) -> Result<Receipt> {
        let token = self.api_token.as_ref().ok_or(Error::NoApiToken)?;
        self.manage_with(Method::GET, id, &token.0).await
    }

    /// `DELETE /api/v1/messages/{id}` with this client's API token, as
    /// [`status_by_id`](Client::status_by_id): destroys a message it
    /// created, unread.
    pub async fn burn_by_id(&self, id: &MessageId) -> Result<Receipt> {
        let token = self.api_token.as_ref().ok_or(Error::NoApiToken)?;
        self.manage_with(Method::DELETE, id, &token.0).await
    }

    async fn manage(&self, method: Method, link: &ManageLink) -> Result<Receipt> {
        let token = link.token.to_base64url();
        self.manage_with(method, &link.id, &token).await
    }

    async fn manage_with(&self, method: Method, id: &MessageId, bearer: &str) -> Result<Receipt> {
        let url = format!("{}/api/v1/messages/{id}", self.base);
        let request = self
            .http
            .request(method, url)
            .bearer_auth(bearer)
            .build()
            .map_err(|e| self.unreachable(e))?;
        let response = self.execute(request).await?;
        let status: Status = self.answer(response, StatusCode::OK).await?;
        Receipt::from_wire(&status)
    }

    /// POSTs `body` as JSON to `path` with this client's API token, when
    /// it has one: a create (of a message or a request), which the
    /// server's create policy decides on.
    async fn post_as_creator(&self, path: &str, body: &impl serde::Serialize) -> Result<Response> {
        let body = serde_json::to_vec(body).map_err(unexpected_json)?;
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.api_token {
            request = request.bearer_auth(&*token.0);
        }
        let request = request.build().map_err(|e| self.unreachable(e))?;
        self.execute(request).await
    }

    async fn request(&self, method: Method, path: &str, json: Option<Vec<u8>>) -> Result<Response> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = json {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let request = request.build().map_err(|e| self.unreachable(e))?;
        self.execute(request).await
    }

    async fn execute(&self, request: reqwest::Request) -> Result<Response> {
        let response = self.http.execute(request).await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(self.timeout)
            } else {
                self.unreachable(e)
            }
        })?;
        if response.status().is_redirection() {
            return Err(Error::Redirected {
                status: response.status().as_u16(),
                location: header_text(response.headers(), LOCATION),
            });
        }
        Ok(response)
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::Unreachable {
            base: self.base.clone(),
            source: Box::new(e.without_url()),
        }
    }

    /// The body of an answer with the `expected` status, or the typed
    /// error of any other answer.
    async fn answer<T: DeserializeOwned>(
        &self,
        response: Response,
        expected: StatusCode,
    ) -> Result<T> {
        let status = response.status();
        let retry_after = header_text(response.headers(), RETRY_AFTER)
            .and_then(|s| s.trim().parse().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                Error::Timeout(self.timeout)
            } else {
                self.unreachable(e)
            }
        })?;
        if status == expected {
            return serde_json::from_slice(&bytes).map_err(|e| Error::Unexpected {
                status: status.as_u16(),
                detail: format!("the body is not the documented JSON: {e}"),
            });
        }
        Err(refusal(status, retry_after, &bytes))
    }
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(crate) fn unexpected_json(e: serde_json::Error) -> Error {
    Error::Unexpected {
        status: 0,
        detail: format!("cannot encode the request: {e}"),
    }
}
