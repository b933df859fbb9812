//! DNS request metrics, `meshdns_dns_*`. Label values come from small fixed
//! sets, and the counter handles are resolved once at start-up, so
//! recording costs a few atomic adds per query whatever the traffic.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::local::LocalHistogram;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::sys::mmsg::BATCH;

/// Query types with their own label; everything else is `other`.
const TYPES: [RecordType; 16] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::SOA,
    RecordType::NS,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::AXFR,
    RecordType::IXFR,
];
const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::BADVERS, "BADVERS"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp = 0,
    Tcp = 1,
    Grpc = 2,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Grpc => "grpc",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a DNS header.
    Short,
    /// QR=1: answering responses would make us a reflector.
    Response,
    /// The kernel dropped it: the socket's receive queue was full
    /// (`--udp-recv-buffer`), because queries came faster than we answer.
    QueueFull,
}

/// Why a TCP connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpClose {
    /// The client closed it between messages.
    Eof,
    /// The client closed it inside a message.
    Truncated,
    /// No message began within the idle timeout.
    Idle,
    /// A message did not arrive whole within the stall timeout.
    Stalled,
    /// The client did not take our replies within the stall timeout.
    WriteStalled,
    /// Closed at the connection cap to admit a new client.
    Reclaimed,
    /// It reached the per-connection query cap.
    QueryLimit,
    /// A message too short to answer, so the framing is suspect.
    Malformed,
    /// A read or write failed (a reset, for instance).
    Error,
}

impl TcpClose {
    const ALL: [TcpClose; 9] = [
        TcpClose::Eof,
        TcpClose::Truncated,
        TcpClose::Idle,
        TcpClose::Stalled,
        TcpClose::WriteStalled,
        TcpClose::Reclaimed,
        TcpClose::QueryLimit,
        TcpClose::Malformed,
        TcpClose::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TcpClose::Eof => "eof",
            TcpClose::Truncated => "truncated",
            TcpClose::Idle => "idle",
            TcpClose::Stalled => "stalled",
            TcpClose::WriteStalled => "write_stalled",
            TcpClose::Reclaimed => "reclaimed",
            TcpClose::QueryLimit => "query_limit",
            TcpClose::Malformed => "malformed",
            TcpClose::Error => "error",
        }
    }
}

fn type_index(qtype: Option<RecordType>) -> usize {
    qtype
        .and_then(|t| TYPES.iter().position(|x| *x == t))
        .unwrap_or(TYPES.len())
}

fn rcode_index(rcode: ResponseCode) -> usize {
    RCODES.iter().position(|x| x.0 == rcode).unwrap_or(RCODES.len())
}

/// The UDP fast path's answers as one reader thread counts them, added to
/// the shared metrics by [`flush`] once per batch of datagrams. A shared
/// histogram costs four atomic operations per observation, on cache lines
/// every reader of the socket writes; a batch of more than `FEW` answers
/// is summed here first, on plain integers, and costs a few atomic adds in
/// all. A batch of one or two, as at moderate rates, goes straight to the
/// shared metrics, which is cheaper than summing.
///
/// It also keeps the reader's clock. Fast answers are timed as a run, not
/// one by one: the answers since the mark (a batch, or the part of it
/// between general-path answers, which time themselves) share the time to
/// [`settle`] equally, the batch's look ahead included. A clock read is tens
/// of nanoseconds in a VM, a sizeable part of a fast answer; this way a
/// batch costs two however many it answers. A fast answer takes well under
/// the histogram's first bucket (1 µs), so equal shares land where single
/// timings would, and the sum is the same.
///
/// [`flush`]: UdpRecorder::flush
/// [`settle`]: UdpRecorder::settle
pub struct UdpRecorder {
    shared: DnsMetrics,
    mark: Instant,
    /// The last this many of `answered` wait for [`UdpRecorder::settle`]
    /// to time them.
    untimed: usize,
    answered: Vec<Answered>,
    request_size: LocalHistogram,
    response_size: LocalHistogram,
    duration: LocalHistogram,
}

/// Answers a flush sends straight to the shared metrics.
const FEW: usize = 2;

#[derive(Clone, Copy)]
struct Answered {
    qtype: RecordType,
    rcode: ResponseCode,
    request_size: usize,
    response_size: usize,
    took: Duration,
}

impl UdpRecorder {
    /// Gives the fast answers since the mark equal shares of the time since
    /// it, and moves the mark to now: at the start of a batch, before and
    /// after work that is not a fast answer (the general path), and in
    /// [`flush`](Self::flush).
    pub fn settle(&mut self) {
        let now = Instant::now();
        if self.untimed > 0 {
            let share = now.saturating_duration_since(self.mark) / self.untimed as u32;
            let first = self.answered.len() - self.untimed;
            self.answered[first..].iter_mut().for_each(|a| a.took = share);
            self.untimed = 0;
        }
        self.mark = now;
    }

    /// A fast answer just written, timed at the next
    /// [`settle`](Self::settle).
    pub fn answered_fast(&mut self, qtype: RecordType, rcode: ResponseCode, request_size: usize, response_size: usize) {
        self.answered(qtype, rcode, request_size, response_size, Duration::ZERO);
        self.untimed += 1;
    }

    /// A query the fast path answered (never with TC=1).
    pub fn answered(
        &mut self,
        qtype: RecordType,
        rcode: ResponseCode,
        request_size: usize,
        response_size: usize,
        took: Duration,
    ) {
        // A reader flushes every batch; this only bounds a caller that does not.
        if self.answered.len() == BATCH {
            self.flush();
        }
        self.answered.push(Answered {
            qtype,
            rcode,
            request_size,
            response_size,
            took,
        });
    }

    /// Adds what was counted since the last flush to the shared metrics.
    pub fn flush(&mut self) {
        self.settle();
        let shared = &self.shared;
        if self.answered.len() <= FEW {
            for a in self.answered.drain(..) {
                shared.request(Proto::Udp, Some(a.qtype), a.request_size);
                shared.response(a.rcode, a.response_size, false, a.took);
            }
            return;
        }
        let mut requests = [0; TYPES.len() + 1];
        let mut responses = [0; RCODES.len() + 1];
        for a in self.answered.drain(..) {
            requests[type_index(Some(a.qtype))] += 1;
            responses[rcode_index(a.rcode)] += 1;
            self.request_size.observe(a.request_size as f64);
            self.response_size.observe(a.response_size as f64);
            self.duration.observe(a.took.as_secs_f64());
        }
        for (counter, n) in shared.requests[Proto::Udp as usize].iter().zip(requests) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        for (counter, n) in shared.responses.iter().zip(responses) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        self.request_size.flush();
        self.response_size.flush();
        self.duration.flush();
    }
}

/// `--workers auto`'s standby UDP readers (`dns::standby`).
#[derive(Clone)]
pub struct StandbyMetrics {
    /// Standby readers woken by a backlog.
    pub wakeups: IntCounter,
    /// Standby readers awake now.
    pub awake: IntGauge,
}

#[derive(Clone)]
pub struct DnsMetrics {
    /// [proto][type index, `other` last]
    requests: [[IntCounter; TYPES.len() + 1]; 3],
    /// [rcode index, `other` last]
    responses: [IntCounter; RCODES.len() + 1],
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
    truncated: IntCounter,
    dropped: [IntCounter; 3],
    tcp_connections: IntGauge,
    /// Indexed by `TcpClose as usize`.
    tcp_closed: [IntCounter; TcpClose::ALL.len()],
    tcp_accept_errors: IntCounter,
    standby: StandbyMetrics,
    short_slice: IntGauge,
}

impl DnsMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("meshdns_dns_requests_total", "DNS requests by transport and query type"),
            &["proto", "type"],
        )?;
        let responses = IntCounterVec::new(
            Opts::new("meshdns_dns_responses_total", "DNS responses by rcode"),
            &["rcode"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "meshdns_dns_request_duration_seconds",
                "Time from a parsed request to its encoded answer",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2,
            ]),
        )?;
        let sizes = vec![
            32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 1232.0, 2048.0, 4096.0, 16384.0, 65535.0,
        ];
        let request_size = Histogram::with_opts(
            HistogramOpts::new("meshdns_dns_request_size_bytes", "DNS request sizes").buckets(sizes.clone()),
        )?;
        let response_size = Histogram::with_opts(
            HistogramOpts::new("meshdns_dns_response_size_bytes", "DNS response sizes").buckets(sizes),
        )?;
        let truncated = IntCounter::new(
            "meshdns_dns_truncated_total",
            "UDP answers sent with TC=1 and no records",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "meshdns_dns_dropped_total",
                "UDP packets dropped without a reply, by reason",
            ),
            &["reason"],
        )?;
        let tcp_connections = IntGauge::new("meshdns_dns_tcp_connections", "Open TCP connections")?;
        let tcp_closed = IntCounterVec::new(
            Opts::new(
                "meshdns_dns_tcp_connections_closed_total",
                "TCP connections closed, by reason (reclaimed: closed at --tcp-max-connections to admit a new client)",
            ),
            &["reason"],
        )?;
        let tcp_accept_errors = IntCounter::new(
            "meshdns_dns_tcp_accept_errors_total",
            "TCP accepts that failed (out of descriptors, for instance)",
        )?;
        let standby = StandbyMetrics {
            wakeups: IntCounter::new(
                "meshdns_dns_udp_standby_wakeups_total",
                "Standby UDP readers woken because a reader found a lasting backlog or a full queue (--workers auto)",
            )?,
            awake: IntGauge::new(
                "meshdns_dns_udp_standby_awake",
                "Standby UDP readers awake now, draining a backlog (--workers auto)",
            )?,
        };
        let short_slice = IntGauge::new(
            "meshdns_dns_udp_short_slice",
            "1 while the UDP readers ask for a short scheduler slice (--udp-sched-slice)",
        )?;
        registry.register(Box::new(short_slice.clone()))?;
        registry.register(Box::new(standby.wakeups.clone()))?;
        registry.register(Box::new(standby.awake.clone()))?;
        registry.register(Box::new(tcp_connections.clone()))?;
        registry.register(Box::new(tcp_closed.clone()))?;
        registry.register(Box::new(tcp_accept_errors.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(request_size.clone()))?;
        registry.register(Box::new(response_size.clone()))?;
        registry.register(Box::new(truncated.clone()))?;
        registry.register(Box::new(dropped.clone()))?;

        let by_type = |proto: &str| {
            std::array::from_fn(|i| {
                let name = TYPES.get(i).map_or("other".to_string(), |t| t.to_string());
                requests.with_label_values(&[proto, &name])
            })
        };
        Ok(Self {
            requests: [Proto::Udp, Proto::Tcp, Proto::Grpc].map(|p| by_type(p.label())),
            responses: std::array::from_fn(|i| responses.with_label_values(&[RCODES.get(i).map_or("other", |r| r.1)])),
            duration,
            request_size,
            response_size,
            truncated,
            dropped: [
                dropped.with_label_values(&["short"]),
                dropped.with_label_values(&["response"]),
                dropped.with_label_values(&["queue_full"]),
            ],
            tcp_connections,
            tcp_closed: TcpClose::ALL.map(|c| tcp_closed.with_label_values(&[c.label()])),
            tcp_accept_errors,
            standby,
            short_slice,
        })
    }

    pub fn request(&self, proto: Proto, qtype: Option<RecordType>, size: usize) {
        self.requests[proto as usize][type_index(qtype)].inc();
        self.request_size.observe(size as f64);
    }

    pub fn response(&self, rcode: ResponseCode, size: usize, truncated: bool, took: Duration) {
        self.responses[rcode_index(rcode)].inc();
        self.response_size.observe(size as f64);
        self.duration.observe(took.as_secs_f64());
        if truncated {
            self.truncated.inc();
        }
    }

    /// A recorder for one UDP reader thread; see [`UdpRecorder`].
    pub fn udp_recorder(&self) -> UdpRecorder {
        UdpRecorder {
            shared: self.clone(),
            mark: Instant::now(),
            untimed: 0,
            answered: Vec::with_capacity(BATCH),
            request_size: self.request_size.local(),
            response_size: self.response_size.local(),
            duration: self.duration.local(),
        }
    }

    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }

    pub fn dropped_n(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].inc_by(n);
    }

    pub fn tcp_open(&self, open: usize) {
        self.tcp_connections.set(open as i64);
    }

    pub fn tcp_closed(&self, close: TcpClose) {
        self.tcp_closed[close as usize].inc();
    }

    pub fn tcp_accept_error(&self) {
        self.tcp_accept_errors.inc();
    }

    pub fn short_slice(&self) -> &IntGauge {
        &self.short_slice
    }

    pub fn standby(&self) -> &StandbyMetrics {
        &self.standby
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_answered(i: usize) -> (RecordType, ResponseCode, usize, usize, Duration) {
        let qtype = if i.is_multiple_of(3) {
            RecordType::AAAA
        } else {
            RecordType::A
        };
        let rcode = if i.is_multiple_of(5) {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        (
            qtype,
            rcode,
            30 + i % 40,
            50 + i * 7 % 300,
            Duration::from_nanos(300 + i as u64 * 997),
        )
    }

    /// The registry's text, `_sum` lines apart: summing first may round the
    /// last bit of a float sum differently.
    fn exposition(registry: &Registry) -> (String, Vec<f64>) {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let (sums, rest): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.contains("_sum"));
        let sums = sums
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        (rest.join("\n"), sums)
    }

    /// The shared duration histogram's count and sum.
    fn mk_duration(registry: &Registry) -> (u64, f64) {
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "meshdns_dns_request_duration_seconds")
            .expect("registered");
        let h = family.get_metric()[0].get_histogram();
        (h.get_sample_count(), h.get_sample_sum())
    }

    #[test]
    fn a_run_of_fast_answers_shares_the_time_to_the_settle() {
        let registry = Registry::new();
        let mut recorder = DnsMetrics::register(&registry).unwrap().udp_recorder();
        let pause = Duration::from_millis(40);
        recorder.settle();
        std::thread::sleep(pause);
        recorder.answered_fast(RecordType::A, ResponseCode::NoError, 40, 60);
        recorder.answered_fast(RecordType::A, ResponseCode::NoError, 40, 60);
        // A general-path answer: settled before, its own time not theirs.
        recorder.settle();
        std::thread::sleep(pause);
        recorder.settle();
        recorder.answered_fast(RecordType::AAAA, ResponseCode::NoError, 40, 60);
        recorder.flush();
        let (count, sum) = mk_duration(&registry);
        assert_eq!(count, 3);
        assert!(sum >= pause.as_secs_f64(), "the run's time: {sum}");
        assert!(sum < 2.0 * pause.as_secs_f64(), "the general path's time too: {sum}");
        // Each of the two holds half: both in the bucket above 10 ms.
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let at_10ms = text
            .lines()
            .find(|l| l.starts_with("meshdns_dns_request_duration_seconds_bucket{le=\"0.01\"}"))
            .expect("a 10 ms bucket");
        assert!(at_10ms.ends_with(" 1"), "{at_10ms}");
        // Nothing left untimed: a later flush adds nothing.
        recorder.flush();
        assert_eq!(mk_duration(&registry), (count, sum));
    }

    #[test]
    fn a_recorder_adds_up_to_what_direct_recording_does() {
        let direct = Registry::new();
        let recorded = Registry::new();
        let metrics = DnsMetrics::register(&direct).unwrap();
        let mut recorder = DnsMetrics::register(&recorded).unwrap().udp_recorder();
        let mut i = 0;
        // Batches at and either side of FEW, and one past the recorder's room.
        for batch in [1, 2, 3, 7, 1, BATCH, BATCH + 5] {
            for _ in 0..batch {
                let (qtype, rcode, request, response, took) = mk_answered(i);
                metrics.request(Proto::Udp, Some(qtype), request);
                metrics.response(rcode, response, false, took);
                recorder.answered(qtype, rcode, request, response, took);
                i += 1;
            }
            recorder.flush();
            let (want, want_sums) = exposition(&direct);
            let (got, got_sums) = exposition(&recorded);
            assert_eq!(got, want, "after a batch of {batch}");
            for (g, w) in got_sums.iter().zip(&want_sums) {
                assert!((g - w).abs() <= w.abs() * 1e-12, "sum {g} against {w}");
            }
        }
    }
}
