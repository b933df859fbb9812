//! `meshdns stub-domain` (the release binary) against a real kube-apiserver
//! 1.20 and etcd on 127.0.0.1, started by `tests/kube/apiserver.sh`, with
//! RBAC on: both ConfigMaps edited, a second run writes nothing, a changed
//! ClusterIP moves, a foreign block needs `--force`, `--dry-run` writes
//! nothing, clear errors for a missing Service or ConfigMaps, and the
//! Roles shipped in `deploy/stub-domain/` are enough and no more.
//!
//! Like `tests/kube.rs`, every test here is `#[ignore = "needs
//! kube-apiserver …"]` and runs under `-- --include-ignored`, one at a time.

#[path = "kube/cluster.rs"]
mod cluster;
#[path = "e2e/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cluster::Cluster;
use common::{MESHDNS, run_bounded};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const LONG: Duration = Duration::from_secs(60);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// kubeadm's Corefile, as a cluster has it before meshdns.
const COREFILE: &str = ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    \
    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       \
    ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    \
    cache 30\n    loop\n    reload\n    loadbalance\n}\n";

const STUB_DOMAINS: &str = "{\"acme.local\": [\"1.2.3.4\"]}\n";

fn block(zone: &str, ip: &str) -> String {
    format!("{zone}:53 {{\n    errors\n    cache 30\n    forward . {ip}\n}}\n")
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

trait Fixture {
    fn service(&self, ns: &str, name: &str, cluster_ip: &str);
    fn delete_service(&self, ns: &str, name: &str);
    fn configmap(&self, name: &str, key: &str, value: &str);
    fn delete_configmap(&self, name: &str);
    /// (resourceVersion, the value of `key`)
    fn read(&self, name: &str, key: &str) -> (String, Option<String>);
    fn stub(&self, kubeconfig: &Path, args: &[&str]) -> Run;
    fn admin(&self) -> PathBuf;
}

impl Fixture for Cluster {
    fn service(&self, ns: &str, name: &str, cluster_ip: &str) {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
        }))
        .unwrap();
        self.rt
            .block_on(Api::<Service>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &svc))
            .unwrap();
    }

    fn delete_service(&self, ns: &str, name: &str) {
        self.rt
            .block_on(Api::<Service>::namespaced(self.client.clone(), ns).delete(name, &DeleteParams::default()))
            .unwrap();
    }

    fn configmap(&self, name: &str, key: &str, value: &str) {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system"},
            "data": {key: value},
        }))
        .unwrap();
        self.rt
            .block_on(
                Api::<ConfigMap>::namespaced(self.client.clone(), "kube-system").create(&PostParams::default(), &cm),
            )
            .unwrap();
    }

    fn delete_configmap(&self, name: &str) {
        self.rt
            .block_on(
                Api::<ConfigMap>::namespaced(self.client.clone(), "kube-system").delete(name, &DeleteParams::default()),
            )
            .unwrap();
    }

    fn read(&self, name: &str, key: &str) -> (String, Option<String>) {
        let cm = self
            .rt
            .block_on(Api::<ConfigMap>::namespaced(self.client.clone(), "kube-system").get(name))
            .unwrap();
        (
            cm.metadata.resource_version.unwrap(),
            cm.data.and_then(|mut d| d.remove(key)),
        )
    }

    fn stub(&self, kubeconfig: &Path, args: &[&str]) -> Run {
        let mut cmd = Command::new(MESHDNS);
        cmd.arg("stub-domain")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG");
        let out = run_bounded(cmd, LONG);
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        println!("stub-domain {args:?}: ok={}\n{}{}", run.ok, run.stdout, run.stderr);
        run
    }

    fn admin(&self) -> PathBuf {
        PathBuf::from(&self.env["ADMIN_KUBECONFIG"])
    }
}

fn stub_domains(value: &str) -> serde_json::Value {
    serde_json::from_str(value).unwrap()
}

// ---------------------------------------------------------------------------
// Tests

/// Both ConfigMaps: the dry run, the edit, the second run that writes
/// nothing, and a new ClusterIP.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn edits_both_configmaps_once() {
    let _serial = serial();
    let c = Cluster::start();
    c.service("kube-system", "meshdns", "10.96.0.53");
    c.configmap("coredns", "Corefile", COREFILE);
    c.configmap("kube-dns", "stubDomains", STUB_DOMAINS);
    let svc = ["--service", "kube-system/meshdns"];
    let (core_v0, _) = c.read("coredns", "Corefile");
    let (kd_v0, _) = c.read("kube-dns", "stubDomains");

    // --dry-run: the diff, nothing written.
    let run = c.stub(&c.admin(), &[&svc[..], &["--dry-run"]].concat());
    assert!(run.ok, "{}", run.stderr);
    for line in [
        "--- kube-system/coredns Corefile",
        "+global:53 {",
        "+    forward . 10.96.0.53",
        " }",
        "--- kube-system/kube-dns stubDomains",
        "-{\"acme.local\": [\"1.2.3.4\"]}",
        "+{\"acme.local\":[\"1.2.3.4\"],\"global\":[\"10.96.0.53\"]}",
        "ConfigMap kube-system/coredns: dry run, not written",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{}",
            run.stdout
        );
    }
    assert_eq!(c.read("coredns", "Corefile"), (core_v0.clone(), Some(COREFILE.into())));
    assert_eq!(
        c.read("kube-dns", "stubDomains"),
        (kd_v0.clone(), Some(STUB_DOMAINS.into()))
    );

    // The edit: every other byte of the Corefile kept, the other stub domain too.
    let run = c.stub(&c.admin(), &svc);
    assert!(run.ok, "{}", run.stderr);
    let (core_v1, corefile) = c.read("coredns", "Corefile");
    assert_eq!(
        corefile.unwrap(),
        format!("{COREFILE}{}", block("global", "10.96.0.53"))
    );
    let (kd_v1, stub) = c.read("kube-dns", "stubDomains");
    assert_eq!(
        stub_domains(&stub.unwrap()),
        json!({"acme.local": ["1.2.3.4"], "global": ["10.96.0.53"]})
    );
    assert_ne!((&core_v1, &kd_v1), (&core_v0, &kd_v0));

    // A second run writes nothing.
    let run = c.stub(&c.admin(), &svc);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        run.stdout.matches("unchanged, not written").count(),
        2,
        "{}",
        run.stdout
    );
    assert_eq!(c.read("coredns", "Corefile").0, core_v1);
    assert_eq!(c.read("kube-dns", "stubDomains").0, kd_v1);

    // A new ClusterIP (the Service made again) moves both, without --force;
    // a reverse zone is added beside it.
    c.delete_service("kube-system", "meshdns");
    c.service("kube-system", "meshdns", "10.96.0.54");
    let run = c.stub(&c.admin(), &[&svc[..], &["--reverse-zone", "240.0.0.0/8"]].concat());
    assert!(run.ok, "{}", run.stderr);
    let (_, corefile) = c.read("coredns", "Corefile");
    assert_eq!(
        corefile.unwrap(),
        format!(
            "{COREFILE}{}{}",
            block("global", "10.96.0.54"),
            block("240.in-addr.arpa", "10.96.0.54")
        )
    );
    let (_, stub) = c.read("kube-dns", "stubDomains");
    assert_eq!(
        stub_domains(&stub.unwrap()),
        json!({"acme.local": ["1.2.3.4"], "global": ["10.96.0.54"], "240.in-addr.arpa": ["10.96.0.54"]})
    );
}

/// A block someone else wrote for the zone: reported, nothing written, a
/// non-zero exit; replaced with --force. The documented stanza, filled in
/// by hand, counts as done.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn foreign_blocks_need_force() {
    let _serial = serial();
    let c = Cluster::start();
    c.service("kube-system", "meshdns", "10.96.0.53");
    let foreign = format!("{COREFILE}global:53 {{\n    forward . 10.0.0.9\n}}\n");
    c.configmap("coredns", "Corefile", &foreign);
    c.configmap("kube-dns", "stubDomains", STUB_DOMAINS);
    let (core_v0, _) = c.read("coredns", "Corefile");
    let (kd_v0, _) = c.read("kube-dns", "stubDomains");
    let svc = ["--service", "kube-system/meshdns"];

    for extra in [&[][..], &["--dry-run"]] {
        let run = c.stub(&c.admin(), &[&svc[..], extra].concat());
        assert!(!run.ok);
        assert!(
            run.stderr.contains(
                "ConfigMap kube-system/coredns: zone global: the server block global:53 (line 21) has `forward . 10.0.0.9`"
            ),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
        assert!(run.stderr.contains("--force"), "{}", run.stderr);
        assert_eq!(c.read("coredns", "Corefile"), (core_v0.clone(), Some(foreign.clone())));
        assert_eq!(c.read("kube-dns", "stubDomains").0, kd_v0, "nothing written to either");
    }

    let run = c.stub(&c.admin(), &[&svc[..], &["--force"]].concat());
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        c.read("coredns", "Corefile").1.unwrap(),
        format!("{COREFILE}{}", block("global", "10.96.0.53"))
    );

    // The stanza from deploy/coredns/, filled in by hand: left as it is.
    // Only CoreDNS's ConfigMap this time: kube-dns's is skipped.
    c.delete_configmap("kube-dns");
    let shipped = std::fs::read_to_string(common::repo_path("deploy/coredns/global.server")).unwrap();
    let by_hand = format!("{COREFILE}{}", shipped.replace("MESHDNS_CLUSTER_IP", "10.96.0.53"));
    c.delete_configmap("coredns");
    c.configmap("coredns", "Corefile", &by_hand);
    let (v, _) = c.read("coredns", "Corefile");
    let run = c.stub(&c.admin(), &svc);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("ConfigMap kube-system/kube-dns: not found, skipped"),
        "{}",
        run.stdout
    );
    assert_eq!(c.read("coredns", "Corefile"), (v, Some(by_hand)));
}

/// Clear errors: no Service, a headless Service, neither ConfigMap.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn missing_service_or_configmaps_are_clear_errors() {
    let _serial = serial();
    let c = Cluster::start();
    let run = c.stub(&c.admin(), &["--service", "kube-system/meshdns"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("Service kube-system/meshdns not found"),
        "{}",
        run.stderr
    );

    c.service("kube-system", "headless", "None");
    let run = c.stub(&c.admin(), &["--service", "kube-system/headless"]);
    assert!(!run.ok);
    assert!(run.stderr.contains("has no ClusterIP (headless"), "{}", run.stderr);

    c.service("kube-system", "meshdns", "10.96.0.53");
    let run = c.stub(&c.admin(), &["--service", "kube-system/meshdns"]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("neither ConfigMap kube-system/coredns (CoreDNS) nor kube-system/kube-dns (kube-dns) exists"),
        "{}",
        run.stderr
    );
}

/// deploy/stub-domain/ applies as shipped; its ServiceAccount's own token
/// runs `stub-domain` to the end, and may do nothing else: not update
/// another ConfigMap, not read secrets, not read another Service.
#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn shipped_rbac_is_enough_and_no_more() {
    let _serial = serial();
    let c = Cluster::start();
    let kubectl = |kubeconfig: &Path, args: &[&str]| -> (bool, String) {
        let mut cmd = Command::new(&c.env["KUBECTL"]);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        let out = run_bounded(cmd, LONG);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let dir = common::repo_path("deploy/stub-domain");
    let (ok, applied) = kubectl(
        &c.admin(),
        &[
            "apply",
            "--server-side",
            "--field-manager=meshdns-test",
            "-k",
            dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{applied}");
    for what in [
        "serviceaccount/meshdns-stub-domain",
        "role.rbac.authorization.k8s.io/meshdns-stub-domain-configmaps",
        "rolebinding.rbac.authorization.k8s.io/meshdns-stub-domain-service",
        "job.batch/meshdns-stub-domain",
    ] {
        assert!(applied.contains(what), "{what} not applied:\n{applied}");
    }
    c.service("kube-system", "meshdns", "10.96.0.53");
    c.service("kube-system", "other", "10.96.0.99");
    c.configmap("coredns", "Corefile", COREFILE);
    c.configmap("kube-dns", "stubDomains", STUB_DOMAINS);
    c.configmap("other", "x", "y");

    let token = c.rt.block_on(async {
        let api: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "kube-system");
        let request = serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
        api.create_token_request("meshdns-stub-domain", &PostParams::default(), &request)
            .await
            .unwrap()
    });
    let token = token.status.unwrap().token;
    let kubeconfig = c.dir.path().join("stub-domain.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: sa\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\n\
             users:\n- name: sa\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\n",
            c.env["APISERVER_URL"], c.env["APISERVER_CA"]
        ),
    )
    .unwrap();

    // The Job's own arguments, with the ServiceAccount's token: enough.
    let job: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("job.yaml")).unwrap()).unwrap();
    let args: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = c.stub(&kubeconfig, &args);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        c.read("coredns", "Corefile")
            .1
            .unwrap()
            .ends_with(&block("global", "10.96.0.53"))
    );
    let run = c.stub(&kubeconfig, &args);
    assert!(run.ok && run.stdout.matches("unchanged").count() == 2, "{}", run.stdout);

    // What it may do, as the API server's SelfSubjectAccessReview says…
    for (allowed, what) in [
        (true, &["get", "services/meshdns"][..]),
        (true, &["get", "configmaps/coredns"]),
        (true, &["update", "configmaps/kube-dns"]),
        (false, &["get", "services/other"]),
        (false, &["update", "services/meshdns"]),
        (false, &["list", "configmaps"]),
        (false, &["update", "configmaps/other"]),
        (false, &["create", "configmaps"]),
        (false, &["delete", "configmaps/coredns"]),
        (false, &["patch", "configmaps/coredns"]),
        (false, &["list", "secrets"]),
        (false, &["get", "secrets/anything"]),
    ] {
        let (ok, answer) = kubectl(
            &kubeconfig,
            &[&["auth", "can-i", "-n", "kube-system"][..], what].concat(),
        );
        assert_eq!(
            (ok, answer.trim()),
            (allowed, if allowed { "yes" } else { "no" }),
            "{what:?}"
        );
    }
    for what in [&["get", "configmaps/coredns"][..], &["update", "configmaps/coredns"]] {
        let (ok, answer) = kubectl(&kubeconfig, &[&["auth", "can-i", "-n", "default"][..], what].concat());
        assert_eq!((ok, answer.trim()), (false, "no"), "{what:?} in default");
    }
    // …and as it answers attempts: 403 on another ConfigMap, on secrets.
    for args in [
        &["-n", "kube-system", "label", "configmap", "other", "x=y"][..],
        &["-n", "kube-system", "get", "secrets"],
        &["-n", "kube-system", "create", "configmap", "new"],
    ] {
        let (ok, answer) = kubectl(&kubeconfig, args);
        assert!(
            !ok && answer.contains("forbidden"),
            "{args:?} should be forbidden: {answer}"
        );
    }
    // The stub-domain run itself, on another ConfigMap: forbidden, and says so.
    let run = c.stub(
        &kubeconfig,
        &["--service=kube-system/meshdns", "--coredns-configmap=kube-system/other"],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains("cannot read ConfigMap kube-system/other") && run.stderr.contains("forbidden"),
        "{}",
        run.stderr
    );
}
