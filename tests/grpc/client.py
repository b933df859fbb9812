"""A gRPC DNS client that shares no code with meshdns.

Usage: client.py ADDR NAME QTYPE [CA_PEM]

The stubs (dns_pb2, dns_pb2_grpc) are generated from tests/grpc/dns.proto by
`python3 -m grpc_tools.protoc` and found on PYTHONPATH. The DNS query is
built by hand and the reply parsed by hand. Prints one line per fact:
`id`, `rcode`, `flags`, `question NAME` (as echoed, case included), and
`answer TYPE DATA` per answer record. With CA_PEM, connects over TLS and
checks the server's certificate against it (host name `localhost`).
"""

import ipaddress
import struct
import sys

import grpc

import dns_pb2
import dns_pb2_grpc

QTYPES = {"A": 1, "AAAA": 28}
QUERY_ID = 0x5A17


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def read_name(msg, pos):
    """The name at pos, following compression pointers; returns (name, end)."""
    labels, end = [], None
    while True:
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
        elif n == 0:
            return ".".join(labels) + ".", (end if end is not None else pos + 1)
        else:
            labels.append(msg[pos + 1:pos + 1 + n].decode("ascii"))
            pos += 1 + n


def main():
    addr, name, qtype = sys.argv[1], sys.argv[2], QTYPES[sys.argv[3]]
    query = struct.pack(">HHHHHH", QUERY_ID, 0x0100, 1, 0, 0, 0)
    query += encode_name(name) + struct.pack(">HH", qtype, 1)

    if len(sys.argv) > 4:
        with open(sys.argv[4], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(
            addr, creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
    else:
        channel = grpc.insecure_channel(addr)
    with channel:
        stub = dns_pb2_grpc.DnsServiceStub(channel)
        reply = stub.Query(dns_pb2.DnsPacket(msg=query), timeout=10).msg

    qid, flags, qdcount, ancount = struct.unpack(">HHHH", reply[:8])
    print(f"id {qid}")
    print(f"rcode {flags & 0xF}")
    print(f"flags qr={flags >> 15} aa={(flags >> 10) & 1} tc={(flags >> 9) & 1}")
    pos = 12
    for _ in range(qdcount):
        qname, pos = read_name(reply, pos)
        pos += 4
        print(f"question {qname}")
    for _ in range(ancount):
        _, pos = read_name(reply, pos)
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[pos:pos + 10])
        pos += 10
        rdata = reply[pos:pos + rdlen]
        pos += rdlen
        if rtype in (1, 28):
            print(f"answer {rtype} {ipaddress.ip_address(rdata)}")
        else:
            print(f"answer {rtype} -")


if __name__ == "__main__":
    main()
