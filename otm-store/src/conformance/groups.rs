//! The group cases: for a backend that stores several messages all or none
//! ([`BlobStore::groups`]). A store that declares none skips them with a
//! printed line.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{assert_not_found, Fixture, Rounds};
use crate::{BlobStore, StoreError, MAX_GROUP};

fn declared(store: &Arc<dyn BlobStore>) -> bool {
    let has = store.groups().is_some();
    if !has {
        println!("{}: declares no groups; case skipped", store.backend_name());
    }
    has
}

/// A group is stored whole, each member opening once with its own proofs;
/// a group with a member whose ID is taken, or a member refused as `put`
/// refuses it, stores nothing; the count and distinct IDs are checked.
pub async fn groups_are_stored_all_or_none(store: Arc<dyn BlobStore>) {
    if !declared(&store) {
        return;
    }
    let groups = store.groups().expect("declared");
    let members: Vec<Fixture> = (0..3).map(|_| Fixture::hour()).collect();
    let group = members.iter().map(|f| (f.id, f.message.clone())).collect();
    groups.put_group(group).await.unwrap();
    for f in &members {
        assert_eq!(
            store.take(&f.id, f.access(), f.proof()).await.unwrap(),
            f.message.envelope
        );
        assert_not_found(
            store.take(&f.id, f.access(), f.proof()).await,
            "a member twice",
        );
    }

    // One member's ID is taken: nothing of the group is stored.
    let taken = Fixture::hour();
    store.put(&taken.id, taken.message.clone()).await.unwrap();
    let fresh: Vec<Fixture> = (0..2).map(|_| Fixture::hour()).collect();
    let mut group: Vec<_> = fresh.iter().map(|f| (f.id, f.message.clone())).collect();
    group.insert(1, (taken.id, Fixture::hour().message));
    let r = groups.put_group(group).await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    for f in &fresh {
        assert_not_found(
            store.take(&f.id, f.access(), f.proof()).await,
            "half a group",
        );
    }
    assert_eq!(
        store
            .take(&taken.id, taken.access(), taken.proof())
            .await
            .unwrap(),
        taken.message.envelope,
        "the live message is untouched"
    );

    // A member refused as put refuses it: nothing stored.
    let mut bad = Fixture::hour();
    bad.message.envelope.clear();
    let good = Fixture::hour();
    let r = groups
        .put_group(vec![
            (good.id, good.message.clone()),
            (bad.id, bad.message.clone()),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    assert_not_found(
        store.take(&good.id, good.access(), good.proof()).await,
        "beside a bad member",
    );

    // The count and distinct IDs.
    let r = groups.put_group(Vec::new()).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    let many: Vec<_> = (0..=MAX_GROUP)
        .map(|_| {
            let f = Fixture::new("many", Duration::from_secs(60));
            (f.id, f.message)
        })
        .collect();
    let r = groups.put_group(many).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    let twice = Fixture::hour();
    let r = groups
        .put_group(vec![
            (twice.id, twice.message.clone()),
            (twice.id, twice.message.clone()),
        ])
        .await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    assert_not_found(
        store.take(&twice.id, twice.access(), twice.proof()).await,
        "a refused group",
    );
    // The largest group.
    let largest: Vec<Fixture> = (0..MAX_GROUP).map(|_| Fixture::hour()).collect();
    groups
        .put_group(largest.iter().map(|f| (f.id, f.message.clone())).collect())
        .await
        .unwrap();
    for f in &largest {
        store.take(&f.id, f.access(), f.proof()).await.unwrap();
    }
}

/// Groups racing for one shared ID, over and over: exactly one group is
/// stored, whole; every other stores nothing.
pub async fn groups_racing_for_an_id_store_one_whole(store: Arc<dyn BlobStore>, rounds: Rounds) {
    if !declared(&store) {
        return;
    }
    let trials = (rounds.race_trials / 10).max(5);
    for trial in 0..trials {
        let shared = Fixture::hour();
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = JoinSet::new();
        for _ in 0..8 {
            let own: Vec<Fixture> = (0..3).map(|_| Fixture::hour()).collect();
            let mut group: Vec<_> = own.iter().map(|f| (f.id, f.message.clone())).collect();
            group.push((shared.id, shared.message.clone()));
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let r = store.groups().expect("declared").put_group(group).await;
                (own, r)
            });
        }
        let mut stored = 0;
        while let Some(joined) = tasks.join_next().await {
            let (own, r) = joined.unwrap();
            match r {
                Ok(()) => {
                    stored += 1;
                    for f in &own {
                        store.take(&f.id, f.access(), f.proof()).await.unwrap();
                    }
                }
                Err(StoreError::Conflict) => {
                    for f in &own {
                        assert_not_found(
                            store.take(&f.id, f.access(), f.proof()).await,
                            &format!("trial {trial}: a member of a refused group"),
                        );
                    }
                }
                Err(e) => panic!("trial {trial}: {e:?}"),
            }
        }
        assert_eq!(stored, 1, "trial {trial}: groups stored");
    }
}

/// A group put cut off at any point (its task aborted, as a process dies
/// between two requests) leaves the whole group or nothing: every member
/// waits and opens with its proofs, or none is found. The cut comes after
/// a different delay in each trial, spread over the time a whole put takes
/// on this store, so across trials it falls before, inside and after the
/// store's steps.
pub async fn groups_cut_off_leave_all_or_nothing(store: Arc<dyn BlobStore>, rounds: Rounds) {
    if !declared(&store) {
        return;
    }
    let trials = (rounds.race_trials / 10).max(5);
    // How long a whole put takes here: the cuts are spread over 0 to 1.2
    // times that, so they fall in every step of a slow store too.
    let timed: Vec<Fixture> = (0..5).map(|_| Fixture::hour()).collect();
    let started = std::time::Instant::now();
    store
        .groups()
        .expect("declared")
        .put_group(timed.iter().map(|f| (f.id, f.message.clone())).collect())
        .await
        .unwrap();
    let span = started.elapsed().mul_f64(1.2);
    for f in &timed {
        store.take(&f.id, f.access(), f.proof()).await.unwrap();
    }
    let (mut whole, mut none) = (0, 0);
    for trial in 0..trials {
        let members: Vec<Fixture> = (0..5).map(|_| Fixture::hour()).collect();
        let group: Vec<_> = members.iter().map(|f| (f.id, f.message.clone())).collect();
        let put_store = store.clone();
        let task =
            tokio::spawn(
                async move { put_store.groups().expect("declared").put_group(group).await },
            );
        let cut = span.mul_f64(trial as f64 / trials as f64);
        let until = std::time::Instant::now() + cut;
        // Sleeping has millisecond steps: yield until the cut instead.
        while std::time::Instant::now() < until {
            tokio::task::yield_now().await;
        }
        task.abort();
        let finished = task.await;
        // What the put sent before the cut still lands (a COMMIT on its
        // way, a script already queued): look once the server has had it.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut visible = Vec::new();
        for f in &members {
            match store.status(&f.id).await {
                Ok(status) => {
                    assert_eq!(status.state, crate::MessageState::Waiting, "trial {trial}");
                    visible.push(true);
                }
                Err(StoreError::NotFound) => visible.push(false),
                Err(e) => panic!("trial {trial}: {e:?}"),
            }
        }
        let all = visible.iter().all(|v| *v);
        assert!(
            all || visible.iter().all(|v| !*v),
            "trial {trial}: a cut-off put left part of a group: {visible:?} (put: {finished:?})"
        );
        if let Ok(Ok(())) = &finished {
            assert!(all, "trial {trial}: an acknowledged group is whole");
        }
        if all {
            whole += 1;
            for f in &members {
                store.take(&f.id, f.access(), f.proof()).await.unwrap();
            }
        } else {
            none += 1;
            for f in &members {
                assert_not_found(
                    store.take(&f.id, f.access(), f.proof()).await,
                    &format!("trial {trial}: a member of a group cut off"),
                );
            }
        }
    }
    println!(
        "{}: {trials} cut-off group puts: {whole} whole, {none} absent",
        store.backend_name()
    );
}
