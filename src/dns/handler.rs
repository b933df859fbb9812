//! The answer to one parsed request, whatever the transport: protocol
//! checks (opcode, EDNS, question count, readiness), the answer from the
//! table, UDP size limits, metrics. `udp`, `tcp` and `grpc` only move bytes. Also
//! what a request must be to parse ([`parse`]), and the FORMERR for one
//! that does not ([`Handler::respond_malformed`]).

mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, EmitAndCount, Header, HeaderCounts, Metadata, OpCode, ResponseCode, emit_message_parts};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::Queries;
use tracing::{debug, warn};

use super::answer::{Reply, answer};
use super::edns::{EDNS_PAYLOAD, udp_limit};
use super::metrics::{DnsMetrics, DropReason, Proto, UdpRecorder};
use crate::admin::Readiness;
use crate::index::{Index, Table};

pub struct Handler {
    index: Arc<Index>,
    ready: Readiness,
    metrics: DnsMetrics,
}

/// Everything a response holds except the question, which is copied from
/// the request as it came (its case included).
struct Prepared {
    metadata: Metadata,
    edns: Option<Edns>,
    reply: Reply,
}

impl Handler {
    /// Until `ready`, every query gets SERVFAIL: a table still loading
    /// must not answer NXDOMAIN for names that exist.
    pub fn new(index: Arc<Index>, ready: Readiness, metrics: DnsMetrics) -> Self {
        Self { index, ready, metrics }
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    fn prepare(&self, request: &Request) -> Prepared {
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD).set_version(0);
            // RFC 3225: DO is copied to the response.
            ours.set_dnssec_ok(theirs.flags().dnssec_ok);
            ours
        });
        // EDNS first, then the opcode, as Knot does.
        let reply = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Err(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Err(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Err(ResponseCode::FormErr)
        } else if !self.ready.synced() {
            Err(ResponseCode::ServFail)
        } else {
            Ok(answer(&self.index.table(), request.queries.queries()[0].original()))
        };
        let reply = reply.unwrap_or_else(|rcode| Reply {
            rcode,
            ..Reply::refused()
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.rcode;
        metadata.authoritative = reply.authoritative;
        Prepared { metadata, edns, reply }
    }

    /// The table the fast path answers from; `None` until the index has
    /// synced, when every query takes the general path. Hold it briefly: a
    /// UDP reader holds it for one batch.
    pub fn fast_table(&self) -> Option<arc_swap::Guard<Arc<Table>>> {
        self.ready.synced().then(|| self.index.load())
    }

    /// The fast path for one raw UDP packet ([`super::fast::respond`]);
    /// false when the packet needs the general path. Counted in `recorder`,
    /// which the caller flushes, and timed with the others since its mark
    /// ([`UdpRecorder::settle`]). A UDP reader does the same a batch at a
    /// time ([`super::fast::Lookahead`]).
    pub fn respond_fast(&self, packet: &[u8], out: &mut Vec<u8>, recorder: &mut UdpRecorder) -> bool {
        let Some(table) = self.fast_table() else {
            return false;
        };
        let Some((rcode, qtype)) = super::fast::respond(packet, &table, out) else {
            return false;
        };
        recorder.answered_fast(qtype, rcode, packet.len(), out.len());
        true
    }

    /// Answers a parsed UDP request into `out` (cleared first), within the
    /// client's size limit: whole RRsets, or TC=1 with none.
    pub fn respond_udp(&self, request: &Request, out: &mut Vec<u8>) {
        let start = Instant::now();
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        self.metrics.request(Proto::Udp, qtype, request.as_slice().len());
        let mut p = self.prepare(request);
        let limit = udp_limit(request.edns.as_ref());
        let mut fits = encode(&p, &request.queries, out).is_ok() && out.len() <= limit;
        // Additional records are dropped, all of them, before anything
        // else, and never cause TC (RFC 2181 §9).
        if !fits && !p.reply.additional.is_empty() {
            p.reply.additional.clear();
            fits = encode(&p, &request.queries, out).is_ok() && out.len() <= limit;
        }
        if !fits {
            p.metadata.truncation = true;
            p.reply.answers.clear();
            p.reply.authority.clear();
            if encode(&p, &request.queries, out).is_err() {
                // Cannot happen for a header, a question and an OPT; stay safe.
                p.metadata.response_code = ResponseCode::ServFail;
                out.clear();
                let _ = Header {
                    metadata: p.metadata,
                    counts: HeaderCounts::default(),
                }
                .emit(&mut BinEncoder::new(out));
            }
        }
        self.metrics.response(
            p.metadata.response_code,
            out.len(),
            p.metadata.truncation,
            start.elapsed(),
        );
    }

    /// Answers a message that does not [`parse`], from any transport, into
    /// `out` (cleared first): FORMERR with the ID, opcode, RD and CD bits,
    /// and the question when there is exactly one and it is whole and
    /// uncompressed, as Knot echoes it; no other records, and no OPT, for
    /// the EDNS part may be what is wrong. Returns false, with nothing
    /// written or counted, when the message gets no reply at all: shorter
    /// than a header, or a response (answering those would make us a
    /// reflector). The transport counts those drops.
    pub fn respond_malformed(&self, proto: Proto, packet: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        if unanswerable(packet).is_some() {
            return false;
        }
        let start = Instant::now();
        self.metrics.request(proto, None, packet.len());
        let question = wire::question(packet);
        out.extend_from_slice(&packet[..2]);
        out.push(0x80 | (packet[2] & 0x79)); // QR, opcode, RD
        out.push((packet[3] & 0x10) | u16::from(ResponseCode::FormErr) as u8); // CD
        out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(question.unwrap_or_default());
        self.metrics
            .response(ResponseCode::FormErr, out.len(), false, start.elapsed());
        true
    }
}

/// Why a message gets no reply at all, before any parsing: shorter than a
/// header (no ID to answer to), or a response (answering those would make
/// us a reflector).
pub fn unanswerable(packet: &[u8]) -> Option<DropReason> {
    match packet {
        p if p.len() < 12 => Some(DropReason::Short),
        p if p[2] & 0x80 != 0 => Some(DropReason::Response),
        _ => None,
    }
}

/// Parses a request as every transport must before [`Handler`] answers it:
/// hickory-proto's parse, and what that lets through but Knot answers
/// FORMERR to (bytes after the last record, a compressed question, EDNS
/// options that overrun or underrun the OPT record, TSIG before the end).
/// An error says what is wrong; the reply to it is
/// [`Handler::respond_malformed`].
pub fn parse(packet: &[u8], src: SocketAddr, protocol: Protocol) -> Result<Request, String> {
    if let Some(problem) = wire::problem(packet) {
        return Err(problem.to_string());
    }
    Request::from_bytes(packet.to_vec(), src, protocol).map_err(|e| e.to_string())
}

/// The question as the client sent it (case included), with each suffix of
/// its name offered to the encoder's compression, so that owner names point
/// at it as Knot's do (`a.b.global` at 12, `global` inside it). hickory's own
/// (`Queries::as_emit_and_count`) offers the question's bytes with type and
/// class, which no name matches. The fast path writes the same pointers.
struct Question<'q>(&'q Queries);

impl EmitAndCount for Question<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let start = encoder.offset();
        let bytes = self.0.as_bytes();
        encoder.emit_vec(bytes)?;
        if self.0.len() == 1 {
            // `parse` let through only whole, uncompressed question names.
            let mut labels = Vec::with_capacity(8);
            let mut i = 0;
            while let Some(&len) = bytes.get(i).filter(|&&len| (1..=63).contains(&len)) {
                labels.push(i);
                i += 1 + usize::from(len);
            }
            if bytes.get(i) == Some(&0) {
                for label in labels {
                    encoder.store_label_pointer(start + label, start + i);
                }
            }
        }
        Ok(self.0.len())
    }
}

fn encode(p: &Prepared, queries: &Queries, out: &mut Vec<u8>) -> Result<(), ()> {
    out.clear();
    emit_message_parts(
        &p.metadata,
        &mut Question(queries),
        &mut p.reply.answers.iter(),
        &mut p.reply.authority.iter(),
        &mut p.reply.additional.iter(),
        p.edns.as_ref(),
        None,
        &mut BinEncoder::new(out),
    )
    .map(drop)
    .map_err(drop)
}

impl Handler {
    /// Answers one TCP message into `out` (cleared first; left empty when
    /// it gets no reply, as a response does not). Returns false when the
    /// message is too short to carry an ID, so the caller should close the
    /// stream.
    pub fn respond_tcp(&self, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        self.respond_whole(Proto::Tcp, packet, src, out)
    }

    /// Answers one message whole into `out`, for a transport that carries
    /// up to 65535 bytes (TCP, gRPC): no truncation, and a message that
    /// does not parse gets FORMERR. As [`Handler::respond_tcp`], counted
    /// under `proto`.
    pub fn respond_whole(&self, proto: Proto, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let Some(reason) = unanswerable(packet) {
            self.metrics.dropped(reason);
            // Without an ID the framing is suspect too.
            return reason != DropReason::Short;
        }
        let request = match parse(packet, src, Protocol::Tcp) {
            Ok(request) => request,
            Err(error) => {
                debug!(%error, %src, proto = proto.label(), "malformed request");
                self.respond_malformed(proto, packet, out);
                return true;
            }
        };
        let start = Instant::now();
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        self.metrics.request(proto, qtype, packet.len());
        let mut p = self.prepare(&request);
        // An answer must fit one message: hickory would set TC on a longer
        // one, which RFC 2181 §9 forbids over TCP (and gRPC has no TC). The index's per-name
        // address limit keeps that from happening.
        let too_big = |encoded: Result<(), ()>, out: &[u8]| {
            encoded.is_err() || out.len() > usize::from(u16::MAX) || out.get(2).is_some_and(|flags| flags & 0x02 != 0)
        };
        let mut encoded = encode(&p, &request.queries, out);
        // Additional records go first here too: an SRV target's addresses
        // beside a full answer could outgrow the message.
        if too_big(encoded, out) && !p.reply.additional.is_empty() {
            p.reply.additional.clear();
            encoded = encode(&p, &request.queries, out);
        }
        if too_big(encoded, out) {
            warn!(%src, proto = proto.label(), "answer does not fit one message; answering SERVFAIL");
            p.metadata.response_code = ResponseCode::ServFail;
            p.metadata.authoritative = false;
            p.reply.answers.clear();
            p.reply.authority.clear();
            p.reply.additional.clear();
            if encode(&p, &request.queries, out).is_err() {
                out.clear();
            }
        }
        self.metrics
            .response(p.metadata.response_code, out.len(), false, start.elapsed());
        true
    }
}
