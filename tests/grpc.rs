//! DNS over CoreDNS's gRPC protocol (`--grpc-addr`, `src/dns/grpc.rs`).
//!
//! In-process: the DNS server and the gRPC listener on 127.0.0.1 port 0,
//! sharing one handler as `serve` wires them, asked by a real gRPC client
//! (tonic's, over HTTP/2): answers, mixed case, the whole answer where UDP
//! truncates, malformed and oversized messages, an unknown method, many
//! streams at once, TLS with a certificate made here, and the metrics.
//!
//! With the release binary: a client written independently of meshdns,
//! Python's grpcio with stubs generated from `tests/grpc/dns.proto` by
//! `python3 -m grpc_tools.protoc`, round-trips queries in plaintext and over
//! TLS, and the process still exits 0 on SIGTERM. That test is
//! `#[ignore = "needs python3-grpcio and python3-grpc-tools"]`.

#[path = "e2e/common.rs"]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Meshdns, example_file, free_port, http_get, loopback, run_bounded};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use meshdns::admin::Readiness;
use meshdns::dns::grpc::{GrpcConfig, GrpcServer, MAX_MESSAGE, TlsPem};
use meshdns::dns::metrics::DnsMetrics;
use meshdns::dns::{Config, DnsServer, Handler, Workers};
use meshdns::index::Index;
use meshdns::index::testing::{mk_host_entry, mk_index};
use meshdns::source::file;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// The client's own copy of the message: `message DnsPacket { bytes msg = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct DnsPacket {
    #[prost(bytes = "vec", tag = "1")]
    msg: Vec<u8>,
}

const QUERY: &str = "/coredns.dns.DnsService/Query";

struct Server {
    grpc: SocketAddr,
    dns: SocketAddr,
    index: Arc<Index>,
    registry: prometheus::Registry,
}

/// Serves the example file over DNS and gRPC on 127.0.0.1:0.
fn start(config: GrpcConfig) -> Server {
    let index = Arc::new(mk_index());
    let path = example_file();
    let text = std::fs::read_to_string(&path).unwrap();
    index.reset(&file::source_id(&path), file::load(&path, &text, &index).unwrap());
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    let registry = prometheus::Registry::new();
    let metrics = DnsMetrics::register(&registry).unwrap();
    let handler = Handler::new(index.clone(), ready, metrics);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let dns = DnsServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                handler,
                Config::new(Workers::Sockets(1)),
            )
            .unwrap();
            let grpc = GrpcServer::bind("127.0.0.1:0".parse().unwrap(), dns.handler(), config).unwrap();
            tx.send((grpc.local_addr(), dns.local_addr())).unwrap();
            tokio::select! {
                r = dns.run() => r.unwrap(),
                r = grpc.run() => r.unwrap(),
            }
        });
    });
    let (grpc, dns) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    Server {
        grpc,
        dns,
        index,
        registry,
    }
}

type Client = tonic::client::Grpc<Channel>;

async fn connect(addr: SocketAddr) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn call(client: &Client, path: &'static str, msg: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut client = client.clone();
    client.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<DnsPacket, DnsPacket>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    let reply = client
        .unary(tonic::Request::new(DnsPacket { msg }), path, codec)
        .await?;
    Ok(reply.into_inner().msg)
}

async fn ask(client: &Client, query: &Message) -> Message {
    let reply = call(client, QUERY, query.to_vec().unwrap()).await.unwrap();
    Message::from_vec(&reply).unwrap()
}

fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// A metric's value from the server's registry (0 when absent).
fn metric(s: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            labels
                .iter()
                .all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v))
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn answers_like_tcp() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;

    let r = ask(&client, &query("httpbin.bar.global.", RecordType::A)).await;
    assert_eq!(r.metadata.id, 4242);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative && r.metadata.recursion_desired);
    assert_eq!(addresses(&r), ["240.0.0.2"]);

    let r = ask(&client, &query("reviews.baz-team.global.", RecordType::AAAA)).await;
    assert_eq!(addresses(&r), ["2001:db8::4"]);

    // The wildcard, a missing name with the zone's SOA, and a foreign name.
    let r = ask(&client, &query("anything.baz.global.", RecordType::A)).await;
    assert_eq!(addresses(&r), ["240.0.0.3"]);
    let r = ask(&client, &query("nope.bar.global.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities.len(), 1);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    let r = ask(&client, &query("example.com.", RecordType::A)).await;
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty());

    // Byte for byte what TCP answers.
    let q = query("ratings.bar.global.", RecordType::AAAA);
    let over_grpc = call(&client, QUERY, q.to_vec().unwrap()).await.unwrap();
    assert_eq!(over_grpc, tcp_raw(s.dns, &q.to_vec().unwrap()));
}

fn tcp_raw(addr: SocketAddr, packet: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).unwrap();
    let mut len = [0; 2];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[tokio::test]
async fn mixed_case_question_is_echoed() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;
    for name in ["HttpBin.BAR.Global.", "hTTPBIN.bar.gLOBAL.", "NoPe.Bar.GLOBAL."] {
        let q = query(name, RecordType::A);
        let raw = call(&client, QUERY, q.to_vec().unwrap()).await.unwrap();
        // The question's bytes, case included, right after the header.
        let question = &q.to_vec().unwrap()[12..];
        assert_eq!(&raw[12..12 + question.len()], question, "{name}");
        let r = Message::from_vec(&raw).unwrap();
        assert_eq!(r.queries[0].name().to_string(), name);
        if name.to_lowercase().starts_with("httpbin") {
            assert_eq!(addresses(&r), ["240.0.0.2"], "{name}");
        } else {
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
    }
}

#[tokio::test]
async fn the_whole_answer_where_udp_truncates() {
    let s = start(GrpcConfig::default());
    let addrs: Vec<_> = (0..100u32)
        .map(|i| std::net::IpAddr::from(std::net::Ipv4Addr::from(0xf000_0000 | i)))
        .collect();
    s.index.apply(mk_host_entry("ns", "big", "big.global", addrs));
    let q = query("big.global.", RecordType::A);

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    udp.send_to(&q.to_vec().unwrap(), s.dns).unwrap();
    let mut buf = vec![0; 65535];
    let n = udp.recv(&mut buf).unwrap();
    let over_udp = Message::from_vec(&buf[..n]).unwrap();
    assert!(over_udp.metadata.truncation && over_udp.answers.is_empty());

    let client = connect(s.grpc).await;
    let r = ask(&client, &q).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 100);
}

#[tokio::test]
async fn malformed_messages_get_formerr_or_an_error() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;
    let good = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();

    // A header promising a question that is not there: FORMERR, with the ID.
    let mut truncated = good[..12].to_vec();
    truncated.extend_from_slice(&[3, b'f', b'o']);
    // Trailing bytes after a whole query.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 7]);
    // A compression pointer that points at itself.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    for (what, packet) in [("truncated", truncated), ("trailing", trailing), ("looped", looped)] {
        let raw = call(&client, QUERY, packet).await.unwrap();
        let r = Message::from_vec(&raw).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr, "{what}");
        assert_eq!(r.metadata.id, 4242, "{what}");
        assert!(r.answers.is_empty(), "{what}");
    }

    // No DNS reply at all: a gRPC error, and the server carries on.
    let mut response = good.clone();
    response[2] |= 0x80;
    for (what, packet) in [
        ("empty", vec![]),
        ("short", vec![1, 2, 3, 4, 5]),
        ("response", response),
    ] {
        let status = call(&client, QUERY, packet).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    assert_eq!(
        addresses(&ask(&client, &query("httpbin.bar.global.", RecordType::A)).await),
        ["240.0.0.2"]
    );
    assert_eq!(metric(&s, "meshdns_dns_responses_total", &[("rcode", "FORMERR")]), 3.0);
    assert_eq!(metric(&s, "meshdns_dns_dropped_total", &[("reason", "short")]), 2.0);
    assert_eq!(metric(&s, "meshdns_dns_dropped_total", &[("reason", "response")]), 1.0);
}

#[tokio::test]
async fn the_size_limit_is_one_dns_message() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;
    let good = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();

    // 65535 bytes, the largest DNS message: read, and FORMERR for the
    // bytes after the query.
    let mut largest = good.clone();
    largest.resize(usize::from(u16::MAX), 0);
    assert_eq!(
        prost::Message::encoded_len(&DnsPacket { msg: largest.clone() }),
        MAX_MESSAGE
    );
    let r = Message::from_vec(&call(&client, QUERY, largest).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    // One byte more, and far more: refused before it is parsed.
    for len in [usize::from(u16::MAX) + 1, 1 << 20] {
        let mut oversized = good.clone();
        oversized.resize(len, 0);
        let status = call(&client, QUERY, oversized).await.unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{len} bytes: {status:?}");
    }
    // The connection and the server are fine.
    assert_eq!(
        addresses(&ask(&client, &query("httpbin.bar.global.", RecordType::A)).await),
        ["240.0.0.2"]
    );
}

#[tokio::test]
async fn other_methods_are_unimplemented() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;
    let good = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();
    for path in ["/coredns.dns.DnsService/Stream", "/other.Service/Query"] {
        let status = call(&client, path, good.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
}

#[tokio::test]
async fn many_streams_on_one_connection_under_the_cap() {
    let s = start(GrpcConfig {
        max_streams: 4,
        ..GrpcConfig::default()
    });
    let client = connect(s.grpc).await;
    // A first query, so the client has the server's SETTINGS (the cap):
    // streams beyond it before then are refused (REFUSED_STREAM), after it
    // the client queues them.
    ask(&client, &query("httpbin.bar.global.", RecordType::A)).await;
    let queries = (0..200).map(|i| {
        let client = client.clone();
        async move {
            let name = if i % 2 == 0 {
                "httpbin.bar.global."
            } else {
                "ratings.bar.global."
            };
            let rtype = if i % 2 == 0 { RecordType::A } else { RecordType::AAAA };
            let r = ask(&client, &query(name, rtype)).await;
            assert_eq!(addresses(&r).len(), 1);
        }
    });
    futures::future::join_all(queries).await;
    assert_eq!(metric(&s, "meshdns_dns_requests_total", &[("proto", "grpc")]), 201.0);
}

#[tokio::test]
async fn metrics_count_grpc_apart() {
    let s = start(GrpcConfig::default());
    let client = connect(s.grpc).await;
    for _ in 0..3 {
        ask(&client, &query("httpbin.bar.global.", RecordType::A)).await;
    }
    ask(&client, &query("reviews.baz-team.global.", RecordType::AAAA)).await;
    tcp_raw(s.dns, &query("httpbin.bar.global.", RecordType::A).to_vec().unwrap());
    let requests =
        |proto: &str, rtype: &str| metric(&s, "meshdns_dns_requests_total", &[("proto", proto), ("type", rtype)]);
    assert_eq!(requests("grpc", "A"), 3.0);
    assert_eq!(requests("grpc", "AAAA"), 1.0);
    assert_eq!(requests("tcp", "A"), 1.0);
    assert_eq!(requests("udp", "A"), 0.0);
    assert_eq!(metric(&s, "meshdns_dns_responses_total", &[("rcode", "NOERROR")]), 5.0);
}

/// A self-signed certificate for `localhost` and 127.0.0.1, PEM.
fn self_signed() -> TlsPem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    TlsPem {
        cert: made.cert.pem().into_bytes(),
        key: made.signing_key.serialize_pem().into_bytes(),
    }
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let pem = self_signed();
    let s = start(GrpcConfig {
        tls: Some(pem.clone()),
        ..GrpcConfig::default()
    });
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pem.cert))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", s.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = tonic::client::Grpc::new(channel);
    let r = ask(&client, &query("HttpBin.Bar.Global.", RecordType::A)).await;
    assert_eq!(addresses(&r), ["240.0.0.2"]);
    assert_eq!(r.queries[0].name().to_string(), "HttpBin.Bar.Global.");

    // A plaintext client gets nothing from the TLS port.
    let plain = Endpoint::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    if let Ok(channel) = plain.connect().await {
        let q = query("httpbin.bar.global.", RecordType::A).to_vec().unwrap();
        assert!(call(&tonic::client::Grpc::new(channel), QUERY, q).await.is_err());
    }
    // Another certificate is not trusted.
    let other = self_signed();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other.cert))
        .domain_name("localhost");
    let untrusted = Endpoint::from_shared(format!("https://{}", s.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    assert!(untrusted.is_err());
}

#[test]
fn a_bad_certificate_or_key_fails_at_bind() {
    let handler = || {
        let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
        let metrics = DnsMetrics::register(&prometheus::Registry::new()).unwrap();
        Arc::new(Handler::new(Arc::new(mk_index()), ready, metrics))
    };
    let good = self_signed();
    let other = self_signed();
    for (what, cert, key) in [
        ("not PEM", b"hello".to_vec(), good.key.clone()),
        ("no key", good.cert.clone(), b"".to_vec()),
        ("key of another certificate", good.cert.clone(), other.key.clone()),
    ] {
        let config = GrpcConfig {
            tls: Some(TlsPem { cert, key }),
            ..GrpcConfig::default()
        };
        let Err(error) = GrpcServer::bind("127.0.0.1:0".parse().unwrap(), handler(), config) else {
            panic!("{what}: bound");
        };
        let error = format!("{error:#}");
        assert!(error.contains("invalid gRPC TLS certificate or key"), "{what}: {error}");
    }
}

/// A python3 that has grpcio and grpc_tools (Debian's `python3-grpcio` and
/// `python3-grpc-tools` install them for /usr/bin/python3).
fn python_with_grpc() -> PathBuf {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import grpc, grpc_tools.protoc"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return PathBuf::from(python);
        }
    }
    panic!(
        "no python3 with grpcio and grpc_tools (Debian: python3-grpcio python3-grpc-tools; run scripts/install-test-deps.sh)"
    );
}

/// Generates the Python stubs from tests/grpc/dns.proto into `out`.
fn generate_stubs(python: &Path, out: &Path) {
    let proto_dir = common::repo_path("tests/grpc");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_dir.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(proto_dir.join("dns.proto"));
    let o = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "grpc_tools.protoc: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for stub in ["dns_pb2.py", "dns_pb2_grpc.py"] {
        assert!(out.join(stub).exists(), "{stub} not generated");
    }
}

/// Runs tests/grpc/client.py; its output lines.
fn python_query(
    python: &Path,
    stubs: &Path,
    addr: SocketAddr,
    name: &str,
    qtype: &str,
    ca: Option<&Path>,
) -> Vec<String> {
    let mut cmd = Command::new(python);
    cmd.arg(common::repo_path("tests/grpc/client.py"))
        .arg(addr.to_string())
        .args([name, qtype])
        .args(ca)
        .env("PYTHONPATH", stubs)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let o = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        o.status.success(),
        "client.py {name} {qtype}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs python3-grpcio and python3-grpc-tools"]
fn independent_python_client_round_trips() {
    let python = python_with_grpc();
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    generate_stubs(&python, &stubs);

    // Plaintext, the release binary as the sidecar runs it.
    let grpc = loopback(free_port());
    let example = example_file();
    let mut m = Meshdns::serve(
        &[&example],
        &["--grpc-addr", &grpc.to_string(), "--shutdown-grace", "1s"],
    );
    let lines = python_query(&python, &stubs, grpc, "HttpBin.Bar.Global.", "A", None);
    assert_eq!(
        lines,
        [
            "id 23063",
            "rcode 0",
            "flags qr=1 aa=1 tc=0",
            "question HttpBin.Bar.Global.",
            "answer 1 240.0.0.2",
        ],
    );
    let lines = python_query(&python, &stubs, grpc, "reviews.baz-team.global.", "AAAA", None);
    assert!(lines.contains(&"answer 28 2001:db8::4".to_string()), "{lines:?}");
    let lines = python_query(&python, &stubs, grpc, "nope.bar.global.", "A", None);
    assert!(lines.contains(&"rcode 3".to_string()), "NXDOMAIN: {lines:?}");

    let (code, body) = http_get(m.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.lines()
            .any(|l| l == "meshdns_dns_requests_total{proto=\"grpc\",type=\"A\"} 2"),
        "{body}"
    );
    // gRPC on: SIGTERM still drains and exits 0.
    m.proc.signal("TERM");
    let status = m.proc.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");

    // TLS: the flags, and the Python client checking the certificate.
    let pem = self_signed();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    let grpc = loopback(free_port());
    let _m = Meshdns::serve(
        &[&example],
        &[
            "--grpc-addr",
            &grpc.to_string(),
            "--grpc-tls-cert",
            cert.to_str().unwrap(),
            "--grpc-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let lines = python_query(&python, &stubs, grpc, "httpbin.bar.global.", "A", Some(&cert));
    assert!(lines.contains(&"answer 1 240.0.0.2".to_string()), "{lines:?}");
}

#[test]
fn tls_flags_go_together() {
    for args in [
        &["--grpc-addr", "127.0.0.1:0", "--grpc-tls-cert", "c.pem"][..],
        &["--grpc-addr", "127.0.0.1:0", "--grpc-tls-key", "k.pem"],
    ] {
        let mut cmd = Command::new(common::MESHDNS);
        cmd.arg("serve")
            .args(["--file", example_file().to_str().unwrap()])
            .args(args);
        let o = run_bounded(cmd, Duration::from_secs(10));
        assert!(!o.status.success());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("--grpc-tls-cert") && stderr.contains("--grpc-tls-key"),
            "{args:?}: {stderr}"
        );
    }
}
