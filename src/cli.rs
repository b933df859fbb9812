//! Command line and wiring: `meshdns serve` and `meshdns check`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hickory_proto::rr::Name;
use tracing::info;

use crate::admin::{self, AdminState, Readiness};
use crate::dns::metrics::DnsMetrics;
use crate::dns::{DnsServer, Handler};
use crate::index::{self, Index, ZoneConfig, convert, name};
use crate::source::file::{self, FileSource};
use crate::source::kube::{self, KubeMetrics, KubeOptions};
use crate::source::manifest;

/// Authoritative DNS for Istio multi-cluster `.global` names.
///
/// Answers `<name>.<namespace>.global` from the addresses of Istio
/// ServiceEntries, so that pods can connect and the sidecar routes the
/// connection to the remote cluster. Point cluster DNS (CoreDNS `forward`,
/// kube-dns `stubDomains`) at it for the `global` zone.
#[derive(Debug, Parser)]
#[command(name = "meshdns", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DNS from ServiceEntry manifests, reloading them as they change.
    Serve(Box<ServeArgs>),
    /// Validate manifests and print the records they would produce.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// UDP and TCP address for DNS.
    #[arg(long, env = "MESHDNS_DNS_ADDR", default_value = "0.0.0.0:1053")]
    dns_addr: SocketAddr,

    /// HTTP address for /healthz (liveness), /readyz (readiness) and /metrics.
    #[arg(long, env = "MESHDNS_ADMIN_ADDR", default_value = "0.0.0.0:9253")]
    admin_addr: SocketAddr,

    /// A YAML file, or a directory of *.yaml/*.yml files, holding ServiceEntry
    /// manifests (multi-document and `kind: List` are fine; other kinds are
    /// ignored). Repeatable. Watched: changes apply within a second; a file
    /// that stops parsing keeps its last good content.
    #[arg(long = "file", value_name = "PATH", env = "MESHDNS_FILE", value_delimiter = ',')]
    files: Vec<PathBuf>,

    /// Also watch ServiceEntries in Kubernetes. On by default when no --file
    /// is given; with --file, both sources feed one table.
    #[arg(long, env = "MESHDNS_KUBERNETES")]
    kubernetes: bool,

    #[command(flatten)]
    kube: KubeArgs,

    #[command(flatten)]
    zone: ZoneArgs,

    /// Serve /debug/records on the admin address: the whole table as JSON
    /// (names, addresses, defining entries, conflicts).
    #[arg(long, env = "MESHDNS_DEBUG_ENDPOINTS")]
    debug_endpoints: bool,

    /// UDP worker threads, each with its own socket on --dns-addr
    /// (SO_REUSEPORT). Default: one per CPU core. One worker answers over
    /// 100k queries/s on one core; more add throughput on more cores, but
    /// while one would keep up they cost 10-20 % more CPU per query.
    #[arg(long, env = "MESHDNS_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,

    /// On SIGTERM/SIGINT, report not ready at once but keep answering this
    /// long (e.g. `5s`, `500ms`), so traffic moves away before the exit. A
    /// second signal exits at once.
    #[arg(long, env = "MESHDNS_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, clap::Args)]
struct KubeArgs {
    /// Kubeconfig file. Default: in-cluster config, then $KUBECONFIG, then
    /// ~/.kube/config.
    #[arg(long, env = "MESHDNS_KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current one.
    #[arg(long, env = "MESHDNS_CONTEXT", value_name = "NAME")]
    context: Option<String>,

    /// Watch only this namespace (repeatable). Default: all namespaces.
    #[arg(
        long = "namespace",
        env = "MESHDNS_NAMESPACE",
        value_name = "NS",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,

    /// Watch only ServiceEntries matching this label selector, e.g.
    /// `mesh.example.com/dns=enabled`.
    #[arg(long, env = "MESHDNS_SELECTOR")]
    selector: Option<String>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Manifest files or directories.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// `text`: records, skipped items and conflicts; `zone`: an RFC 1035
    /// master file per zone (SOA serial 1), e.g. to load into another server.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    #[command(flatten)]
    zone: ZoneArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Text,
    Zone,
}

#[derive(Debug, clap::Args)]
struct ZoneArgs {
    /// Zone served authoritatively; hosts outside every zone are ignored.
    /// Repeatable.
    #[arg(
        long = "zone",
        value_name = "ZONE",
        env = "MESHDNS_ZONE",
        value_delimiter = ',',
        default_value = "global"
    )]
    zones: Vec<String>,

    /// TTL of answers, in seconds.
    #[arg(long, env = "MESHDNS_TTL", default_value_t = 30)]
    ttl: u32,

    /// How long resolvers may cache "no such name" and "no such type", in
    /// seconds (the SOA MINIMUM; negative answers use min(TTL, this)).
    #[arg(long, env = "MESHDNS_NEGATIVE_TTL", default_value_t = 5)]
    negative_ttl: u32,

    /// Address for entries that have neither spec.addresses nor Istio-allocated
    /// status.addresses (istio-coredns-plugin's option). Unset: such entries
    /// are not served.
    #[arg(long, env = "MESHDNS_DEFAULT_ADDRESS", value_name = "IP")]
    default_address: Option<IpAddr>,

    /// Name server in the zones' SOA MNAME and apex NS record.
    #[arg(long, env = "MESHDNS_NAMESERVER", default_value = "localhost.")]
    nameserver: String,

    /// Mailbox in the zones' SOA RNAME.
    #[arg(long, env = "MESHDNS_HOSTMASTER", default_value = "nobody.invalid.")]
    hostmaster: String,
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log line format: `text` for people, `json` for log collectors.
    #[arg(long, value_enum, env = "MESHDNS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, e.g. `info` or `meshdns=debug`. Defaults to RUST_LOG, then `info`.
    #[arg(long, env = "MESHDNS_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Serve(args) => args.log.init().and_then(|()| args.run()),
        Command::Check(args) => args.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl LogArgs {
    fn init(&self) -> anyhow::Result<()> {
        let mut directives = match &self.log_level {
            Some(level) => level.clone(),
            None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        };
        // hickory-server logs every request at info; keep queries out of
        // the logs unless asked for by name.
        if !directives.contains("hickory") {
            directives.push_str(",hickory_server=warn");
        }
        let filter = tracing_subscriber::EnvFilter::try_new(&directives).context("invalid --log-level")?;
        use std::io::IsTerminal;
        // Colour only for people: log collectors get plain text.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        Ok(())
    }
}

impl ZoneArgs {
    fn index(&self) -> anyhow::Result<Index> {
        let Self {
            zones,
            ttl,
            negative_ttl,
            default_address,
            nameserver,
            hostmaster,
        } = self;
        let zones = zones
            .iter()
            .map(|z| match name::normalize_host(z) {
                Ok(n) if !n.starts_with('*') => Ok(n),
                Ok(_) => bail!("--zone {z:?}: a zone cannot be a wildcard"),
                Err(e) => bail!("--zone {z:?}: {e}"),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let fqdn = |flag: &str, s: &str| -> anyhow::Result<Name> {
            let mut n = Name::from_ascii(s).with_context(|| format!("{flag} {s:?} is not a domain name"))?;
            n.set_fqdn(true);
            Ok(n)
        };
        let config = ZoneConfig {
            ttl: *ttl,
            negative_ttl: *negative_ttl,
            nameserver: fqdn("--nameserver", nameserver)?,
            hostmaster: fqdn("--hostmaster", hostmaster)?,
        };
        Index::new(zones, config, *default_address)
    }
}

impl ServeArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let Self {
            dns_addr,
            admin_addr,
            files,
            kubernetes,
            kube,
            zone,
            debug_endpoints,
            workers,
            shutdown_grace,
            log: _,
        } = self;
        let workers = workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        );
        let KubeArgs {
            kubeconfig,
            context,
            namespaces,
            selector,
        } = kube;
        let kube_options = (kubernetes || files.is_empty()).then_some(KubeOptions {
            kubeconfig,
            context,
            namespaces,
            selector,
        });

        let index = Arc::new(zone.index()?);
        let ready = Readiness::default();
        let registry = prometheus::Registry::new();
        admin::register_process_metrics(&registry)?;
        ready.register(&registry)?;
        index.register_metrics(&registry)?;
        let dns_metrics = DnsMetrics::register(&registry)?;
        let file_errors = prometheus::IntCounter::new(
            "meshdns_file_reload_errors_total",
            "--file reloads that failed (the file's last good state is kept)",
        )?;
        registry.register(Box::new(file_errors.clone()))?;

        // UDP workers are plain threads (see `dns::udp`); TCP, the admin
        // endpoint and the watch share one current-thread runtime.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Listening before the files load: a SIGTERM during a long load
        // then shuts down cleanly after it, instead of killing the process.
        let mut signals = {
            let _runtime = runtime.enter();
            Signals::new()?
        };
        let _files = match files.is_empty() {
            true => None,
            false => Some(FileSource::start(files, index.clone(), file_errors)?),
        };

        runtime.block_on(async move {
            let kube = match kube_options {
                Some(opts) => Some((kube::client(&opts).await?, opts)),
                None => None,
            };
            let dns = DnsServer::bind(dns_addr, Handler::new(index.clone(), ready.clone(), dns_metrics), workers).await?;
            let admin_listener = admin::bind(admin_addr).await?;
            info!(dns = %dns.local_addr(), admin = %admin_listener.local_addr()?, workers, "serving");
            let admin_state = AdminState {
                ready: ready.clone(),
                registry: registry.clone(),
                index: debug_endpoints.then(|| index.clone()),
            };

            let dns = dns.run();
            let admin = admin::serve(admin_listener, admin_state);
            let watch = async {
                let Some((client, opts)) = kube else {
                    index::log_stats(&index.table().stats);
                    ready.set_synced();
                    return std::future::pending().await;
                };
                let kube_metrics = KubeMetrics::register(&registry)?;
                kube::run(client, opts, index.clone(), kube_metrics, || {
                    index::log_stats(&index.table().stats);
                    info!("Kubernetes ServiceEntries synced; ready");
                    ready.set_synced();
                })
                .await
            };
            tokio::pin!(dns, admin, watch);
            let signal = tokio::select! {
                r = &mut dns => return r,
                r = &mut admin => return r,
                r = &mut watch => return r,
                signal = signals.next() => signal,
            };
            // Drain: load balancers see /readyz fail and stop sending; what
            // still arrives is answered until the grace period ends.
            ready.set_draining();
            info!(signal, grace = ?shutdown_grace, "shutting down: not ready, still answering until the grace period ends");
            tokio::select! {
                r = &mut dns => return r,
                r = &mut admin => return r,
                _ = tokio::time::sleep(shutdown_grace) => info!("grace period over; exiting"),
                signal = signals.next() => info!(signal, "second signal; exiting now"),
            }
            anyhow::Ok(())
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// SIGTERM and SIGINT, listened to from start-up so none is missed. SIGHUP,
/// which would kill the process by default, is logged and ignored: there is
/// nothing to reload by hand.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        Ok(Self { term, int, hup })
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => info!(
                    "SIGHUP ignored: files reload when they change and Kubernetes is watched, so there is nothing to reload"
                ),
            }
        }
    }
}

/// `5s`, `500ms`, `1m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

impl CheckArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let Self { files, output, zone } = self;
        let index = zone.index()?;
        let mut report = String::new();
        let mut invalid = 0;
        let mut records: Vec<(String, &'static str, IpAddr, String)> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let mut defined_by: BTreeMap<String, Vec<String>> = BTreeMap::new();

        for path in &files {
            let found = file::expand(path).with_context(|| format!("cannot read {}", path.display()))?;
            if found.is_empty() {
                writeln!(
                    report,
                    "error: {}: no such file, or no *.yaml/*.yml in it",
                    path.display()
                )?;
                invalid += 1;
            }
            for f in found {
                let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
                let manifests = match manifest::parse(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        writeln!(report, "error: {}: {e}", f.display())?;
                        invalid += 1;
                        continue;
                    }
                };
                for se in &manifests.entries {
                    let who = se.display_name();
                    let conversion = convert::convert(se, index.convert_options());
                    for host in &conversion.hosts {
                        defined_by
                            .entry(format!("{}.", host.name))
                            .or_default()
                            .push(who.clone());
                        for addr in &host.addrs {
                            let rtype = if addr.is_ipv4() { "A" } else { "AAAA" };
                            records.push((format!("{}.", host.name), rtype, *addr, who.clone()));
                        }
                    }
                    for s in &conversion.skipped {
                        skipped.push(format!("{who}  {}: {}", s.item, s.reason));
                    }
                }
                index.reset(&file::source_id(&f), file::load(&f, &text, &index).unwrap_or_default());
            }
        }

        match output {
            Output::Zone => print!("{}", zone_file(&index.table())),
            Output::Text => {
                records.sort();
                let width = records.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
                println!("{:width$}  {:4}  {:39}  SOURCE", "NAME", "TYPE", "ADDRESS");
                for (name, rtype, addr, who) in &records {
                    println!("{name:width$}  {rtype:4}  {:39}  {who}", addr.to_string());
                }
                if !skipped.is_empty() {
                    println!("\nskipped:");
                    skipped.iter().for_each(|s| println!("  {s}"));
                }
                let conflicts: Vec<_> = defined_by.iter().filter(|(_, who)| who.len() > 1).collect();
                if !conflicts.is_empty() {
                    println!("\nconflicts (served as the union, oldest entry first):");
                    for (name, who) in &conflicts {
                        println!("  {name}  defined by {}", who.join(", "));
                    }
                }
                // What the table serves, against what the entries list.
                let table = index.table();
                let served: HashMap<&str, usize> = table
                    .records()
                    .into_iter()
                    .map(|(name, node)| (name, node.v4().len() + node.v6().len()))
                    .collect();
                let mut listed: BTreeMap<&str, HashSet<IpAddr>> = BTreeMap::new();
                for (name, _, addr, _) in &records {
                    listed.entry(name.as_str()).or_default().insert(*addr);
                }
                let capped: Vec<_> = listed
                    .iter()
                    .map(|(name, addrs)| {
                        (
                            name,
                            addrs.len(),
                            served.get(name.trim_end_matches('.')).copied().unwrap_or(0),
                        )
                    })
                    .filter(|(_, listed, served)| served < listed)
                    .collect();
                if !capped.is_empty() {
                    println!("\nover the addresses one name may have (the first ones are served):");
                    for (name, listed, served) in &capped {
                        println!("  {name}  {listed} addresses, {served} served");
                    }
                }
                println!(
                    "\n{} records, {} skipped, {} conflicts, {} names over the address limit, {} invalid files",
                    records.len(),
                    skipped.len(),
                    conflicts.len(),
                    capped.len(),
                    invalid
                );
            }
        }
        eprint!("{report}");
        Ok(if invalid > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// The table as RFC 1035 master files, one per zone, SOA serial 1.
fn zone_file(table: &index::Table) -> String {
    let c = &table.config;
    let mut out = String::new();
    for zone in table.zones.iter() {
        let _ = writeln!(out, "$ORIGIN {}\n$TTL {}", zone.name, c.ttl);
        let _ = writeln!(
            out,
            "@ {} IN SOA {} {} 1 {} {} {} {}\n@ {} IN NS {}",
            c.ttl,
            c.nameserver,
            c.hostmaster,
            index::SOA_REFRESH,
            index::SOA_RETRY,
            index::SOA_EXPIRE,
            c.negative_ttl,
            c.ttl,
            c.nameserver
        );
        let own: Vec<_> = table
            .records()
            .into_iter()
            .filter(|(n, _)| {
                name::in_zone(n, &zone.key)
                    && !table
                        .zones
                        .iter()
                        .any(|z| z.key.len() > zone.key.len() && name::in_zone(n, &z.key))
            })
            .collect();
        for (n, node) in own {
            node.v4()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN A {a}", c.ttl));
            node.v6()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN AAAA {a}", c.ttl));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
