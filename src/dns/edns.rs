//! EDNS and UDP size limits, shared by the general path ([`super::handler`])
//! and the fast path ([`super::fast`]), which must agree on them byte for
//! byte.

use hickory_proto::op::Edns;

/// Our EDNS UDP payload size (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// The largest UDP response a client accepts: 512 without EDNS, else its
/// advertised size capped at ours (RFC 6891 §6.2.5).
pub fn udp_limit(request_edns: Option<&Edns>) -> usize {
    udp_limit_for(request_edns.map(Edns::max_payload))
}

/// [`udp_limit`] from the OPT record's payload field, if there was one.
pub fn udp_limit_for(payload: Option<u16>) -> usize {
    payload.map_or(512, |p| p.clamp(512, EDNS_PAYLOAD)) as usize
}
