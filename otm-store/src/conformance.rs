//! The conformance suite: one set of behaviours every [`BlobStore`] must
//! show, run by each backend's tests against its real server.
//!
//! One file past 500 lines on purpose: it is one contract, a function per
//! case plus the reference model, and third-party backends read it whole.
//!
//! Use it for your own backend with [`conformance_suite!`](crate::conformance_suite):
//!
//! ```ignore
//! async fn make() -> Option<std::sync::Arc<dyn otm_store::BlobStore>> {
//!     Some(std::sync::Arc::new(MyStore::connect(..).await.unwrap()))
//! }
//! otm_store::conformance_suite!(make);
//! ```
//!
//! `make` returns a fresh, isolated store (its own prefix, schema or file),
//! or `None` when its server is unreachable and the test should be skipped
//! (this workspace's tests decide that with `otm_testkit::skip`). It may
//! return the store together with a guard, `Some((store, guard))`, that
//! removes the store's data when dropped: the guard lives until the case
//! has finished, and is dropped also when the case panics (see [`Fresh`]).
//!
//! The concurrency and model cases repeat many times ([`Rounds::FULL`]). A
//! backend whose test server answers slowly (an emulator) can run fewer
//! rounds by default and the full count on request:
//!
//! ```ignore
//! otm_store::conformance_suite!(make, rounds = otm_store::conformance::Rounds::LIGHT.or_full_from_env());
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use otm_core::{
    seal, AccessProof, ClaimProof, Key, ManageToken, MessageId, Secrets, MAX_ENVELOPE_LEN,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::{BlobStore, Creator, MessageState, NewMessage, StoreError};

pub mod groups;
pub mod outbox;
pub mod requests;
pub use groups::{
    groups_are_stored_all_or_none, groups_cut_off_leave_all_or_nothing,
    groups_racing_for_an_id_store_one_whole,
};
pub use outbox::{
    outbox_keeps_dead_letters_until_replayed, outbox_leases_once_and_retries,
    outbox_records_every_change,
};
pub use requests::{
    requests_answer_once_and_open_once, requests_expire_and_withdraw, requests_race_one_answer,
    requests_refuse_bad_input, requests_withdrawal_beats_every_answer, RequestFixture,
};

/// How many times the suite's repeated cases run: the concurrent-taker race,
/// the two concurrent wrong-proof cases and the model test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounds {
    /// Trials of 32 concurrent takers racing for one message (a quarter
    /// as many, at least 5, of 32 responders answering one request).
    pub race_trials: usize,
    /// Trials of 32 concurrent wrong (or mostly wrong) proofs.
    pub guess_trials: usize,
    /// Random operation sequences compared with the reference model.
    pub model_cases: u32,
    /// Claims with a wrong access proof, sequential and (as many again) 32
    /// at a time, that must neither count nor burn.
    pub access_guesses: usize,
}

impl Rounds {
    /// The full counts: every backend runs these unless its tests say otherwise.
    pub const FULL: Rounds = Rounds {
        race_trials: 200,
        guess_trials: 20,
        model_cases: 48,
        access_guesses: 1000,
    };

    /// About a sixth of [`FULL`](Self::FULL), for backends tested against a
    /// slow emulator (the S3 suite on moto), where the full counts cost minutes.
    pub const LIGHT: Rounds = Rounds {
        race_trials: 30,
        guess_trials: 4,
        model_cases: 12,
        access_guesses: 160,
    };

    /// `self`, or [`FULL`](Self::FULL) when the environment variable
    /// `OTM_FULL_ROUNDS` is set to anything but `0`/`false` (the long run).
    pub fn or_full_from_env(self) -> Rounds {
        if std::env::var("OTM_FULL_ROUNDS").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
        {
            Rounds::FULL
        } else {
            self
        }
    }
}

/// The failed-attempt limit the suite expects (the default).
pub const MAX_FAILED_ATTEMPTS: u32 = 5;

/// A sealed message ready to put, with the secrets to take it.
pub struct Fixture {
    /// A fresh ID.
    pub id: MessageId,
    /// The secrets whose proof takes it.
    pub secrets: Secrets,
    /// The sender's management token (its verifier is in `message`).
    pub manage: ManageToken,
    /// The message for `put`.
    pub message: NewMessage,
}

impl Fixture {
    /// A real envelope of `text`, expiring after `ttl`.
    pub fn new(text: &str, ttl: Duration) -> Fixture {
        let secrets = Secrets::derive(&Key::generate().expect("rng"), None);
        let envelope = seal(&secrets, text).expect("seal");
        let manage = ManageToken::generate().expect("rng");
        Fixture {
            id: MessageId::generate().expect("rng"),
            message: NewMessage {
                envelope,
                verifier: secrets.claim_verifier(),
                expires_at: SystemTime::now() + ttl,
                manage: Some(manage.verifier()),
                access: secrets.access_verifier(),
                creator: None,
                reference: None,
            },
            secrets,
            manage,
        }
    }

    /// A short message that lives for an hour.
    pub fn hour() -> Fixture {
        Self::new("conformance", Duration::from_secs(3600))
    }

    /// The right claim proof.
    pub fn proof(&self) -> &ClaimProof {
        self.secrets.claim_proof()
    }

    /// The right access proof.
    pub fn access(&self) -> &AccessProof {
        self.secrets.access_proof()
    }
}

/// A proof that belongs to no message.
pub fn wrong_proof() -> Secrets {
    Secrets::derive(&Key::generate().expect("rng"), None)
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {r:?}"
    );
}

/// Put then take returns exactly the stored bytes.
pub async fn round_trip(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    let got = store.take(&f.id, f.access(), f.proof()).await.unwrap();
    assert_eq!(got, f.message.envelope);
    store.check().await.unwrap();
    assert!(!store.backend_name().is_empty());
}

/// A second take, and a take of an ID never stored, find nothing.
pub async fn second_take_finds_nothing(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    store.take(&f.id, f.access(), f.proof()).await.unwrap();
    assert_not_found(
        store.take(&f.id, f.access(), f.proof()).await,
        "second take",
    );
    let never = Fixture::hour();
    assert_not_found(
        store.take(&never.id, never.access(), never.proof()).await,
        "never stored",
    );
}

/// Putting an existing ID is a conflict and leaves the first message intact.
pub async fn duplicate_id_conflicts(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    let mut other = Fixture::hour().message;
    other.envelope[20] ^= 0xff;
    let r = store.put(&f.id, other).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "got {r:?}");
    assert_eq!(
        store.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );
}

/// An expired message is never returned, before or after a purge, and its ID
/// can be used again.
pub async fn expired_is_never_returned(store: Arc<dyn BlobStore>) {
    // Generous margins: slow backends under a loaded CI machine still put
    // well within the TTL.
    let short = Fixture::new("short-lived", Duration::from_millis(1000));
    let long = Fixture::hour();
    store.put(&short.id, short.message.clone()).await.unwrap();
    store.put(&long.id, long.message.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_not_found(
        store.take(&short.id, short.access(), short.proof()).await,
        "expired take",
    );
    assert_not_found(store.burn(&short.id).await, "expired burn");
    purge(&store).await;
    // The purge keeps live messages.
    assert_eq!(
        store
            .take(&long.id, long.access(), long.proof())
            .await
            .unwrap(),
        long.message.envelope
    );
    let mut again = Fixture::hour();
    again.id = short.id;
    store.put(&again.id, again.message.clone()).await.unwrap();
    assert_eq!(
        store
            .take(&again.id, again.access(), again.proof())
            .await
            .unwrap(),
        again.message.envelope
    );
}

/// Purging removes expired messages even if nobody asks for them.
pub async fn purge_keeps_live_messages(store: Arc<dyn BlobStore>) {
    let live: Vec<Fixture> = (0..5).map(|_| Fixture::hour()).collect();
    for f in &live {
        store.put(&f.id, f.message.clone()).await.unwrap();
    }
    for _ in 0..3 {
        let f = Fixture::new("gone soon", Duration::from_millis(1000));
        store.put(&f.id, f.message.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if let Some(purger) = store.purger() {
        // The three expired messages are removed (with their receipts,
        // which expire with them), and a second purge finds nothing left.
        let purged = purger.purge_expired().await.unwrap();
        assert!(purged >= 3, "purged {purged} rows; 3 messages had expired");
        assert_eq!(
            purger.purge_expired().await.unwrap(),
            0,
            "left after a purge"
        );
    }
    for f in &live {
        assert_eq!(
            store.take(&f.id, f.access(), f.proof()).await.unwrap(),
            f.message.envelope
        );
    }
}

/// Runs the store's purge, if it has one.
async fn purge(store: &Arc<dyn BlobStore>) {
    if let Some(purger) = store.purger() {
        purger.purge_expired().await.unwrap();
    }
}

/// Delete burns a message; deleting again finds nothing.
pub async fn burn_destroys(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    store.burn(&f.id).await.unwrap();
    assert_not_found(
        store.take(&f.id, f.access(), f.proof()).await,
        "take after burn",
    );
    assert_not_found(store.burn(&f.id).await, "second burn");
}

/// A wrong proof neither returns nor consumes; the right one still works.
pub async fn wrong_proof_does_not_consume(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    for expected_left in (1..MAX_FAILED_ATTEMPTS).rev() {
        match store
            .take(&f.id, f.access(), wrong_proof().claim_proof())
            .await
        {
            Err(StoreError::WrongProof { attempts_left }) => {
                assert_eq!(attempts_left, expected_left)
            }
            other => panic!("expected WrongProof, got {other:?}"),
        }
    }
    assert_eq!(
        store.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );
}

/// The wrong proof that reaches the limit burns the message.
pub async fn wrong_proofs_burn_at_the_limit(store: Arc<dyn BlobStore>) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    for expected_left in (0..MAX_FAILED_ATTEMPTS).rev() {
        match store
            .take(&f.id, f.access(), wrong_proof().claim_proof())
            .await
        {
            Err(StoreError::WrongProof { attempts_left }) => {
                assert_eq!(attempts_left, expected_left)
            }
            other => panic!("expected WrongProof, got {other:?}"),
        }
    }
    assert_not_found(
        store.take(&f.id, f.access(), f.proof()).await,
        "right proof after burn",
    );
}

/// The largest envelope round-trips; one byte more is refused and not stored.
pub async fn max_size_blob(store: Arc<dyn BlobStore>) {
    let mut f = Fixture::hour();
    f.message.envelope = (0..MAX_ENVELOPE_LEN).map(|i| (i * 7 + 3) as u8).collect();
    store.put(&f.id, f.message.clone()).await.unwrap();
    assert_eq!(
        store.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );

    let mut big = Fixture::hour();
    big.message.envelope = vec![1; MAX_ENVELOPE_LEN + 1];
    let r = store.put(&big.id, big.message.clone()).await;
    assert!(matches!(r, Err(StoreError::TooLarge { .. })), "got {r:?}");
    assert_not_found(
        store.take(&big.id, big.access(), big.proof()).await,
        "refused message",
    );
}

/// An expiry that is not in the future is refused.
pub async fn past_expiry_is_invalid(store: Arc<dyn BlobStore>) {
    let mut f = Fixture::hour();
    f.message.expires_at = SystemTime::now() - Duration::from_secs(1);
    let r = store.put(&f.id, f.message.clone()).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "got {r:?}");
}

/// `takers` concurrent takers with the right proof, `trials` times: exactly
/// one receives the message each time, the rest find nothing.
pub async fn race(store: Arc<dyn BlobStore>, takers: usize, trials: usize) {
    for trial in 0..trials {
        let f = Fixture::hour();
        store.put(&f.id, f.message.clone()).await.unwrap();
        let proofs = Arc::new((f.access().clone(), f.proof().clone()));
        let barrier = Arc::new(Barrier::new(takers));
        let mut set = JoinSet::new();
        for _ in 0..takers {
            let (store, proofs, barrier, id) =
                (store.clone(), proofs.clone(), barrier.clone(), f.id);
            set.spawn(async move {
                barrier.wait().await;
                store.take(&id, &proofs.0, &proofs.1).await
            });
        }
        let mut winners = 0;
        while let Some(joined) = set.join_next().await {
            match joined.expect("taker task") {
                Ok(envelope) => {
                    assert_eq!(envelope, f.message.envelope);
                    winners += 1;
                }
                Err(StoreError::NotFound) => {}
                Err(other) => panic!("trial {trial}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            winners, 1,
            "trial {trial}: {winners} takers received the message"
        );
    }
}

/// 32 concurrent takers, [`Rounds::race_trials`] times.
pub async fn race_exactly_one_winner(store: Arc<dyn BlobStore>, rounds: Rounds) {
    race(store, 32, rounds.race_trials).await;
}

/// 32 messages put at once (4 of them already stored: those conflict),
/// then taken at once with a mix of proofs: each operation gets its own
/// outcome whatever else runs beside it (a backend that batches concurrent
/// operations answers each from its own row). Of every four: the right
/// proofs receive that message, a wrong claim proof counts one attempt, a
/// wrong access proof finds nothing and counts none, an unknown ID finds
/// nothing. Afterwards the counted and the unread messages still open, once.
pub async fn concurrent_operations_get_their_own_outcomes(store: Arc<dyn BlobStore>) {
    const N: usize = 32;
    let fixtures: Arc<Vec<Fixture>> = Arc::new(
        (0..N)
            .map(|i| Fixture::new(&format!("message {i}"), Duration::from_secs(3600)))
            .collect(),
    );
    for f in fixtures.iter().step_by(8) {
        store.put(&f.id, f.message.clone()).await.unwrap();
    }
    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for i in 0..N {
        let (store, barrier, fixtures) = (store.clone(), barrier.clone(), fixtures.clone());
        set.spawn(async move {
            let f = &fixtures[i];
            barrier.wait().await;
            (i, store.put(&f.id, f.message.clone()).await)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (i, put) = joined.expect("put task");
        if i % 8 == 0 {
            assert!(
                matches!(put, Err(StoreError::Conflict)),
                "message {i} was stored already: {put:?}"
            );
        } else {
            assert!(put.is_ok(), "message {i}: {put:?}");
        }
    }
    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for i in 0..N {
        let (store, barrier, fixtures) = (store.clone(), barrier.clone(), fixtures.clone());
        set.spawn(async move {
            let f = &fixtures[i];
            let wrong = wrong_proof();
            let unknown = MessageId::generate().expect("rng");
            barrier.wait().await;
            let taken = match i % 4 {
                0 => store.take(&f.id, f.access(), f.proof()).await,
                1 => store.take(&f.id, f.access(), wrong.claim_proof()).await,
                2 => store.take(&f.id, wrong.access_proof(), f.proof()).await,
                _ => store.take(&unknown, f.access(), f.proof()).await,
            };
            (i, taken)
        });
    }
    while let Some(joined) = set.join_next().await {
        let (i, taken) = joined.expect("take task");
        match i % 4 {
            0 => assert_eq!(
                taken.as_ref().ok(),
                Some(&fixtures[i].message.envelope),
                "message {i}: {taken:?}"
            ),
            1 => assert!(
                matches!(taken, Err(StoreError::WrongProof { attempts_left }) if attempts_left == MAX_FAILED_ATTEMPTS - 1),
                "message {i}: {taken:?}"
            ),
            _ => assert_not_found(taken, &format!("message {i}")),
        }
    }
    for (i, f) in fixtures.iter().enumerate() {
        let taken = store.take(&f.id, f.access(), f.proof()).await;
        if i % 4 == 0 {
            assert_not_found(taken, &format!("message {i} again"));
        } else {
            assert_eq!(taken.ok(), Some(f.message.envelope.clone()), "message {i}");
        }
    }
}

/// 32 concurrent wrong proofs: every one is counted, so the message burns
/// after exactly the limit and the right proof finds nothing.
/// Repeated [`Rounds::guess_trials`] times.
pub async fn concurrent_wrong_proofs_are_all_counted(store: Arc<dyn BlobStore>, rounds: Rounds) {
    for _ in 0..rounds.guess_trials {
        let f = Fixture::hour();
        store.put(&f.id, f.message.clone()).await.unwrap();
        let barrier = Arc::new(Barrier::new(32));
        let mut set = JoinSet::new();
        let access = Arc::new(f.access().clone());
        for _ in 0..32 {
            let (store, barrier, id, access) =
                (store.clone(), barrier.clone(), f.id, access.clone());
            set.spawn(async move {
                let wrong = wrong_proof();
                barrier.wait().await;
                store.take(&id, &access, wrong.claim_proof()).await
            });
        }
        let mut left = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined.expect("task") {
                Err(StoreError::WrongProof { attempts_left }) => left.push(attempts_left),
                Err(StoreError::NotFound) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        left.sort_unstable();
        // Each count below the limit is reported once; the burning attempt
        // (and at most a few that raced it) report 0.
        let nonzero: Vec<u32> = left.iter().copied().filter(|&n| n > 0).collect();
        assert_eq!(
            nonzero,
            (1..MAX_FAILED_ATTEMPTS).collect::<Vec<_>>(),
            "{left:?}"
        );
        assert!(left.contains(&0), "{left:?}");
        assert_not_found(store.take(&f.id, f.access(), f.proof()).await, "after burn");
    }
}

/// Many guesses at once, one of them right: at most `MAX_FAILED_ATTEMPTS`
/// guesses are ever evaluated, so the right one succeeds only if it is
/// evaluated before the limit is reached, and never after the burn.
/// Repeated [`Rounds::guess_trials`] times.
pub async fn concurrent_guesses_cannot_exceed_the_limit(store: Arc<dyn BlobStore>, rounds: Rounds) {
    for trial in 0..rounds.guess_trials {
        let f = Fixture::hour();
        store.put(&f.id, f.message.clone()).await.unwrap();
        let proofs = Arc::new((f.access().clone(), f.proof().clone()));
        let barrier = Arc::new(Barrier::new(32));
        let mut set = JoinSet::new();
        for i in 0..32 {
            let (store, barrier, id, proofs) =
                (store.clone(), barrier.clone(), f.id, proofs.clone());
            set.spawn(async move {
                let wrong = wrong_proof();
                barrier.wait().await;
                // The right proof goes last among the spawned tasks.
                let p: &ClaimProof = if i == 31 {
                    &proofs.1
                } else {
                    wrong.claim_proof()
                };
                (i == 31, store.take(&id, &proofs.0, p).await)
            });
        }
        let (mut wrong_counted, mut right_won) = (0, false);
        while let Some(joined) = set.join_next().await {
            match joined.expect("task") {
                (true, Ok(env)) => {
                    assert_eq!(env, f.message.envelope);
                    right_won = true;
                }
                (false, Err(StoreError::WrongProof { .. })) => wrong_counted += 1,
                (_, Err(StoreError::NotFound)) => {}
                other => panic!("trial {trial}: unexpected {:?}", other.1),
            }
        }
        assert!(
            wrong_counted <= MAX_FAILED_ATTEMPTS,
            "trial {trial}: {wrong_counted} wrong proofs evaluated"
        );
        if right_won {
            assert!(
                wrong_counted < MAX_FAILED_ATTEMPTS,
                "trial {trial}: taken after the burn"
            );
        }
        assert_not_found(
            store.take(&f.id, f.access(), f.proof()).await,
            "after the race",
        );
    }
}

/// Someone who knows the ID but not the key: [`Rounds::access_guesses`]
/// claims with wrong access proofs one after another and as many again 32
/// at a time, with wrong and even right claim proofs, are each
/// [`StoreError::NotFound`], count no attempt and burn nothing; the message
/// still waits and opens exactly once for its reader.
pub async fn wrong_access_never_counts_or_burns(store: Arc<dyn BlobStore>, rounds: Rounds) {
    let f = Fixture::hour();
    store.put(&f.id, f.message.clone()).await.unwrap();
    for i in 0..rounds.access_guesses {
        let wrong = wrong_proof();
        // Every other guess carries the message's right claim proof.
        let claim = if i % 2 == 0 {
            f.proof()
        } else {
            wrong.claim_proof()
        };
        assert_not_found(
            store.take(&f.id, wrong.access_proof(), claim).await,
            "a wrong access proof",
        );
    }
    let claim = Arc::new(f.proof().clone());
    for _ in 0..rounds.access_guesses.div_ceil(32) {
        let barrier = Arc::new(Barrier::new(32));
        let mut set = JoinSet::new();
        for i in 0..32 {
            let (store, barrier, id, claim) = (store.clone(), barrier.clone(), f.id, claim.clone());
            set.spawn(async move {
                let wrong = wrong_proof();
                barrier.wait().await;
                let claim: &ClaimProof = if i % 2 == 0 {
                    &claim
                } else {
                    wrong.claim_proof()
                };
                store.take(&id, wrong.access_proof(), claim).await
            });
        }
        while let Some(joined) = set.join_next().await {
            assert_not_found(joined.expect("task"), "a concurrent wrong access proof");
        }
    }
    assert_eq!(
        store.status(&f.id).await.unwrap().state,
        MessageState::Waiting,
        "wrong access proofs changed the message"
    );
    // Not one attempt was used: the full count of wrong passphrases is left.
    match store
        .take(&f.id, f.access(), wrong_proof().claim_proof())
        .await
    {
        Err(StoreError::WrongProof { attempts_left }) => {
            assert_eq!(attempts_left, MAX_FAILED_ATTEMPTS - 1)
        }
        other => panic!("expected WrongProof, got {other:?}"),
    }
    assert_eq!(
        store.take(&f.id, f.access(), f.proof()).await.unwrap(),
        f.message.envelope
    );
    assert_not_found(
        store.take(&f.id, f.access(), f.proof()).await,
        "second take",
    );
}

async fn state_of(store: &Arc<dyn BlobStore>, f: &Fixture) -> Option<MessageState> {
    match store.status(&f.id).await {
        Ok(status) => {
            // The receipt still checks the sender's token, and only it.
            let manage = status.manage.expect("fixtures have a management verifier");
            assert!(manage.verify(&f.manage));
            assert!(!manage.verify(&ManageToken::generate().unwrap()));
            let drift = status
                .expires_at
                .duration_since(f.message.expires_at)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap();
            assert!(
                drift < Duration::from_secs(1),
                "expiry drifted by {drift:?}"
            );
            if matches!(status.state, MessageState::Opened | MessageState::Burned) {
                let at = status.changed_at.expect("receipts say when");
                let age = SystemTime::now().duration_since(at).unwrap_or_default();
                assert!(age < Duration::from_secs(60), "changed_at {age:?} ago");
            }
            Some(status.state)
        }
        Err(StoreError::NotFound) => None,
        Err(e) => panic!("status failed: {e}"),
    }
}

/// Status follows a message through its life: waiting, then opened or
/// burned (by its sender or by wrong proofs), with a receipt that says when.
pub async fn status_reports_receipts(store: Arc<dyn BlobStore>) {
    let opened = Fixture::hour();
    store.put(&opened.id, opened.message.clone()).await.unwrap();
    assert_eq!(state_of(&store, &opened).await, Some(MessageState::Waiting));
    store
        .take(&opened.id, opened.access(), opened.proof())
        .await
        .unwrap();
    assert_eq!(state_of(&store, &opened).await, Some(MessageState::Opened));
    // A receipt is not a message: it cannot be burned or taken.
    assert_not_found(store.burn(&opened.id).await, "burn after open");
    assert_not_found(
        store
            .take(&opened.id, opened.access(), opened.proof())
            .await,
        "take after open",
    );
    assert_eq!(state_of(&store, &opened).await, Some(MessageState::Opened));

    let burned = Fixture::hour();
    store.put(&burned.id, burned.message.clone()).await.unwrap();
    store.burn(&burned.id).await.unwrap();
    assert_eq!(state_of(&store, &burned).await, Some(MessageState::Burned));

    let guessed = Fixture::hour();
    store
        .put(&guessed.id, guessed.message.clone())
        .await
        .unwrap();
    for _ in 0..MAX_FAILED_ATTEMPTS {
        let _ = store
            .take(&guessed.id, guessed.access(), wrong_proof().claim_proof())
            .await;
    }
    assert_eq!(state_of(&store, &guessed).await, Some(MessageState::Burned));

    let never = Fixture::hour();
    assert_eq!(state_of(&store, &never).await, None);
}

/// The embedder's reference is kept with the message and with its receipt,
/// byte for byte (any UTF-8), and bounded in length.
pub async fn references_follow_the_message(store: Arc<dyn BlobStore>) {
    let reference = "ticket #4711 · Zoë's onboarding";
    let status = |f: &Fixture| {
        let store = store.clone();
        let id = f.id;
        async move { store.status(&id).await.unwrap().reference }
    };
    let mut opened = Fixture::hour();
    opened.message.reference = Some(reference.to_owned());
    store.put(&opened.id, opened.message.clone()).await.unwrap();
    assert_eq!(status(&opened).await.as_deref(), Some(reference));
    store
        .take(&opened.id, opened.access(), opened.proof())
        .await
        .unwrap();
    assert_eq!(status(&opened).await.as_deref(), Some(reference), "receipt");

    let mut burned = Fixture::hour();
    burned.message.reference = Some("b".repeat(crate::MAX_REFERENCE_BYTES));
    store.put(&burned.id, burned.message.clone()).await.unwrap();
    store.burn(&burned.id).await.unwrap();
    assert_eq!(status(&burned).await, burned.message.reference, "receipt");

    let plain = Fixture::hour();
    store.put(&plain.id, plain.message.clone()).await.unwrap();
    assert_eq!(status(&plain).await, None);

    for bad in [
        String::new(),
        "r".repeat(crate::MAX_REFERENCE_BYTES + 1),
        "line\nbreak".into(),
    ] {
        let mut f = Fixture::hour();
        f.message.reference = Some(bad);
        let put = store.put(&f.id, f.message.clone()).await;
        assert!(matches!(put, Err(StoreError::Invalid { .. })), "{put:?}");
        assert_not_found(store.status(&f.id).await, "refused reference");
    }
}

/// The creator is kept with the message and with its receipt, as given
/// (a name of any UTF-8), and a creator with an invalid name is refused.
pub async fn creators_follow_the_message(store: Arc<dyn BlobStore>) {
    let status = |f: &Fixture| {
        let store = store.clone();
        let id = f.id;
        async move { store.status(&id).await.unwrap().creator }
    };
    let token = Creator::Token("ci · Zoë's bot".into());
    let mut opened = Fixture::hour();
    opened.message.creator = Some(token.clone());
    store.put(&opened.id, opened.message.clone()).await.unwrap();
    assert_eq!(status(&opened).await, Some(token.clone()));
    store
        .take(&opened.id, opened.access(), opened.proof())
        .await
        .unwrap();
    assert_eq!(status(&opened).await, Some(token), "receipt");

    for creator in [
        Creator::Server,
        Creator::Anonymous,
        Creator::Identity("user:42".into()),
    ] {
        let mut burned = Fixture::hour();
        burned.message.creator = Some(creator.clone());
        store.put(&burned.id, burned.message.clone()).await.unwrap();
        assert_eq!(status(&burned).await, Some(creator.clone()));
        store.burn(&burned.id).await.unwrap();
        assert_eq!(status(&burned).await, Some(creator), "receipt");
    }

    let plain = Fixture::hour();
    store.put(&plain.id, plain.message.clone()).await.unwrap();
    assert_eq!(status(&plain).await, None);

    for bad in [String::new(), "n".repeat(129), "a\u{7}b".into()] {
        let mut f = Fixture::hour();
        f.message.creator = Some(Creator::Identity(bad));
        let put = store.put(&f.id, f.message.clone()).await;
        assert!(matches!(put, Err(StoreError::Invalid { .. })), "{put:?}");
        assert_not_found(store.status(&f.id).await, "refused creator");
    }
}

/// Quota counts are atomic: 32 concurrent counts against a limit of 10
/// count exactly 10; keys are independent; a new window starts afresh. Run
/// for a store that declares quotas ([`BlobStore::quotas`]); one that
/// declares none is skipped with a printed line.
pub async fn quotas_count_atomically(store: Arc<dyn BlobStore>) {
    let Some(quotas) = store.quotas() else {
        println!("{}: declares no quotas; case skipped", store.backend_name());
        return;
    };
    let key = format!("creator-{}", MessageId::generate().expect("rng"));
    let hour = Duration::from_secs(3600);
    assert!(
        quotas.count_quota(&key, hour, 10, 1).await.unwrap(),
        "first count"
    );
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let (store, key) = (store.clone(), key.clone());
        tasks.spawn(async move {
            let quotas = store.quotas().expect("declared");
            quotas.count_quota(&key, hour, 10, 1).await.unwrap()
        });
    }
    let mut counted = 1;
    while let Some(r) = tasks.join_next().await {
        counted += usize::from(r.unwrap());
    }
    assert_eq!(counted, 10, "exactly the limit is counted");
    assert!(!quotas.count_quota(&key, hour, 10, 1).await.unwrap());
    let other = format!("{key}-other");
    assert!(quotas.count_quota(&other, hour, 10, 1).await.unwrap());
    assert!(
        !quotas.count_quota(&other, hour, 0, 1).await.unwrap(),
        "a limit of 0"
    );
    // Several uses count all or none: 3 then 3 of 8, then 3 do not fit
    // (nothing counted), 2 do, and then not even 1.
    let group = format!("{key}-group");
    assert!(quotas.count_quota(&group, hour, 8, 3).await.unwrap());
    assert!(quotas.count_quota(&group, hour, 8, 3).await.unwrap());
    assert!(
        !quotas.count_quota(&group, hour, 8, 3).await.unwrap(),
        "3 uses where 2 are left"
    );
    assert!(
        quotas.count_quota(&group, hour, 8, 2).await.unwrap(),
        "the refused count took nothing"
    );
    assert!(!quotas.count_quota(&group, hour, 8, 1).await.unwrap());
    assert!(
        !quotas
            .count_quota(&format!("{key}-wide"), hour, 2, 3)
            .await
            .unwrap(),
        "more uses than the limit"
    );
    // Concurrent counts of 3 uses against 10: at most 3 fit (a store
    // without one atomic step for several uses, S3, may refuse counts that
    // would have fitted, even all of them when each holds part of the
    // window at once; it never admits one more), and single uses then fill
    // the window to exactly 10.
    let racing = format!("{key}-racing");
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (store, racing) = (store.clone(), racing.clone());
        tasks.spawn(async move {
            let quotas = store.quotas().expect("declared");
            quotas.count_quota(&racing, hour, 10, 3).await.unwrap()
        });
    }
    let mut fitted = 0;
    while let Some(r) = tasks.join_next().await {
        fitted += usize::from(r.unwrap());
    }
    assert!(
        (1..=3).contains(&fitted),
        "{fitted} counts of 3 fitted in 10"
    );
    let mut singles = 0;
    while quotas.count_quota(&racing, hour, 10, 1).await.unwrap() {
        singles += 1;
        assert!(singles <= 10, "counted past the limit");
    }
    assert_eq!(
        3 * fitted + singles,
        10,
        "the window holds exactly its limit"
    );
    // One-second windows: once full, the next window counts again.
    let short = format!("{key}-short");
    let second = Duration::from_secs(1);
    while quotas.count_quota(&short, second, 1, 1).await.unwrap() {}
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        quotas.count_quota(&short, second, 1, 1).await.unwrap(),
        "a new window"
    );
}

/// Rate buckets count atomically: 32 concurrent requests against a burst
/// of 5 admit exactly 5, the next is refused with a wait no longer than
/// one interval, keys are independent, and an emptied bucket admits again
/// once the wait is over. Run for a store that declares rates
/// ([`BlobStore::rates`]); one that declares none is skipped with a
/// printed line.
pub async fn rates_count_atomically(store: Arc<dyn BlobStore>) {
    let Some(rates) = store.rates() else {
        println!("{}: declares no rates; case skipped", store.backend_name());
        return;
    };
    let key = format!("client-{}", MessageId::generate().expect("rng"));
    let hour = Duration::from_secs(3600);
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let (store, key) = (store.clone(), key.clone());
        tasks.spawn(async move {
            let rates = store.rates().expect("declared");
            rates.count_rate(&key, 5, hour).await.unwrap().is_none()
        });
    }
    let mut admitted = 0;
    while let Some(r) = tasks.join_next().await {
        admitted += usize::from(r.unwrap());
    }
    assert_eq!(admitted, 5, "exactly the burst is admitted");
    let wait = rates
        .count_rate(&key, 5, hour)
        .await
        .unwrap()
        .expect("the bucket is empty");
    assert!(
        wait > Duration::ZERO && wait <= hour,
        "wait {wait:?} within one interval"
    );
    let other = format!("{key}-other");
    assert_eq!(rates.count_rate(&other, 5, hour).await.unwrap(), None);
    // A burst of 0 is one request.
    let zero = format!("{key}-zero");
    assert_eq!(rates.count_rate(&zero, 0, hour).await.unwrap(), None);
    assert!(rates.count_rate(&zero, 0, hour).await.unwrap().is_some());
    // A bucket gains one request per interval.
    let short = format!("{key}-short");
    let interval = Duration::from_millis(400);
    assert_eq!(rates.count_rate(&short, 1, interval).await.unwrap(), None);
    let wait = rates
        .count_rate(&short, 1, interval)
        .await
        .unwrap()
        .expect("the bucket is empty");
    assert!(wait <= interval, "wait {wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        rates.count_rate(&short, 1, interval).await.unwrap(),
        None,
        "refilled"
    );
}

/// Receipts live no longer than the message would have.
pub async fn receipts_expire_with_the_message(store: Arc<dyn BlobStore>) {
    let f = Fixture::new("brief", Duration::from_millis(2000));
    store.put(&f.id, f.message.clone()).await.unwrap();
    store.take(&f.id, f.access(), f.proof()).await.unwrap();
    assert_eq!(state_of(&store, &f).await, Some(MessageState::Opened));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    purge(&store).await;
    assert_eq!(state_of(&store, &f).await, None);
    // Without a management verifier there is no receipt at all.
    let mut anonymous = Fixture::hour();
    anonymous.message.manage = None;
    store
        .put(&anonymous.id, anonymous.message.clone())
        .await
        .unwrap();
    assert_eq!(
        store.status(&anonymous.id).await.unwrap().state,
        MessageState::Waiting
    );
    store
        .take(&anonymous.id, anonymous.access(), anonymous.proof())
        .await
        .unwrap();
    assert_not_found(store.status(&anonymous.id).await, "status without manager");
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Take(usize, bool),
    Guess(usize),
    Delete(usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize).prop_map(Op::Put),
        4 => (0..4usize, any::<bool>()).prop_map(|(s, right)| Op::Take(s, right)),
        2 => (0..4usize).prop_map(Op::Guess),
        1 => (0..4usize).prop_map(Op::Delete),
        1 => Just(Op::Purge),
    ]
}

async fn run_model(store: Arc<dyn BlobStore>, ops: Vec<Op>) -> Result<(), String> {
    // Fresh IDs per case, so cases never see each other's messages.
    let ids: Vec<MessageId> = (0..4).map(|_| MessageId::generate().unwrap()).collect();
    let mut last: HashMap<usize, Fixture> = HashMap::new();
    let mut model: HashMap<usize, u32> = HashMap::new(); // slot -> failures
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = |what: String| format!("step {step} {op:?}: {what}");
        match op {
            Op::Put(slot) => {
                let mut f = Fixture::hour();
                f.id = ids[slot];
                let r = store.put(&f.id, f.message.clone()).await;
                match (model.contains_key(&slot), r) {
                    (true, Err(StoreError::Conflict)) => {}
                    (false, Ok(())) => {
                        model.insert(slot, 0);
                        last.insert(slot, f);
                    }
                    (_, r) => return Err(ctx(format!("got {r:?}"))),
                }
            }
            Op::Take(slot, right) => {
                // The right access proof when the slot has a message (a
                // reader with the link), its claim proof right or wrong.
                let wrong = wrong_proof();
                let access = last
                    .get(&slot)
                    .map_or(wrong.access_proof(), Fixture::access);
                let proof = match (right, last.get(&slot)) {
                    (true, Some(f)) => f.proof(),
                    _ => wrong.claim_proof(),
                };
                let r = store.take(&ids[slot], access, proof).await;
                let live = model.get(&slot).copied();
                match (live, right && last.contains_key(&slot), r) {
                    (None, _, Err(StoreError::NotFound)) => {}
                    (Some(_), true, Ok(env)) if env == last[&slot].message.envelope => {
                        model.remove(&slot);
                    }
                    (Some(failures), false, Err(StoreError::WrongProof { attempts_left })) => {
                        let failures = failures + 1;
                        if attempts_left != MAX_FAILED_ATTEMPTS.saturating_sub(failures) {
                            return Err(ctx(format!(
                                "attempts_left {attempts_left} after {failures}"
                            )));
                        }
                        if failures >= MAX_FAILED_ATTEMPTS {
                            model.remove(&slot);
                        } else {
                            model.insert(slot, failures);
                        }
                    }
                    (live, _, r) => return Err(ctx(format!("model {live:?}, got {r:?}"))),
                }
            }
            Op::Guess(slot) => {
                // Someone with the ID but not the link: nothing to find,
                // nothing counted (the model is unchanged).
                let wrong = wrong_proof();
                let right_claim = last.get(&slot).map_or(wrong.claim_proof(), Fixture::proof);
                let r = store
                    .take(&ids[slot], wrong.access_proof(), right_claim)
                    .await;
                if !matches!(r, Err(StoreError::NotFound)) {
                    return Err(ctx(format!("a wrong access proof got {r:?}")));
                }
            }
            Op::Delete(slot) => {
                let r = store.burn(&ids[slot]).await;
                match (model.remove(&slot).is_some(), r) {
                    (true, Ok(())) | (false, Err(StoreError::NotFound)) => {}
                    (_, r) => return Err(ctx(format!("got {r:?}"))),
                }
            }
            Op::Purge => {
                if let Some(purger) = store.purger() {
                    purger
                        .purge_expired()
                        .await
                        .map_err(|e| ctx(e.to_string()))?;
                }
            }
        }
    }
    Ok(())
}

/// Random sequences of put, take (right and wrong proofs), burn and purge
/// behave exactly like a reference model (a map with failure counters).
/// Failures are shrunk by proptest to a minimal sequence.
pub async fn model_matches_reference(store: Arc<dyn BlobStore>, rounds: Rounds) {
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases: rounds.model_cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&prop::collection::vec(op(), 1..40), |ops| {
                handle
                    .block_on(run_model(store.clone(), ops))
                    .map_err(TestCaseError::fail)
            })
            .map_err(|e| e.to_string())
    })
    .await
    .expect("model runner");
    if let Err(e) = outcome {
        panic!("store differs from the model: {e}");
    }
}

/// What a suite's `make` returns inside `Some`: the store alone, or the
/// store and a guard, `(store, guard)`, that must outlive the case (say, one
/// that drops the store's schema or deletes its keys when dropped). The
/// generated test holds the guard until the case has finished, so it is
/// dropped also when the case panics.
pub trait Fresh {
    /// What lives as long as the case: `()` for a store alone.
    type Guard;
    /// The store, and the guard to drop once the case is over.
    fn into_parts(self) -> (Arc<dyn BlobStore>, Self::Guard);
}

impl Fresh for Arc<dyn BlobStore> {
    type Guard = ();
    fn into_parts(self) -> (Arc<dyn BlobStore>, ()) {
        (self, ())
    }
}

impl<G> Fresh for (Arc<dyn BlobStore>, G) {
    type Guard = G;
    fn into_parts(self) -> (Arc<dyn BlobStore>, G) {
        self
    }
}

/// Runs every case of the suite in turn, each on a fresh store from
/// `fresh`: for a test that sets up its own server first (a TLS one, say)
/// and cannot give each case a test of its own. Same cases as
/// [`conformance_suite!`](crate::conformance_suite).
pub async fn run_all<F, Fut>(mut fresh: F, rounds: Rounds)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn BlobStore>>,
{
    round_trip(fresh().await).await;
    second_take_finds_nothing(fresh().await).await;
    duplicate_id_conflicts(fresh().await).await;
    expired_is_never_returned(fresh().await).await;
    purge_keeps_live_messages(fresh().await).await;
    burn_destroys(fresh().await).await;
    wrong_proof_does_not_consume(fresh().await).await;
    wrong_proofs_burn_at_the_limit(fresh().await).await;
    max_size_blob(fresh().await).await;
    past_expiry_is_invalid(fresh().await).await;
    status_reports_receipts(fresh().await).await;
    receipts_expire_with_the_message(fresh().await).await;
    references_follow_the_message(fresh().await).await;
    creators_follow_the_message(fresh().await).await;
    quotas_count_atomically(fresh().await).await;
    rates_count_atomically(fresh().await).await;
    requests_answer_once_and_open_once(fresh().await).await;
    requests_refuse_bad_input(fresh().await).await;
    requests_expire_and_withdraw(fresh().await).await;
    groups_are_stored_all_or_none(fresh().await).await;
    concurrent_operations_get_their_own_outcomes(fresh().await).await;
    race_exactly_one_winner(fresh().await, rounds).await;
    concurrent_wrong_proofs_are_all_counted(fresh().await, rounds).await;
    concurrent_guesses_cannot_exceed_the_limit(fresh().await, rounds).await;
    wrong_access_never_counts_or_burns(fresh().await, rounds).await;
    model_matches_reference(fresh().await, rounds).await;
    requests_race_one_answer(fresh().await, rounds).await;
    requests_withdrawal_beats_every_answer(fresh().await, rounds).await;
    groups_racing_for_an_id_store_one_whole(fresh().await, rounds).await;
    groups_cut_off_leave_all_or_nothing(fresh().await, rounds).await;
}

/// Generates one `#[tokio::test]` per conformance case. `$make` is an async
/// fn returning `Option<Arc<dyn BlobStore>>` (a fresh isolated store, or
/// `None` when skipped), or `Option<(Arc<dyn BlobStore>, G)>` with a guard
/// that is dropped when the case is over, also when it panics
/// ([`Fresh`](crate::conformance::Fresh)). The repeated cases run [`Rounds::FULL`](crate::conformance::Rounds::FULL)
/// unless `rounds = EXPR` gives other [`Rounds`](crate::conformance::Rounds).
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!($make, rounds = $crate::conformance::Rounds::FULL);
    };
    ($make:path, rounds = $rounds:expr) => {
        $crate::conformance_suite!(@cases $make;
            round_trip, second_take_finds_nothing, duplicate_id_conflicts,
            expired_is_never_returned, purge_keeps_live_messages, burn_destroys,
            wrong_proof_does_not_consume, wrong_proofs_burn_at_the_limit, max_size_blob,
            past_expiry_is_invalid, status_reports_receipts, receipts_expire_with_the_message,
            references_follow_the_message, creators_follow_the_message,
            quotas_count_atomically, rates_count_atomically,
            requests_answer_once_and_open_once, requests_refuse_bad_input,
            requests_expire_and_withdraw, groups_are_stored_all_or_none,
            concurrent_operations_get_their_own_outcomes);
        $crate::conformance_suite!(@repeated $make, $rounds;
            race_exactly_one_winner, concurrent_wrong_proofs_are_all_counted,
            concurrent_guesses_cannot_exceed_the_limit, wrong_access_never_counts_or_burns,
            model_matches_reference, requests_race_one_answer,
            requests_withdrawal_beats_every_answer, groups_racing_for_an_id_store_one_whole,
            groups_cut_off_leave_all_or_nothing);
    };
    (@cases $make:path; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(fresh) = $make().await {
                    // The guard outlives the case, also when it panics.
                    let (store, _guard) = $crate::conformance::Fresh::into_parts(fresh);
                    $crate::conformance::$case(store).await;
                }
            }
        )+
    };
    (@repeated $make:path, $rounds:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(fresh) = $make().await {
                    // The guard outlives the case, also when it panics.
                    let (store, _guard) = $crate::conformance::Fresh::into_parts(fresh);
                    $crate::conformance::$case(store, $rounds).await;
                }
            }
        )+
    };
}

/// The [`outbox`] cases as tests, for a backend with an outbox: `make`
/// returns a fresh store with [`StoreOptions::events`](crate::StoreOptions::events) on.
#[macro_export]
macro_rules! outbox_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            outbox_records_every_change, outbox_leases_once_and_retries,
            outbox_keeps_dead_letters_until_replayed);
    };
}
