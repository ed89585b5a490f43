//! # otm-core
//!
//! The format of otm's one-time messages, with no I/O: keys, message IDs,
//! the versioned envelope (AES-256-GCM with length-hiding padding), the
//! optional passphrase, the claim proof that lets a server hand a message to
//! exactly the holder of its link, and share links.
//!
//! `docs/FORMAT.md` in the repository specifies every byte; the browser app
//! implements the same specification and reads the same JSON test vectors.
//!
//! ## The flow
//!
//! ```
//! use otm_core::{open, seal, Key, Link, MessageId, Passphrase, Secrets};
//!
//! // Sender: a fresh key, derived secrets, a sealed envelope.
//! let key = Key::generate()?;
//! let secrets = Secrets::derive(&key, None);
//! let envelope = seal(&secrets, "the door code is 4711")?;
//! let verifier = secrets.claim_verifier(); // uploaded with the envelope
//!
//! // The server stores `envelope` and `verifier` under a fresh ID.
//! let id = MessageId::generate()?;
//! let link = Link::new("https://otm.example", id, key, false)?;
//! let shared = link.to_url();
//!
//! // Reader: parse the link, derive the proof, claim, open.
//! let link = Link::parse(&shared)?;
//! let secrets = Secrets::derive(&link.key, None);
//! assert!(verifier.verify(secrets.claim_proof())); // the server's check
//! assert_eq!(open(&secrets, &envelope)?.as_str(), "the door code is 4711");
//! # Ok::<(), otm_core::Error>(())
//! ```

mod answer;
pub mod api;
mod b64;
mod creator;
mod envelope;
mod error;
mod event;
mod group;
#[cfg(feature = "request")]
mod hpke;
mod key;
mod link;
#[cfg(feature = "request")]
mod request;
mod secrets;
mod sent;
pub mod webhook;

#[cfg(test)]
mod tests;

pub use answer::{
    validate_answer, ANSWER_HEADER_LEN, ANSWER_MAGIC, ANSWER_VERSION, MAX_ANSWER_LEN,
    MAX_NOTE_BYTES, MAX_NOTE_CHARS, MIN_ANSWER_LEN, NOTE_BLOCK_LEN, RECEIVE_PATH_PREFIX,
    REQUEST_PATH_PREFIX, SEALED_NOTE_LEN,
};
pub use api::ErrorCode;
pub use creator::{BadCreatorName, Creator, CreatorInfo, MAX_CREATOR_NAME_BYTES};
pub use envelope::{
    bucket_for, char_count, open, seal, validate, EnvelopeInfo, Flags, Header, HEADER_LEN, MAGIC,
    MAX_ENVELOPE_LEN, MAX_MESSAGE_CHARS, MIN_ENVELOPE_LEN, NONCE_LEN, PADDING_BUCKETS, TAG_LEN,
    VERSION,
};
pub use error::{Error, Result};
pub use event::EventKind;
pub use group::{check_label, GroupLink, GroupMember, GROUP_PATH, MAX_GROUP, MAX_LABEL_CHARS};
pub use key::{
    AccessProof, AccessVerifier, ClaimProof, ClaimVerifier, Key, ManageSecret, ManageToken,
    ManageVerifier, MessageId,
};
pub use key::{AnswerProof, AnswerVerifier};
pub use link::{Fragment, Link, ManageLink, LINK_PATH_PREFIX, MANAGE_PATH_PREFIX};
#[cfg(feature = "request")]
pub use request::{AnswerToken, ReceiveLink, ReceiveSecret, RequestLink, RequestPublicKey};
pub use secrets::{Passphrase, Secrets, MAX_PASSPHRASE_CHARS, PBKDF2_ITERATIONS};
pub use sent::{SendOptions, Sent, SentGroup, Stored};
pub use zeroize::Zeroizing;
