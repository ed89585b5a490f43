//! Requests for a secret (FORMAT.md §14), with the feature `request`: ask
//! for a secret and read the one answer ([`Client::ask`],
//! [`Client::receive`], [`Client::request_status`], [`Client::withdraw`]),
//! or answer someone's request ([`Client::read_request`],
//! [`Client::reply`]). Everything secret is made and opened in this
//! process: the server sees the sealed note, verifiers, proofs and the
//! sealed answer, never the receive secret, the note or the answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otm_core::api::{
    AnswerRequest, Answered, AskRequest, Asked as AskedWire, ReadRequest, RequestInfo,
    RequestState, RequestStatus,
};
use otm_core::{
    Creator, MessageId, Passphrase, ReceiveLink, ReceiveSecret, RequestLink, Zeroizing,
};
use reqwest::{Method, StatusCode};

use crate::{unexpected_json, Client, Error, Result};

/// What [`Client::ask`] asks for.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct AskOptions<'a> {
    /// The note for the responder (at most 500 characters, plain text):
    /// sealed here, readable only with the request link.
    pub note: &'a str,
    /// How long the request (and its answer) lives; the server's default
    /// when `None`.
    pub ttl: Option<Duration>,
    /// A passphrase that taking the answer needs too (the receive link then
    /// says so).
    pub passphrase: Option<&'a Passphrase>,
    /// The asker's own reference (needs a creator the server knows).
    pub reference: Option<&'a str>,
}

impl<'a> AskOptions<'a> {
    /// No note, the server's default expiry, no passphrase, no reference.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`AskOptions::note`].
    pub fn note(mut self, note: &'a str) -> Self {
        self.note = note;
        self
    }

    /// Sets [`AskOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets [`AskOptions::passphrase`].
    pub fn passphrase(mut self, passphrase: &'a Passphrase) -> Self {
        self.passphrase = Some(passphrase);
        self
    }

    /// Sets [`AskOptions::reference`].
    pub fn reference(mut self, reference: &'a str) -> Self {
        self.reference = Some(reference);
        self
    }
}

/// A request made ([`Client::ask`]): the link to share and the asker's own.
#[derive(Debug)]
#[non_exhaustive]
pub struct Asked {
    /// The request link, for the person who will answer: it reads the note
    /// and answers once, and reads no answer.
    pub request_link: RequestLink,
    /// The receive link, for the asker alone: it takes and opens the
    /// answer, shows the request's state and withdraws it.
    pub receive_link: ReceiveLink,
    /// When the request (and its answer) expires.
    pub expires_at: SystemTime,
}

/// A request as its responder sees it ([`Client::read_request`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// The note, opened here ("" when the asker gave none).
    pub note: Zeroizing<String>,
    /// Who asked, as the server established it; `None`: the asker was
    /// anonymous, so anyone could have made this request.
    pub creator: Option<Creator>,
    /// The asker's key's fingerprint, to compare with theirs over another
    /// channel.
    pub fingerprint: String,
    /// When the request expires.
    pub expires_at: SystemTime,
    /// Whether it was answered already.
    pub answered: bool,
}

/// A request's state as its asker sees it ([`Client::request_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestReceipt {
    /// Waiting, answered, opened or burned.
    pub state: RequestState,
    /// When the request (and its answer) expires.
    pub expires_at: SystemTime,
    /// When it was answered.
    pub answered_at: Option<SystemTime>,
    /// When the answer was opened or destroyed.
    pub changed_at: Option<SystemTime>,
    /// The asker's reference, if any.
    pub reference: Option<String>,
}

fn time(field: &str, text: Option<&String>) -> Result<Option<SystemTime>> {
    text.map(|t| {
        humantime::parse_rfc3339(t).map_err(|e| Error::Unexpected {
            status: 200,
            detail: format!("{field} {t:?} is not RFC 3339: {e}"),
        })
    })
    .transpose()
}

impl Client {
    /// Asks for a secret: makes a fresh receive secret here, seals the note
    /// to request-link holders, stores the request (through the server's
    /// create policy and quota, like a message), and returns the request
    /// link to share and the asker's receive link. Links use the server's
    /// announced `link_base`, else this client's base URL.
    pub async fn ask(&self, options: &AskOptions<'_>) -> Result<Asked> {
        let secret = ReceiveSecret::generate()?;
        let token = secret.answer_token();
        let note = token.seal_note(&secret.public_key(), options.note)?;
        let secrets = secret.answer_secrets(options.passphrase);
        let body = AskRequest {
            note: URL_SAFE_NO_PAD.encode(&note),
            answer_verifier: token.proof().verifier().to_base64url(),
            access_verifier: secrets.access_verifier().to_base64url(),
            verifier: secrets.claim_verifier().to_base64url(),
            ttl_seconds: options.ttl.map(|t| t.as_secs().max(1)),
            reference: options.reference.map(str::to_owned),
        };
        let config = self.cached_config().await?;
        let response = self.post_as_creator("/api/v1/requests", &body).await?;
        let asked: AskedWire = self.answer(response, StatusCode::CREATED).await?;
        let id: MessageId = asked.id.parse().map_err(|_| Error::Unexpected {
            status: 201,
            detail: "the answer's id is malformed".into(),
        })?;
        let base = config.link_base.as_deref().unwrap_or(&self.base);
        Ok(Asked {
            request_link: RequestLink::new(base, id, &secret)?,
            receive_link: ReceiveLink::new(base, id, secret, options.passphrase.is_some())?,
            expires_at: UNIX_EPOCH + Duration::from_secs(asked.expires_at_unix),
        })
    }

    /// `POST /api/v1/requests/{id}/read`: the request of `link`, its note
    /// opened here. [`Error::Gone`] for a request withdrawn or expired (or
    /// a link that does not fit it).
    pub async fn read_request(&self, link: &RequestLink) -> Result<Request> {
        let body = ReadRequest {
            answer_proof: link.token.proof().to_base64url().to_string(),
        };
        let body = Zeroizing::new(serde_json::to_vec(&body).map_err(unexpected_json)?);
        let path = format!("/api/v1/requests/{}/read", link.id);
        let response = self
            .request(Method::POST, &path, Some(body.to_vec()))
            .await?;
        let info: RequestInfo = self.answer(response, StatusCode::OK).await?;
        let sealed =
            URL_SAFE_NO_PAD
                .decode(info.note.as_bytes())
                .map_err(|_| Error::Unexpected {
                    status: 200,
                    detail: "the note is not base64url".into(),
                })?;
        Ok(Request {
            note: link.token.open_note(&link.public_key, &sealed)?,
            creator: info.creator.as_ref().and_then(|c| c.creator()),
            fingerprint: link.public_key.fingerprint(),
            expires_at: UNIX_EPOCH + Duration::from_secs(info.expires_at_unix),
            answered: info.answered,
        })
    }

    /// Answers the request of `link` with `text` (at most 8000
    /// characters), sealed here to the asker's public key from the link,
    /// bound to the request and its note; returns when it was stored. A
    /// request answered already is [`Error::AlreadyAnswered`].
    pub async fn reply(&self, link: &RequestLink, text: &str) -> Result<SystemTime> {
        let request = self.read_request(link).await?;
        if request.answered {
            return Err(Error::AlreadyAnswered);
        }
        let sealed = link.public_key.seal_answer(&link.id, &request.note, text)?;
        let body = AnswerRequest {
            answer_proof: link.token.proof().to_base64url().to_string(),
            answer: URL_SAFE_NO_PAD.encode(&sealed),
        };
        let body = Zeroizing::new(serde_json::to_vec(&body).map_err(unexpected_json)?);
        let path = format!("/api/v1/requests/{}/answer", link.id);
        let response = self
            .request(Method::POST, &path, Some(body.to_vec()))
            .await?;
        let answered: Answered = self.answer(response, StatusCode::CREATED).await?;
        Ok(time("answered_at", Some(&answered.answered_at))?.unwrap_or_else(SystemTime::now))
    }

    /// Takes the answer of the receive link's request, once, and opens it
    /// here (the passphrase, when the link says it needs one). After this
    /// returns `Ok`, the answer is gone from the server. Not answered yet,
    /// or already taken: [`Error::Gone`] (see
    /// [`request_status`](Client::request_status) for which).
    pub async fn receive(
        &self,
        link: &ReceiveLink,
        passphrase: Option<&Passphrase>,
    ) -> Result<Zeroizing<String>> {
        if link.passphrase && passphrase.is_none() {
            return Err(otm_core::Error::PassphraseRequired.into());
        }
        // The answer is bound to the note: read it as a responder would.
        let request_link = RequestLink::new(&self.base, link.id, &link.secret)?;
        let note = self.read_request(&request_link).await?.note;
        let secrets = link.secret.answer_secrets(passphrase);
        let sealed = self
            .claim(&link.id, secrets.access_proof(), secrets.claim_proof())
            .await?;
        Ok(link.secret.open_answer(&link.id, &note, &sealed)?)
    }

    /// `GET /api/v1/requests/{id}` with the receive link's access proof:
    /// waiting, answered, opened or burned.
    pub async fn request_status(&self, link: &ReceiveLink) -> Result<RequestReceipt> {
        let response = self.asker(Method::GET, link).await?;
        let status: RequestStatus = self.answer(response, StatusCode::OK).await?;
        Ok(RequestReceipt {
            state: status.state,
            expires_at: UNIX_EPOCH + Duration::from_secs(status.expires_at_unix),
            answered_at: time("answered_at", status.answered_at.as_ref())?,
            changed_at: time("changed_at", status.changed_at.as_ref())?,
            reference: status.reference,
        })
    }

    /// `DELETE /api/v1/requests/{id}` with the receive link's access proof:
    /// withdraws the request; an answer not yet opened is destroyed with it.
    pub async fn withdraw(&self, link: &ReceiveLink) -> Result<()> {
        let response = self.asker(Method::DELETE, link).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        Err(self
            .answer::<serde_json::Value>(response, StatusCode::NO_CONTENT)
            .await
            .err()
            .unwrap_or(Error::Unexpected {
                status: status.as_u16(),
                detail: "a withdrawal is answered 204".into(),
            }))
    }

    async fn asker(&self, method: Method, link: &ReceiveLink) -> Result<reqwest::Response> {
        let secrets = link.secret.answer_secrets(None);
        let proof = secrets.access_proof().to_base64url();
        let url = format!("{}/api/v1/requests/{}", self.base, link.id);
        let request = self
            .http
            .request(method, url)
            .bearer_auth(proof.as_str())
            .build()
            .map_err(|e| self.unreachable(e))?;
        self.execute(request).await
    }
}
