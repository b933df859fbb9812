//! Tier 3, Kubernetes: the release binary against a real kube-apiserver and
//! etcd on 127.0.0.1 (started by `tests/kube/apiserver.sh`), queried with
//! real DNS packets.
//!
//! The tests that need a cluster are `#[ignore = "needs kube-apiserver …"]`:
//! `cargo test` lists them as ignored, and `-- --include-ignored` (as
//! `scripts/test-all.sh` runs, after building kube-apiserver) runs them
//! and fails if it is not built. They run one at a time: each cluster
//! needs a core to start.

#[path = "kube/cluster.rs"]
mod cluster;
#[path = "e2e/common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cluster::{Cluster, addresses, se};
use common::{MESHDNS, Meshdns, http_get, poll_until, query_udp_once, run_bounded};
use futures::StreamExt;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Tests

/// RBAC-limited user, --kubeconfig/--context, every API version, updates,
/// deletes, malformed objects, --namespace and --selector.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn watch_serves_changes_with_least_privilege() {
    let _serial = serial();
    let c = Cluster::start();
    c.grant_meshdns();
    c.create_namespace("team");
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));

    let kubeconfig = c.meshdns_kubeconfig();
    let mut m = Meshdns::spawn(
        None,
        &["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "good"],
    );
    m.wait_ready(LONG);
    assert_eq!(m.addrs("httpbin.bar.global."), Ok(vec!["240.0.0.2".into()]));

    // Every served version.
    for (i, version) in ["v1", "v1beta1", "v1alpha3"].iter().enumerate() {
        let host = format!("{version}.bar.global");
        let addr = format!("240.0.1.{i}");
        c.create(version, "default", &format!("via-{version}"), se(&[&host], &[&addr]));
        m.wait_for(&format!("{host}."), &[&addr], SHORT);
    }

    // Update, then delete.
    c.replace_spec(
        "default",
        "httpbin",
        se(&["httpbin.bar.global"], &["240.0.0.20", "240.0.0.21"]),
    );
    m.wait_for("httpbin.bar.global.", &["240.0.0.20", "240.0.0.21"], SHORT);
    c.delete("default", "httpbin");
    m.wait_for("httpbin.bar.global.", &[], SHORT);

    // A whole namespace's entries go.
    for i in 0..5 {
        c.create(
            "v1",
            "team",
            &format!("svc{i}"),
            se(&[&format!("svc{i}.team.global")], &[&format!("240.0.2.{i}")]),
        );
    }
    m.wait_for("svc4.team.global.", &["240.0.2.4"], SHORT);
    c.delete_all("team");
    for i in 0..5 {
        m.wait_for(&format!("svc{i}.team.global."), &[], SHORT);
    }

    // A malformed object is skipped and counted; the watch goes on.
    assert_eq!(m.metric("meshdns_kube_malformed_objects_total"), 0.0);
    c.create(
        "v1",
        "default",
        "broken",
        json!({"hosts": "not-a-list", "addresses": [1, 2], "resolution": "DNS"}),
    );
    c.create(
        "v1",
        "default",
        "after-broken",
        se(&["after.bar.global"], &["240.0.0.30"]),
    );
    m.wait_for("after.bar.global.", &["240.0.0.30"], SHORT);
    assert_eq!(m.metric("meshdns_kube_malformed_objects_total"), 1.0);
    assert_eq!(m.addrs("v1.bar.global."), Ok(vec!["240.0.1.0".into()]));
    m.proc.assert_alive();

    // --namespace and --selector narrow the watch.
    c.create("v1", "team", "labelled", se(&["labelled.team.global"], &["240.0.3.1"]));
    let api = c.api("v1", "team");
    c.rt.block_on(async {
        let mut obj = api.get("labelled").await.unwrap();
        obj.metadata.labels = Some([("dns".to_string(), "on".to_string())].into());
        api.replace("labelled", &PostParams::default(), &obj).await.unwrap();
    });
    c.create(
        "v1",
        "team",
        "unlabelled",
        se(&["unlabelled.team.global"], &["240.0.3.2"]),
    );
    let mut narrow = Meshdns::spawn(
        None,
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--context",
            "good",
            "--namespace",
            "team",
            "--selector",
            "dns=on",
        ],
    );
    narrow.wait_ready(LONG);
    assert_eq!(narrow.addrs("labelled.team.global."), Ok(vec!["240.0.3.1".into()]));
    assert_eq!(narrow.addrs("unlabelled.team.global."), Err(ResponseCode::NXDomain));
    assert_eq!(narrow.addrs("after.bar.global."), Err(ResponseCode::NXDomain));
}

/// Create-returned → first correct answer, over 120 entries.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn propagation_latency() {
    let _serial = serial();
    let c = Cluster::start();
    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    m.wait_ready(LONG);
    let mut latencies = Vec::new();
    for i in 0..120u32 {
        let (host, addr) = (format!("p{i}.lat.global"), format!("240.1.{}.{}", i / 250, i % 250 + 1));
        c.create("v1", "default", &format!("p{i}"), se(&[&host], &[&addr]));
        let start = Instant::now();
        poll_until(SHORT, Duration::from_micros(200), || {
            m.addrs(&format!("{host}.")) == Ok(vec![addr.clone()])
        })
        .unwrap_or_else(|| panic!("{host} not served within {SHORT:?}"));
        latencies.push(start.elapsed());
    }
    latencies.sort();
    println!(
        "propagation (create returned → first correct answer), n={}: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

/// The API server down for 30 s: every query still answered, still ready;
/// changes after it returns are served.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn api_outage_keeps_answers() {
    let _serial = serial();
    let c = Cluster::start();
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));
    c.create("v1", "default", "gone", se(&["gone.bar.global"], &["240.0.0.3"]));
    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    m.wait_ready(LONG);

    c.script("stop-apiserver");
    let start = Instant::now();
    let (mut queries, mut ready_checks) = (0, 0);
    while start.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            m.addrs("httpbin.bar.global."),
            Ok(vec!["240.0.0.2".into()]),
            "during the outage"
        );
        queries += 1;
        if queries % 50 == 0 {
            assert!(m.ready(), "/readyz must stay 200 during an API outage");
            ready_checks += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    m.proc.assert_alive();
    println!("outage: {queries} queries and {ready_checks} /readyz checks over 30 s, all answered");

    c.script("start-apiserver");
    let back = Instant::now();
    c.create("v1", "default", "new", se(&["new.bar.global"], &["240.0.0.4"]));
    c.delete("default", "gone");
    // kube's default backoff may have grown to 30 s (with jitter) by now.
    let reconnect = Duration::from_secs(120);
    m.wait_for("new.bar.global.", &["240.0.0.4"], reconnect);
    m.wait_for("gone.bar.global.", &[], reconnect);
    println!(
        "changes after the API server returned were served within {:?}",
        back.elapsed()
    );
}

/// Compacted etcd + API server restart: the watch resumes with 410 Gone and
/// relists. Names that exist throughout never stop resolving.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn relist_after_410_never_drops_answers() {
    let _serial = serial();
    let c = Cluster::start();
    for i in 0..200 {
        c.create(
            "v1",
            "default",
            &format!("r{i}"),
            se(&[&format!("r{i}.relist.global")], &[&format!("240.2.0.{}", i + 1)]),
        );
    }
    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    m.wait_ready(LONG);
    m.wait_for("r199.relist.global.", &["240.2.0.200"], SHORT);
    assert_eq!(m.metric("meshdns_kube_relists_total"), 1.0);

    // Query every name round-robin until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let dns = m.dns;
    let querier = {
        let (stop, sent, bad) = (stop.clone(), sent.clone(), bad.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let name = format!("r{}.relist.global.", i % 200);
                let ok = query_udp_once(dns, &name, RecordType::A).is_ok_and(|r| addresses(&r).len() == 1);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };

    c.script("stop-apiserver");
    // Move etcd's revision past meshdns' resourceVersion, then compact.
    let etcdctl = common::find_tool("etcdctl").expect("etcdctl (etcd-client)");
    for i in 0..5 {
        let mut cmd = Command::new(&etcdctl);
        cmd.env("ETCDCTL_API", "3").args([
            "--endpoints",
            &c.env["ETCD_URL"],
            "put",
            &format!("/meshdns-test/bump{i}"),
            "x",
        ]);
        assert!(run_bounded(cmd, SHORT).status.success());
    }
    c.script("compact");
    c.script("start-apiserver");
    let relisted = poll_until(Duration::from_secs(90), Duration::from_millis(100), || {
        m.metric("meshdns_kube_relists_total") >= 2.0
    });
    stop.store(true, Ordering::Relaxed);
    querier.join().unwrap();
    let relisted = relisted.unwrap_or_else(|| panic!("no relist after 410; log:\n{}", m.proc.log()));
    let (sent, bad) = (sent.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    println!("relist seen {relisted:?} after the API server returned; {sent} queries during it, {bad} not answered");
    assert_eq!(bad, 0, "every existing name must resolve throughout the relist");
    assert!(
        m.proc.log().contains("410") || m.proc.log().contains("too old"),
        "expected a 410 in the log"
    );
}

/// Start-up with 10k ServiceEntries present: time to ready and RSS.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn startup_with_10k_entries() {
    let _serial = serial();
    let c = Cluster::start();
    let n = 10_000u32;
    let created = Instant::now();
    let api = c.api("v1", "default");
    c.rt.block_on(async {
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let obj: DynamicObject = serde_json::from_value(json!({
                        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                        "metadata": {"name": format!("svc{i}"), "namespace": "default"},
                        "spec": se(&[&format!("svc{i}.ns{}.global", i % 100)], &[&format!("240.3.{}.{}", i / 250, i % 250 + 1)]),
                    }))
                    .unwrap();
                    api.create(&PostParams::default(), &obj).await.unwrap();
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await
    });
    println!("created {n} ServiceEntries in {:?}", created.elapsed());

    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    let ready = m.wait_ready(Duration::from_secs(120));
    assert_eq!(m.addrs("svc9999.ns99.global."), Ok(vec!["240.3.39.250".into()]));
    assert_eq!(m.addrs("svc0.ns0.global."), Ok(vec!["240.3.0.1".into()]));
    println!(
        "10k entries: process start → ready in {ready:?}; RSS {} KiB",
        m.rss_kib()
    );
}

/// Before the first list completes: /readyz 503 and SERVFAIL, never NXDOMAIN.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn not_ready_before_first_sync() {
    let _serial = serial();
    let c = Cluster::start();
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));
    c.script("stop-apiserver");
    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    poll_until(SHORT, Duration::from_millis(20), || {
        http_get(m.admin, "/readyz").is_ok()
    })
    .unwrap_or_else(|| panic!("admin endpoint not up; log:\n{}", m.proc.log()));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(http_get(m.admin, "/readyz").unwrap().0, 503);
        assert_eq!(m.addrs("httpbin.bar.global."), Err(ResponseCode::ServFail));
        std::thread::sleep(Duration::from_millis(100));
    }
    c.script("start-apiserver");
    m.wait_ready(LONG);
    assert_eq!(m.addrs("httpbin.bar.global."), Ok(vec!["240.0.0.2".into()]));
}

/// `--file` and `--kubernetes` together: one table, merged by the conflict
/// rule (the file entry has no creationTimestamp, so it sorts first).
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn files_and_cluster_feed_one_table() {
    let _serial = serial();
    let c = Cluster::start();
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.99"]));
    c.create("v1", "default", "only-kube", se(&["kube.bar.global"], &["240.0.0.98"]));
    let example = common::example_file();
    let mut m = Meshdns::spawn(
        None,
        &[
            "--file",
            example.to_str().unwrap(),
            "--kubernetes",
            "--kubeconfig",
            &c.env["ADMIN_KUBECONFIG"],
        ],
    );
    m.wait_ready(LONG);
    assert_eq!(
        m.addrs("httpbin.bar.global."),
        Ok(vec!["240.0.0.2".into(), "240.0.0.99".into()])
    );
    assert_eq!(m.addrs("kube.bar.global."), Ok(vec!["240.0.0.98".into()]));
    assert_eq!(m.addrs("details.bar.global."), Ok(vec!["240.240.0.5".into()]));
    c.delete("default", "httpbin");
    m.wait_for("httpbin.bar.global.", &["240.0.0.2"], SHORT);
}

/// No ServiceEntry CRD: not ready, retrying; once it is installed, ready.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn missing_crd_is_not_ready_until_installed() {
    let _serial = serial();
    let c = Cluster::start();
    let kubectl = |args: &[&str]| {
        let mut cmd = Command::new(&c.env["KUBECTL"]);
        cmd.arg("--kubeconfig").arg(&c.env["ADMIN_KUBECONFIG"]).args(args);
        let out = run_bounded(cmd, LONG);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    kubectl(&["delete", "crd", "serviceentries.networking.istio.io", "--wait=true"]);
    let mut m = Meshdns::spawn(None, &["--kubeconfig", &c.env["ADMIN_KUBECONFIG"]]);
    poll_until(SHORT, Duration::from_millis(50), || {
        m.proc.log().contains("cannot find the ServiceEntry API")
    })
    .unwrap_or_else(|| panic!("no clear error about the missing CRD; log:\n{}", m.proc.log()));
    assert!(!m.ready());
    assert_eq!(m.addrs("anything.global."), Err(ResponseCode::ServFail));

    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube/serviceentry-crd.yaml");
    kubectl(&["apply", "-f", crd]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/serviceentries.networking.istio.io",
        "--timeout=60s",
    ]);
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));
    let waited = m.wait_ready(LONG);
    m.wait_for("httpbin.bar.global.", &["240.0.0.2"], SHORT);
    println!("ready {waited:?} after the CRD was installed");
}

/// Without any Kubernetes configuration, `serve` fails fast and says why.
#[test]
fn no_kubernetes_config_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(MESHDNS);
    cmd.args(["serve", "--dns-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let out = run_bounded(cmd, SHORT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no Kubernetes configuration"), "{stderr}");

    let mut cmd = Command::new(MESHDNS);
    cmd.args(["serve", "--kubeconfig", "/nonexistent/kubeconfig"]);
    let out = run_bounded(cmd, SHORT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot read --kubeconfig /nonexistent/kubeconfig"),
        "{stderr}"
    );
}

/// deploy/ applies cleanly with server-side validation; the ClusterRole is
/// enough to run meshdns with the ServiceAccount's own token, and no more.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn deploy_manifests_apply_and_rbac_is_minimal() {
    let _serial = serial();
    let c = Cluster::start();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kubectl = |args: &[&str]| -> String {
        let mut cmd = Command::new(&c.env["KUBECTL"]);
        cmd.arg("--kubeconfig").arg(&c.env["ADMIN_KUBECONFIG"]).args(args);
        let out = run_bounded(cmd, LONG);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // This API server is 1.20, which predates policy/v1 (1.21); everything
    // else is applied exactly as shipped.
    let rendered = kubectl(&["kustomize", repo.join("deploy").to_str().unwrap()]);
    assert!(rendered.contains("apiVersion: policy/v1\n"));
    let manifests = c.dir.path().join("deploy.yaml");
    std::fs::write(
        &manifests,
        rendered.replace("apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n"),
    )
    .unwrap();
    let applied = kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=meshdns-test",
        "-f",
        manifests.to_str().unwrap(),
    ]);
    for kind in [
        "serviceaccount/meshdns",
        "clusterrole",
        "deployment.apps/meshdns",
        "service/meshdns",
        "networkpolicy",
    ] {
        assert!(applied.contains(kind), "{kind} not applied:\n{applied}");
    }

    // kube-dns stub domain with the Service's ClusterIP filled in, as the
    // one-liner in the file does.
    let ip = kubectl(&[
        "-n",
        "kube-system",
        "get",
        "svc",
        "meshdns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "ClusterIP {ip:?}");
    let stub = std::fs::read_to_string(repo.join("deploy/coredns/kube-dns-stubdomains.yaml")).unwrap();
    let stub_file = c.dir.path().join("stub.yaml");
    std::fs::write(&stub_file, stub.replace("MESHDNS_CLUSTER_IP", &ip)).unwrap();
    kubectl(&["apply", "--server-side", "-f", stub_file.to_str().unwrap()]);

    // The sidecar variant patches a CoreDNS Deployment.
    let coredns = c.dir.path().join("coredns.yaml");
    std::fs::write(
        &coredns,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: coredns, namespace: kube-system}\nspec:\n  \
         selector: {matchLabels: {k8s-app: kube-dns}}\n  template:\n    metadata: {labels: {k8s-app: kube-dns}}\n    \
         spec:\n      serviceAccountName: coredns\n      containers:\n      - {name: coredns, image: coredns/coredns:1.11.1}\n",
    )
    .unwrap();
    kubectl(&["apply", "--server-side", "-f", coredns.to_str().unwrap()]);
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo.join("deploy/sidecar/rbac.yaml").to_str().unwrap(),
    ]);
    let patch = std::fs::read_to_string(repo.join("deploy/sidecar/coredns-patch.yaml")).unwrap();
    kubectl(&["-n", "kube-system", "patch", "deployment", "coredns", "--patch", &patch]);
    let containers = kubectl(&[
        "-n",
        "kube-system",
        "get",
        "deployment",
        "coredns",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    let mut containers: Vec<&str> = containers.split_whitespace().collect();
    containers.sort();
    assert_eq!(containers, ["coredns", "meshdns"]);

    // The istiocoredns variant swaps the plugin container for meshdns.
    let istiocoredns = c.dir.path().join("istiocoredns.yaml");
    std::fs::write(
        &istiocoredns,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: istiocoredns-service-account, namespace: istio-system}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: istiocoredns, namespace: istio-system}\nspec:\n  \
         selector: {matchLabels: {app: istiocoredns}}\n  template:\n    metadata: {labels: {app: istiocoredns}}\n    \
         spec:\n      serviceAccountName: istiocoredns-service-account\n      containers:\n      \
         - {name: coredns, image: coredns/coredns:1.1.2}\n      \
         - {name: istio-coredns-plugin, image: istio/coredns-plugin:0.2-istio-1.1}\n",
    )
    .unwrap();
    kubectl(&["apply", "--server-side", "-f", istiocoredns.to_str().unwrap()]);
    kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo.join("deploy/sidecar/istiocoredns-rbac.yaml").to_str().unwrap(),
    ]);
    let patch = std::fs::read_to_string(repo.join("deploy/sidecar/istiocoredns-patch.yaml")).unwrap();
    kubectl(&[
        "-n",
        "istio-system",
        "patch",
        "deployment",
        "istiocoredns",
        "--patch",
        &patch,
    ]);
    let containers = kubectl(&[
        "-n",
        "istio-system",
        "get",
        "deployment",
        "istiocoredns",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    let mut containers: Vec<&str> = containers.split_whitespace().collect();
    containers.sort();
    assert_eq!(containers, ["coredns", "meshdns"]);

    // meshdns with the ServiceAccount's token: enough to serve…
    let token = c.rt.block_on(async {
        let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.client.clone(), "kube-system");
        let request = serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
        api.create_token_request("meshdns", &PostParams::default(), &request)
            .await
            .unwrap()
    });
    let token = token.status.unwrap().token;
    let kubeconfig = c.dir.path().join("sa.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\n\
             users:\n- name: sa\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\n",
            c.env["APISERVER_URL"], c.env["APISERVER_CA"]
        ),
    )
    .unwrap();
    c.create("v1", "default", "httpbin", se(&["httpbin.bar.global"], &["240.0.0.2"]));
    let mut m = Meshdns::spawn(None, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    m.wait_ready(LONG);
    assert_eq!(m.addrs("httpbin.bar.global."), Ok(vec!["240.0.0.2".into()]));

    // …and nothing more: a get, even of a ServiceEntry, is forbidden.
    for args in [
        &["-n", "kube-system", "get", "configmap", "kube-dns"][..],
        &["-n", "default", "get", "serviceentries.networking.istio.io", "httpbin"],
        &["-n", "default", "get", "pods"],
    ] {
        let mut cmd = Command::new(&c.env["KUBECTL"]);
        cmd.arg("--kubeconfig").arg(&kubeconfig).args(args);
        let out = run_bounded(cmd, LONG);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("forbidden"),
            "{args:?} should be forbidden: {stderr}"
        );
    }
}
