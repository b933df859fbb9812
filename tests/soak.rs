//! Soak: one release meshdns serving `--kubernetes` and `--file DIR` at
//! once, under 5,000 UDP queries a second for `MESHDNS_SOAK_SECONDS`
//! (default 30), while ServiceEntries churn through a real kube-apiserver
//! (create, update, delete every few milliseconds) and through the
//! directory (atomic and in-place rewrites, renames, deletes, broken files).
//!
//! Every query is for a name that exists in both sources for the whole run
//! (checked: NOERROR and exactly both addresses), or one time in ten for a
//! churned name (checked: NXDOMAIN, or addresses from the churn ranges).
//! Asserts 0 lost, 0 wrong, bounded RSS, the churn visible in /metrics,
//! and the right final table; prints p50/p99/max latency without
//! asserting them (the machine is shared).
//!
//! ```sh
//! cargo test --release --test soak -- --include-ignored --nocapture             # 30 s
//! MESHDNS_SOAK_SECONDS=600 cargo test --release --test soak -- --include-ignored --nocapture
//! ```
//!
//! The load comes from a paced client here rather than dnsperf: dnsperf
//! reports only the rcode of each query, and a soak must also catch a
//! NOERROR with the wrong addresses (a half-applied change, one source
//! missing from the union).

#[path = "kube/cluster.rs"]
mod cluster;
#[path = "e2e/common.rs"]
mod common;

#[path = "support/rng.rs"]
mod rng;

use rng::Rng;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster::{Cluster, se};
use common::{Meshdns, http_get, query_udp_once, service_entry};
use futures::StreamExt;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

/// Names in both sources for the whole run: `s{i}.soak.global`.
const STABLE: usize = 50;
/// Churned names `c{i}.churn.global`: 0..200 through the API, 100..300
/// through files, so 100..200 are merged from both while they churn.
const CHURN_NAMES: usize = 300;
const KUBE_POOL: usize = 200;
const FILE_HOSTS: std::ops::Range<usize> = 100..300;
const FILE_SLOTS: usize = 40;
/// Client sockets, several as cluster DNS uses (under `--workers N` their
/// 4-tuples spread the load over meshdns's SO_REUSEPORT sockets).
const SOCKETS: usize = 4;
/// A query not answered within this is lost (dnsperf's -t is 5 s).
const LOST_AFTER: Duration = Duration::from_secs(1);
/// Latency percentiles leave out queries sent in the first second, while
/// the client's threads and sockets settle.
const SETTLE: Duration = Duration::from_secs(1);
/// Latency histogram: 1 µs buckets up to 100 ms, exact values above.
const HIST_US: usize = 100_000;

fn stable_host(i: usize) -> String {
    format!("s{i}.soak.global")
}

fn churn_host(i: usize) -> String {
    format!("c{i}.churn.global")
}

/// An address per change, so an update changes the answer (they repeat
/// after 62,500 changes, which only makes an update a no-op now and then).
fn churn_addr(net: u8, generation: u64) -> Ipv4Addr {
    Ipv4Addr::new(240, net, (generation / 250 % 250) as u8, (generation % 250 + 1) as u8)
}

const KUBE_NET: u8 = 30;
const FILE_NET: u8 = 40;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
        .unwrap_or(default)
}

#[test]
#[ignore = "needs kube-apiserver, kubectl and etcd (tests/kube/apiserver.sh build)"]
fn soak() {
    let seconds = env_u64("MESHDNS_SOAK_SECONDS", 30);
    assert!(seconds >= 10, "MESHDNS_SOAK_SECONDS must be at least 10");
    let qps = env_u64("MESHDNS_SOAK_QPS", 5000);
    let seed = env_u64(
        "MESHDNS_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    println!("soak: {seconds} s at {qps} qps, seed {seed} (MESHDNS_SOAK_SEED to repeat the churn)");
    let wall = Instant::now();

    let c = Cluster::start();
    println!("cluster up in {:?}", wall.elapsed());
    let api = c.api("v1", "default");

    // Both sources before meshdns starts: the stable names, and half of
    // each churn pool.
    let mut kube_state: Vec<Option<Ipv4Addr>> = vec![None; KUBE_POOL];
    let mut initial: Vec<(String, serde_json::Value)> = (0..STABLE)
        .map(|i| {
            let addr = Ipv4Addr::new(240, 10, 0, i as u8 + 1).to_string();
            (format!("stable-{i}"), se(&[&stable_host(i)], &[&addr]))
        })
        .collect();
    for (i, slot) in kube_state.iter_mut().enumerate().step_by(2) {
        let addr = churn_addr(KUBE_NET, i as u64);
        *slot = Some(addr);
        initial.push((format!("churn-{i}"), se(&[&churn_host(i)], &[&addr.to_string()])));
    }
    c.rt.block_on(
        futures::stream::iter(initial)
            .map(|(name, spec)| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &se_object(&name, spec))
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("serviceentries");
    std::fs::create_dir(&files).unwrap();
    let stable_yaml: Vec<String> = (0..STABLE)
        .map(|i| {
            let addr = Ipv4Addr::new(240, 20, 0, i as u8 + 1).to_string();
            service_entry(&format!("stable-{i}"), &[&stable_host(i)], &[&addr])
        })
        .collect();
    std::fs::write(files.join("stable.yaml"), stable_yaml.join("---\n")).unwrap();
    let mut file_churn = FileChurn::new(&files, seed);
    for j in (0..FILE_SLOTS).step_by(2) {
        file_churn.write_atomic(j);
    }

    let mut m = Meshdns::spawn(
        None,
        &[
            "--file",
            files.to_str().unwrap(),
            "--kubernetes",
            "--kubeconfig",
            &c.env["ADMIN_KUBECONFIG"],
        ],
    );
    m.wait_ready(Duration::from_secs(60));
    let before = Metrics::scrape(&m);

    // The load, the churn and the RSS sampler, all bounded in count and time.
    let load = Arc::new(Load::new(qps));
    let total = qps * seconds;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let hard_stop = deadline + Duration::from_secs(30);
    let client = load.clone().start(m.dns, total, t0, hard_stop);
    let kube_churn = {
        let api = api.clone();
        let state = std::mem::take(&mut kube_state);
        c.rt.spawn(churn_kube(api, state, deadline, seed))
    };
    let files_churn = std::thread::spawn(move || {
        file_churn.run(deadline);
        file_churn
    });

    let (load_start, steal_start) = (loadavg(), steal_ticks());
    let warmup = Duration::from_secs((seconds / 6).min(5));
    let mut rss = Vec::new();
    while Instant::now() < deadline {
        m.proc.assert_alive();
        rss.push((t0.elapsed(), m.rss_kib()));
        std::thread::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())));
    }
    let mut file_churn = files_churn.join().unwrap();
    let (kube_state, kube_ops) = c.rt.block_on(kube_churn).unwrap();
    let tally = client.finish();
    let server_drops = udp_drops(m.dns.port());
    let stolen = steal_ticks() - steal_start;
    rss.push((t0.elapsed(), m.rss_kib()));

    // A broken file's last good content stays served until it is fixed or
    // deleted: fix them, so that the final table follows from what is on disk.
    let broken_left = file_churn.fix_broken();
    let file_ops = file_churn.ops;

    // The final table: exactly what the last writes of both sources say.
    let mut want: HashMap<String, BTreeSet<Ipv4Addr>> = HashMap::new();
    for i in 0..CHURN_NAMES {
        want.insert(churn_host(i), BTreeSet::new());
    }
    for (i, addr) in kube_state.iter().enumerate() {
        if let Some(addr) = addr {
            want.get_mut(&churn_host(i)).unwrap().insert(*addr);
        }
    }
    for content in file_churn.slots.iter().flatten() {
        for h in &content.hosts {
            want.get_mut(&churn_host(*h)).unwrap().insert(content.addr);
        }
    }
    for i in 0..STABLE {
        want.insert(stable_host(i), load.stable_addrs(i).iter().copied().collect());
    }
    let settled = Instant::now();
    let mut wrong_final = Vec::new();
    while settled.elapsed() < Duration::from_secs(30) {
        wrong_final = want
            .iter()
            .filter_map(|(name, addrs)| {
                let got = resolve(&m, name);
                (got != *addrs).then(|| format!("{name}: want {addrs:?}, got {got:?}"))
            })
            .collect();
        if wrong_final.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let final_after = settled.elapsed();
    rss.push((t0.elapsed(), m.rss_kib()));
    let after = Metrics::scrape(&m);
    m.proc.assert_alive();

    // Report.
    let steady = tally.steady.percentiles();
    let all = tally.all.percentiles();
    let (start_kib, end_kib) = (
        rss.iter().find(|(t, _)| *t >= warmup).map_or(rss[0].1, |s| s.1),
        rss.last().unwrap().1,
    );
    let max_kib = rss.iter().map(|s| s.1).max().unwrap();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    let step = (rss.len() / 10).max(1);
    println!(
        "RSS every {step} s: {}",
        rss.iter()
            .step_by(step)
            .map(|(t, k)| format!("{}s {}", t.as_secs(), mib(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "client: sent {} in {:.1} s ({} send errors, at worst {} behind schedule at {:.1} s); answered {}, {} stray replies; latency over all answers p50 {} p99 {} max {}",
        tally.sent,
        tally.send_secs,
        tally.send_errors,
        ms(tally.max_lag.0),
        tally.max_lag.1.as_secs_f64(),
        tally.answered,
        tally.stray,
        ms(all.0),
        ms(all.1),
        ms(all.2)
    );
    println!(
        "lost: {} unanswered (by second sent: {:?}), {} late; kernel drops: {server_drops} on meshdns's sockets, {} on the client's; {:.1} s of CPU stolen by the hypervisor",
        tally.unanswered,
        tally.lost_at,
        tally.late,
        tally.client_drops,
        stolen as f64 / 100.0,
    );
    println!(
        "kube: {} ops ({} creates, {} updates, {} deletes, {} errors), {:.0}/s; files: {} ops ({} atomic writes, {} in-place writes, {} renames, {} deletes, {} broken), {:.0}/s; {broken_left} broken files fixed at the end",
        kube_ops.total(),
        kube_ops.creates,
        kube_ops.updates,
        kube_ops.deletes,
        kube_ops.errors,
        kube_ops.total() as f64 / seconds as f64,
        file_ops.total(),
        file_ops.atomic,
        file_ops.in_place,
        file_ops.renames,
        file_ops.deletes,
        file_ops.broken,
        file_ops.total() as f64 / seconds as f64,
    );
    let d = |k: &str| after.get(k) - before.get(k);
    let handling = |q| {
        after
            .quantile_since(&before, "meshdns_dns_request_duration_seconds", q)
            .map_or("?".into(), |s| format!("≤ {} ms", s * 1e3))
    };
    println!(
        "meshdns's own handling time (parse to encoded answer, its histogram): p50 {}, p99 {}; load average {} at start, {} at end",
        handling(0.5),
        handling(0.99),
        load_start,
        loadavg(),
    );
    println!(
        "meshdns: {} table updates, {} kube apply + {} delete events, {} relists, {} file reload errors, {} conflicts now; final table right {} after the churn stopped",
        d("meshdns_table_updates_total"),
        d("meshdns_kube_events_total{type=\"apply\"}"),
        d("meshdns_kube_events_total{type=\"delete\"}"),
        d("meshdns_kube_relists_total"),
        d("meshdns_file_reload_errors_total"),
        after.get("meshdns_conflicts"),
        ms(final_after),
    );
    println!(
        "SOAK SUMMARY: {seconds} s, {} queries, lost {}, wrong {}, p50 {}, p99 {}, max {} (queries sent after the first second); kube ops {}, file ops {}; RSS start {}, end {}, max {}; total wall {:.0} s",
        tally.sent,
        tally.lost(),
        tally.wrong,
        ms(steady.0),
        ms(steady.1),
        ms(steady.2),
        kube_ops.total(),
        file_ops.total(),
        mib(start_kib),
        mib(end_kib),
        mib(max_kib),
        wall.elapsed().as_secs_f64(),
    );

    // Verdicts.
    assert_eq!(tally.sent, total, "the client stopped early");
    assert!(
        tally.send_secs < (seconds + 2) as f64,
        "the client fell behind: {:.1} s to send {seconds} s of load",
        tally.send_secs
    );
    assert_eq!(
        tally.lost(),
        0,
        "lost queries: {} unanswered, {} answered after {LOST_AFTER:?}",
        tally.unanswered,
        tally.late
    );
    assert_eq!(tally.wrong, 0, "wrong answers, e.g.:\n{}", tally.examples.join("\n"));
    // Every query is answered once: a reply with no query waiting is a duplicate.
    assert_eq!(tally.stray, 0, "replies that match no query waiting for one");
    assert!(
        wrong_final.is_empty(),
        "final table wrong 30 s after the churn stopped ({} names), e.g.:\n{}",
        wrong_final.len(),
        wrong_final[..wrong_final.len().min(10)].join("\n")
    );
    assert!(kube_ops.total() >= seconds * 20, "kube churn too slow to mean anything");
    assert!(file_ops.total() >= seconds * 20, "file churn too slow to mean anything");
    assert!(d("meshdns_table_updates_total") > 0.0);
    // Every API write is one watch event, unless a relist (410 on a watch
    // restart) folded some into the list.
    let events = d("meshdns_kube_events_total{type=\"apply\"}") + d("meshdns_kube_events_total{type=\"delete\"}");
    if d("meshdns_kube_relists_total") == 0.0 {
        assert!(
            events >= (kube_ops.total() - kube_ops.errors) as f64,
            "{events} watch events for {} API writes",
            kube_ops.total()
        );
    } else {
        assert!(events > 0.0);
    }
    assert!(
        file_ops.broken < 10 || d("meshdns_file_reload_errors_total") > 0.0,
        "broken files were never reported"
    );
    // RSS: the table holds a few hundred names whatever the churn, so memory
    // must stay flat after warm-up; the slack is the allocator's.
    assert!(
        end_kib <= start_kib + 10 * 1024 && end_kib * 4 <= start_kib * 5,
        "RSS grew from {} to {}",
        mib(start_kib),
        mib(end_kib)
    );
}

/// Datagrams dropped by the kernel on the sockets bound to 127.0.0.1:`port`
/// (Linux /proc/net/udp, last column): where a lost query was lost.
fn udp_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

/// CPU time stolen by the hypervisor so far, in clock ticks (/proc/stat).
fn steal_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or(0)
}

/// The 1-minute load average: the machine is shared, and figures taken
/// under other builds read differently.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_string()
}

fn se_object(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

/// A name's A addresses (empty for NXDOMAIN), retried once.
fn resolve(m: &Meshdns, name: &str) -> BTreeSet<Ipv4Addr> {
    let fqdn = format!("{name}.");
    let reply = query_udp_once(m.dns, &fqdn, RecordType::A)
        .or_else(|_| query_udp_once(m.dns, &fqdn, RecordType::A))
        .unwrap_or_else(|e| panic!("no answer for {name}: {e}"));
    a_records(&reply).into_iter().collect()
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// /metrics

struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn scrape(m: &Meshdns) -> Metrics {
        let (code, body) = http_get(m.admin, "/metrics").unwrap();
        assert_eq!(code, 200);
        Metrics(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' '))
                .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                .collect(),
        )
    }

    /// A series by its full text (`name{labels}`), 0 when absent.
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The upper bound of the histogram bucket holding quantile `q` of what
    /// `name` observed between `before` and `self`.
    fn quantile_since(&self, before: &Metrics, name: &str, q: f64) -> Option<f64> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((le.parse().ok()?, v - before.get(k)))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        buckets.iter().find(|(_, n)| *n >= q * total).map(|(le, _)| *le)
    }
}

// ---------------------------------------------------------------------------
// The load: a paced UDP client that checks every answer

enum Expect {
    /// NOERROR with exactly these addresses.
    Exact(Vec<Ipv4Addr>),
    /// Churning: NXDOMAIN, or NOERROR with addresses from the churn ranges.
    Churned,
}

struct Load {
    qps: u64,
    names: Vec<String>,
    /// Each name's query (id 0, RD=0, no EDNS), as on the wire.
    wire: Vec<Vec<u8>>,
    expect: Vec<Expect>,
}

impl Load {
    fn new(qps: u64) -> Load {
        let mut names = Vec::new();
        let mut expect = Vec::new();
        for i in 0..STABLE {
            names.push(stable_host(i));
            expect.push(Expect::Exact(
                [
                    Ipv4Addr::new(240, 10, 0, i as u8 + 1),
                    Ipv4Addr::new(240, 20, 0, i as u8 + 1),
                ]
                .into(),
            ));
        }
        for i in 0..CHURN_NAMES {
            names.push(churn_host(i));
            expect.push(Expect::Churned);
        }
        let wire = names
            .iter()
            .map(|n| {
                let mut q = Message::query();
                q.metadata.id = 0;
                q.metadata.recursion_desired = false;
                q.add_query(Query::query(Name::from_ascii(format!("{n}.")).unwrap(), RecordType::A));
                q.to_vec().unwrap()
            })
            .collect();
        Load {
            qps,
            names,
            wire,
            expect,
        }
    }

    fn stable_addrs(&self, i: usize) -> &[Ipv4Addr] {
        match &self.expect[i] {
            Expect::Exact(v) => v,
            Expect::Churned => unreachable!(),
        }
    }

    /// Query `k`'s name: nine in ten stable, one in ten churned, each
    /// group in turn (counted within the group, so that every name comes up).
    fn pick(k: u64) -> usize {
        if k % 10 == 9 {
            STABLE + (k / 10 % CHURN_NAMES as u64) as usize
        } else {
            ((k / 10 * 9 + k % 10) % STABLE as u64) as usize
        }
    }

    fn check(&self, reply: &[u8], idx: usize) -> Result<(), String> {
        let m = Message::from_vec(reply).map_err(|e| format!("unparsable reply: {e}"))?;
        let name = &self.names[idx];
        let asked = m.queries.first().map(|q| q.name().to_ascii());
        if !asked
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(&format!("{name}.")))
        {
            return Err(format!("{name}: reply is for {asked:?}"));
        }
        let rcode = m.metadata.response_code;
        let mut addrs = a_records(&m);
        addrs.sort();
        let fine = match &self.expect[idx] {
            Expect::Exact(want) => rcode == ResponseCode::NoError && addrs == *want,
            Expect::Churned => match rcode {
                ResponseCode::NXDomain => m.answers.is_empty(),
                ResponseCode::NoError => {
                    !addrs.is_empty()
                        && addrs.len() == m.answers.len()
                        && addrs.iter().all(|a| [KUBE_NET, FILE_NET].contains(&a.octets()[1]))
                }
                _ => false,
            },
        };
        if fine {
            Ok(())
        } else {
            Err(format!("{name}: {rcode:?} {addrs:?}"))
        }
    }

    /// Sends `total` queries at `qps` from `t0` (never past `hard_stop`),
    /// over [`SOCKETS`] sockets, with one receiver thread per socket.
    fn start(self: Arc<Self>, server: std::net::SocketAddr, total: u64, t0: Instant, hard_stop: Instant) -> Client {
        let socks: Vec<Arc<UdpSocket>> = (0..SOCKETS)
            .map(|_| {
                // 4 MiB, as meshdns's own sockets: a client thread that the
                // shared machine stalls must not drop answers meshdns sent.
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
                s.set_recv_buffer_size(4 << 20).unwrap();
                s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
                let s = UdpSocket::from(s);
                s.connect(server).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                Arc::new(s)
            })
            .collect();
        // Per socket and query id: 0, or (send time in ns + 1) << 16 | name.
        let slots: Arc<Vec<Vec<AtomicU64>>> = Arc::new(
            (0..SOCKETS)
                .map(|_| (0..65536).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let receivers = (0..SOCKETS)
            .map(|s| {
                let (sock, slots, stop, load) = (socks[s].clone(), slots.clone(), stop.clone(), self.clone());
                std::thread::spawn(move || load.receive(&sock, &slots[s], t0, &stop, hard_stop))
            })
            .collect();
        let sender = {
            let (socks, slots, load) = (socks.clone(), slots.clone(), self.clone());
            std::thread::spawn(move || load.send(&socks, &slots, total, t0, hard_stop))
        };
        Client {
            sender,
            receivers,
            slots,
            stop,
            socks,
        }
    }

    fn send(
        &self,
        socks: &[Arc<UdpSocket>],
        slots: &[Vec<AtomicU64>],
        total: u64,
        t0: Instant,
        hard_stop: Instant,
    ) -> Sent {
        let mut sent = Sent::default();
        let mut buf = [0u8; 512];
        for k in 0..total {
            // Paced by the clock, not by sleeps: a late wake-up sends the
            // queries that fell due meanwhile, so the average rate holds.
            let due = Duration::from_nanos((k as u128 * 1_000_000_000 / self.qps as u128) as u64);
            let now = t0.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            } else if now - due > sent.max_lag {
                sent.max_lag = now - due;
                sent.max_lag_at = now;
            }
            if Instant::now() > hard_stop {
                break;
            }
            let (s, id) = ((k % SOCKETS as u64) as usize, (k / SOCKETS as u64 % 65536) as u16);
            let idx = Load::pick(k);
            let wire = &self.wire[idx];
            buf[..wire.len()].copy_from_slice(wire);
            buf[..2].copy_from_slice(&id.to_be_bytes());
            let sent_ns = t0.elapsed().as_nanos() as u64;
            // A slot still set when its id comes round again (52 s later at
            // 5k qps) was never answered.
            if slots[s][id as usize].swap((sent_ns + 1) << 16 | idx as u64, Ordering::SeqCst) != 0 {
                sent.unanswered += 1;
            }
            if socks[s].send(&buf[..wire.len()]).is_err() {
                sent.errors += 1;
            }
            sent.count += 1;
        }
        sent.secs = t0.elapsed().as_secs_f64();
        sent
    }

    fn receive(
        &self,
        sock: &UdpSocket,
        slots: &[AtomicU64],
        t0: Instant,
        stop: &AtomicBool,
        hard_stop: Instant,
    ) -> Tally {
        let mut t = Tally::default();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) && Instant::now() < hard_stop {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                // Timeouts let the loop see `stop`; a refusal (ICMP) shows as lost.
                Err(_) => continue,
            };
            let now = t0.elapsed().as_nanos() as u64;
            if n < 12 {
                t.stray += 1;
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let v = slots[id as usize].swap(0, Ordering::SeqCst);
            if v == 0 {
                t.stray += 1;
                continue;
            }
            let (sent_ns, idx) = ((v >> 16) - 1, (v & 0xffff) as usize);
            let latency = Duration::from_nanos(now.saturating_sub(sent_ns));
            t.answered += 1;
            if latency > LOST_AFTER {
                t.late += 1;
            }
            t.all.record(latency);
            if sent_ns >= SETTLE.as_nanos() as u64 {
                t.steady.record(latency);
            }
            if let Err(e) = self.check(&buf[..n], idx) {
                t.wrong += 1;
                if t.examples.len() < 10 {
                    t.examples.push(format!("at {:.3} s: {e}", sent_ns as f64 / 1e9));
                }
            }
        }
        t
    }
}

struct Client {
    sender: std::thread::JoinHandle<Sent>,
    receivers: Vec<std::thread::JoinHandle<Tally>>,
    slots: Arc<Vec<Vec<AtomicU64>>>,
    stop: Arc<AtomicBool>,
    /// Kept open until the end, to read their drop counts.
    socks: Vec<Arc<UdpSocket>>,
}

impl Client {
    /// Waits for the last query's answer (up to [`LOST_AFTER`]); every
    /// query still unanswered then is lost.
    fn finish(self) -> Tally {
        let sent = self.sender.join().unwrap();
        std::thread::sleep(LOST_AFTER);
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for r in self.receivers {
            tally.merge(r.join().unwrap());
        }
        for v in self
            .slots
            .iter()
            .flatten()
            .map(|s| s.load(Ordering::SeqCst))
            .filter(|v| *v != 0)
        {
            tally.unanswered += 1;
            *tally.lost_at.entry(((v >> 16) - 1) / 1_000_000_000).or_default() += 1;
        }
        tally.unanswered += sent.unanswered;
        tally.client_drops = self
            .socks
            .iter()
            .map(|s| udp_drops(s.local_addr().unwrap().port()))
            .sum();
        tally.max_lag = (sent.max_lag, sent.max_lag_at);
        tally.sent = sent.count;
        tally.send_errors = sent.errors;
        tally.send_secs = sent.secs;
        tally
    }
}

#[derive(Default)]
struct Sent {
    count: u64,
    unanswered: u64,
    errors: u64,
    secs: f64,
    /// How far behind its schedule the sender fell at worst, and when.
    max_lag: Duration,
    max_lag_at: Duration,
}

#[derive(Default)]
struct Tally {
    sent: u64,
    send_errors: u64,
    send_secs: f64,
    answered: u64,
    unanswered: u64,
    /// Answered, but after [`LOST_AFTER`].
    late: u64,
    stray: u64,
    wrong: u64,
    examples: Vec<String>,
    all: Histogram,
    steady: Histogram,
    /// Unanswered queries by the second they were sent in (the last 52 s).
    lost_at: std::collections::BTreeMap<u64, u64>,
    /// Datagrams the kernel dropped on the client's sockets (full buffer).
    client_drops: u64,
    max_lag: (Duration, Duration),
}

impl Tally {
    fn lost(&self) -> u64 {
        self.unanswered + self.late
    }

    fn merge(&mut self, o: Tally) {
        self.answered += o.answered;
        self.late += o.late;
        self.stray += o.stray;
        self.wrong += o.wrong;
        self.examples.extend(o.examples);
        self.all.merge(o.all);
        self.steady.merge(o.steady);
    }
}

struct Histogram {
    us: Vec<u64>,
    over: Vec<Duration>,
    max: Duration,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            us: vec![0; HIST_US],
            over: Vec::new(),
            max: Duration::ZERO,
        }
    }
}

impl Histogram {
    fn record(&mut self, d: Duration) {
        match self.us.get_mut(d.as_micros() as usize) {
            Some(n) => *n += 1,
            None => self.over.push(d),
        }
        self.max = self.max.max(d);
    }

    fn merge(&mut self, o: Histogram) {
        for (a, b) in self.us.iter_mut().zip(o.us) {
            *a += b;
        }
        self.over.extend(o.over);
        self.max = self.max.max(o.max);
    }

    /// p50, p99 (each the upper edge of its 1 µs bucket) and the maximum.
    fn percentiles(&self) -> (Duration, Duration, Duration) {
        let total: u64 = self.us.iter().sum::<u64>() + self.over.len() as u64;
        let at = |p: f64| {
            let rank = ((total as f64 * p).ceil() as u64).max(1);
            let mut seen = 0;
            for (us, n) in self.us.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Duration::from_micros(us as u64 + 1);
                }
            }
            let mut over = self.over.clone();
            over.sort();
            over.get((rank - seen - 1) as usize).copied().unwrap_or(self.max)
        };
        (at(0.50), at(0.99), self.max)
    }
}

// ---------------------------------------------------------------------------
// Churn through the API server

#[derive(Default)]
struct KubeOps {
    creates: u64,
    updates: u64,
    deletes: u64,
    errors: u64,
}

impl KubeOps {
    fn total(&self) -> u64 {
        self.creates + self.updates + self.deletes
    }
}

/// Until `deadline`: picks a pool name; creates it if absent, else updates
/// its address (7 in 10) or deletes it. Two writers on halves of the pool,
/// a few milliseconds apart each. Returns the final state and the counts.
async fn churn_kube(
    api: Api<DynamicObject>,
    state: Vec<Option<Ipv4Addr>>,
    deadline: Instant,
    seed: u64,
) -> (Vec<Option<Ipv4Addr>>, KubeOps) {
    const WRITERS: usize = 2;
    let writers = (0..WRITERS)
        .map(|w| {
            let api = api.clone();
            let mut mine: Vec<(usize, Option<Ipv4Addr>)> = state
                .iter()
                .copied()
                .enumerate()
                .filter(|(i, _)| i % WRITERS == w)
                .collect();
            async move {
                let mut rng = Rng((seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
                let mut ops = KubeOps::default();
                let mut generation = KUBE_POOL as u64 + w as u64;
                // Bounded in count too: at most one write a millisecond.
                let max_ops = deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
                while Instant::now() < deadline && ops.total() + ops.errors < max_ops {
                    let k = rng.below(mine.len());
                    let (i, current) = mine[k];
                    let name = format!("churn-{i}");
                    generation += WRITERS as u64;
                    let addr = churn_addr(KUBE_NET, generation);
                    let result = match current {
                        None => api
                            .create(
                                &PostParams::default(),
                                &se_object(&name, se(&[&churn_host(i)], &[&addr.to_string()])),
                            )
                            .await
                            .map(|_| {
                                ops.creates += 1;
                                Some(addr)
                            }),
                        Some(_) if rng.below(10) < 7 => api
                            .patch(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"spec": {"addresses": [addr.to_string()]}})),
                            )
                            .await
                            .map(|_| {
                                ops.updates += 1;
                                Some(addr)
                            }),
                        Some(_) => api.delete(&name, &DeleteParams::default()).await.map(|_| {
                            ops.deletes += 1;
                            None
                        }),
                    };
                    mine[k].1 = match result {
                        Ok(now) => now,
                        // The write may or may not have happened: ask.
                        Err(e) => {
                            ops.errors += 1;
                            eprintln!("kube churn: {name}: {e}; reading it back");
                            let obj = api.get_opt(&name).await.unwrap();
                            obj.map(|o| o.data["spec"]["addresses"][0].as_str().unwrap().parse().unwrap())
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (mine, ops)
            }
        })
        .collect::<Vec<_>>();
    let mut state = state;
    let mut total = KubeOps::default();
    for (mine, ops) in futures::future::join_all(writers).await {
        for (i, addr) in mine {
            state[i] = addr;
        }
        total.creates += ops.creates;
        total.updates += ops.updates;
        total.deletes += ops.deletes;
        total.errors += ops.errors;
    }
    (state, total)
}

// ---------------------------------------------------------------------------
// Churn through files

#[derive(Default, Clone, Copy)]
struct FileOps {
    atomic: u64,
    in_place: u64,
    renames: u64,
    deletes: u64,
    broken: u64,
}

impl FileOps {
    fn total(&self) -> u64 {
        self.atomic + self.in_place + self.renames + self.deletes + self.broken
    }
}

/// What a churn file holds: good content (a ServiceEntry for `hosts` at
/// `addr`), or, when `broken`, a manifest meshdns must reject.
struct Content {
    hosts: Vec<usize>,
    addr: Ipv4Addr,
    broken: bool,
}

struct FileChurn {
    dir: PathBuf,
    rng: Rng,
    generation: u64,
    /// `churn-{j}.yaml`, as last written.
    slots: Vec<Option<Content>>,
    ops: FileOps,
}

impl FileChurn {
    fn new(dir: &Path, seed: u64) -> FileChurn {
        FileChurn {
            dir: dir.to_path_buf(),
            rng: Rng(seed.rotate_left(17) | 1),
            generation: 0,
            slots: (0..FILE_SLOTS).map(|_| None).collect(),
            ops: FileOps::default(),
        }
    }

    fn path(&self, j: usize) -> PathBuf {
        self.dir.join(format!("churn-{j}.yaml"))
    }

    /// Good content: one ServiceEntry with 1–3 distinct file-pool hosts.
    fn good(&mut self) -> (Content, String) {
        self.generation += 1;
        let addr = churn_addr(FILE_NET, self.generation);
        let mut hosts = BTreeSet::new();
        for _ in 0..1 + self.rng.below(3) {
            hosts.insert(FILE_HOSTS.start + self.rng.below(FILE_HOSTS.len()));
        }
        let hosts: Vec<usize> = hosts.into_iter().collect();
        let names: Vec<String> = hosts.iter().map(|h| churn_host(*h)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let text = service_entry(&format!("f{}", self.generation), &names, &[&addr.to_string()]);
        let content = Content {
            hosts,
            addr,
            broken: false,
        };
        (content, text)
    }

    /// Writes a hidden temporary file (meshdns skips dot files) and renames
    /// it into place, as a careful writer does.
    fn put(&self, j: usize, text: &str) {
        let tmp = self.dir.join(format!(".churn-{j}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(j)).unwrap();
    }

    fn write_atomic(&mut self, j: usize) {
        let (content, text) = self.good();
        self.put(j, &text);
        self.slots[j] = Some(content);
        self.ops.atomic += 1;
    }

    fn run(&mut self, deadline: Instant) {
        // Bounded in count too: at most one operation a millisecond.
        let max_ops = deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        while Instant::now() < deadline && self.ops.total() < max_ops {
            let j = self.rng.below(FILE_SLOTS);
            let roll = self.rng.below(100);
            if self.slots[j].is_none() || roll < 55 {
                self.write_atomic(j);
            } else if roll < 65 {
                // In place, truncating first: meshdns may read it empty
                // (and keep the last good state) before the text lands.
                let (content, text) = self.good();
                std::fs::write(self.path(j), text).unwrap();
                self.slots[j] = Some(content);
                self.ops.in_place += 1;
            } else if roll < 80 {
                match (0..FILE_SLOTS).find(|&t| self.slots[(j + t) % FILE_SLOTS].is_none()) {
                    Some(t) => {
                        let to = (j + t) % FILE_SLOTS;
                        std::fs::rename(self.path(j), self.path(to)).unwrap();
                        self.slots[to] = self.slots[j].take();
                        self.ops.renames += 1;
                    }
                    None => self.write_atomic(j),
                }
            } else if roll < 95 {
                std::fs::remove_file(self.path(j)).unwrap();
                self.slots[j] = None;
                self.ops.deletes += 1;
            } else {
                // Broken YAML, or a ServiceEntry whose fields have the wrong types.
                let text = if self.rng.below(2) == 0 {
                    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: broken\nspec: [\n"
                } else {
                    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: broken, namespace: test}\nspec: {hosts: not-a-list, addresses: [1, 2]}\n"
                };
                self.put(j, text);
                self.slots[j] = Some(Content {
                    hosts: Vec::new(),
                    addr: Ipv4Addr::UNSPECIFIED,
                    broken: true,
                });
                self.ops.broken += 1;
            }
            std::thread::sleep(Duration::from_micros(1000 + self.rng.below(3000) as u64));
        }
    }

    /// Rewrites every broken file with good content; returns how many.
    fn fix_broken(&mut self) -> usize {
        let broken: Vec<usize> = (0..FILE_SLOTS)
            .filter(|&j| self.slots[j].as_ref().is_some_and(|c| c.broken))
            .collect();
        for &j in &broken {
            self.write_atomic(j);
        }
        broken.len()
    }
}
