//! The outbox cases: for a backend with an [`Outbox`], made with
//! [`StoreOptions::events`](crate::StoreOptions::events) on. Run them with
//! [`outbox_suite!`](crate::outbox_suite).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use otm_core::MessageId;
use tokio::task::JoinSet;

use super::{wrong_proof, Fixture, MAX_FAILED_ATTEMPTS};
use crate::{BlobStore, Creator, Event, EventKind, Outbox};

const LONG: Duration = Duration::from_secs(60);

/// An event's creator and reference.
type Origin = (Option<Creator>, Option<String>);

fn outbox(store: &Arc<dyn BlobStore>) -> &dyn Outbox {
    assert!(
        store.options().events,
        "make the store with StoreOptions::events on"
    );
    store.outbox().expect("the backend has an outbox")
}

/// Leases and delivers everything due, each lease acknowledged at once
/// ([`Outbox::events_delivered`]): what a dispatcher would see.
async fn drain(outbox: &dyn Outbox) -> Vec<Event> {
    let mut all = Vec::new();
    loop {
        let leased = outbox.lease_events(50, LONG).await.unwrap();
        if leased.is_empty() {
            return all;
        }
        outbox.events_delivered(&leased).await.unwrap();
        all.extend(leased);
    }
}

/// Every change records its event with the message ID, its creator, the
/// sender's reference and the time: `created` at put, `opened` at take, `burned` at
/// the sender's burn, `destroyed` at the wrong proof that uses up the
/// attempts, `expired` when a purge removes a message unread. A wrong
/// access proof, a wrong claim proof short of the limit and a refused put
/// record nothing. Each event is handed out once while leased.
pub async fn outbox_records_every_change(store: Arc<dyn BlobStore>) {
    let outbox = outbox(&store);
    drain(outbox).await;
    let started = SystemTime::now() - Duration::from_secs(1);

    let mut opened = Fixture::hour();
    opened.message.reference = Some("ticket 1".into());
    opened.message.creator = Some(Creator::Token("ci".into()));
    store.put(&opened.id, opened.message.clone()).await.unwrap();
    let wrong = wrong_proof();
    let _ = store
        .take(&opened.id, wrong.access_proof(), opened.proof())
        .await;
    let _ = store
        .take(&opened.id, opened.access(), wrong.claim_proof())
        .await;
    store
        .take(&opened.id, opened.access(), opened.proof())
        .await
        .unwrap();

    let mut burned = Fixture::hour();
    burned.message.creator = Some(Creator::Server);
    store.put(&burned.id, burned.message.clone()).await.unwrap();
    store.burn(&burned.id).await.unwrap();

    let destroyed = Fixture::hour();
    store
        .put(&destroyed.id, destroyed.message.clone())
        .await
        .unwrap();
    // A refused put (the ID is taken) records nothing.
    let again = store.put(&destroyed.id, burned.message.clone()).await;
    assert!(
        matches!(again, Err(crate::StoreError::Conflict)),
        "{again:?}"
    );
    for _ in 0..MAX_FAILED_ATTEMPTS {
        let _ = store
            .take(&destroyed.id, destroyed.access(), wrong.claim_proof())
            .await;
    }

    let ci = || {
        (
            Some(Creator::Token("ci".into())),
            Some("ticket 1".to_owned()),
        )
    };
    let mut expected: HashMap<(MessageId, EventKind), Origin> = HashMap::from([
        ((opened.id, EventKind::Created), ci()),
        ((opened.id, EventKind::Opened), ci()),
        (
            (burned.id, EventKind::Created),
            (Some(Creator::Server), None),
        ),
        (
            (burned.id, EventKind::Burned),
            (Some(Creator::Server), None),
        ),
        ((destroyed.id, EventKind::Created), (None, None)),
        ((destroyed.id, EventKind::Destroyed), (None, None)),
    ]);
    if store.purger().is_some() {
        let mut expired = Fixture::new("short", Duration::from_millis(300));
        expired.message.reference = Some("ticket 2".into());
        expired.message.creator = Some(Creator::Identity("zoë".into()));
        store
            .put(&expired.id, expired.message.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        store.purger().unwrap().purge_expired().await.unwrap();
        let zoe = || {
            (
                Some(Creator::Identity("zoë".into())),
                Some("ticket 2".into()),
            )
        };
        expected.insert((expired.id, EventKind::Created), zoe());
        expected.insert((expired.id, EventKind::Expired), zoe());
    }

    if let Some(groups) = store.groups() {
        // Each member of a group records its own `created`.
        let members: Vec<Fixture> = (0..2).map(|_| Fixture::hour()).collect();
        groups
            .put_group(members.iter().map(|f| (f.id, f.message.clone())).collect())
            .await
            .unwrap();
        for f in &members {
            expected.insert((f.id, EventKind::Created), (None, None));
        }
    }
    if let Some(requests) = store.requests() {
        // A request's own events, then its answer's like a message's; a
        // refused answer records nothing.
        let asked = super::RequestFixture::hour();
        requests
            .put_request(&asked.id, asked.request.clone())
            .await
            .unwrap();
        requests
            .answer_request(&asked.id, super::RequestFixture::answer(1, 308))
            .await
            .unwrap();
        let refused = requests
            .answer_request(&asked.id, super::RequestFixture::answer(2, 308))
            .await;
        assert!(
            matches!(refused, Err(crate::StoreError::AlreadyAnswered)),
            "{refused:?}"
        );
        store
            .take(
                &asked.id,
                asked.secrets.access_proof(),
                asked.secrets.claim_proof(),
            )
            .await
            .unwrap();
        let withdrawn = super::RequestFixture::hour();
        requests
            .put_request(&withdrawn.id, withdrawn.request.clone())
            .await
            .unwrap();
        requests
            .answer_request(&withdrawn.id, super::RequestFixture::answer(3, 308))
            .await
            .unwrap();
        requests.withdraw_request(&withdrawn.id).await.unwrap();
        let origin = || {
            (
                asked.request.creator.clone(),
                asked.request.reference.clone(),
            )
        };
        for (id, kind) in [
            (asked.id, EventKind::RequestCreated),
            (asked.id, EventKind::RequestAnswered),
            (asked.id, EventKind::Opened),
            (withdrawn.id, EventKind::RequestCreated),
            (withdrawn.id, EventKind::RequestAnswered),
            (withdrawn.id, EventKind::Burned),
        ] {
            expected.insert((id, kind), origin());
        }
    }

    let first = outbox.lease_events(100, LONG).await.unwrap();
    // Leased: nobody else gets them now.
    assert!(outbox.lease_events(100, LONG).await.unwrap().is_empty());
    let mut seen = HashMap::new();
    for event in &first {
        assert!(
            event.at >= started && event.at <= SystemTime::now(),
            "{event:?}"
        );
        assert_eq!(event.attempts, 0);
        assert_eq!(
            event.id(),
            format!(
                "evt_{}_{}",
                event.message,
                match event.kind.as_str().strip_prefix("message.") {
                    Some(kind) => kind.to_owned(),
                    None => event.kind.as_str().replace('.', "_"),
                }
            )
        );
        let origin = (event.creator.clone(), event.reference.clone());
        let before = seen.insert((event.message, event.kind), origin);
        assert!(before.is_none(), "recorded twice: {event:?}");
    }
    assert_eq!(seen, expected);
    // Oldest first: each message's `created` before its end.
    let position = |id: MessageId, kind| {
        first
            .iter()
            .position(|e| e.message == id && e.kind == kind)
            .unwrap()
    };
    assert!(position(opened.id, EventKind::Created) < position(opened.id, EventKind::Opened));
    for event in &first {
        outbox.event_delivered(event).await.unwrap();
    }
    assert!(drain(outbox).await.is_empty());
}

/// Concurrent leasers never get the same event while its lease holds; a
/// failed event comes back when due, with its attempt counted and the same
/// ID; an event whose lease runs out unmarked is due again.
pub async fn outbox_leases_once_and_retries(store: Arc<dyn BlobStore>) {
    let outbox = outbox(&store);
    drain(outbox).await;
    let mut ids = HashSet::new();
    for _ in 0..24 {
        let f = Fixture::hour();
        store.put(&f.id, f.message.clone()).await.unwrap();
        ids.insert(f.id);
    }
    // Eight leasers at once, each taking three at a time until none are left.
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let outbox = store.outbox().unwrap();
            let mut mine = Vec::new();
            loop {
                let leased = outbox.lease_events(3, LONG).await.unwrap();
                assert!(leased.len() <= 3, "at most max: {}", leased.len());
                if leased.is_empty() {
                    return mine;
                }
                mine.extend(leased);
            }
        });
    }
    let mut leased = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        leased.extend(mine.unwrap());
    }
    let messages: Vec<MessageId> = leased.iter().map(|e| e.message).collect();
    let unique: HashSet<MessageId> = messages.iter().copied().collect();
    assert_eq!(messages.len(), 24, "each event leased exactly once");
    assert_eq!(unique, ids);

    // A failed delivery: due again at its retry time, one attempt counted.
    let (failed, rest) = leased.split_first().unwrap();
    let retry_at = SystemTime::now() + Duration::from_millis(500);
    outbox.event_failed(failed, retry_at).await.unwrap();
    assert!(
        outbox.lease_events(10, LONG).await.unwrap().is_empty(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let again = outbox
        .lease_events(10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((again[0].id(), again[0].attempts), (failed.id(), 1));
    // Its holder's lease (300 ms) runs out unmarked: due again, and the
    // old lease can no longer reschedule it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = outbox.lease_events(10, LONG).await.unwrap();
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!((third[0].id(), third[0].attempts), (failed.id(), 1));
    outbox
        .event_failed(&again[0], SystemTime::now())
        .await
        .unwrap();
    assert!(
        outbox.lease_events(10, LONG).await.unwrap().is_empty(),
        "a stale lease rescheduled the event"
    );
    // The rest acknowledged together (on Redis Cluster, across buckets),
    // in halves: the first half leaves, the other stays until its turn.
    // Made due now, an acknowledged event is not leased again and one not
    // yet acknowledged is.
    let rest: Vec<Event> = rest.iter().chain(&third).cloned().collect();
    let (half, other) = rest.split_at(rest.len() / 2);
    outbox.events_delivered(half).await.unwrap();
    outbox.events_delivered(&[]).await.unwrap();
    outbox
        .event_failed(&half[0], SystemTime::now())
        .await
        .unwrap();
    outbox
        .event_failed(&other[0], SystemTime::now())
        .await
        .unwrap();
    let back = outbox.lease_events(50, LONG).await.unwrap();
    assert_eq!(
        back.iter().map(Event::id).collect::<Vec<_>>(),
        vec![other[0].id()],
        "only the event not acknowledged is due again"
    );
    outbox.events_delivered(&back).await.unwrap();
    outbox.events_delivered(&other[1..]).await.unwrap();
    assert!(drain(outbox).await.is_empty());
}

/// An event whose last attempt failed is kept as a dead letter: never
/// leased again, listed with its attempts, and due again (attempts from 0)
/// once replayed, then delivered like any other. A dead letter is marked
/// only under the caller's lease.
pub async fn outbox_keeps_dead_letters_until_replayed(store: Arc<dyn BlobStore>) {
    let outbox = outbox(&store);
    drain(outbox).await;
    let (a, b) = (Fixture::hour(), Fixture::hour());
    store.put(&a.id, a.message.clone()).await.unwrap();
    store.put(&b.id, b.message.clone()).await.unwrap();
    let leased = outbox.lease_events(10, LONG).await.unwrap();
    assert_eq!(leased.len(), 2, "{leased:?}");
    let (dead, live) = match leased[0].message == a.id {
        true => (&leased[0], &leased[1]),
        false => (&leased[1], &leased[0]),
    };
    outbox
        .event_failed(live, SystemTime::now() - Duration::from_secs(1))
        .await
        .unwrap();
    outbox.event_dead(dead).await.unwrap();
    // Only the retried one comes back; the dead letter does not.
    let again = outbox.lease_events(10, LONG).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].message, b.id);
    outbox.event_delivered(&again[0]).await.unwrap();
    assert!(outbox.lease_events(10, LONG).await.unwrap().is_empty());
    // Listed, with its failed attempt, and listing leases nothing.
    let letters = outbox.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].message, letters[0].kind, letters[0].attempts),
        (a.id, EventKind::Created, 1)
    );
    assert_eq!(outbox.dead_letters(10).await.unwrap().len(), 1);
    assert!(outbox.dead_letters(0).await.unwrap().is_empty());
    // Replayed: due now, attempts from 0, delivered once.
    assert_eq!(outbox.replay_dead_letters().await.unwrap(), 1);
    assert!(outbox.dead_letters(10).await.unwrap().is_empty());
    let replayed = drain(outbox).await;
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!((replayed[0].message, replayed[0].attempts), (a.id, 0));
    assert_eq!(outbox.replay_dead_letters().await.unwrap(), 0);
}
