//! `meshdns stub-domain`: its flags, and the runtime it runs in. The work
//! is `crate::stubdomain`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::source::kube::KubeOptions;
use crate::stubdomain::{self, ObjectRef, Options};

#[derive(Debug, clap::Args)]
pub(super) struct StubDomainArgs {
    /// The meshdns Service whose ClusterIP cluster DNS forwards to.
    #[arg(long, env = "MESHDNS_SERVICE", value_name = "NAMESPACE/NAME")]
    service: ObjectRef,

    /// Zone to forward (repeatable). Default: `serve`'s default zone.
    #[arg(
        long = "zone",
        value_name = "ZONE",
        env = "MESHDNS_ZONE",
        value_delimiter = ',',
        default_value = super::DEFAULT_ZONE,
        value_parser = stubdomain::zone
    )]
    zones: Vec<String>,

    /// Reverse zone to forward as well (repeatable): `240.in-addr.arpa`, or a
    /// CIDR prefix on a label boundary such as `240.0.0.0/8`.
    #[arg(
        long = "reverse-zone",
        value_name = "ZONE",
        env = "MESHDNS_REVERSE_ZONE",
        value_delimiter = ',',
        value_parser = stubdomain::reverse_zone
    )]
    reverse_zones: Vec<String>,

    /// CoreDNS's ConfigMap (its `Corefile` key); skipped when it does not exist.
    #[arg(
        long,
        env = "MESHDNS_COREDNS_CONFIGMAP",
        value_name = "NAMESPACE/NAME",
        default_value = "kube-system/coredns"
    )]
    coredns_configmap: ObjectRef,

    /// kube-dns's ConfigMap (its `stubDomains` key); skipped when it does not exist.
    #[arg(
        long,
        env = "MESHDNS_KUBE_DNS_CONFIGMAP",
        value_name = "NAMESPACE/NAME",
        default_value = "kube-system/kube-dns"
    )]
    kube_dns_configmap: ObjectRef,

    /// Replace a server block or stub domain for the zone that sends it
    /// elsewhere. Without it, such a zone is reported and nothing is written.
    #[arg(long, env = "MESHDNS_FORCE")]
    force: bool,

    /// Print the diff of each ConfigMap and write nothing.
    #[arg(long, env = "MESHDNS_DRY_RUN")]
    dry_run: bool,

    /// Kubeconfig file. Default: in-cluster config, then $KUBECONFIG, then
    /// ~/.kube/config.
    #[arg(long, env = "MESHDNS_KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, env = "MESHDNS_CONTEXT", value_name = "NAME")]
    context: Option<String>,
}

impl StubDomainArgs {
    pub(super) fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            service,
            mut zones,
            reverse_zones,
            coredns_configmap,
            kube_dns_configmap,
            force,
            dry_run,
            kubeconfig,
            context,
        } = self;
        zones.extend(reverse_zones);
        let mut seen = std::collections::HashSet::new();
        zones.retain(|z| seen.insert(z.clone()));
        let opts = Options {
            service,
            zones,
            coredns: coredns_configmap,
            kube_dns: kube_dns_configmap,
            force,
            dry_run,
            kube: KubeOptions {
                kubeconfig,
                context,
                ..Default::default()
            },
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        runtime.block_on(stubdomain::run(&opts, &mut std::io::stdout().lock()))?;
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Command};

    #[test]
    fn zones_default_to_serves() {
        let Cli {
            command: Command::StubDomain(args),
        } = Cli::parse_from(["meshdns", "stub-domain", "--service", "kube-system/meshdns"])
        else {
            panic!("not stub-domain");
        };
        let Cli {
            command: Command::Serve(serve),
        } = Cli::parse_from(["meshdns", "serve"])
        else {
            panic!("not serve");
        };
        assert_eq!(args.zones, serve.zone.zones);
        assert_eq!(args.coredns_configmap.to_string(), "kube-system/coredns");
        assert_eq!(args.kube_dns_configmap.to_string(), "kube-system/kube-dns");
        let Cli {
            command: Command::StubDomain(args),
        } = Cli::parse_from([
            "meshdns",
            "stub-domain",
            "--service=ns/svc",
            "--zone=Mesh.",
            "--reverse-zone=240.0.0.0/8",
        ])
        else {
            panic!("not stub-domain");
        };
        assert_eq!(args.zones, ["mesh"]);
        assert_eq!(args.reverse_zones, ["240.in-addr.arpa"]);
        assert!(Cli::try_parse_from(["meshdns", "stub-domain", "--service=x"]).is_err());
        assert!(Cli::try_parse_from(["meshdns", "stub-domain", "--service=a/b", "--reverse-zone=global"]).is_err());
    }
}
