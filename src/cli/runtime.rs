//! What `serve` needs from the process around it: log set-up, signals,
//! the two-phase shutdown, and the `--shutdown-grace` duration parser.
//! Nothing here knows about DNS or the index.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use tracing::info;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber on stderr. `level` is a filter such as
/// `info` or `meshdns=debug`; `None` falls back to RUST_LOG, then `info`.
pub fn init_logging(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let mut directives = match level {
        Some(level) => level.to_owned(),
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
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// SIGTERM and SIGINT, listened to from start-up so none is missed. SIGHUP,
/// which would kill the process by default, is logged and ignored: there is
/// nothing to reload by hand. Must be made inside a tokio runtime.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        Ok(Self { term, int, hup })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn next(&mut self) -> &'static str {
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

/// Runs until a failure or a signal, then drains in two phases.
///
/// `serving` (the listeners) and `watch` (the sources) only end on failure,
/// which ends the run with that result. At the first SIGTERM/SIGINT the
/// watch stops, `draining` runs (readiness turns false, so load balancers
/// move traffic away) and `serving` keeps answering for `grace`. The run
/// then ends with `Ok`; a second signal during the grace period ends it at
/// once, also with `Ok`: the operator asked twice, and exit status 0 keeps
/// a supervisor from reporting a crash.
pub async fn run_until_signal(
    signals: &mut Signals,
    grace: Duration,
    serving: impl Future<Output = anyhow::Result<()>>,
    watch: impl Future<Output = anyhow::Result<()>>,
    draining: impl FnOnce(),
) -> anyhow::Result<()> {
    tokio::pin!(serving, watch);
    let signal = tokio::select! {
        r = &mut serving => return r,
        r = &mut watch => return r,
        signal = signals.next() => signal,
    };
    draining();
    info!(
        signal,
        ?grace,
        "shutting down: not ready, still answering until the grace period ends"
    );
    tokio::select! {
        r = &mut serving => return r,
        _ = tokio::time::sleep(grace) => info!("grace period over; exiting"),
        signal = signals.next() => info!(signal, "second signal; exiting now"),
    }
    Ok(())
}

/// `5s`, `500ms`, `1m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "us" | "µs" => n / 1_000_000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be us, ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// A size in bytes: `262144`, `256k`/`256KiB`, `4M`/`4MiB` (binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 262144, 256k or 4M"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        _ => return Err(format!("{s:?}: unit must be k or M")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("262144"), Ok(262144));
        assert_eq!(parse_size("256k"), Ok(256 << 10));
        assert_eq!(parse_size("208KiB"), Ok(208 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert!(parse_size("4G").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("100µs"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
