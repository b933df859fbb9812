//! The Kubernetes source: watches `serviceentries.networking.istio.io` with
//! kube-rs' watcher (list, then watch; no polling) and feeds the index.
//!
//! Apply/Delete events change one entry. A (re)list (`Init` … `InitDone`,
//! e.g. after 410 Gone) is buffered and swapped in at `InitDone`, so the
//! table is never empty or half built. Objects are read as `DynamicObject`
//! so one malformed ServiceEntry is skipped without failing the list.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use prometheus::{Gauge, IntCounter, IntCounterVec, Opts, Registry};
use tracing::{debug, info, warn};

use crate::index::{Entry, EntryId, Index, Namespaces, SourceId};
use crate::serviceentry::{self, ServiceEntry};

/// Served versions, most preferred first.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
const PLURAL: &str = "serviceentries";

#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    pub selector: Option<String>,
}

/// Watch metrics, registered under `meshdns_kube_*`.
#[derive(Clone)]
pub struct KubeMetrics {
    /// By event type: `apply`, `delete`, `init_apply`.
    events: IntCounterVec,
    /// Completed lists (the first one included).
    relists: IntCounter,
    /// Objects skipped because they do not read as a ServiceEntry.
    malformed: IntCounter,
    watch_errors: IntCounter,
    /// Unix milliseconds of the last event of any kind.
    last_event_ms: Arc<AtomicU64>,
    /// When each watch was last known in sync with the API server.
    sync: SyncTimes,
}

impl KubeMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            events: IntCounterVec::new(
                Opts::new("meshdns_kube_events_total", "Watch events by type"),
                &["type"],
            )?,
            relists: IntCounter::new("meshdns_kube_relists_total", "Completed (re)lists of ServiceEntries")?,
            malformed: IntCounter::new(
                "meshdns_kube_malformed_objects_total",
                "ServiceEntry objects skipped because they do not deserialize",
            )?,
            watch_errors: IntCounter::new(
                "meshdns_kube_watch_errors_total",
                "Watch errors (each retried with backoff)",
            )?,
            last_event_ms: Arc::new(AtomicU64::new(unix_ms())),
            sync: SyncTimes::default(),
        };
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.relists.clone()))?;
        registry.register(Box::new(metrics.malformed.clone()))?;
        registry.register(Box::new(metrics.watch_errors.clone()))?;
        registry.register(Box::new(LastEventAge::new(metrics.last_event_ms.clone())?))?;
        registry.register(Box::new(LastSync::new(metrics.sync.clone())?))?;
        Ok(metrics)
    }

    fn touch(&self) {
        self.last_event_ms.store(unix_ms(), Ordering::Relaxed);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `meshdns_kube_last_event_age_seconds`, computed at scrape time (since
/// start-up until the first event). A quiet cluster raises it too, so do
/// not alert on it: `meshdns_kube_last_sync_timestamp_seconds` tells a
/// quiet watch from a dead one.
struct LastEventAge {
    gauge: Gauge,
    last_ms: Arc<AtomicU64>,
}

impl LastEventAge {
    fn new(last_ms: Arc<AtomicU64>) -> prometheus::Result<Self> {
        let gauge = Gauge::new(
            "meshdns_kube_last_event_age_seconds",
            "Seconds since the last watch event",
        )?;
        Ok(Self { gauge, last_ms })
    }
}

impl prometheus::core::Collector for LastEventAge {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let age_ms = unix_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed));
        self.gauge.set(age_ms as f64 / 1000.0);
        self.gauge.collect()
    }
}

/// When each watch (by its [`SourceId`]) was last known to be in sync with
/// the API server, in Unix milliseconds; 0 until its first list completes.
///
/// A quiet, healthy cluster sends no events, so events alone cannot tell a
/// healthy watch from a dead one. What proves a watch in sync: its (re)list
/// completed, an event arrived, or the API server accepted the watch again
/// (HTTP 2xx) from the last resourceVersion. kube-rs reopens every watch at
/// least every 290 s (its server-side timeout, and its idle timeout for a
/// connection that went silent), so a healthy watch is proven at least
/// that often; a failing one is not proven at all, however it fails.
#[derive(Clone, Default)]
struct SyncTimes(Arc<Mutex<HashMap<SourceId, u64>>>);

impl SyncTimes {
    /// A watch that exists but has not listed yet (it holds the gauge at 0).
    fn expect(&self, watch: &SourceId) {
        self.lock().entry(watch.clone()).or_insert(0);
    }

    /// A list completed or an event arrived.
    fn synced(&self, watch: &SourceId, now_ms: u64) {
        self.lock().insert(watch.clone(), now_ms);
    }

    /// The API server accepted the watch again: in sync, if it has listed.
    fn reopened(&self, watch: &SourceId, now_ms: u64) {
        if let Some(at) = self.lock().get_mut(watch).filter(|at| **at > 0) {
            *at = now_ms;
        }
    }

    /// The oldest over the watches: 0 when there is none, or one has not
    /// listed yet.
    fn oldest_ms(&self) -> u64 {
        self.lock().values().copied().min().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceId, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `meshdns_kube_last_sync_timestamp_seconds`, read at scrape time.
struct LastSync {
    gauge: Gauge,
    sync: SyncTimes,
}

impl LastSync {
    fn new(sync: SyncTimes) -> prometheus::Result<Self> {
        let gauge = Gauge::new(
            "meshdns_kube_last_sync_timestamp_seconds",
            "Unix time the ServiceEntry watch was last known in sync (a list completed, an event arrived, \
             or the watch was reopened); the oldest over the watches, 0 until every first list completes",
        )?;
        Ok(Self { gauge, sync })
    }
}

impl prometheus::core::Collector for LastSync {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set(self.sync.oldest_ms() as f64 / 1000.0);
        self.gauge.collect()
    }
}

/// The watch a request opens, if it is one: a GET with `watch=true` on
/// ServiceEntries, in one namespace or all of them.
fn watch_of(request: &http::Request<kube::client::Body>) -> Option<SourceId> {
    let uri = request.uri();
    let is_watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    if request.method() != http::Method::GET || !is_watch {
        return None;
    }
    let mut segments = uri.path().trim_end_matches('/').rsplit('/');
    if segments.next() != Some(PLURAL) {
        return None;
    }
    let namespace = match (segments.next(), segments.next()) {
        (Some(ns), Some("namespaces")) => Some(Arc::from(ns)),
        _ => None,
    };
    Some(SourceId::Kube(namespace))
}

/// The client's requests, passed through; a watch the API server accepts
/// counts as in sync (see [`SyncTimes`]).
#[derive(Clone)]
struct ObservedClient {
    inner: Client,
    sync: SyncTimes,
}

impl tower_service::Service<http::Request<kube::client::Body>> for ObservedClient {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        let watch = watch_of(&request);
        let (inner, sync) = (self.inner.clone(), self.sync.clone());
        Box::pin(async move {
            let response = inner.send(request).await?;
            if let Some(watch) = watch.filter(|_| response.status().is_success()) {
                sync.reopened(&watch, unix_ms());
            }
            Ok(response)
        })
    }
}

/// `client`, with its watches observed for `meshdns_kube_last_sync_timestamp_seconds`.
fn observed(client: Client, sync: SyncTimes) -> Client {
    let namespace = client.default_namespace().to_string();
    Client::new(ObservedClient { inner: client, sync }, namespace)
}

/// `--kubeconfig`/`--context` when given, else kube's inference
/// (in-cluster, then `$KUBECONFIG` / `~/.kube/config`).
pub async fn client(opts: &KubeOptions) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        ..Default::default()
    };
    let config = match (&opts.kubeconfig, &opts.context) {
        (Some(path), _) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("invalid --kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use --context {context} from $KUBECONFIG or ~/.kube/config"))?,
        (None, None) => Config::infer().await.context(
            "no Kubernetes configuration: not in a cluster, and no $KUBECONFIG or ~/.kube/config \
             (pass --kubeconfig, or --file for files only)",
        )?,
    };
    Client::try_from(config).context("cannot build the Kubernetes client")
}

/// Finds the preferred served ServiceEntry version.
pub async fn discover(client: &Client) -> anyhow::Result<ApiResource> {
    let group = kube::discovery::group(client, serviceentry::GROUP).await.map_err(|e| {
        anyhow!(
            "API group {} not found ({e}); is Istio's ServiceEntry CRD installed?",
            serviceentry::GROUP
        )
    })?;
    VERSIONS
        .iter()
        .find_map(|v| {
            group
                .versioned_resources(v)
                .into_iter()
                .find(|(r, _)| r.plural == PLURAL)
        })
        .map(|(resource, _)| resource)
        .ok_or_else(|| {
            let served: Vec<&str> = group.versions().collect();
            anyhow!(
                "{} serves no ServiceEntry in {VERSIONS:?} (it serves {served:?})",
                serviceentry::GROUP
            )
        })
}

/// Watches until the process ends. Returns only on a fatal error: a watch
/// stream that ends, which must restart the process rather than leave a
/// silently dead watch. `on_synced` runs once, after every watch's first list.
pub async fn run(
    client: Client,
    opts: KubeOptions,
    index: Arc<Index>,
    metrics: KubeMetrics,
    on_synced: impl FnOnce() + Send,
) -> anyhow::Result<()> {
    let resource = discover_with_retry(&client).await;
    info!(version = %resource.version, "watching ServiceEntries");
    let client = observed(client, metrics.sync.clone());
    let namespaces: Vec<Option<String>> = match opts.namespaces.is_empty() {
        true => vec![None],
        false => opts.namespaces.iter().cloned().map(Some).collect(),
    };
    let (synced_tx, mut synced_rx) = tokio::sync::mpsc::channel(namespaces.len());
    let watches = namespaces.into_iter().map(|ns| {
        let api = match &ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
            None => Api::<DynamicObject>::all_with(client.clone(), &resource),
        };
        let mut config = watcher::Config::default();
        if let Some(selector) = &opts.selector {
            config = config.labels(selector);
        }
        let source = SourceId::Kube(ns.as_deref().map(Arc::from));
        metrics.sync.expect(&source);
        watch(api, config, source, index.clone(), metrics.clone(), synced_tx.clone())
    });
    let all = futures::future::try_join_all(watches);
    let expected = opts.namespaces.len().max(1);
    let ready = async move {
        for _ in 0..expected {
            synced_rx.recv().await;
        }
        on_synced();
        std::future::pending::<anyhow::Result<Vec<()>>>().await
    };
    tokio::select! {
        r = all => r.map(drop),
        r = ready => r.map(drop),
    }
}

async fn discover_with_retry(client: &Client) -> ApiResource {
    let mut delay = Duration::from_millis(500);
    loop {
        match discover(client).await {
            Ok(resource) => return resource,
            Err(e) => {
                warn!(error = %format!("{e:#}"), retry_in = ?delay, "cannot find the ServiceEntry API; not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn watch(
    api: Api<DynamicObject>,
    config: watcher::Config,
    source: SourceId,
    index: Arc<Index>,
    metrics: KubeMetrics,
    synced: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let events = watcher(api, config).default_backoff();
    follow(events, source, &index, &metrics, synced).await
}

/// Applies watcher events to the index until the stream ends, which is an
/// error (see [`run`]). Any stream will do: the tests feed it a list.
///
/// `Apply`/`Delete` change one entry at once. `Init` … `InitDone` (the
/// first list, or a relist after 410 Gone) is buffered and swapped in at
/// `InitDone` by one [`Index::reset_keeping`]: what the list lacks goes,
/// and a listed object that no longer reads as a ServiceEntry keeps its
/// last good state. An error is counted and logged; the watcher retries
/// it with backoff while the last table is served. `synced` is told once,
/// at the first `InitDone`.
async fn follow(
    events: impl Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>>,
    source: SourceId,
    index: &Index,
    metrics: &KubeMetrics,
    synced: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let mut stream = std::pin::pin!(events);
    // Some(_) between Init and InitDone: the listed entries, and the ids of
    // malformed objects, whose last good state the reset must keep.
    let mut relist: Option<(Vec<Entry>, HashSet<EntryId>)> = None;
    let mut namespaces = Namespaces::default();
    let mut first_sync = true;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                metrics.watch_errors.inc();
                warn!(%source, %error, "watch error; retrying with backoff, still serving the last table");
                continue;
            }
        };
        metrics.touch();
        match event {
            watcher::Event::Init => {
                debug!(%source, "list started");
                relist = Some(Default::default());
            }
            watcher::Event::InitApply(obj) => {
                metrics.events.with_label_values(&["init_apply"]).inc();
                let id = entry_id(&source, &obj);
                match (relist.as_mut(), to_entry(&source, obj, index, metrics)) {
                    (Some((entries, _)), Some(mut entry)) => {
                        entry.id.namespace = namespaces.intern(&entry.id.namespace);
                        entries.push(entry);
                    }
                    (Some((_, malformed)), None) => _ = malformed.insert(id),
                    (None, _) => {}
                }
            }
            watcher::Event::InitDone => {
                let (entries, malformed) = relist.take().unwrap_or_default();
                namespaces = Namespaces::default();
                info!(%source, entries = entries.len(), malformed = malformed.len(), "list complete; table swapped in");
                index.reset_keeping(&source, entries, &malformed);
                metrics.relists.inc();
                metrics.sync.synced(&source, unix_ms());
                if std::mem::take(&mut first_sync) {
                    let _ = synced.send(()).await;
                }
            }
            watcher::Event::Apply(obj) => {
                metrics.events.with_label_values(&["apply"]).inc();
                metrics.sync.synced(&source, unix_ms());
                if let Some(entry) = to_entry(&source, obj, index, metrics) {
                    index.apply(entry);
                }
            }
            watcher::Event::Delete(obj) => {
                metrics.events.with_label_values(&["delete"]).inc();
                metrics.sync.synced(&source, unix_ms());
                index.delete(&entry_id(&source, &obj));
            }
        }
    }
    Err(anyhow!(
        "the ServiceEntry watch for {source} ended; exiting so that Kubernetes restarts meshdns"
    ))
}

fn entry_id(source: &SourceId, obj: &DynamicObject) -> EntryId {
    EntryId {
        source: source.clone(),
        namespace: obj.metadata.namespace.as_deref().unwrap_or("default").into(),
        name: obj.metadata.name.as_deref().unwrap_or_default().into(),
    }
}

/// Converts one object, keeping only its records. A malformed object is
/// skipped (its last good state, if any, stays served).
fn to_entry(source: &SourceId, obj: DynamicObject, index: &Index, metrics: &KubeMetrics) -> Option<Entry> {
    let who = format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    );
    let se = match serviceentry_from(obj) {
        Ok(se) => se,
        Err(error) => {
            metrics.malformed.inc();
            index.count_malformed();
            warn!(entry = %who, %error, "malformed ServiceEntry skipped");
            return None;
        }
    };
    Some(index.convert(source, &se).0)
}

/// Reads our fields out of a dynamic object; managed fields, annotations
/// and everything else are dropped here.
fn serviceentry_from(obj: DynamicObject) -> Result<ServiceEntry, serde_json::Error> {
    let mut se: ServiceEntry = serde_json::from_value(obj.data)?;
    se.metadata.name = obj.metadata.name.unwrap_or_default();
    se.metadata.namespace = obj.metadata.namespace;
    se.metadata.creation_timestamp = obj.metadata.creation_timestamp.map(|t| t.0.to_string());
    Ok(se)
}

#[cfg(test)]
mod follow_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(data: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {
                "name": "a", "namespace": "ns", "creationTimestamp": "2024-05-01T10:00:00Z",
                "managedFields": [{"manager": "kubectl"}]
            },
        }))
        .map(|mut o: DynamicObject| {
            o.data = data;
            o
        })
        .unwrap()
    }

    #[test]
    fn reads_spec_status_and_metadata() {
        let se = serviceentry_from(obj(serde_json::json!({
            "spec": {"hosts": ["a.global"], "addresses": ["240.0.0.1"], "resolution": "DNS", "ports": [{"number": 80}]},
            "status": {"addresses": [{"value": "240.240.0.1", "host": "a.global"}]}
        })))
        .unwrap();
        assert_eq!(se.metadata.name, "a");
        assert_eq!(se.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(se.metadata.creation_timestamp.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(se.spec.hosts, ["a.global"]);
        assert_eq!(se.status.unwrap().addresses[0].value, "240.240.0.1");
    }

    fn request(method: http::Method, uri: &str) -> http::Request<kube::client::Body> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(kube::client::Body::empty())
            .unwrap()
    }

    #[test]
    fn watch_requests_are_told_by_method_query_and_path() {
        let get = |uri| watch_of(&request(http::Method::GET, uri));
        let ns = |n: &str| Some(SourceId::Kube(Some(n.into())));
        assert_eq!(
            get("/apis/networking.istio.io/v1/serviceentries?&watch=true&timeoutSeconds=290&allowWatchBookmarks=true"),
            Some(SourceId::Kube(None))
        );
        assert_eq!(
            get("/apis/networking.istio.io/v1beta1/namespaces/istio-system/serviceentries?watch=1"),
            ns("istio-system")
        );
        assert_eq!(
            get("/apis/networking.istio.io/v1/serviceentries?limit=500"),
            None,
            "a list"
        );
        assert_eq!(get("/apis/networking.istio.io/v1/serviceentries?watch=false"), None);
        assert_eq!(get("/apis/networking.istio.io/v1/namespaces/a/pods?watch=true"), None);
        assert_eq!(get("/apis/networking.istio.io/v1"), None);
        let post = request(
            http::Method::POST,
            "/apis/networking.istio.io/v1/serviceentries?watch=true",
        );
        assert_eq!(watch_of(&post), None);
    }

    /// An API server that answers every request with `status`.
    #[derive(Clone)]
    struct FakeApi(http::StatusCode);

    impl tower_service::Service<http::Request<kube::client::Body>> for FakeApi {
        type Response = http::Response<kube::client::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<kube::client::Body>) -> Self::Future {
            let mut response = http::Response::new(kube::client::Body::empty());
            *response.status_mut() = self.0;
            std::future::ready(Ok(response))
        }
    }

    #[tokio::test]
    async fn an_accepted_watch_counts_as_in_sync() {
        let all = SourceId::Kube(None);
        let send = |status, sync: &SyncTimes, uri: &str| {
            let client = observed(Client::new(FakeApi(status), "default"), sync.clone());
            let request = request(http::Method::GET, uri);
            async move { client.send(request).await.unwrap().status() }
        };
        let watch = "/apis/networking.istio.io/v1/serviceentries?watch=true";
        let sync = SyncTimes::default();
        sync.expect(&all);
        assert_eq!(send(http::StatusCode::OK, &sync, watch).await, http::StatusCode::OK);
        assert_eq!(sync.oldest_ms(), 0, "not before the first list");

        sync.synced(&all, 1_000);
        let before = unix_ms();
        send(http::StatusCode::OK, &sync, watch).await;
        assert!(sync.oldest_ms() >= before);

        sync.synced(&all, 1_000);
        send(
            http::StatusCode::OK,
            &sync,
            "/apis/networking.istio.io/v1/serviceentries",
        )
        .await;
        assert_eq!(sync.oldest_ms(), 1_000, "a list is not a watch");
        let code = send(http::StatusCode::SERVICE_UNAVAILABLE, &sync, watch).await;
        assert_eq!(code, http::StatusCode::SERVICE_UNAVAILABLE, "passed through");
        assert_eq!(sync.oldest_ms(), 1_000, "a refused watch proves nothing");
        send(http::StatusCode::FORBIDDEN, &sync, watch).await;
        assert_eq!(sync.oldest_ms(), 1_000);
    }

    #[test]
    fn malformed_spec_is_an_error_not_a_panic() {
        assert!(serviceentry_from(obj(serde_json::json!({"spec": {"hosts": "a.global"}}))).is_err());
        assert!(serviceentry_from(obj(serde_json::json!({"spec": {"addresses": [1, 2]}}))).is_err());
        assert!(serviceentry_from(obj(serde_json::json!({}))).is_ok());
    }
}
