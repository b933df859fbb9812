//! Command line and wiring: the flags of `meshdns serve` and `meshdns
//! check`, and `serve`'s start-up, which puts the sources, the index, DNS
//! and the admin endpoint together. `check` runs the `check` command;
//! `runtime` holds what the process needs around them (logs, signals,
//! the drain).

mod check;
mod runtime;
mod stub_domain;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hickory_proto::rr::Name;
use tracing::info;

use self::check::Output;
use self::runtime::{LogFormat, Signals, parse_duration, parse_size};
use crate::admin::{self, AdminState, Readiness};
use crate::dns::grpc::{GrpcConfig, GrpcServer, TlsPem};
use crate::dns::metrics::DnsMetrics;
use crate::dns::slice::SliceMode;
use crate::dns::{self, DnsServer, Handler, TcpLimits};
use crate::index::{self, Index, ZoneConfig, name};
use crate::source::file::FileSource;
use crate::source::kube::{self, KubeMetrics, KubeOptions};

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
    /// Point CoreDNS and/or kube-dns at the meshdns Service for the zones.
    StubDomain(stub_domain::StubDomainArgs),
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

    /// How UDP is read: `auto` or a number N of sockets.
    ///
    /// `auto`: one socket on --dns-addr and one thread blocking on it, plus
    /// a standby reader per other CPU core, parked. A standby wakes only
    /// when 16 reads in a row each find a full batch (32 datagrams: a
    /// backlog that lasts), or at once when the kernel drops a datagram
    /// for a full queue; it reads the same socket while it stays busy, and
    /// parks again. So at moderate rates, and through bursts one core
    /// clears within a millisecond, meshdns runs one thread, and under a
    /// flood every core drains the queue
    /// (meshdns_dns_udp_standby_wakeups_total counts the wake-ups).
    ///
    /// N: N sockets sharing --dns-addr (SO_REUSEPORT: the kernel spreads
    /// clients over them), a thread each, all always on.
    ///
    /// Why auto: on 2 cores, one always-on thread used 0.68x Knot's CPU per
    /// query at saturation and 0.78x at 20k queries/s, two used 0.80x and
    /// 0.83x (a second thread costs wake-ups, not instructions); but under
    /// a flood one thread answered less of it (0.91x Knot against 1.05x)
    /// and lost more queries of a legitimate client beside it (0.4 % against
    /// 0.1 %). auto aims at one thread's cost and all cores' flood capacity.
    /// A standby waits for a backlog that lasts: waking one for every full
    /// batch cost 18 % more CPU per query at saturation on 2 cores, where
    /// no core was idle for it.
    ///
    /// Its limit is the one queue, which its readers take from in turn: one
    /// thread answers over 100k queries/s on one core, and on many cores
    /// rates above what one queue drains need N, one socket per core
    /// (e.g. --workers 16 on 16 cores).
    #[arg(long, env = "MESHDNS_WORKERS", value_name = "auto|N", default_value = "auto", value_parser = parse_workers)]
    workers: WorkersArg,

    /// On SIGTERM/SIGINT, report not ready at once but keep answering this
    /// long (e.g. `5s`, `500ms`), so traffic moves away before the exit. A
    /// second signal exits at once.
    #[arg(long, env = "MESHDNS_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    /// Each UDP socket's receive queue (one socket under --workers auto,
    /// N under --workers N), as the kernel counts it: a small query takes about 800 bytes of it on loopback,
    /// often 2 KiB or more from a NIC. This bounds how long a query can wait
    /// when queries come faster than they are answered: the default, Linux's
    /// own default size, holds about 256 small queries, about 2 ms of one
    /// core's work, so under a flood legitimate queries stay fast, and a
    /// reader held up for a few milliseconds loses nothing at moderate rates;
    /// what does not fit is dropped by the kernel and
    /// counted in meshdns_dns_dropped_total{reason="queue_full"}. Larger
    /// absorbs longer bursts but lets queries wait longer. Above
    /// net.core.rmem_max (doubled) the kernel caps it, and meshdns warns.
    #[arg(long, env = "MESHDNS_UDP_RECV_BUFFER", value_name = "SIZE", default_value = "208k", value_parser = parse_size)]
    udp_recv_buffer: usize,

    /// A short scheduler time slice for the UDP threads (Linux 6.12 or
    /// later): `auto`, 0, or 100us to 100ms. With a short slice a thread
    /// woken by a query preempts a busy neighbour on its core at once instead
    /// of waiting out the neighbour's slice (about 3 ms): on a busy 2-core VM
    /// at 20k queries/s the p99 was lower in 14 of 18 rounds, by 2x or more
    /// in 12. While a core is idle it buys nothing and costs 10-70 % more CPU
    /// per query in context switches. `auto` asks for 100us only while less
    /// than 25 % of the machine's CPU time is idle (/proc/stat, sampled
    /// every 250ms; back to the kernel's above 50 %); a duration asks for it
    /// always; 0 never.
    #[arg(long, env = "MESHDNS_UDP_SCHED_SLICE", value_name = "auto|DURATION", default_value = "auto", value_parser = parse_slice)]
    udp_sched_slice: SliceMode,

    #[command(flatten)]
    tcp: TcpArgs,

    #[command(flatten)]
    grpc: GrpcArgs,

    #[command(flatten)]
    log: LogArgs,
}

/// `--udp-sched-slice`: `auto`, 0 or what `sched_setattr(2)` accepts.
fn parse_slice(s: &str) -> Result<SliceMode, String> {
    if s == "auto" {
        return Ok(SliceMode::Auto(dns::slice::AUTO_SLICE));
    }
    let slice = parse_duration(s)?;
    if slice.is_zero() {
        Ok(SliceMode::Kernel)
    } else if (Duration::from_micros(100)..=Duration::from_millis(100)).contains(&slice) {
        Ok(SliceMode::Always(slice))
    } else {
        Err(format!(
            "{s:?}: expected auto, 0 (the kernel's slice) or 100us to 100ms"
        ))
    }
}

/// `--workers`: `auto` or a number of sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WorkersArg {
    Auto,
    Sockets(u16),
}

/// Most sockets `--workers N` binds.
const MAX_WORKERS: u16 = 256;

fn parse_workers(s: &str) -> Result<WorkersArg, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("auto") {
        return Ok(WorkersArg::Auto);
    }
    match s.parse::<u16>() {
        Ok(n @ 1..=MAX_WORKERS) => Ok(WorkersArg::Sockets(n)),
        _ => Err(format!(
            "expected `auto` or a number of sockets from 1 to {MAX_WORKERS}"
        )),
    }
}

impl WorkersArg {
    fn workers(self) -> dns::Workers {
        match self {
            WorkersArg::Auto => dns::Workers::auto(),
            WorkersArg::Sockets(n) => dns::Workers::Sockets(n.into()),
        }
    }
}

/// CoreDNS's gRPC protocol, for its `grpc` plugin (the istiocoredns
/// topology: `grpc global 127.0.0.1:8053` in the Corefile).
#[derive(Debug, clap::Args)]
struct GrpcArgs {
    /// Also serve DNS over CoreDNS's gRPC protocol (`coredns.dns.DnsService`,
    /// as its `grpc` plugin sends it) on this address, e.g. 127.0.0.1:8053.
    /// Off by default. Plaintext unless --grpc-tls-cert and --grpc-tls-key
    /// are given.
    #[arg(long, env = "MESHDNS_GRPC_ADDR", value_name = "ADDR")]
    grpc_addr: Option<SocketAddr>,

    /// PEM certificate chain for gRPC over TLS; needs --grpc-tls-key.
    #[arg(long, env = "MESHDNS_GRPC_TLS_CERT", value_name = "PATH", requires_all = ["grpc_addr", "grpc_tls_key"])]
    grpc_tls_cert: Option<PathBuf>,

    /// PEM private key of --grpc-tls-cert.
    #[arg(long, env = "MESHDNS_GRPC_TLS_KEY", value_name = "PATH", requires_all = ["grpc_addr", "grpc_tls_cert"])]
    grpc_tls_key: Option<PathBuf>,

    /// Concurrent gRPC streams (queries in flight) per connection: the
    /// HTTP/2 limit announced to the client, and a cap on requests being
    /// handled.
    #[arg(long, env = "MESHDNS_GRPC_MAX_STREAMS", value_name = "N", default_value_t = dns::grpc::DEFAULT_MAX_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    grpc_max_streams: u32,
}

impl GrpcArgs {
    /// The address and config, `None` when gRPC is off. Reads the TLS files.
    fn config(&self) -> anyhow::Result<Option<(SocketAddr, GrpcConfig)>> {
        let Some(addr) = self.grpc_addr else {
            return Ok(None);
        };
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("{flag} {}: cannot read", path.display()))
        };
        let tls = match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(cert), Some(key)) => Some(TlsPem {
                cert: read("--grpc-tls-cert", cert)?,
                key: read("--grpc-tls-key", key)?,
            }),
            (None, None) => None,
            // clap's `requires` rejects these first.
            _ => bail!("--grpc-tls-cert and --grpc-tls-key go together"),
        };
        let config = GrpcConfig {
            max_streams: self.grpc_max_streams,
            tls,
        };
        Ok(Some((addr, config)))
    }
}

/// Limits on DNS over TCP. Each connection costs a task and a small buffer
/// (a few KiB while idle).
#[derive(Debug, clap::Args)]
struct TcpArgs {
    /// Open TCP connections at most. At the cap, the connection that has
    /// been quiet longest is closed to admit a new one, so a flood of idle
    /// connections cannot lock clients out (counted as `reclaimed` in
    /// meshdns_dns_tcp_connections_closed_total). Keep it well under the
    /// process's file descriptor limit.
    #[arg(long, env = "MESHDNS_TCP_MAX_CONNECTIONS", value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    tcp_max_connections: u32,

    /// Close a TCP connection when no query begins within this long.
    #[arg(long, env = "MESHDNS_TCP_IDLE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    tcp_idle_timeout: Duration,

    /// Close a TCP connection when a query (its 2-byte length prefix
    /// included) does not arrive whole within this long of its first byte,
    /// or when the client does not take our reply within this long.
    #[arg(long, env = "MESHDNS_TCP_STALL_TIMEOUT", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    tcp_stall_timeout: Duration,

    /// Close a TCP connection after answering this many queries on it;
    /// 0 for no cap.
    #[arg(long, env = "MESHDNS_TCP_MAX_QUERIES", value_name = "N", default_value_t = 0)]
    tcp_max_queries: u32,
}

impl TcpArgs {
    fn limits(&self) -> anyhow::Result<TcpLimits> {
        for (flag, d) in [
            ("--tcp-idle-timeout", self.tcp_idle_timeout),
            ("--tcp-stall-timeout", self.tcp_stall_timeout),
        ] {
            if d.is_zero() {
                bail!("{flag} must be more than 0");
            }
        }
        Ok(TcpLimits {
            max_connections: self.tcp_max_connections as usize,
            idle_timeout: self.tcp_idle_timeout,
            stall_timeout: self.tcp_stall_timeout,
            max_queries: NonZeroU32::new(self.tcp_max_queries),
        })
    }
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

/// `--zone`'s default, for `serve`, `check` and `stub-domain`.
const DEFAULT_ZONE: &str = "global";

#[derive(Debug, clap::Args)]
struct ZoneArgs {
    /// Zone served authoritatively; hosts outside every zone are ignored.
    /// Repeatable: each zone has its SOA and NS, and a name belongs to the
    /// longest zone that holds it, so a zone nested in another (`a.global`
    /// in `global`) is answered as if `global` delegated it.
    #[arg(
        long = "zone",
        value_name = "ZONE",
        env = "MESHDNS_ZONE",
        value_delimiter = ',',
        default_value = DEFAULT_ZONE
    )]
    zones: Vec<String>,

    /// Reverse zone served authoritatively with PTR for the served
    /// addresses (off by default): `240.in-addr.arpa`,
    /// `8.b.d.0.1.0.0.2.ip6.arpa`, or a CIDR prefix on label boundaries
    /// (`240.0.0.0/8`; IPv6 in multiples of 4 bits). Repeatable. Wildcard
    /// hosts and --default-address get no PTR.
    #[arg(
        long = "reverse-zone",
        value_name = "ZONE",
        env = "MESHDNS_REVERSE_ZONE",
        value_delimiter = ','
    )]
    reverse_zones: Vec<String>,

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

    /// Serve only ServiceEntries that every namespace may see: `exportTo`
    /// unset or containing "*". Istio scopes the others (".", "~", a list of
    /// namespaces) to some namespaces, but a DNS server cannot tell which
    /// namespace a query comes from, so with this flag they are served to
    /// none (skipped as `not_exported`); without it, to all.
    #[arg(long, env = "MESHDNS_EXPORTED_ONLY")]
    exported_only: bool,

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

pub fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Serve(args) => {
            runtime::init_logging(args.log.log_format, args.log.log_level.as_deref()).and_then(|()| args.run())
        }
        Command::Check(args) => args.run(),
        Command::StubDomain(args) => args.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl CheckArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let Self { files, output, zone } = self;
        // Its metrics go nowhere: check only prints.
        check::run(&files, output, zone.index(&prometheus::Registry::new())?)
    }
}

impl ZoneArgs {
    /// The index for these flags, its metrics in `registry`.
    fn index(&self, registry: &prometheus::Registry) -> anyhow::Result<Index> {
        let Self {
            zones,
            reverse_zones,
            ttl,
            negative_ttl,
            default_address,
            exported_only,
            nameserver,
            hostmaster,
        } = self;
        let zones = zones
            .iter()
            .map(|z| match name::normalize_host(z) {
                Ok(n) if !n.starts_with('*') => Ok(Arc::from(n.as_str())),
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
        let reverse_zones = reverse_zones
            .iter()
            .map(|z| index::reverse::parse_zone(z).map_err(|e| anyhow::anyhow!("--reverse-zone {z:?}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Index::new(zones, config, *default_address, registry)?
            .with_exported_only(*exported_only)
            .with_reverse_zones(&reverse_zones)
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
            udp_recv_buffer,
            udp_sched_slice,
            tcp,
            grpc,
            log: _,
        } = self;
        if udp_recv_buffer < 4096 {
            bail!("--udp-recv-buffer must be at least 4k");
        }
        let tcp = tcp.limits()?;
        let grpc = grpc.config()?;
        let workers = workers.workers();
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

        let registry = prometheus::Registry::new();
        let index = Arc::new(zone.index(&registry)?);
        let ready = Readiness::register(&registry)?;
        admin::register_process_metrics(&registry)?;
        let dns_metrics = DnsMetrics::register(&registry)?;
        let file_errors = prometheus::IntCounter::new(
            "meshdns_file_reload_errors_total",
            "--file reloads that failed (the file's last good state is kept)",
        )?;
        registry.register(Box::new(file_errors.clone()))?;

        // UDP readers are plain threads (see `dns::udp`); TCP, the admin
        // endpoint and the watch share one current-thread runtime.
        let tokio_runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Listening before the files load: a SIGTERM during a long load
        // then shuts down cleanly after it, instead of killing the process.
        let mut signals = {
            let _entered = tokio_runtime.enter();
            Signals::new()?
        };
        let _files = match files.is_empty() {
            true => None,
            false => Some(FileSource::start(files, index.clone(), file_errors)?),
        };

        tokio_runtime.block_on(async move {
            let kube = match kube_options {
                Some(opts) => Some((kube::client(&opts).await?, opts)),
                None => None,
            };
            let dns = DnsServer::bind(
                dns_addr,
                Handler::new(index.clone(), ready.clone(), dns_metrics),
                dns::Config {
                    workers,
                    udp_recv_buffer,
                    udp_sched_slice,
                    tcp,
                },
            )?;
            let grpc = grpc
                .map(|(addr, config)| GrpcServer::bind(addr, dns.handler(), config))
                .transpose()?;
            let admin_listener = admin::bind(admin_addr).await?;
            let grpc_addr = grpc.as_ref().map(|g| g.local_addr().to_string());
            info!(dns = %dns.local_addr(), admin = %admin_listener.local_addr()?, grpc = grpc_addr, %workers, "serving");
            let admin_state = AdminState {
                ready: ready.clone(),
                registry: registry.clone(),
                index: debug_endpoints.then(|| index.clone()),
            };

            let dns = dns.run();
            let grpc = async {
                match grpc {
                    Some(grpc) => grpc.run().await,
                    None => std::future::pending().await,
                }
            };
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
            let serving = async {
                tokio::select! {
                    r = dns => r,
                    r = grpc => r,
                    r = admin => r,
                }
            };
            // Drain: load balancers see /readyz fail and stop sending; what
            // still arrives is answered until the grace period ends.
            runtime::run_until_signal(&mut signals, shutdown_grace, serving, watch, || ready.set_draining()).await
        })?;
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn grpc_is_off_by_default_and_tls_needs_both_files() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["meshdns", "serve"], args].concat());
        let Ok(Cli {
            command: Command::Serve(args),
        }) = parse(&[])
        else {
            panic!("not serve");
        };
        assert!(args.grpc.config().unwrap().is_none());
        assert_eq!(
            args.grpc.grpc_max_streams,
            crate::dns::grpc::GrpcConfig::default().max_streams
        );
        let Ok(Cli {
            command: Command::Serve(args),
        }) = parse(&["--grpc-addr=127.0.0.1:8053"])
        else {
            panic!("not serve");
        };
        let (addr, config) = args.grpc.config().unwrap().unwrap();
        assert_eq!(addr, "127.0.0.1:8053".parse().unwrap());
        assert!(config.tls.is_none());
        for args in [
            &["--grpc-addr=127.0.0.1:8053", "--grpc-tls-cert=c.pem"][..],
            &["--grpc-addr=127.0.0.1:8053", "--grpc-tls-key=k.pem"],
            &["--grpc-tls-cert=c.pem", "--grpc-tls-key=k.pem"],
            &["--grpc-addr=127.0.0.1:8053", "--grpc-max-streams=0"],
        ] {
            let error = parse(args).unwrap_err().to_string();
            assert!(error.contains("--grpc-"), "{args:?}: {error}");
        }
        let Ok(Cli {
            command: Command::Serve(args),
        }) = parse(&[
            "--grpc-addr=127.0.0.1:8053",
            "--grpc-tls-cert=/nonexistent/c.pem",
            "--grpc-tls-key=/nonexistent/k.pem",
        ])
        else {
            panic!("not serve");
        };
        let error = format!("{:#}", args.grpc.config().unwrap_err());
        assert!(error.contains("--grpc-tls-cert /nonexistent/c.pem"), "{error}");
    }

    #[test]
    fn workers_is_auto_by_default_or_a_number_of_sockets() {
        let workers = |args: &[&str]| match Cli::try_parse_from([&["meshdns", "serve"], args].concat()) {
            Ok(Cli {
                command: Command::Serve(a),
            }) => Ok(a.workers),
            Ok(_) => panic!("not serve"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(workers(&[]), Ok(WorkersArg::Auto));
        assert_eq!(workers(&["--workers=auto"]), Ok(WorkersArg::Auto));
        assert_eq!(workers(&["--workers", "AUTO"]), Ok(WorkersArg::Auto));
        assert_eq!(workers(&["--workers=1"]), Ok(WorkersArg::Sockets(1)));
        assert_eq!(workers(&["--workers=256"]), Ok(WorkersArg::Sockets(256)));
        for bad in ["0", "257", "-1", "two", "", "1.5"] {
            let error = workers(&[&format!("--workers={bad}")]).unwrap_err();
            assert!(
                error.contains("expected `auto` or a number of sockets"),
                "{bad}: {error}"
            );
        }
        assert_eq!(WorkersArg::Sockets(3).workers(), dns::Workers::Sockets(3));
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(WorkersArg::Auto.workers(), dns::Workers::Auto { standby: cores - 1 });
    }

    #[test]
    fn sched_slice_is_zero_or_what_the_kernel_takes() {
        assert_eq!(parse_slice("auto"), Ok(SliceMode::Auto(Duration::from_micros(100))));
        assert_eq!(parse_slice("0"), Ok(SliceMode::Kernel));
        assert_eq!(parse_slice("100us"), Ok(SliceMode::Always(Duration::from_micros(100))));
        assert_eq!(parse_slice("3ms"), Ok(SliceMode::Always(Duration::from_millis(3))));
        assert_eq!(parse_slice("100ms"), Ok(SliceMode::Always(Duration::from_millis(100))));
        for bad in ["50us", "101ms", "1s", "fast", "Auto"] {
            assert!(parse_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serve_defaults_match_the_library_defaults() {
        let Cli {
            command: Command::Serve(args),
        } = Cli::parse_from(["meshdns", "serve"])
        else {
            panic!("not serve");
        };
        assert_eq!(args.udp_recv_buffer, crate::dns::DEFAULT_UDP_RECV_BUFFER);
        assert_eq!(
            args.udp_sched_slice,
            dns::Config::new(dns::Workers::Sockets(1)).udp_sched_slice
        );
        let (flags, lib) = (args.tcp.limits().unwrap(), TcpLimits::default());
        assert_eq!(
            (
                flags.max_connections,
                flags.idle_timeout,
                flags.stall_timeout,
                flags.max_queries
            ),
            (
                lib.max_connections,
                lib.idle_timeout,
                lib.stall_timeout,
                lib.max_queries
            )
        );
    }
}
