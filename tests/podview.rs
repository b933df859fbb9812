//! A pod's view: the README promises that meshdns answers `.global` names "so
//! that pods can resolve them". This test resolves them the way a pod does,
//! through the C library's resolver, not `dig`.
//!
//! It makes a network, mount and PID namespace with `unshare` and gives it what
//! a pod in namespace `default` has: a `resolv.conf` with the cluster search
//! path, `ndots:5` and a nameserver on port 53. There dnsmasq runs as kube-dns
//! does, with meshdns (the release binary) as the stub for `global` and the
//! cluster zone answering NXDOMAIN, so `httpbin.bar.global` is first tried as
//! `httpbin.bar.global.default.svc.cluster.local` and so on, as in a pod. Names
//! are resolved with glibc (`getent ahosts`, and `getaddrinfo` for its exact
//! error code) and with musl, Alpine's libc (`getaddrinfo` in a few lines of C,
//! `tests/podview/gai.c`, built with `musl-gcc -static`).
//!
//! musl's `getaddrinfo` fails outright when either the A or the AAAA query
//! gets NXDOMAIN: a server that answers NXDOMAIN for the missing address family
//! breaks Alpine pods. The IPv4-only and IPv6-only names resolving under musl
//! guard against that. A missing name must fail with "not found" in both
//! libraries, quickly, not after a timeout.
//!
//! [`pod_view_srv`] asks for SRV records as an application can, with
//! `res_search` (`tests/podview/srv.c`, glibc and musl). It needs meshdns to
//! serve SRV (branch `srv`); until that is merged, it fails.
//!
//! The test touches only the namespaces it creates: the bind mounts over
//! `/etc` live in the private mount namespace, and every process it starts
//! lives in the PID namespace, which the kernel empties when the test's
//! process there (its PID 1) exits, also on failure.
//! Run: `cargo test --release --test podview -- --include-ignored --nocapture`.

#[path = "e2e/common.rs"]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::rr::RecordType;

/// Set in the test binary re-executed inside the namespaces: the directory
/// holding the pod's files and the built C programs.
const INSIDE_ENV: &str = "MESHDNS_PODVIEW_DIR";

/// The pod's resolv.conf, as the kubelet writes it for `dnsPolicy:
/// ClusterFirst` in namespace `default` (the nameserver is kube-dns).
const RESOLV_CONF: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                           nameserver 127.0.0.1\n\
                           options ndots:5\n";

/// Under the musl resolver's first retry (timeout 5 s / 2 attempts = 2.5 s)
/// and glibc's timeout (5 s): a lookup that takes longer waited for a reply
/// that never came.
const LOOKUP_LIMIT: Duration = Duration::from_millis(2400);

/// EAI_NONAME, the same value in glibc and musl.
const EAI_NONAME: i32 = -2;

#[test]
#[ignore = "needs unshare, ip, mount, dnsmasq, getent, cc, musl-gcc"]
fn pod_view() {
    in_a_pod("pod_view", addresses);
}

#[test]
#[ignore = "needs SRV answers from meshdns (branch srv), and unshare, ip, mount, dnsmasq, getent, cc, musl-gcc"]
fn pod_view_srv() {
    in_a_pod("pod_view_srv", srv);
}

/// Both halves of the test: outside the namespaces `test` builds the pod and
/// re-runs itself inside them, where `lookups` runs.
fn in_a_pod(test: &str, lookups: fn(&mut Pod)) {
    match std::env::var_os(INSIDE_ENV) {
        Some(dir) => Pod::start(Path::new(&dir)).run(lookups),
        None => make_the_pod(test),
    }
}

// ---------------------------------------------------------------------------
// Outside: build the programs, then re-run the test inside the namespaces.

fn make_the_pod(test: &str) {
    let unshare = require_tool("unshare");
    for tool in ["ip", "mount", "dnsmasq", "getent"] {
        require_tool(tool);
    }
    let (cc, musl_gcc) = (require_tool("cc"), require_tool("musl-gcc"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    fs::write(d.join("resolv.conf"), RESOLV_CONF).unwrap();
    // Only localhost, so no answer comes from the host's own entries.
    fs::write(d.join("hosts"), "127.0.0.1 localhost\n::1 localhost\n").unwrap();
    // Files, then DNS; no nss module (resolve, mdns, myhostname) that a host
    // may list and that would answer instead of resolv.conf's nameserver.
    fs::write(d.join("nsswitch.conf"), "hosts: files dns\n").unwrap();

    let src = |f: &str| repo_path(&format!("tests/podview/{f}"));
    compile(&musl_gcc, &["-static"], &src("gai.c"), &d.join("gai-musl"));
    compile(&cc, &[], &src("gai.c"), &d.join("gai-glibc"));
    compile(&musl_gcc, &["-static"], &src("srv.c"), &d.join("srv-musl"));
    compile(&cc, &["-lresolv"], &src("srv.c"), &d.join("srv-glibc"));
    // The musl builds must not have picked up glibc.
    for exe in ["gai-musl", "srv-musl"] {
        let bytes = fs::read(d.join(exe)).unwrap();
        let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
        assert!(
            !has(b"GLIBC_") && !has(b"ld-linux"),
            "{exe} is not a static musl binary"
        );
    }

    let me = std::env::current_exe().unwrap();
    let mut cmd = Command::new(unshare);
    // --fork --pid: the test binary is PID 1 of a new PID namespace, so
    // meshdns and dnsmasq die with it; --kill-child: and it dies with unshare,
    // which run_bounded kills if this test dies.
    cmd.args(["--net", "--mount", "--propagation", "private"])
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "--"])
        .arg(&me)
        .args(["--exact", test, "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, d);
    let out = run_bounded(cmd, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("---- inside the namespaces ----\n{stdout}{stderr}---- end ----");
    assert!(
        out.status.success(),
        "the pod's view failed ({}), see above",
        out.status
    );
    // A filter that matched nothing would also exit 0.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the test did not run inside the namespaces"
    );

    let left = processes_mentioning(d);
    assert!(left.is_empty(), "processes left running: {left:?}");
}

fn compile(compiler: &Path, extra: &[&str], src: &Path, out: &Path) {
    let mut cmd = Command::new(compiler);
    cmd.args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out)
        .arg(src)
        .args(extra);
    let o = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "{} {}: {}",
        compiler.display(),
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Command lines (from /proc) that mention `dir`: what would be a leftover
/// meshdns or dnsmasq of this test.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let is_pid = entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit());
        if !is_pid || entry.file_name() == std::process::id().to_string().as_str() {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

// ---------------------------------------------------------------------------
// Inside: the pod.

/// The pod: its files and programs in `dir`, meshdns, dnsmasq as kube-dns,
/// and what the lookups found.
struct Pod {
    dir: PathBuf,
    meshdns: Meshdns,
    dnsmasq: Proc,
    report: String,
    failures: Vec<String>,
}

impl Pod {
    fn start(dir: &Path) -> Pod {
        // Bind mounts over /etc are only harmless in unshare's mount
        // namespace, where this binary runs as PID 1.
        assert_eq!(std::process::id(), 1, "{INSIDE_ENV} set outside the test's namespaces");
        run(&["ip", "link", "set", "lo", "up"]);
        for f in ["resolv.conf", "hosts", "nsswitch.conf"] {
            let src = dir.join(f);
            run(&["mount", "--bind", &src.to_string_lossy(), &format!("/etc/{f}")]);
        }
        assert_eq!(fs::read_to_string("/etc/resolv.conf").unwrap(), RESOLV_CONF);
        let meshdns = Meshdns::serve(&[&repo_path("tests/podview/serviceentries.yaml")], &[]);
        let dnsmasq = kube_dns(dir, meshdns.dns.port());
        Pod {
            dir: dir.to_path_buf(),
            meshdns,
            dnsmasq,
            report: String::new(),
            failures: Vec::new(),
        }
    }

    fn run(mut self, lookups: fn(&mut Pod)) {
        lookups(&mut self);
        println!("{}", self.report);
        self.dnsmasq.assert_alive();
        assert!(
            self.failures.is_empty(),
            // dnsmasq's and meshdns's logs follow, printed as their Procs drop.
            "{} failure(s):\n{}\n\nall lookups:\n{}",
            self.failures.len(),
            self.failures.join("\n"),
            self.report
        );
    }

    /// One of the C programs built outside.
    fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `lookup`, records what it got and how long it took; a failure
    /// if `ok` says no or it took longer than LOOKUP_LIMIT.
    fn lookup(
        &mut self,
        what: String,
        lookup: impl FnOnce() -> Result<Vec<String>, String>,
        ok: impl FnOnce(&Result<Vec<String>, String>) -> bool,
    ) {
        let start = Instant::now();
        let got = lookup();
        let took = start.elapsed();
        let _ = writeln!(self.report, "{what:<60} {took:>9.1?}  {got:?}");
        if !ok(&got) || took > LOOKUP_LIMIT {
            self.failures.push(format!("{what}: got {got:?} in {took:?}"));
        }
    }
}

/// What a lookup must give.
#[derive(Clone, Copy)]
enum Want {
    /// These addresses, in any order.
    Addrs(&'static [&'static str]),
    /// "Not found": EAI_NONAME from getaddrinfo, exit 2 from getent.
    NotFound,
}

const CASES: &[(&str, &str, Want)] = &[
    ("IPv4 only", "httpbin.bar.global", Want::Addrs(&["240.0.0.2"])),
    ("IPv6 only", "ratings.bar.global", Want::Addrs(&["2001:db8::7"])),
    (
        "dual stack",
        "reviews.baz.global",
        Want::Addrs(&["240.0.0.4", "2001:db8::4"]),
    ),
    ("wildcard", "x.wild.global", Want::Addrs(&["240.0.0.3"])),
    ("missing", "nope.bar.global", Want::NotFound),
];

/// getaddrinfo (glibc: `getent ahosts` and gai.c; musl: gai.c) on CASES.
fn addresses(pod: &mut Pod) {
    let getent = require_tool("getent");
    for &(label, name, want) in CASES {
        // (resolver, C program; None: getent)
        let resolvers = [
            ("glibc getent ahosts", None),
            ("glibc getaddrinfo", Some("gai-glibc")),
            ("musl getaddrinfo", Some("gai-musl")),
        ];
        for (resolver, program) in resolvers {
            let exe = program.map(|p| pod.program(p));
            let lookup = || match &exe {
                None => getent_ahosts(&getent, name),
                Some(exe) => lines_or_err(exe, name),
            };
            let ok = |got: &Result<Vec<String>, String>| match (want, got) {
                (Want::Addrs(want), Ok(addrs)) => {
                    let mut want = want.to_vec();
                    want.sort_unstable();
                    *addrs == want
                }
                (Want::NotFound, Err(e)) if program.is_none() => e.starts_with("exit 2"),
                (Want::NotFound, Err(e)) => e.starts_with(&format!("getaddrinfo: {EAI_NONAME} ")),
                _ => false,
            };
            pod.lookup(format!("{label}: {resolver} {name}"), lookup, ok);
        }
    }

    // The search path was walked as in a pod: the cluster zone said NXDOMAIN,
    // then the name went to meshdns as is, whose AAAA answer was NODATA.
    let log = pod.dnsmasq.log();
    for line in [
        "query[AAAA] httpbin.bar.global.default.svc.cluster.local from 127.0.0.1".to_string(),
        "config httpbin.bar.global.cluster.local is NXDOMAIN".to_string(),
        format!("forwarded httpbin.bar.global to 127.0.0.1#{}", pod.meshdns.dns.port()),
        "reply httpbin.bar.global is NODATA-IPv6".to_string(),
    ] {
        if !log.contains(&line) {
            pod.failures.push(format!("dnsmasq log lacks {line:?}"));
        }
    }
}

/// The SRV records as srv.c prints them, or its error line.
type SrvWant = Result<&'static [&'static str], &'static str>;

/// SRV through res_search. glibc walks the search path first (the port
/// name has 4 dots, under ndots:5), musl asks for the name as given.
const SRV_CASES: &[(&str, &str, SrvWant)] = &[
    (
        "port",
        "_http._tcp.httpbin.bar.global",
        Ok(&["0 100 8000 httpbin.bar.global"]),
    ),
    (
        "bare host",
        "reviews.baz.global",
        Ok(&["0 100 9080 reviews.baz.global"]),
    ),
    ("missing", "nope.bar.global", Err("res_search: HOST_NOT_FOUND")),
];

fn srv(pod: &mut Pod) {
    for &(label, name, want) in SRV_CASES {
        for libc in ["glibc", "musl"] {
            let exe = pod.program(&format!("srv-{libc}"));
            let ok = |got: &Result<Vec<String>, String>| match (want, got) {
                (Ok(want), Ok(got)) => got == want,
                (Err(want), Err(got)) => got == want,
                _ => false,
            };
            pod.lookup(
                format!("SRV {label}: {libc} res_search {name}"),
                || lines_or_err(&exe, name),
                ok,
            );
        }
    }
}

/// dnsmasq on 127.0.0.1:53 as kube-dns runs it: `global` forwarded to
/// meshdns (what kube-dns renders for stubDomains {"global": [meshdns]}), the
/// cluster zone answered locally, where kubedns would say NXDOMAIN for
/// services that do not exist. kube-dns also caches (`--cache-size=1000
/// --no-negcache`); the cache is off here so every lookup reaches meshdns.
fn kube_dns(dir: &Path, meshdns_port: u16) -> Proc {
    let mut cmd = Command::new(require_tool("dnsmasq"));
    cmd.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--port=53",
        "--bind-interfaces",
        "--cache-size=0",
        "--local=/cluster.local/",
        "--log-queries",
        "--log-facility=-",
        "--user=root",
        "--group=root",
    ])
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
    .arg(format!("--server=/global/127.0.0.1#{meshdns_port}"));
    let mut p = Proc::spawn("dnsmasq", cmd, &dir.join("dnsmasq.log"));
    let server = loopback(53);
    let took = p.wait_ready("DNS on 127.0.0.1:53", || {
        query_udp_once(server, "httpbin.bar.global.", RecordType::A).is_ok()
    });
    println!("dnsmasq ready on {server} in {took:?}");
    p
}

/// Runs a setup command inside the namespaces; it must succeed.
fn run(args: &[&str]) {
    let mut cmd = Command::new(require_tool(args[0]));
    cmd.args(&args[1..]);
    let out = run_bounded(cmd, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `getent ahosts NAME`: the distinct addresses, sorted, or "exit N: stderr".
fn getent_ahosts(getent: &Path, name: &str) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(getent);
    cmd.args(["ahosts", name]);
    // One line per address and socket type: "240.0.0.2  STREAM name".
    let mut addrs = output_lines(cmd)?
        .iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect::<Vec<_>>();
    addrs.sort_unstable();
    addrs.dedup();
    Ok(addrs)
}

/// One of the C programs: its output lines, sorted, or its error line.
fn lines_or_err(exe: &Path, name: &str) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(exe);
    cmd.arg(name);
    let mut lines = output_lines(cmd).map_err(|e| e.split_once(": ").map_or(e.clone(), |x| x.1.to_string()))?;
    lines.sort_unstable();
    Ok(lines)
}

/// Stdout's lines on exit 0, else "exit N: <stderr>".
fn output_lines(cmd: Command) -> Result<Vec<String>, String> {
    let out = run_bounded(cmd, Duration::from_secs(20));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        let code = out.status.code().map_or("signal".to_string(), |c| c.to_string());
        Err(format!("exit {code}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
