//! The real kube-apiserver harness that `tests/kube.rs`, `tests/soak.rs` and
//! `tests/stubdomain.rs` share (each includes it with `#[path]`, beside `e2e/common.rs` as
//! `common`): etcd + kube-apiserver on 127.0.0.1, started by
//! `tests/kube/apiserver.sh`, a kube-rs client as admin, and what those
//! tests ask of the shared `meshdns serve` launcher.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Meshdns, http_get, poll_until, query_udp_once, run_bounded};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kube/apiserver.sh");

// ---------------------------------------------------------------------------
// The cluster

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
    pub rt: tokio::runtime::Runtime,
    pub client: kube::Client,
}

impl Cluster {
    /// Starts etcd + kube-apiserver; fails the test when they are not
    /// built (the tests that call this are `#[ignore]`d for that reason).
    pub fn start() -> Cluster {
        let cache = std::env::var("MESHDNS_KUBE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/meshdns/kube-1.20.2")
            });
        let missing = ["kube-apiserver", "kubectl"]
            .into_iter()
            .find(|b| !cache.join("bin").join(b).exists());
        let missing = missing
            .map(String::from)
            .or_else(|| common::find_tool("etcd").is_none().then(|| "etcd".into()));
        if let Some(what) = missing {
            panic!(
                "{what} not found (build it with tests/kube/apiserver.sh build); this test needs it under --include-ignored"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let cluster_dir = dir.path().join("cluster");
        let out = script(&["start", cluster_dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apiserver.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = read_env(&cluster_dir);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(client_from(Path::new(&env["ADMIN_KUBECONFIG"]), None));
        Cluster { dir, env, rt, client }
    }

    pub fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    pub fn script(&self, cmd: &str) {
        let out = script(&[cmd, self.cluster_dir().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "apiserver.sh {cmd} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn api(&self, version: &str, ns: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", version, "ServiceEntry");
        let resource = ApiResource::from_gvk_with_plural(&gvk, "serviceentries");
        Api::namespaced_with(self.client.clone(), ns, &resource)
    }

    pub fn create(&self, version: &str, ns: &str, name: &str, spec: serde_json::Value) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("networking.istio.io/{version}"),
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .unwrap();
        self.rt
            .block_on(self.api(version, ns).create(&PostParams::default(), &obj))
            .unwrap();
    }

    pub fn replace_spec(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let api = self.api("v1", ns);
        self.rt.block_on(async {
            let mut obj = api.get(name).await.unwrap();
            obj.data["spec"] = spec;
            api.replace(name, &PostParams::default(), &obj).await.unwrap();
        });
    }

    pub fn delete(&self, ns: &str, name: &str) {
        self.rt
            .block_on(self.api("v1", ns).delete(name, &DeleteParams::default()))
            .unwrap();
    }

    pub fn delete_all(&self, ns: &str) {
        self.rt
            .block_on(
                self.api("v1", ns)
                    .delete_collection(&DeleteParams::default(), &ListParams::default()),
            )
            .unwrap();
    }

    pub fn create_namespace(&self, ns: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let obj = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        self.rt.block_on(api.create(&PostParams::default(), &obj)).unwrap();
    }

    /// Lets the `meshdns` user list and watch ServiceEntries, nothing else.
    pub fn grant_meshdns(&self) {
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": "meshdns"},
            "rules": [{"apiGroups": ["networking.istio.io"], "resources": ["serviceentries"], "verbs": ["list", "watch"]}],
        }))
        .unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "meshdns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshdns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "meshdns"}],
        }))
        .unwrap();
        let pp = PostParams::default();
        self.rt.block_on(async {
            Api::<ClusterRole>::all(self.client.clone())
                .create(&pp, &role)
                .await
                .unwrap();
            Api::<ClusterRoleBinding>::all(self.client.clone())
                .create(&pp, &binding)
                .await
                .unwrap();
        });
    }

    /// A kubeconfig whose current context is broken, so only `--context
    /// good` works: proves both `--kubeconfig` and `--context` are used.
    pub fn meshdns_kubeconfig(&self) -> PathBuf {
        let path = self.dir.path().join("two-contexts.kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: broken\n\
             clusters:\n- name: good\n  cluster: {{server: \"{url}\", certificate-authority: \"{ca}\"}}\n\
             - name: broken\n  cluster: {{server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}\n\
             users:\n- name: meshdns\n  user: {{token: \"{token}\"}}\n\
             contexts:\n- name: good\n  context: {{cluster: good, user: meshdns}}\n\
             - name: broken\n  context: {{cluster: broken, user: meshdns}}\n",
            url = self.env["APISERVER_URL"],
            ca = self.env["APISERVER_CA"],
            token = self.env["MESHDNS_TOKEN"],
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = script(&["stop", self.cluster_dir().to_str().unwrap()]);
    }
}

fn script(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(SCRIPT).args(args);
    run_bounded(cmd, Duration::from_secs(180))
}

fn read_env(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn client_from(kubeconfig: &Path, context: Option<&str>) -> kube::Client {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(kubeconfig).unwrap(), &options)
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub fn se(hosts: &[&str], addresses: &[&str]) -> serde_json::Value {
    json!({"hosts": hosts, "addresses": addresses, "resolution": "DNS", "location": "MESH_INTERNAL",
           "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]})
}

// ---------------------------------------------------------------------------
// meshdns

/// What the Kubernetes tests ask of the shared launcher.
impl Meshdns {
    pub fn query(&self, name: &str, rtype: RecordType) -> Message {
        query_udp_once(self.dns, name, rtype)
            .or_else(|_| query_udp_once(self.dns, name, rtype))
            .unwrap_or_else(|e| panic!("no answer for {name}: {e}"))
    }

    pub fn addrs(&self, name: &str) -> Result<Vec<String>, ResponseCode> {
        let m = self.query(name, RecordType::A);
        match m.metadata.response_code {
            ResponseCode::NoError => Ok(addresses(&m)),
            rcode => Err(rcode),
        }
    }

    /// Polls until `name` resolves to `want` (empty: NXDOMAIN), up to `limit`.
    pub fn wait_for(&self, name: &str, want: &[&str], limit: Duration) -> Duration {
        let expected = if want.is_empty() {
            Err(ResponseCode::NXDomain)
        } else {
            Ok(want.iter().map(|s| s.to_string()).collect())
        };
        poll_until(limit, Duration::from_millis(1), || self.addrs(name) == expected).unwrap_or_else(|| {
            panic!(
                "{name}: wanted {expected:?}, still {:?} after {limit:?}; log:\n{}",
                self.addrs(name),
                self.proc.log()
            )
        })
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.admin, "/metrics").unwrap();
        body.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found in:\n{body}"))
    }
}

pub fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}
