//! Per-query cost of the DNS path: the general path (hickory parse, answer,
//! hickory encode), the UDP fast path, and what recording metrics costs.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use meshdns::admin::Readiness;
use meshdns::dns::Handler;
use meshdns::dns::metrics::{DnsMetrics, Proto};
use meshdns::index::testing::{mk_host_entry, mk_index_with};
use meshdns::index::{SourceId, ZoneConfig};

fn handler(metrics: DnsMetrics) -> Handler {
    let config = ZoneConfig::default();
    let index = mk_index_with(&["global"], config);
    let entries = (0..10_000u32)
        .map(|i| {
            let (namespace, name) = (format!("ns{}", i % 100), format!("svc{i}"));
            let host = format!("{name}.{namespace}.global");
            mk_host_entry(
                &namespace,
                &name,
                &host,
                [std::net::Ipv4Addr::from(0xf000_0000 | i).into()],
            )
        })
        .collect();
    index.reset(&SourceId::Kube(None), entries);
    let ready = Readiness::register(&prometheus::Registry::new()).unwrap();
    ready.set_synced();
    Handler::new(Arc::new(index), ready, metrics)
}

fn packet(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.set_edns(Edns::new());
    m.to_vec().unwrap()
}

fn respond(c: &mut Criterion) {
    let h = handler(DnsMetrics::register(&prometheus::Registry::new()).unwrap());
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut out = Vec::with_capacity(1232);
    for (label, name, rtype) in [
        ("respond/a_hit", "Svc42.ns42.global.", RecordType::A),
        ("respond/nodata", "svc42.ns42.global.", RecordType::AAAA),
        ("respond/nxdomain", "nope.ns42.global.", RecordType::A),
    ] {
        let bytes = packet(name, rtype);
        c.bench_function(label, |b| {
            b.iter(|| {
                let request = Request::from_bytes(black_box(bytes.clone()), src, Protocol::Udp).unwrap();
                h.respond_udp(&request, &mut out);
                black_box(out.len())
            })
        });
    }

    // The same queries through the fast path (what UDP takes first).
    for (label, name, rtype) in [
        ("fast/a_hit", "Svc42.ns42.global.", RecordType::A),
        ("fast/nodata", "svc42.ns42.global.", RecordType::AAAA),
        ("fast/nxdomain", "nope.ns42.global.", RecordType::A),
    ] {
        let bytes = packet(name, rtype);
        let mut recorder = h.metrics().udp_recorder();
        c.bench_function(label, |b| {
            b.iter(|| h.respond_fast(black_box(&bytes), &mut out, &mut recorder))
        });
    }

    let metrics = DnsMetrics::register(&prometheus::Registry::new()).unwrap();
    c.bench_function("metrics/record_one_query", |b| {
        b.iter(|| {
            metrics.request(Proto::Udp, black_box(Some(RecordType::A)), 47);
            metrics.response(black_box(ResponseCode::NoError), 63, false, Duration::from_nanos(900));
        })
    });
}

criterion_group!(benches, respond);
criterion_main!(benches);
