//! Support shared by the tests that run the release binary (`e2e`, `ops`,
//! `kube`, `soak`, `load_smoke`): outside tools, child processes that die
//! with the test, the one `meshdns serve` launcher ([`Meshdns`]), free
//! loopback ports, raw DNS queries, and parsers for `dig`/`kdig` output.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub const MESHDNS: &str = env!("CARGO_BIN_EXE_meshdns");

/// Upper bound for any child process to become ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn example_file() -> PathBuf {
    repo_path("deploy/examples/serviceentries.yaml")
}

// ---------------------------------------------------------------------------
// Tools

/// Finds an executable on PATH, falling back to the sbin directories that a
/// non-root PATH often lacks (dnsmasq, unbound and knotd live there).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tool's path; a missing tool fails the test. Tests that need one are
/// `#[ignore = "needs <tool>"]`, so a plain `cargo test` lists them as
/// ignored, and `-- --include-ignored` runs them and must find the tool.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!("{name} not installed (run scripts/install-test-deps.sh); this test needs it under --include-ignored")
    })
}

// ---------------------------------------------------------------------------
// Ports

/// A port that is free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 after 50 tries");
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------
// Child processes

/// A child process that is killed when dropped, also when the test panics.
/// stdout and stderr go to a log file that is printed if the test fails.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit; its status, or `None`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends a signal (`TERM`, `INT`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// The log so far, without ANSI colour codes.
    pub fn log(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Panics with the process log if it has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited unexpectedly ({status}); log:\n{}", self.name, self.log());
        }
    }

    /// Polls `ready` every 50 ms until it returns true, the process exits, or
    /// STARTUP_TIMEOUT passes (then panics with the log).
    pub fn wait_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while start.elapsed() < STARTUP_TIMEOUT {
            self.assert_alive();
            if ready() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} not ready ({what}) after {STARTUP_TIMEOUT:?}; log:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ({}) ----", self.name, self.log.display());
            eprintln!("{}", tail(&self.log(), 60));
            eprintln!("---- end of {} log ----", self.name);
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Also kill the child if the test process dies without running destructors
/// (e.g. SIGKILL from a CI timeout).
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe extern "C" {
        fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
    const SIGKILL: std::ffi::c_ulong = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

// ---------------------------------------------------------------------------
// meshdns

pub struct Meshdns {
    pub proc: Proc,
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    /// Holds the log; dropped after `proc`, which kills the process.
    _dir: tempfile::TempDir,
}

impl Meshdns {
    /// Starts `meshdns serve ARGS` on free loopback ports (in working
    /// directory `cwd`, for relative paths), without waiting for it.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(cwd: Option<&Path>, args: &[S]) -> Meshdns {
        let dir = tempfile::tempdir().unwrap();
        let (dns, admin) = (loopback(free_port()), loopback(free_port()));
        let mut cmd = Command::new(MESHDNS);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.arg("serve");
        cmd.arg("--dns-addr").arg(dns.to_string());
        cmd.arg("--admin-addr").arg(admin.to_string());
        cmd.args(args);
        let log = dir.path().join("meshdns.log");
        Meshdns {
            proc: Proc::spawn("meshdns", cmd, &log),
            dns,
            admin,
            _dir: dir,
        }
    }

    /// The process's resident memory, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// Whether /readyz says 200.
    pub fn ready(&self) -> bool {
        http_get(self.admin, "/readyz").is_ok_and(|(code, _)| code == 200)
    }

    /// Waits until /readyz says 200; returns how long that took. Fails the
    /// test, with the log, if the process exits or `limit` passes first.
    pub fn wait_ready(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            self.proc.assert_alive();
            if self.ready() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("meshdns not ready after {limit:?}; log:\n{}", self.proc.log());
    }

    /// Starts `meshdns serve` on free loopback ports and waits for /readyz.
    pub fn serve(files: &[&Path], extra: &[&str]) -> Meshdns {
        Self::serve_in(None, files, extra)
    }

    /// [`Meshdns::serve`] in working directory `cwd`, for relative paths.
    pub fn serve_in(cwd: Option<&Path>, files: &[&Path], extra: &[&str]) -> Meshdns {
        let mut args: Vec<&std::ffi::OsStr> = Vec::new();
        for f in files {
            args.extend([std::ffi::OsStr::new("--file"), f.as_os_str()]);
        }
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        // A port can be taken between free_port() and the child's bind when
        // tests run in parallel: retry only on "address in use".
        for attempt in 1..=3 {
            let mut m = Self::spawn(cwd, &args);
            let start = Instant::now();
            while start.elapsed() < STARTUP_TIMEOUT && m.proc.alive() {
                if m.ready() {
                    println!("meshdns ready on {} in {:?}", m.dns, start.elapsed());
                    return m;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let text = m.proc.log();
            if !m.proc.alive() && text.to_lowercase().contains("in use") && attempt < 3 {
                continue;
            }
            panic!(
                "meshdns not ready within {STARTUP_TIMEOUT:?} (alive: {}); log:\n{text}",
                m.proc.alive()
            );
        }
        unreachable!()
    }
}

/// Runs a short-lived command to completion, killing it after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes in threads so a chatty child cannot block on them.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `meshdns check ARGS` and returns (exit code, stdout, stderr).
pub fn meshdns_check(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(MESHDNS);
    cmd.arg("check").args(args);
    let out = run_bounded(cmd, Duration::from_secs(30));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Minimal HTTP/1.0 GET returning (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: a server that answers after the first read must see it all.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.take(1 << 20).read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad HTTP response: {resp:?}")))?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((code, body.to_string()))
}

// ---------------------------------------------------------------------------
// Raw DNS with hickory-proto

fn build_query(name: &str, rtype: RecordType) -> Message {
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(name, rtype));
    msg
}

fn check_reply(q: &Message, reply: Message) -> io::Result<Message> {
    if reply.metadata.id != q.metadata.id {
        return Err(io::Error::other("reply id mismatch"));
    }
    Ok(reply)
}

/// One UDP query, no EDNS, RD=0; retried up to 3 times (1 s each).
pub fn query_udp(server: SocketAddr, name: &str, rtype: RecordType) -> io::Result<Message> {
    let q = build_query(name, rtype);
    let wire = q.to_vec().map_err(io::Error::other)?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    sock.connect(server)?;
    let mut buf = vec![0u8; 65535];
    let mut last = io::Error::other("no attempt");
    for _ in 0..3 {
        sock.send(&wire)?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let reply = Message::from_vec(&buf[..n]).map_err(io::Error::other)?;
                return check_reply(&q, reply);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Like `query_udp` but a single try with a short timeout, for tight polling.
pub fn query_udp_once(server: SocketAddr, name: &str, rtype: RecordType) -> io::Result<Message> {
    let q = build_query(name, rtype);
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    sock.connect(server)?;
    sock.send(&q.to_vec().map_err(io::Error::other)?)?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf)?;
    check_reply(&q, Message::from_vec(&buf[..n]).map_err(io::Error::other)?)
}

pub fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> io::Result<Message> {
    let (q, buf) = exchange_tcp(server, name, rtype)?;
    check_reply(&q, Message::from_vec(&buf).map_err(io::Error::other)?)
}

/// The length on the wire of the reply to one query (UDP, or TCP without
/// its length prefix), for comparing answer sizes between servers.
pub fn reply_len(server: SocketAddr, name: &str, rtype: RecordType, tcp: bool) -> io::Result<usize> {
    if tcp {
        return Ok(exchange_tcp(server, name, rtype)?.1.len());
    }
    let q = build_query(name, rtype);
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    sock.connect(server)?;
    sock.send(&q.to_vec().map_err(io::Error::other)?)?;
    let mut buf = vec![0u8; 65535];
    sock.recv(&mut buf)
}

fn exchange_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> io::Result<(Message, Vec<u8>)> {
    let q = build_query(name, rtype);
    let wire = q.to_vec().map_err(io::Error::other)?;
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&server, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    s.write_all(&framed)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok((q, buf))
}

// ---------------------------------------------------------------------------
// A reply in one comparable shape, whichever client produced it.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    /// Owner name exactly as on the wire (case preserved), absolute.
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub rdata: String,
}

impl std::fmt::Display for Rr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} IN {} {}", self.name, self.ttl, self.rtype, self.rdata)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// dig-style status: NOERROR, NXDOMAIN, REFUSED, ...
    pub rcode: String,
    /// Header flags, lower case: qr, aa, tc, rd, ra, ad, cd.
    pub flags: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
}

impl Reply {
    pub fn aa(&self) -> bool {
        self.flags.iter().any(|f| f == "aa")
    }

    /// rdata of answer records of the given type.
    pub fn answers(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.rdata.clone())
            .collect()
    }

    pub fn has_soa_authority(&self) -> bool {
        self.authority.iter().any(|r| r.rtype == "SOA")
    }

    /// Multi-line dump for assertion messages.
    pub fn dump(&self) -> String {
        let mut s = format!("status {} flags [{}]\n", self.rcode, self.flags.join(" "));
        for r in &self.answer {
            let _ = writeln!(s, "  ANSWER    {r}");
        }
        for r in &self.authority {
            let _ = writeln!(s, "  AUTHORITY {r}");
        }
        s
    }
}

pub fn rcode_str(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

/// Converts a record; with `mask_serial` the SOA serial becomes `<serial>`.
pub fn rr_from(r: &Record, mask_serial: bool) -> Rr {
    let rdata = match &r.data {
        RData::SOA(soa) if mask_serial => format!(
            "{} {} <serial> {} {} {} {}",
            soa.mname.to_ascii(),
            soa.rname.to_ascii(),
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        other => other.to_string(),
    };
    Rr {
        name: r.name.to_ascii(),
        ttl: r.ttl,
        rtype: r.record_type().to_string(),
        rdata,
    }
}

impl Reply {
    pub fn from_message(m: &Message, mask_serial: bool) -> Reply {
        let md = &m.metadata;
        let flags = [
            (true, "qr"),
            (md.authoritative, "aa"),
            (md.truncation, "tc"),
            (md.recursion_desired, "rd"),
            (md.recursion_available, "ra"),
            (md.authentic_data, "ad"),
            (md.checking_disabled, "cd"),
        ];
        Reply {
            rcode: rcode_str(md.response_code),
            flags: flags.iter().filter(|(on, _)| *on).map(|(_, f)| f.to_string()).collect(),
            answer: m.answers.iter().map(|r| rr_from(r, mask_serial)).collect(),
            authority: m.authorities.iter().map(|r| rr_from(r, mask_serial)).collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// dig / kdig

/// Runs `dig @server -p port +noall +comments +answer +authority ARGS` and
/// parses the reply. Panics (with dig's output) if dig got no answer.
pub fn dig(dig: &Path, server: SocketAddr, args: &[&str]) -> Reply {
    let mut cmd = Command::new(dig);
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+noall", "+comments", "+answer", "+authority"])
        .args(["+time=2", "+tries=2"])
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(15));
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_dig(&stdout).unwrap_or_else(|e| {
        panic!(
            "dig {args:?} against {server}: {e} ({})\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Parses dig's `+comments +answer +authority` presentation output.
pub fn parse_dig(text: &str) -> Result<Reply, String> {
    let mut reply = Reply::default();
    let mut section = "";
    let mut got_header = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            // opcode: QUERY, status: NOERROR, id: 123
            let status = rest
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("status:"))
                .ok_or("no status in header line")?;
            reply.rcode = status.trim().to_string();
            got_header = true;
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            // "qr aa rd; QUERY: 1, ..." (EDNS flags are on a different line)
            let flags = rest.split(';').next().unwrap_or("");
            reply.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = if line.contains("ANSWER") {
                "answer"
            } else if line.contains("AUTHORITY") {
                "authority"
            } else {
                ""
            };
        } else if line.is_empty() {
            section = "";
        } else if !line.starts_with(';') && !section.is_empty() {
            let rr = parse_rr_line(line)?;
            match section {
                "answer" => reply.answer.push(rr),
                _ => reply.authority.push(rr),
            }
        }
    }
    if !got_header {
        return Err("no reply header (timeout or connection error?)".into());
    }
    Ok(reply)
}

/// `name ttl class type rdata...` with arbitrary whitespace.
fn parse_rr_line(line: &str) -> Result<Rr, String> {
    let mut it = line.split_whitespace();
    let mut next = |what: &str| it.next().ok_or(format!("no {what} in {line:?}"));
    let name = next("name")?.to_string();
    let ttl = next("ttl")?.parse().map_err(|e| format!("ttl in {line:?}: {e}"))?;
    let _class = next("class")?;
    let rtype = next("type")?.to_string();
    let rdata = it.collect::<Vec<_>>().join(" ");
    Ok(Rr {
        name,
        ttl,
        rtype,
        rdata,
    })
}

/// Runs `kdig @server -p port +json ARGS` and parses the RFC 8427 output.
pub fn kdig(kdig: &Path, server: SocketAddr, args: &[&str]) -> Reply {
    let mut cmd = Command::new(kdig);
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+json", "+timeout=2", "+retry=1"])
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(15));
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_kdig_json(&stdout).unwrap_or_else(|e| {
        panic!(
            "kdig {args:?} against {server}: {e} ({})\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Parses kdig's `+json` (RFC 8427) output.
pub fn parse_kdig_json(text: &str) -> Result<Reply, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let num = |k: &str| v.get(k).and_then(Value::as_u64);
    let rcode = num("RCODE").ok_or("no RCODE")?;
    let rcode = rcode_str(<ResponseCode as From<u16>>::from(rcode as u16));
    let flags = ["QR", "AA", "TC", "RD", "RA", "AD", "CD"]
        .iter()
        .filter(|f| num(f) == Some(1))
        .map(|f| f.to_lowercase())
        .collect();
    let rrs = |key: &str| -> Result<Vec<Rr>, String> {
        let Some(list) = v.get(key).and_then(Value::as_array) else {
            return Ok(Vec::new());
        };
        list.iter()
            .map(|rr| {
                let s = |k: &str| rr.get(k).and_then(Value::as_str).map(str::to_string);
                // Type-specific presentation field, e.g. "rdataA", "rdataSOA".
                let rdata = rr
                    .as_object()
                    .and_then(|m| {
                        m.iter().find_map(|(k, val)| {
                            (k.starts_with("rdata") && k != "rdataHEX").then(|| val.as_str().map(str::to_string))?
                        })
                    })
                    .or_else(|| s("RDATAHEX"))
                    .ok_or(format!("no rdata in {rr:?}"))?;
                Ok(Rr {
                    name: s("NAME").ok_or("no NAME")?,
                    ttl: rr.get("TTL").and_then(Value::as_u64).ok_or("no TTL")? as u32,
                    rtype: s("TYPEname").ok_or("no TYPEname")?,
                    rdata,
                })
            })
            .collect()
    };
    Ok(Reply {
        rcode,
        flags,
        answer: rrs("answerRRs")?,
        authority: rrs("authorityRRs")?,
    })
}

// ---------------------------------------------------------------------------
// Misc

/// Polls `f` every `interval` until it returns true or `limit` passes;
/// returns the time it took.
pub fn poll_until(limit: Duration, interval: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Context switches of all threads of `pid` so far (Linux /proc), a proxy
/// for "did the process wake up".
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let status = fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}

/// A ServiceEntry document with the given hosts and spec.addresses.
pub fn service_entry(name: &str, hosts: &[&str], addresses: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: test\nspec:\n  hosts:\n"
    );
    for h in hosts {
        let _ = writeln!(s, "  - \"{h}\"");
    }
    s.push_str("  location: MESH_INTERNAL\n  ports:\n  - name: http\n    number: 80\n    protocol: HTTP\n  resolution: DNS\n  addresses:\n");
    for a in addresses {
        let _ = writeln!(s, "  - {a}");
    }
    s
}
