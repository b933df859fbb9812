//! The shipped image, built and run for real, for amd64 and arm64.
//!
//! No container engine runs here, so this test does what the image build and
//! the kubelet would do, from the same sources of truth:
//! - builds the static binary with `scripts/build-static.sh`, which the
//!   Dockerfile's build stage also runs;
//! - checks that it is statically linked, for the right machine;
//! - lays out the final stage's root filesystem: the binary at the
//!   Dockerfile's ENTRYPOINT path, and nothing else;
//! - runs the Dockerfile's ENTRYPOINT with the args and env of
//!   `deploy/deployment.yaml`, only the ports and the example file changed, the
//!   way the pod runs: its runAsUser/runAsGroup, no capabilities (bounding set
//!   included), no-new-privs, PID 1 of its own PID namespace, and a read-only
//!   root holding the image's files plus the mounts a runtime adds (/proc,
//!   /dev, and the example file as a ConfigMap would be). `setpriv` sets the
//!   user and `bwrap` builds the root;
//! - requires answers over UDP and TCP, `/readyz` 200, `/metrics`, and exit 0
//!   on SIGTERM within the Deployment's grace period.
//!
//! arm64 runs under `qemu-aarch64-static`, started directly (binfmt may not be
//! registered). The tests are `#[ignore]`d because they need these tools and
//! build for minutes; `scripts/test-all.sh` runs them with `--include-ignored`,
//! and there a missing tool fails the test with what to install. It never skips.

#[path = "e2e/common.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, find_tool, free_port, http_get, loopback, query_tcp, query_udp, repo_path, run_bounded};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

/// Where the example file is mounted in the root, as a ConfigMap would be.
const EXAMPLE_MOUNT: &str = "/etc/meshdns/serviceentries.yaml";
/// Where the emulator is mounted for arm64: outside the image's own paths.
const QEMU_MOUNT: &str = "/.qemu/qemu-aarch64-static";

#[test]
#[ignore = "needs scripts/build-static.sh's toolchain (rustup, python3 venv), readelf, setpriv and bwrap"]
fn image_amd64() {
    image_smoke(Arch::Amd64);
}

#[test]
#[ignore = "needs scripts/build-static.sh's toolchain (rustup, python3 venv), readelf, setpriv, bwrap and qemu-aarch64-static"]
fn image_arm64() {
    image_smoke(Arch::Arm64);
}

#[derive(Clone, Copy, Debug)]
enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    fn docker(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// `readelf -h`'s Machine line.
    fn elf_machine(self) -> &'static str {
        match self {
            Arch::Amd64 => "Advanced Micro Devices X86-64",
            Arch::Arm64 => "AArch64",
        }
    }

    /// Whether this machine runs the binary natively.
    fn native(self) -> bool {
        matches!(
            (self, std::env::consts::ARCH),
            (Arch::Amd64, "x86_64") | (Arch::Arm64, "aarch64")
        )
    }
}

fn need(tool: &str, package: &str) -> PathBuf {
    find_tool(tool).unwrap_or_else(|| {
        panic!("image test: {tool} not found; install Debian's {package} (scripts/install-test-deps.sh does)")
    })
}

fn image_smoke(arch: Arch) {
    let readelf = need("readelf", "binutils");
    let setpriv = need("setpriv", "util-linux");
    let bwrap = need("bwrap", "bubblewrap");
    let qemu = (!arch.native()).then(|| need("qemu-aarch64-static", "qemu-user-static"));

    let dockerfile = Dockerfile::read();
    let pod = Pod::read();
    let work = tempfile::tempdir().unwrap();

    // Build exactly as the Dockerfile's build stage does.
    let binary = work.path().join("meshdns");
    let started = Instant::now();
    let mut build = Command::new(repo_path("scripts/build-static.sh"));
    build.arg(arch.docker()).arg(&binary);
    // Beside the test's own target directory, so that it is cached with it and
    // not locked by the `cargo test` that runs this.
    build.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("../image"),
    );
    let out = run_bounded(build, Duration::from_secs(40 * 60));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/build-static.sh {} failed:\n{log}",
        arch.docker()
    );
    let size = fs::metadata(&binary).unwrap().len();
    println!(
        "{}: built in {:.0?}, {size} bytes ({:.1} MiB)",
        arch.docker(),
        started.elapsed(),
        size as f64 / (1 << 20) as f64
    );

    assert_static(&readelf, &binary, arch);

    // The final stage's root: the entrypoint binary and nothing else.
    let root = work.path().join("root");
    let entry = root.join(dockerfile.entrypoint.trim_start_matches('/'));
    fs::create_dir_all(entry.parent().unwrap()).unwrap();
    fs::copy(&binary, &entry).unwrap();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o755)).unwrap();
    for dir in [work.path(), root.as_path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut dir = entry.parent().unwrap();
    while dir != root {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir = dir.parent().unwrap();
    }
    assert_eq!(
        tree(&root),
        vec![dockerfile.entrypoint.clone()],
        "the image root holds only the binary"
    );

    let example = work.path().join("serviceentries.yaml");
    fs::copy(repo_path("deploy/examples/serviceentries.yaml"), &example).unwrap();
    fs::set_permissions(&example, fs::Permissions::from_mode(0o644)).unwrap();

    let dns = loopback(free_port());
    let admin = loopback(free_port());

    // setpriv: the pod's user and group, no supplementary groups, no
    // capabilities in any set, no-new-privs. bwrap (unprivileged, in a user
    // namespace mapping the same ids): the root, PID 1, and the runtime mounts.
    let mut cmd = Command::new(&setpriv);
    cmd.arg(format!("--reuid={}", pod.uid))
        .arg(format!("--regid={}", pod.gid))
        .args([
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ])
        .arg(&bwrap)
        .args([
            "--unshare-user",
            "--uid",
            &pod.uid.to_string(),
            "--gid",
            &pod.gid.to_string(),
        ])
        .args([
            "--unshare-pid",
            "--as-pid-1",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ])
        .args(["--die-with-parent", "--cap-drop", "ALL", "--tmpfs", "/"]);
    for top in fs::read_dir(&root).unwrap() {
        let top = top.unwrap();
        cmd.arg("--ro-bind")
            .arg(top.path())
            .arg(Path::new("/").join(top.file_name()));
    }
    cmd.args(["--proc", "/proc", "--dev", "/dev"]);
    cmd.arg("--ro-bind").arg(&example).arg(EXAMPLE_MOUNT);
    if let Some(qemu) = &qemu {
        cmd.arg("--ro-bind").arg(qemu).arg(QEMU_MOUNT);
    }
    cmd.args(["--remount-ro", "/", "--clearenv"]);
    for (k, v) in &pod.env {
        cmd.args(["--setenv", k, v]);
    }
    cmd.arg("--");
    if qemu.is_some() {
        cmd.arg(QEMU_MOUNT);
    }
    cmd.arg(&dockerfile.entrypoint)
        .args(&pod.args)
        .args(["--file", EXAMPLE_MOUNT])
        .arg(format!("--dns-addr={dns}"))
        .arg(format!("--admin-addr={admin}"));
    println!("{cmd:?}");
    let mut proc = Proc::spawn(
        &format!("meshdns-{}", arch.docker()),
        cmd,
        &work.path().join("meshdns.log"),
    );

    // Emulated, start-up takes longer.
    let limit = Duration::from_secs(if qemu.is_some() { 60 } else { 15 });
    let start = Instant::now();
    loop {
        proc.assert_alive();
        if http_get(admin, "/readyz").is_ok_and(|(code, _)| code == 200) {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "/readyz not 200 after {limit:?}; log:\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("{}: ready in {:.2?}", arch.docker(), start.elapsed());

    // The server process itself: the sandbox's PID 1, found from outside.
    let server = descendant_with_arg(proc.pid(), &format!("--dns-addr={dns}"))
        .unwrap_or_else(|| panic!("no server process under {}", proc.pid()));
    let status = fs::read_to_string(format!("/proc/{server}/status")).unwrap();
    for (key, want) in [
        ("Uid", format!("{0}\t{0}\t{0}\t{0}", pod.uid)),
        ("Gid", format!("{0}\t{0}\t{0}\t{0}", pod.gid)),
        ("Groups", String::new()),
        ("CapInh", "0000000000000000".into()),
        ("CapPrm", "0000000000000000".into()),
        ("CapEff", "0000000000000000".into()),
        ("CapBnd", "0000000000000000".into()),
        ("CapAmb", "0000000000000000".into()),
        ("NoNewPrivs", "1".into()),
        ("NSpid", format!("{server}\t1")),
    ] {
        let got = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in /proc/{server}/status"))
            .trim();
        assert_eq!(got, want, "{key} of the server process");
    }
    let write = fs::write(format!("/proc/{server}/root/probe"), b"x").unwrap_err();
    assert_eq!(
        write.raw_os_error(),
        Some(libc::EROFS),
        "the root is read-only: {write}"
    );

    // DNS over UDP and TCP, from the example file.
    for (proto, reply) in [
        ("udp", query_udp(dns, "httpbin.bar.global.", RecordType::A)),
        ("tcp", query_tcp(dns, "httpbin.bar.global.", RecordType::A)),
    ] {
        let reply = reply.unwrap_or_else(|e| panic!("{proto} query: {e}; log:\n{}", proc.log()));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError, "{proto}");
        let addrs: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(addrs, ["240.0.0.2"], "{proto} answer");
    }
    let nx = query_udp(dns, "nope.bar.global.", RecordType::A).unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    let (code, metrics) = http_get(admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("meshdns_build_info"), "/metrics:\n{metrics}");
    assert!(metrics.contains("meshdns_dns_requests_total"), "/metrics:\n{metrics}");
    assert_eq!(http_get(admin, "/healthz").unwrap().0, 200);

    // SIGTERM to the pod's PID 1, as the kubelet sends it: drain, then exit 0
    // within terminationGracePeriodSeconds.
    let term = Command::new("kill")
        .args(["-TERM", &server.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = proc
        .wait_exit(Duration::from_secs(pod.grace_seconds))
        .unwrap_or_else(|| {
            panic!(
                "no exit within {} s of SIGTERM; log:\n{}",
                pod.grace_seconds,
                proc.log()
            )
        });
    assert!(exit.success(), "exit after SIGTERM: {exit}; log:\n{}", proc.log());
    let log = proc.log();
    assert!(
        log.lines().any(|l| l.starts_with('{')),
        "MESHDNS_LOG_FORMAT=json from the Deployment:\n{log}"
    );
}

/// `readelf` says: the binary's machine, no program interpreter, no shared
/// libraries.
fn assert_static(readelf: &Path, binary: &Path, arch: Arch) {
    let run = |flag: &str| {
        let out = Command::new(readelf).arg(flag).arg(binary).output().unwrap();
        assert!(out.status.success(), "readelf {flag}");
        String::from_utf8(out.stdout).unwrap()
    };
    let header = run("-hW");
    assert!(
        header
            .lines()
            .any(|l| l.trim_start().starts_with("Machine:") && l.contains(arch.elf_machine())),
        "not an {} binary:\n{header}",
        arch.docker()
    );
    let segments = run("-lW");
    assert!(
        !segments.contains("INTERP"),
        "has a program interpreter (dynamically linked):\n{segments}"
    );
    let dynamic = run("-dW");
    assert!(!dynamic.contains("(NEEDED)"), "needs shared libraries:\n{dynamic}");
}

/// Every file under `root`, as absolute paths inside it (directories left out).
fn tree(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(format!("/{}", path.strip_prefix(root).unwrap().display()));
            }
        }
    }
    files.sort();
    files
}

/// The process below `pid` whose command line holds `arg`.
fn descendant_with_arg(pid: u32, arg: &str) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut found = None;
        let mut frontier = vec![pid];
        while let Some(p) = frontier.pop() {
            let children = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
                let cmdline = fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
                if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                    found = Some(c);
                }
                frontier.push(c);
            }
        }
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// What the Dockerfile's final stage says.
struct Dockerfile {
    entrypoint: String,
}

impl Dockerfile {
    fn read() -> Dockerfile {
        let text = fs::read_to_string(repo_path("Dockerfile")).unwrap();
        let entry = text
            .lines()
            .find_map(|l| l.strip_prefix("ENTRYPOINT "))
            .expect("an ENTRYPOINT");
        let entry: Vec<String> = serde_json::from_str(entry).expect("ENTRYPOINT in exec form");
        assert_eq!(entry.len(), 1, "ENTRYPOINT is the binary alone");
        Dockerfile {
            entrypoint: entry[0].clone(),
        }
    }
}

/// What `deploy/deployment.yaml` runs.
struct Pod {
    uid: u64,
    gid: u64,
    args: Vec<String>,
    env: Vec<(String, String)>,
    grace_seconds: u64,
}

impl Pod {
    fn read() -> Pod {
        let text = fs::read_to_string(repo_path("deploy/deployment.yaml")).unwrap();
        let d: Value = serde_saphyr::from_str(&text).unwrap();
        let spec = &d["spec"]["template"]["spec"];
        let c = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "meshdns")
            .expect("a meshdns container");
        let id = |key: &str| {
            c["securityContext"][key]
                .as_u64()
                .or(spec["securityContext"][key].as_u64())
                .unwrap_or_else(|| panic!("no {key}"))
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|s| s.iter().map(|a| a.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        assert!(c["command"].is_null(), "the container runs the image's ENTRYPOINT");
        let env = c["env"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|e| (e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap().into()))
                    .collect()
            })
            .unwrap_or_default();
        Pod {
            uid: id("runAsUser"),
            gid: id("runAsGroup"),
            args: strings(&c["args"]),
            env,
            grace_seconds: spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
        }
    }
}
