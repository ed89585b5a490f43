//! The request cases: for a backend that keeps requests for a secret
//! ([`BlobStore::requests`]). A store that declares none skips them with a
//! printed line. [`conformance_suite!`](crate::conformance_suite) runs them
//! with the others.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use otm_core::{AnswerVerifier, Key, MessageId, Secrets, MAX_ANSWER_LEN, SEALED_NOTE_LEN};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{assert_not_found, purge, wrong_proof, Rounds};
use crate::{BlobStore, Creator, MessageState, NewRequest, RequestStore, StoreError};

/// A request ready to put, with the secrets that take its answer.
pub struct RequestFixture {
    /// A fresh ID.
    pub id: MessageId,
    /// The secrets whose proofs take the answer.
    pub secrets: Secrets,
    /// The request for `put_request`.
    pub request: NewRequest,
}

impl RequestFixture {
    /// A request (with a note of the real size) expiring after `ttl`.
    pub fn new(ttl: Duration) -> RequestFixture {
        let secrets = Secrets::derive(&Key::generate().expect("rng"), None);
        let random = Key::generate().expect("rng");
        let mut note = vec![0u8; SEALED_NOTE_LEN];
        note[..32].copy_from_slice(random.as_bytes());
        RequestFixture {
            id: MessageId::generate().expect("rng"),
            request: NewRequest {
                note,
                answer: AnswerVerifier::from_bytes(*Key::generate().expect("rng").as_bytes()),
                access: secrets.access_verifier(),
                verifier: secrets.claim_verifier(),
                expires_at: SystemTime::now() + ttl,
                creator: Some(Creator::Identity("asker@example.com".into())),
                reference: Some("ticket 42".into()),
            },
            secrets,
        }
    }

    /// A request that lives for an hour.
    pub fn hour() -> RequestFixture {
        Self::new(Duration::from_secs(3600))
    }

    /// An answer of `n` bytes, each `byte` (a store keeps bytes, it reads
    /// none of them).
    pub fn answer(byte: u8, n: usize) -> Vec<u8> {
        vec![byte; n]
    }
}

fn requests(store: &Arc<dyn BlobStore>) -> Option<&dyn RequestStore> {
    let requests = store.requests();
    if requests.is_none() {
        println!(
            "{}: declares no requests; case skipped",
            store.backend_name()
        );
    }
    requests
}

/// A request is kept as put and answered once; the answer is then a
/// message under the request's ID, taken once with the request's proofs,
/// leaving a receipt; every later answer, before and after the take, is
/// refused without touching anything; a second request with the ID is a
/// conflict.
pub async fn requests_answer_once_and_open_once(store: Arc<dyn BlobStore>) {
    let Some(requests) = requests(&store) else {
        return;
    };
    let f = RequestFixture::hour();
    requests
        .put_request(&f.id, f.request.clone())
        .await
        .unwrap();
    let got = requests.request(&f.id).await.unwrap();
    assert_eq!(got.request.note, f.request.note);
    assert!(got.request.answer.as_bytes() == f.request.answer.as_bytes());
    assert!(got.request.access.as_bytes() == f.request.access.as_bytes());
    assert!(got.request.verifier.as_bytes() == f.request.verifier.as_bytes());
    assert_eq!(got.request.creator, f.request.creator);
    assert_eq!(got.request.reference, f.request.reference);
    let expires = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    assert_eq!(
        expires(got.request.expires_at),
        expires(f.request.expires_at)
    );
    assert!(got.answered_at.is_none());
    // Nothing to take before the answer.
    assert_not_found(
        store
            .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
            .await,
        "unanswered",
    );

    let again = RequestFixture::hour();
    let r = requests.put_request(&f.id, again.request).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");

    let before = SystemTime::now() - Duration::from_secs(1);
    let answer = RequestFixture::answer(7, 308);
    requests
        .answer_request(&f.id, answer.clone())
        .await
        .unwrap();
    let answered = requests.request(&f.id).await.unwrap();
    let at = answered.answered_at.expect("answered");
    assert!(at >= before && at <= SystemTime::now() + Duration::from_secs(1));
    assert_eq!(answered.request.note, f.request.note);
    let second = requests
        .answer_request(&f.id, RequestFixture::answer(8, 308))
        .await;
    assert!(
        matches!(second, Err(StoreError::AlreadyAnswered)),
        "{second:?}"
    );

    let status = store.status(&f.id).await.unwrap();
    assert_eq!(status.state, MessageState::Waiting);
    assert_eq!(status.creator, f.request.creator);
    assert_eq!(status.reference, f.request.reference);
    // A wrong access proof finds nothing and counts nothing; a wrong claim
    // proof counts like for any message.
    let wrong = wrong_proof();
    assert_not_found(
        store
            .take(&f.id, wrong.access_proof(), f.secrets.claim_proof())
            .await,
        "wrong access proof",
    );
    let counted = store
        .take(&f.id, f.secrets.access_proof(), wrong.claim_proof())
        .await;
    assert!(
        matches!(counted, Err(StoreError::WrongProof { attempts_left }) if attempts_left == super::MAX_FAILED_ATTEMPTS - 1),
        "{counted:?}"
    );
    let taken = store
        .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
        .await
        .unwrap();
    assert_eq!(taken, answer, "the first answer, exactly");
    assert_not_found(
        store
            .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
            .await,
        "second take",
    );
    assert_eq!(
        store.status(&f.id).await.unwrap().state,
        MessageState::Opened
    );
    // Still answered: an answer after the take is refused too.
    let late = requests
        .answer_request(&f.id, RequestFixture::answer(9, 308))
        .await;
    assert!(matches!(late, Err(StoreError::AlreadyAnswered)), "{late:?}");
    assert_not_found(
        store
            .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
            .await,
        "after a refused late answer",
    );

    // Unknown IDs.
    let never = RequestFixture::hour();
    assert_not_found(requests.request(&never.id).await, "unknown request");
    assert_not_found(
        requests
            .answer_request(&never.id, RequestFixture::answer(1, 308))
            .await,
        "answer to an unknown request",
    );
    assert_not_found(
        requests.withdraw_request(&never.id).await,
        "withdraw an unknown request",
    );
}

/// Bad requests and answers are refused before anything is stored.
pub async fn requests_refuse_bad_input(store: Arc<dyn BlobStore>) {
    let Some(requests) = requests(&store) else {
        return;
    };
    let mut empty = RequestFixture::hour();
    empty.request.note.clear();
    let mut long = RequestFixture::hour();
    long.request.note = vec![1; crate::MAX_SEALED_NOTE_LEN + 1];
    let mut past = RequestFixture::hour();
    past.request.expires_at = SystemTime::now() - Duration::from_secs(1);
    let mut reference = RequestFixture::hour();
    reference.request.reference = Some("a\nb".into());
    let mut creator = RequestFixture::hour();
    creator.request.creator = Some(Creator::Identity(String::new()));
    for (what, f) in [
        ("empty note", empty),
        ("long note", long),
        ("past expiry", past),
        ("bad reference", reference),
        ("bad creator", creator),
    ] {
        let r = requests.put_request(&f.id, f.request).await;
        assert!(
            matches!(r, Err(StoreError::Invalid { .. })),
            "{what}: {r:?}"
        );
        assert_not_found(requests.request(&f.id).await, what);
    }
    let f = RequestFixture::hour();
    requests
        .put_request(&f.id, f.request.clone())
        .await
        .unwrap();
    let r = requests.answer_request(&f.id, Vec::new()).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    let r = requests
        .answer_request(&f.id, vec![0; MAX_ANSWER_LEN + 1])
        .await;
    assert!(matches!(r, Err(StoreError::TooLarge { .. })), "{r:?}");
    assert!(requests.request(&f.id).await.unwrap().answered_at.is_none());
    requests
        .answer_request(&f.id, vec![3; MAX_ANSWER_LEN])
        .await
        .unwrap();
    assert_eq!(
        store
            .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
            .await
            .unwrap(),
        vec![3; MAX_ANSWER_LEN],
        "the largest answer"
    );
}

/// An expired request is never returned nor answered; its answer expires
/// with it; a withdrawn request is gone and takes an unopened answer with
/// it; the purge removes expired requests.
pub async fn requests_expire_and_withdraw(store: Arc<dyn BlobStore>) {
    let Some(requests) = requests(&store) else {
        return;
    };
    let brief = RequestFixture::new(Duration::from_millis(1000));
    requests
        .put_request(&brief.id, brief.request.clone())
        .await
        .unwrap();
    let answered = RequestFixture::new(Duration::from_millis(1000));
    requests
        .put_request(&answered.id, answered.request.clone())
        .await
        .unwrap();
    requests
        .answer_request(&answered.id, RequestFixture::answer(5, 308))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_not_found(requests.request(&brief.id).await, "expired request");
    assert_not_found(
        requests
            .answer_request(&brief.id, RequestFixture::answer(5, 308))
            .await,
        "answer to an expired request",
    );
    assert_not_found(
        store
            .take(
                &answered.id,
                answered.secrets.access_proof(),
                answered.secrets.claim_proof(),
            )
            .await,
        "expired answer",
    );
    purge(&store).await;
    assert_not_found(requests.request(&brief.id).await, "purged request");
    // An expired request's ID may be asked again.
    let reused = RequestFixture::hour();
    requests
        .put_request(&brief.id, reused.request.clone())
        .await
        .unwrap();
    assert!(requests
        .request(&brief.id)
        .await
        .unwrap()
        .answered_at
        .is_none());

    // Withdrawn before an answer: gone, and no answer can come.
    let f = RequestFixture::hour();
    requests
        .put_request(&f.id, f.request.clone())
        .await
        .unwrap();
    requests.withdraw_request(&f.id).await.unwrap();
    assert_not_found(requests.request(&f.id).await, "withdrawn");
    assert_not_found(
        requests
            .answer_request(&f.id, RequestFixture::answer(1, 308))
            .await,
        "answer to a withdrawn request",
    );
    assert_not_found(requests.withdraw_request(&f.id).await, "withdrawn twice");
    // Withdrawn after an answer: the unopened answer is burned with it.
    let g = RequestFixture::hour();
    requests
        .put_request(&g.id, g.request.clone())
        .await
        .unwrap();
    requests
        .answer_request(&g.id, RequestFixture::answer(2, 308))
        .await
        .unwrap();
    requests.withdraw_request(&g.id).await.unwrap();
    assert_not_found(
        store
            .take(&g.id, g.secrets.access_proof(), g.secrets.claim_proof())
            .await,
        "the answer of a withdrawn request",
    );
    assert_not_found(requests.request(&g.id).await, "withdrawn after answer");
}

/// 32 responders answer one request at once, over and over: exactly one
/// answer is stored each time, every other responder is told the request
/// was already answered, and the answer taken is the winner's.
pub async fn requests_race_one_answer(store: Arc<dyn BlobStore>, rounds: Rounds) {
    if requests(&store).is_none() {
        return;
    }
    let trials = (rounds.race_trials / 4).max(5);
    for trial in 0..trials {
        let f = RequestFixture::hour();
        store
            .requests()
            .expect("declared")
            .put_request(&f.id, f.request.clone())
            .await
            .unwrap();
        let barrier = Arc::new(Barrier::new(32));
        let mut tasks = JoinSet::new();
        for responder in 0..32u8 {
            let (store, barrier, id) = (store.clone(), barrier.clone(), f.id);
            tasks.spawn(async move {
                barrier.wait().await;
                let answer = RequestFixture::answer(responder, 308);
                let r = store
                    .requests()
                    .expect("declared")
                    .answer_request(&id, answer)
                    .await;
                (responder, r)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (responder, Ok(())) => winners.push(responder),
                (_, Err(StoreError::AlreadyAnswered)) => {}
                (_, Err(e)) => panic!("trial {trial}: unexpected {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "trial {trial}: winners {winners:?}");
        let taken = store
            .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
            .await
            .unwrap();
        assert_eq!(
            taken,
            RequestFixture::answer(winners[0], 308),
            "trial {trial}"
        );
    }
}

/// A withdrawal racing answers: once the withdrawal has returned, no answer
/// (earlier, concurrent or later) can be taken, and the request is gone;
/// an answer refused during it is refused plainly (not found, or already
/// answered when another answer won first).
pub async fn requests_withdrawal_beats_every_answer(store: Arc<dyn BlobStore>, rounds: Rounds) {
    if requests(&store).is_none() {
        return;
    }
    let trials = (rounds.race_trials / 4).max(5);
    for trial in 0..trials {
        let f = RequestFixture::hour();
        let requests = store.requests().expect("declared");
        requests
            .put_request(&f.id, f.request.clone())
            .await
            .unwrap();
        let barrier = Arc::new(Barrier::new(9));
        let mut tasks = JoinSet::new();
        for responder in 0..8u8 {
            let (store, barrier, id) = (store.clone(), barrier.clone(), f.id);
            tasks.spawn(async move {
                barrier.wait().await;
                let r = store
                    .requests()
                    .expect("declared")
                    .answer_request(&id, RequestFixture::answer(responder, 308))
                    .await;
                match r {
                    Ok(()) | Err(StoreError::AlreadyAnswered) | Err(StoreError::NotFound) => {}
                    Err(e) => panic!("trial {trial}: answer: {e:?}"),
                }
            });
        }
        barrier.wait().await;
        requests.withdraw_request(&f.id).await.unwrap();
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_not_found(
            store
                .take(&f.id, f.secrets.access_proof(), f.secrets.claim_proof())
                .await,
            &format!("trial {trial}: an answer after the withdrawal"),
        );
        assert_not_found(requests.request(&f.id).await, "withdrawn");
        assert_not_found(
            requests
                .answer_request(&f.id, RequestFixture::answer(99, 308))
                .await,
            "an answer after the withdrawal",
        );
    }
}
