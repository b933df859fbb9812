//! The watch loop ([`super::follow`]) fed by `futures::stream::iter`: every
//! watcher event kind, without an API server (`tests/kube.rs` runs one).

use std::collections::BTreeMap;

use kube::core::Status;
use prometheus::Registry;

use super::*;
use crate::index::testing::mk_index;

type Event = Result<watcher::Event<DynamicObject>, watcher::Error>;

fn mk_object(spec: serde_json::Value, name: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

/// ServiceEntry `ns/<name>` serving `<name>.ns.global` at `addr`.
fn mk_se(name: &str, addr: &str) -> DynamicObject {
    let host = format!("{name}.ns.global");
    mk_object(
        serde_json::json!({"hosts": [host], "addresses": [addr], "resolution": "STATIC"}),
        name,
    )
}

/// `ns/<name>` with a spec that does not read as a ServiceEntry.
fn mk_malformed(name: &str) -> DynamicObject {
    mk_object(serde_json::json!({"hosts": "not-a-list.global"}), name)
}

fn mk_gone() -> Event {
    Err(watcher::Error::WatchError(Box::new(Status {
        code: 410,
        reason: "Expired".into(),
        message: "too old resource version".into(),
        ..Default::default()
    })))
}

use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};

struct Run {
    metrics: KubeMetrics,
    /// Times `synced` was told.
    synced: usize,
    /// What ended the loop.
    end: anyhow::Error,
}

/// Feeds `events` to the loop until they run out.
async fn follow_all(index: &Index, events: Vec<Event>) -> Run {
    let metrics = KubeMetrics::register(&Registry::new()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let end = follow(futures::stream::iter(events), SourceId::Kube(None), index, &metrics, tx)
        .await
        .unwrap_err();
    let mut synced = 0;
    while rx.try_recv().is_ok() {
        synced += 1;
    }
    Run { metrics, synced, end }
}

/// Served names (without the zone suffix) with their addresses.
fn served(index: &Index) -> BTreeMap<String, Vec<String>> {
    index
        .names()
        .into_iter()
        .map(|n| {
            let name = n.name.trim_end_matches(".ns.global").to_string();
            (name, n.a.iter().map(|a| a.to_string()).collect())
        })
        .collect()
}

fn mk_served(names: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    names
        .iter()
        .map(|(n, a)| (n.to_string(), vec![a.to_string()]))
        .collect()
}

fn count(metrics: &KubeMetrics, kind: &str) -> u64 {
    metrics.events.with_label_values(&[kind]).get()
}

#[tokio::test]
async fn a_list_is_served_only_at_init_done() {
    let index = mk_index();
    let run = follow_all(&index, vec![Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.1")))]).await;
    assert!(
        served(&index).is_empty(),
        "served before InitDone: {:?}",
        served(&index)
    );
    assert_eq!(run.synced, 0);
    assert_eq!(run.metrics.relists.get(), 0);

    let run = follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(InitApply(mk_se("b", "240.0.0.2"))),
            Ok(InitDone),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1"), ("b", "240.0.0.2")]));
    assert_eq!(run.synced, 1);
    assert_eq!(run.metrics.relists.get(), 1);
    assert_eq!(count(&run.metrics, "init_apply"), 2);
}

#[tokio::test]
async fn a_relist_replaces_the_table_at_once() {
    let index = mk_index();
    let list = |a: &str| {
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", a))),
            Ok(InitApply(mk_se("b", "240.0.0.2"))),
            Ok(InitDone),
        ]
    };
    follow_all(&index, list("240.0.0.1")).await;
    // A relist under way changes nothing yet, even where it differs.
    let mut events = list("240.0.0.1");
    events.extend([Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.3")))]);
    follow_all(&index, events).await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1"), ("b", "240.0.0.2")]));

    // Once done, it is the whole truth: `b`, deleted while the watch was
    // down, goes; `a` changes.
    let mut events = list("240.0.0.1");
    events.extend([Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.3"))), Ok(InitDone)]);
    let run = follow_all(&index, events).await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.3")]));
    assert_eq!(run.synced, 1, "synced is told once, at the first list");
    assert_eq!(run.metrics.relists.get(), 2);
}

#[tokio::test]
async fn an_object_that_turns_malformed_keeps_its_last_good_state() {
    let index = mk_index();
    let run = follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(InitApply(mk_malformed("never-good"))),
            Ok(InitDone),
            Ok(Apply(mk_malformed("a"))),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1")]));
    assert_eq!(run.metrics.malformed.get(), 2);

    // In a relist too: the reset keeps it, and still drops what is gone.
    let run = follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_malformed("a"))),
            Ok(InitApply(mk_se("b", "240.0.0.2"))),
            Ok(InitDone),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1"), ("b", "240.0.0.2")]));
    assert_eq!(run.metrics.malformed.get(), 1);

    // A good state again replaces the kept one.
    follow_all(&index, vec![Ok(Apply(mk_se("a", "240.0.0.9")))]).await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.9"), ("b", "240.0.0.2")]));
}

#[tokio::test]
async fn apply_and_delete_change_one_entry_at_once() {
    let index = mk_index();
    let run = follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(InitApply(mk_se("b", "240.0.0.2"))),
            Ok(InitDone),
            Ok(Apply(mk_se("c", "240.0.0.3"))),
            Ok(Apply(mk_se("b", "240.0.0.4"))),
            Ok(Delete(mk_se("a", "240.0.0.1"))),
            // Unknown, or a spec that no longer reads: deleted by name.
            Ok(Delete(mk_se("x", "240.0.0.5"))),
            Ok(Delete(mk_malformed("c"))),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("b", "240.0.0.4")]));
    assert_eq!(count(&run.metrics, "apply"), 2);
    assert_eq!(count(&run.metrics, "delete"), 3);
}

#[tokio::test]
async fn a_delete_during_a_relist_applies_at_once_and_the_relist_decides_the_rest() {
    let index = mk_index();
    follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(InitApply(mk_se("b", "240.0.0.2"))),
            Ok(InitApply(mk_se("c", "240.0.0.3"))),
            Ok(InitDone),
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(Delete(mk_se("b", "240.0.0.2"))),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1"), ("c", "240.0.0.3")]));

    follow_all(
        &index,
        vec![
            Ok(Init),
            Ok(InitApply(mk_se("a", "240.0.0.1"))),
            Ok(Delete(mk_se("c", "240.0.0.3"))),
            Ok(InitDone),
        ],
    )
    .await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1")]));
}

#[tokio::test]
async fn gone_410_keeps_the_table_until_the_relist_replaces_it() {
    let index = mk_index();
    let first = || vec![Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.1"))), Ok(InitDone)];
    let mut events = first();
    events.push(mk_gone());
    let run = follow_all(&index, events).await;
    assert_eq!(served(&index), mk_served(&[("a", "240.0.0.1")]));
    assert_eq!(run.metrics.watch_errors.get(), 1);

    let mut events = first();
    events.extend([
        mk_gone(),
        Ok(Init),
        Ok(InitApply(mk_se("b", "240.0.0.2"))),
        Ok(InitDone),
    ]);
    let run = follow_all(&index, events).await;
    assert_eq!(served(&index), mk_served(&[("b", "240.0.0.2")]));
    assert_eq!(run.metrics.watch_errors.get(), 1);
    assert_eq!(run.metrics.relists.get(), 2);
    assert_eq!(run.synced, 1);
}

#[tokio::test]
async fn init_apply_outside_a_list_is_ignored() {
    let index = mk_index();
    follow_all(&index, vec![Ok(InitApply(mk_se("a", "240.0.0.1")))]).await;
    assert!(served(&index).is_empty());
}

#[tokio::test]
async fn the_end_of_the_stream_is_an_error() {
    let run = follow_all(&mk_index(), Vec::new()).await;
    assert!(
        run.end.to_string().contains("watch for kubernetes ended"),
        "{}",
        run.end
    );
}

/// `meshdns_kube_last_sync_timestamp_seconds` as scraped from `registry`.
fn last_sync_gauge(registry: &Registry) -> f64 {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "meshdns_kube_last_sync_timestamp_seconds")
        .map(|f| f.get_metric()[0].get_gauge().get_value())
        .expect("the gauge is registered")
}

/// A quiet cluster sends no events, so the sync time must not rest on
/// them alone: lists, events and reopened watches prove a watch in sync,
/// errors never do, and nothing counts before the first list.
#[tokio::test]
async fn last_sync_moves_on_lists_events_and_reopened_watches_only() {
    let index = mk_index();
    let registry = Registry::new();
    let metrics = KubeMetrics::register(&registry).unwrap();
    let source = SourceId::Kube(None);
    let feed = |events: Vec<Event>| {
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let (source, index, metrics) = (source.clone(), &index, &metrics);
        async move {
            follow(futures::stream::iter(events), source, index, metrics, tx)
                .await
                .unwrap_err();
        }
    };
    assert_eq!(last_sync_gauge(&registry), 0.0, "no watch yet");
    metrics.sync.expect(&source);

    // Before the first list completes: 0, whatever happens.
    metrics.sync.reopened(&source, 5_000);
    feed(vec![Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.1"))), mk_gone()]).await;
    assert_eq!(last_sync_gauge(&registry), 0.0);

    // The list completes: now.
    let before = unix_ms();
    feed(vec![Ok(Init), Ok(InitApply(mk_se("a", "240.0.0.1"))), Ok(InitDone)]).await;
    assert!(metrics.sync.oldest_ms() >= before);

    // Errors leave it where it was.
    metrics.sync.synced(&source, 1_000);
    feed(vec![mk_gone(), mk_gone()]).await;
    assert_eq!(metrics.sync.oldest_ms(), 1_000);
    assert_eq!(last_sync_gauge(&registry), 1.0);

    // An event proves it, and so does a delete.
    let before = unix_ms();
    feed(vec![Ok(Apply(mk_se("b", "240.0.0.2")))]).await;
    assert!(metrics.sync.oldest_ms() >= before);
    metrics.sync.synced(&source, 1_000);
    feed(vec![Ok(Delete(mk_se("b", "240.0.0.2")))]).await;
    assert!(metrics.sync.oldest_ms() >= before);

    // A quiet cluster: no events, but the API server accepts the watch again.
    metrics.sync.synced(&source, 1_000);
    metrics.sync.reopened(&source, 2_000);
    assert_eq!(last_sync_gauge(&registry), 2.0);

    // Two watches: the older one counts, and 0 until both have listed.
    let other = SourceId::Kube(Some("other".into()));
    metrics.sync.expect(&other);
    assert_eq!(last_sync_gauge(&registry), 0.0);
    metrics.sync.reopened(&other, 3_000);
    assert_eq!(last_sync_gauge(&registry), 0.0, "a reopened watch before its list");
    metrics.sync.synced(&other, 3_000);
    assert_eq!(last_sync_gauge(&registry), 2.0);
    metrics.sync.reopened(&source, 4_000);
    assert_eq!(last_sync_gauge(&registry), 3.0);
}
