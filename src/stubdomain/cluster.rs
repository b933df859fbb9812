//! The API server side of `stub-domain`: read the Service's ClusterIP, read
//! both ConfigMaps and plan both edits, and only when no zone is foreign
//! (or `--force`) write them with `replace`, carrying the resourceVersion
//! that was read. A 409 Conflict means someone wrote in between: read
//! again, plan again, try again, at most [`MAX_ATTEMPTS`] times.
//!
//! It asks for exactly what `deploy/stub-domain/` grants: `get` on the
//! Service, `get` and `update` on the two named ConfigMaps.

use std::io::Write;
use std::net::IpAddr;

use anyhow::{Context, anyhow, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, PostParams};

use super::{ObjectRef, Options, corefile, diff, kubedns};
use crate::source::kube::client;

/// Writes per ConfigMap, the first included, before a conflict is an error.
pub const MAX_ATTEMPTS: usize = 5;

/// The field manager the API server records for our writes.
pub const FIELD_MANAGER: &str = "meshdns-stub-domain";

/// The ClusterIP this command last wrote into a ConfigMap, recorded on it,
/// so that a block or key still forwarding there is ours to move when the
/// ClusterIP changes (anything else needs `--force`).
pub const ANNOTATION: &str = "meshdns/stub-domain-cluster-ip";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CoreDns,
    KubeDns,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::CoreDns => "Corefile",
            Kind::KubeDns => "stubDomains",
        }
    }
}

/// One ConfigMap's edit, from what was read.
#[derive(Debug)]
struct Plan {
    old: String,
    /// `None`: nothing to change.
    new: Option<String>,
    changes: Vec<String>,
    foreign: Vec<String>,
}

fn plan(kind: Kind, at: &ObjectRef, cm: &ConfigMap, zones: &[String], ip: IpAddr, force: bool) -> anyhow::Result<Plan> {
    let value = cm.data.as_ref().and_then(|d| d.get(kind.key()));
    let previous = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .and_then(|ip| ip.parse().ok());
    match kind {
        Kind::CoreDns => {
            let old = value.ok_or_else(|| anyhow!("ConfigMap {at} has no Corefile key"))?;
            let edit = corefile::apply(old, zones, ip, previous, force)
                .with_context(|| format!("ConfigMap {at}: Corefile"))?;
            Ok(Plan {
                new: (edit.text != *old).then_some(edit.text),
                old: old.clone(),
                changes: edit.changes.iter().map(ToString::to_string).collect(),
                foreign: edit.foreign.iter().map(ToString::to_string).collect(),
            })
        }
        Kind::KubeDns => {
            let edit = kubedns::apply(value.map(String::as_str), zones, ip, previous, force)
                .with_context(|| format!("ConfigMap {at}"))?;
            Ok(Plan {
                old: value.cloned().unwrap_or_default(),
                new: edit.text,
                changes: edit.changes,
                foreign: edit.foreign.iter().map(ToString::to_string).collect(),
            })
        }
    }
}

/// Where ConfigMaps are read and written; the API server, or a fake in
/// the unit tests.
pub(crate) trait Store {
    async fn get(&self, name: &str) -> Result<Option<ConfigMap>, kube::Error>;
    async fn replace(&self, name: &str, cm: &ConfigMap) -> Result<ConfigMap, kube::Error>;
}

impl Store for Api<ConfigMap> {
    async fn get(&self, name: &str) -> Result<Option<ConfigMap>, kube::Error> {
        self.get_opt(name).await
    }

    async fn replace(&self, name: &str, cm: &ConfigMap) -> Result<ConfigMap, kube::Error> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        Api::replace(self, name, &pp, cm).await
    }
}

/// Runs the command, reporting to `out`. An error (a missing Service,
/// neither ConfigMap, a foreign block without `--force`, a failed write)
/// means the command exits non-zero.
pub async fn run(opts: &Options, out: &mut impl Write) -> anyhow::Result<()> {
    let client = client(&opts.kube).await?;
    let ip = cluster_ip(&Api::namespaced(client.clone(), &opts.service.namespace), &opts.service).await?;
    writeln!(out, "Service {}: ClusterIP {ip}", opts.service)?;
    let stores = [(Kind::CoreDns, &opts.coredns), (Kind::KubeDns, &opts.kube_dns)]
        .map(|(kind, at)| (kind, at, Api::<ConfigMap>::namespaced(client.clone(), &at.namespace)));
    apply(opts, ip, &stores, out).await
}

async fn cluster_ip(api: &Api<Service>, at: &ObjectRef) -> anyhow::Result<IpAddr> {
    let service = api
        .get_opt(&at.name)
        .await
        .with_context(|| format!("cannot read Service {at}"))?
        .ok_or_else(|| anyhow!("Service {at} not found"))?;
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| {
            anyhow!(
                "Service {at} has no ClusterIP (headless or ExternalName): cluster DNS needs an address to forward to"
            )
        })?;
    ip.parse()
        .map_err(|_| anyhow!("Service {at} has ClusterIP {ip:?}, which is not an IP address"))
}

/// Both ConfigMaps: read, plan, check, then write (or show the diff).
async fn apply<S: Store>(
    opts: &Options,
    ip: IpAddr,
    stores: &[(Kind, &ObjectRef, S)],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut found = Vec::new();
    for (kind, at, store) in stores {
        match store
            .get(&at.name)
            .await
            .with_context(|| format!("cannot read ConfigMap {at}"))?
        {
            None => writeln!(out, "ConfigMap {at}: not found, skipped")?,
            Some(cm) => {
                let plan = plan(*kind, at, &cm, &opts.zones, ip, opts.force)?;
                found.push((*kind, *at, store, cm, plan));
            }
        }
    }
    if found.is_empty() {
        bail!(
            "neither ConfigMap {} (CoreDNS) nor {} (kube-dns) exists; nothing to point at Service {}",
            opts.coredns,
            opts.kube_dns,
            opts.service
        );
    }
    let foreign: Vec<String> = found
        .iter()
        .flat_map(|(_, at, _, _, plan)| plan.foreign.iter().map(move |f| format!("ConfigMap {at}: {f}")))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{}\nthese zones are sent elsewhere, not to {ip}; nothing was written. Check them, then rerun with \
             --force to replace them",
            foreign.join("\n")
        );
    }
    for (kind, at, store, cm, plan) in found {
        for change in &plan.changes {
            writeln!(out, "ConfigMap {at}: {change}")?;
        }
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        match &plan.new {
            None => writeln!(
                out,
                "ConfigMap {at}: unchanged, not written (resourceVersion {version})"
            )?,
            Some(new) if opts.dry_run => {
                let label = format!("{at} {}", kind.key());
                write!(out, "{}", diff::unified(&plan.old, new, &label, &label))?;
                writeln!(out, "ConfigMap {at}: dry run, not written")?;
            }
            Some(_) => write(kind, at, store, cm, plan, opts, ip, out).await?,
        }
    }
    Ok(())
}

/// `replace` with the resourceVersion read; on 409, read, plan and retry.
#[allow(clippy::too_many_arguments)]
async fn write<S: Store>(
    kind: Kind,
    at: &ObjectRef,
    store: &S,
    mut cm: ConfigMap,
    mut plan: Plan,
    opts: &Options,
    ip: IpAddr,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(new) = plan.new.take() else {
            writeln!(out, "ConfigMap {at}: unchanged after all, not written")?;
            return Ok(());
        };
        let read = cm.metadata.resource_version.clone().unwrap_or_default();
        let mut updated = cm.clone();
        updated
            .data
            .get_or_insert_with(Default::default)
            .insert(kind.key().into(), new);
        updated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANNOTATION.into(), ip.to_string());
        match store.replace(&at.name, &updated).await {
            Ok(written) => {
                let version = written.metadata.resource_version.unwrap_or_default();
                writeln!(out, "ConfigMap {at}: updated (resourceVersion {read} → {version})")?;
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                if attempt == MAX_ATTEMPTS {
                    break;
                }
                writeln!(
                    out,
                    "ConfigMap {at}: changed since it was read (409 Conflict), reading it again"
                )?;
                cm = store
                    .get(&at.name)
                    .await
                    .with_context(|| format!("cannot read ConfigMap {at}"))?
                    .ok_or_else(|| anyhow!("ConfigMap {at} was deleted meanwhile; not written"))?;
                plan = self::plan(kind, at, &cm, &opts.zones, ip, opts.force)?;
                if !plan.foreign.is_empty() {
                    bail!(
                        "ConfigMap {at} changed meanwhile: {}; not written (rerun with --force to replace)",
                        plan.foreign.join("; ")
                    );
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot update ConfigMap {at}")),
        }
    }
    bail!("ConfigMap {at}: still conflicting after {MAX_ATTEMPTS} attempts; not written")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::source::kube::KubeOptions;

    /// A ConfigMap store that answers 409 to the first `conflicts` writes,
    /// and changes the object (a new resourceVersion, `Corefile` edited by
    /// "someone else") each time it does.
    struct Fake {
        cm: RefCell<Option<ConfigMap>>,
        conflicts: RefCell<usize>,
        writes: RefCell<usize>,
    }

    fn mk_configmap(key: &str, value: &str, version: u32) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.resource_version = Some(version.to_string());
        cm.data = Some(BTreeMap::from([(key.to_string(), value.to_string())]));
        cm
    }

    fn mk_fake(cm: Option<ConfigMap>, conflicts: usize) -> Fake {
        Fake {
            cm: RefCell::new(cm),
            conflicts: RefCell::new(conflicts),
            writes: RefCell::new(0),
        }
    }

    fn mk_options(force: bool, dry_run: bool) -> Options {
        Options {
            service: "kube-system/meshdns".parse().unwrap(),
            zones: vec!["global".into()],
            coredns: "kube-system/coredns".parse().unwrap(),
            kube_dns: "kube-system/kube-dns".parse().unwrap(),
            force,
            dry_run,
            kube: KubeOptions::default(),
        }
    }

    impl Store for Fake {
        async fn get(&self, _: &str) -> Result<Option<ConfigMap>, kube::Error> {
            Ok(self.cm.borrow().clone())
        }

        async fn replace(&self, _: &str, cm: &ConfigMap) -> Result<ConfigMap, kube::Error> {
            let mut current = self.cm.borrow_mut();
            let current = current.as_mut().expect("exists");
            let version: u32 = current.metadata.resource_version.as_ref().unwrap().parse().unwrap();
            let conflicts = *self.conflicts.borrow();
            if conflicts > 0 {
                *self.conflicts.borrow_mut() = conflicts - 1;
                let data = current.data.as_mut().unwrap();
                if let Some(corefile) = data.get_mut("Corefile") {
                    corefile.push_str(&format!("# edited {conflicts}\n"));
                }
                current.metadata.resource_version = Some((version + 1).to_string());
                let status = kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
                return Err(kube::Error::Api(status.boxed()));
            }
            assert_eq!(cm.metadata.resource_version, current.metadata.resource_version);
            *current = cm.clone();
            current.metadata.resource_version = Some((version + 1).to_string());
            *self.writes.borrow_mut() += 1;
            Ok(current.clone())
        }
    }

    fn mk_run(opts: &Options, coredns: &Fake, kube_dns: &Fake) -> (anyhow::Result<()>, String) {
        let ip: IpAddr = "10.96.0.10".parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut out = Vec::new();
        let result = rt.block_on(async {
            // Both stores are fakes, by reference.
            struct ByRef<'a>(&'a Fake);
            impl Store for ByRef<'_> {
                async fn get(&self, name: &str) -> Result<Option<ConfigMap>, kube::Error> {
                    self.0.get(name).await
                }
                async fn replace(&self, name: &str, cm: &ConfigMap) -> Result<ConfigMap, kube::Error> {
                    self.0.replace(name, cm).await
                }
            }
            let stores = [
                (Kind::CoreDns, &opts.coredns, ByRef(coredns)),
                (Kind::KubeDns, &opts.kube_dns, ByRef(kube_dns)),
            ];
            apply(opts, ip, &stores, &mut out).await
        });
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn conflicts_are_read_again_and_retried() {
        let coredns = mk_fake(Some(mk_configmap("Corefile", ".:53 {\n}\n", 7)), 2);
        let kube_dns = mk_fake(None, 0);
        let (result, out) = mk_run(&mk_options(false, false), &coredns, &kube_dns);
        result.unwrap();
        assert_eq!(*coredns.writes.borrow(), 1);
        let cm = coredns.cm.borrow().clone().unwrap();
        // The other writer's edits survive: the plan was made again.
        assert_eq!(
            cm.data.unwrap()["Corefile"],
            format!(
                ".:53 {{\n}}\n# edited 2\n# edited 1\n{}",
                corefile::server_block("global", "10.96.0.10".parse().unwrap())
            )
        );
        assert_eq!(out.matches("409 Conflict").count(), 2, "{out}");
        assert!(out.contains("updated (resourceVersion 9 → 10)"), "{out}");
        assert_eq!(cm.metadata.annotations.unwrap()[ANNOTATION], "10.96.0.10");
        assert!(
            out.contains("ConfigMap kube-system/kube-dns: not found, skipped"),
            "{out}"
        );
    }

    #[test]
    fn conflicts_are_bounded() {
        let coredns = mk_fake(Some(mk_configmap("Corefile", "", 1)), MAX_ATTEMPTS);
        let kube_dns = mk_fake(None, 0);
        let (result, _) = mk_run(&mk_options(false, false), &coredns, &kube_dns);
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("still conflicting after 5 attempts")
        );
        assert_eq!(*coredns.writes.borrow(), 0);
    }

    #[test]
    fn a_foreign_zone_anywhere_writes_nothing() {
        let coredns = mk_fake(Some(mk_configmap("Corefile", "", 1)), 0);
        let kube_dns = mk_fake(Some(mk_configmap("stubDomains", "{\"global\": [\"1.1.1.1\"]}", 1)), 0);
        let (result, _) = mk_run(&mk_options(false, false), &coredns, &kube_dns);
        let error = result.unwrap_err().to_string();
        assert!(error.contains("kube-system/kube-dns: zone global"), "{error}");
        assert!(error.contains("nothing was written"), "{error}");
        assert_eq!((*coredns.writes.borrow(), *kube_dns.writes.borrow()), (0, 0));

        let (result, _) = mk_run(&mk_options(true, false), &coredns, &kube_dns);
        result.unwrap();
        assert_eq!((*coredns.writes.borrow(), *kube_dns.writes.borrow()), (1, 1));
    }

    #[test]
    fn dry_run_and_nothing_to_do() {
        let coredns = mk_fake(Some(mk_configmap("Corefile", ".:53 {\n}\n", 1)), 0);
        let kube_dns = mk_fake(None, 0);
        let (result, out) = mk_run(&mk_options(false, true), &coredns, &kube_dns);
        result.unwrap();
        assert_eq!(*coredns.writes.borrow(), 0);
        assert!(out.contains("+global:53 {\n+    errors\n"), "{out}");
        assert!(out.contains("dry run, not written"), "{out}");

        let (result, out) = mk_run(&mk_options(false, false), &coredns, &kube_dns);
        result.unwrap();
        let (result, out2) = mk_run(&mk_options(false, false), &coredns, &kube_dns);
        result.unwrap();
        assert_eq!(*coredns.writes.borrow(), 1, "{out}\n{out2}");
        assert!(out2.contains("unchanged, not written (resourceVersion 2)"), "{out2}");

        let none = mk_fake(None, 0);
        let (result, _) = mk_run(&mk_options(false, false), &none, &kube_dns);
        assert!(result.unwrap_err().to_string().contains("neither ConfigMap"));
    }
}
