//! hickory-server's `RequestHandler` over the index: protocol checks
//! (opcode, EDNS, question count), the answer, and UDP size limits.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::answer::{Reply, answer};
use crate::admin::Readiness;
use crate::index::Index;

/// Our EDNS UDP payload size (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

pub struct Handler {
    index: Arc<Index>,
    ready: Readiness,
}

impl Handler {
    /// Until `ready`, every query gets SERVFAIL: a table still loading
    /// must not answer NXDOMAIN for names that exist.
    pub fn new(index: Arc<Index>, ready: Readiness) -> Self {
        Self { index, ready }
    }
}

/// The largest UDP response a client accepts: 512 without EDNS, else its
/// advertised size capped at ours (RFC 6891 §6.2.5).
pub fn udp_limit(request_edns: Option<&Edns>) -> usize {
    request_edns.map_or(512, |e| e.max_payload().clamp(512, EDNS_PAYLOAD)) as usize
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let edns = request.edns.as_ref().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD).set_version(0);
            // RFC 3225: DO is copied to the response.
            ours.set_dnssec_ok(theirs.flags().dnssec_ok);
            ours
        });

        let reply = if request.metadata.op_code != OpCode::Query {
            Err(ResponseCode::NotImp)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Err(ResponseCode::BADVERS)
        } else if request.queries.len() != 1 {
            Err(ResponseCode::FormErr)
        } else if !self.ready.get() {
            Err(ResponseCode::ServFail)
        } else {
            Ok(answer(&self.index.table(), request.queries.queries()[0].original()))
        };
        let reply = reply.unwrap_or_else(|rcode| Reply {
            rcode,
            ..Reply::refused()
        });
        metadata.response_code = reply.rcode;
        metadata.authoritative = reply.authoritative;

        let mut truncated = false;
        if request.protocol() == Protocol::Udp && !reply.answers.is_empty() {
            // Whole RRsets or none: measure the full answer, then decide.
            let limit = udp_limit(request.edns.as_ref());
            let full = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                metadata,
                &reply.answers,
                &reply.authority,
                [],
                [],
            );
            let mut buf = Vec::with_capacity(limit);
            let mut encoder = BinEncoder::new(&mut buf);
            truncated = full.destructive_emit(&mut encoder).is_err() || buf.len() > limit;
        }
        metadata.truncation = truncated;
        let (answers, authority) = if truncated {
            (&[][..], &[][..])
        } else {
            (&reply.answers[..], &reply.authority[..])
        };
        let message =
            MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(metadata, answers, authority, [], []);
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, src = %request.src(), "failed to send response");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
