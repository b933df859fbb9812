#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz corpus (fuzz/corpus/<target>/seed-*):
the queries the fast path must answer, hand to the general path or decline,
ServiceEntry manifests and operation sequences, and TCP streams. The input
layouts are those documented in fuzz/src/*.rs. Rerun after changing a layout;
`cargo fuzz cmin` then drops what adds no coverage."""

import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def name(text):
    out = b""
    for label in text.split(".") if text else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def labels(*ls):
    return b"".join(bytes([len(l)]) + l for l in ls) + b"\0"


def header(qd=1, an=0, ns=0, ar=0, flags=0x0100, ident=0x1234):
    return struct.pack(">HHHHHH", ident, flags, qd, an, ns, ar)


def opt(payload=1232, version=0, do=False, options=b""):
    ttl = (version << 16) | (0x8000 if do else 0)
    return b"\0" + struct.pack(">HHIH", 41, payload, ttl, len(options)) + options


def query(qname=b"", qtype=1, qclass=1, edns=None, flags=0x0100, ident=0x1234, extra=b"", ar=None):
    if isinstance(qname, str):
        qname = name(qname)
    q = qname + struct.pack(">HH", qtype, qclass)
    additional = b"" if edns is None else edns
    count = ar if ar is not None else (0 if edns is None else 1)
    return header(ar=count, flags=flags, ident=ident) + q + additional + extra


def write(target, seeds):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for i, (label, data) in enumerate(seeds):
        (d / f"seed-{i:03}-{label}").write_bytes(data)


# --- packet -----------------------------------------------------------------
# Tables: flags, then (host choice, address shape) pairs; see Setup::decode.
T_MAIN = bytes([0, 0, 0, 1, 0, 2, 3, 3, 4, 10, 0, 11, 1, 12, 0, 13, 1])
T_ZONES = bytes([1 | 2 | 4, 0, 1, 5, 2, 6, 0, 9, 0, 7, 0])
T_UNSYNCED = bytes([8, 0, 0])
T_TTL = bytes([0x30, 0, 2, 4, 0])
TABLES = {"main": T_MAIN, "zones": T_ZONES, "unsynced": T_UNSYNCED, "ttl": T_TTL}

long_name = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 54 + ".global"  # 255 octets
too_long = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 55 + ".global"  # 256
ptr_long = b"\xc0\x0c" + b"x" * 190 + b"\0"  # a pointer whose "label" would fit the packet
packets = [
    ("a", query("httpbin.bar.global")),
    ("a-edns", query("httpbin.bar.global", edns=opt())),
    ("a-do", query("HttpBin.Bar.GLOBAL", edns=opt(4096, do=True))),
    ("aaaa", query("ratings.bar.global", 28, edns=opt())),
    ("nodata", query("ratings.bar.global", 1)),
    ("nxdomain", query("nope.bar.global", edns=opt(512))),
    ("wildcard", query("x.y.baz.global")),
    ("ent", query("baz.global", 28)),
    ("apex-soa", query("global", 6)),
    ("apex-ns", query("global", 2)),
    ("any", query("a.b.c.baz.global", 255)),
    ("big-512", query("a.b.c.baz.global")),
    ("big-1232", query("a.b.c.baz.global", edns=opt(1232))),
    ("big-payload0", query("a.b.c.baz.global", edns=opt(0))),
    ("v6-big", query("ratings.bar.global", 28, edns=opt(600))),
    ("out-of-zone", query("example.com")),
    ("root", query("")),
    ("mesh", query("x.mesh.local")),
    ("sub-zone", query("in.sub.bar.global")),
    ("qtype0", query("httpbin.bar.global", 0)),
    ("axfr", query("global", 252)),
    ("chaos", query("version.bind", 16, 3)),
    ("class-any", query("httpbin.bar.global", 1, 255)),
    ("labels-16", query("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.global")),
    ("labels-17", query("z.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.global")),
    ("labels-127", query(".".join(["a"] * 126) + ".global" if False else ".".join(["a"] * 126 + ["g"]))),
    ("labels-128", query(labels(*([b"a"] * 128)))),
    ("label-63", query("a" * 63 + ".bar.global")),
    ("label-64", query(labels(b"a" * 64, b"bar", b"global"))),
    ("name-255", query(long_name, edns=opt())),
    ("name-256", query(too_long)),
    ("pointer", query(b"\xc0\x0c")),
    ("pointer-ahead", query(b"\xc0\x20")),
    ("pointer-long", query(ptr_long)),
    ("pointer-after-label", query(b"\x03bar\xc0\x0c")),
    ("second-opt", query("httpbin.bar.global", edns=opt() + opt(), ar=2)),
    ("ar2-one-opt", query("httpbin.bar.global", edns=opt(), ar=2)),
    ("edns-v1", query("httpbin.bar.global", edns=opt(version=1))),
    ("cookie", query("httpbin.bar.global", edns=opt(options=b"\x00\x0a\x00\x08" + b"\x01" * 8))),
    ("bad-option", query("httpbin.bar.global", edns=opt(options=b"\x00\x0a\x00\x09"))),
    ("trailing", query("httpbin.bar.global", extra=b"\xde\xad")),
    ("response", query("httpbin.bar.global", flags=0x8100)),
    ("notify", query("global", 6, flags=0x2000)),
    ("opcode-15", query("global", 6, flags=0x7800)),
    ("short", b"\x12\x34\x01\x00\x00"),
    ("header-only", header(qd=0)),
    ("qd2", header(qd=2) + name("a.global") + b"\0\1\0\1" + name("b.global") + b"\0\1\0\1"),
    ("cd-ad-z", query("httpbin.bar.global", flags=0x0170)),
    ("odd-bytes", query(labels(b"a b", b"bar", b"global"))),
    ("star", query("*.baz.global")),
]
seeds = []
for tname, table in TABLES.items():
    for pname, p in packets:
        if tname != "main" and pname not in ("a", "a-edns", "nxdomain", "apex-soa", "mesh", "sub-zone", "edns-v1"):
            continue
        seeds.append((f"{tname}-{pname}", bytes([len(table)]) + table + p))
write("packet", seeds)

# --- serviceentries ---------------------------------------------------------
def se_yaml(ns, nm, hosts, addrs, resolution="STATIC", created=None):
    meta = f"  name: {nm}\n  namespace: {ns}\n"
    if created:
        meta += f"  creationTimestamp: \"{created}\"\n"
    h = "".join(f"  - \"{x}\"\n" for x in hosts)
    a = "".join(f"  - {x}\n" for x in addrs)
    return (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n"
        + meta
        + "spec:\n  hosts:\n"
        + h
        + (f"  addresses:\n{a}" if addrs else "")
        + f"  resolution: {resolution}\n"
    )


def op(code, body=b""):
    if code == 5:
        return bytes([5, body[0] if body else 0])
    return bytes([code]) + struct.pack(">H", len(body)) + body


example = (pathlib.Path(__file__).resolve().parent.parent / "deploy/examples/serviceentries.yaml").read_bytes()
y1 = se_yaml("foo", "a", ["a.bar.global", "b.bar.global"], ["240.0.0.1", "2001:db8::1"]).encode()
y2 = se_yaml("foo", "b", ["a.bar.global", "*.bar.global"], ["240.0.0.2"], created="2024-01-01T00:00:00Z").encode()
y3 = se_yaml("bar", "c", ["x.y.z.mesh.local", "bar.global", "out.example.com"], ["240.0.0.3", "240.0.0.1"]).encode()
ylist = (
    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: ServiceEntry\n"
    "  metadata: {name: l, namespace: foo}\n  spec: {hosts: [l.bar.global], addresses: [240.0.0.9], resolution: DNS}\n"
).encode()
ystatus = (
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s, namespace: foo}\n"
    "spec: {hosts: [s.bar.global, t.bar.global], resolution: DNS}\n"
    "status: {addresses: [{value: 240.0.0.7, host: s.bar.global}, {value: '2001:db8::7'}]}\n"
).encode()
ynone = se_yaml("foo", "n", ["n.bar.global"], [], resolution="NONE").encode()
yempty = se_yaml("foo", "e", ["e.bar.global"], []).encode()
j1 = json.dumps({"metadata": {"name": "a", "namespace": "foo"},
                 "spec": {"hosts": ["a.bar.global", "deep.a.bar.global"], "addresses": ["240.0.0.5"], "resolution": "DNS"}}).encode()
j2 = json.dumps({"metadata": {"name": "w", "namespace": "foo", "creationTimestamp": "2020-01-01T00:00:00Z"},
                 "spec": {"hosts": ["*.global", "A.Bar.Global."], "addresses": ["240.0.0.6", "240.0.0.6", "::1"], "resolution": "STATIC"}}).encode()
jbad = b'{"metadata": {"name": 5}}'
se_seeds = [
    ("example", b"\0" + op(0, example)),
    ("example-twice-then-delete", b"\0" + op(0, example) + op(1, example) + op(5, b"\1") + op(0, b"")),
    ("conflict", b"\0" + op(0, y1) + op(1, y2) + op(3, y3) + op(5, b"\0") + op(0, y2)),
    ("multi-doc", b"\0" + op(0, y1 + b"---\n" + y2 + b"---\n" + y3)),
    ("kube-reset", b"\0" + op(3, y1) + op(3, y2) + op(2, y3) + op(2, b"")),
    ("list", b"\0" + op(0, ylist) + op(3, ylist)),
    ("status", b"\1" + op(0, ystatus) + op(3, ynone + b"---\n" + yempty)),
    ("default-address", b"\1" + op(3, yempty) + op(5, b"\0")),
    ("json", b"\0" + op(4, j1) + op(4, j2) + op(5, b"\1") + op(4, j1)),
    ("json-bad", b"\0" + op(4, jbad) + op(0, b"kind: [")),
    ("yaml-and-json", b"\0" + op(0, y1) + op(4, j1) + op(3, y2) + op(5, b"\2") + op(1, y1)),
]
write("serviceentries", se_seeds)

# --- tcp_framing ------------------------------------------------------------
def frame(m):
    return struct.pack(">H", len(m)) + m


good = query("httpbin.bar.global", ident=1)
good2 = query("nope.bar.global", ident=2, edns=opt())
big = query("big.bar.global", ident=3)
def tcp(stream, sizes=(), cap=0):
    return bytes([cap, len(sizes)]) + bytes(s - 1 for s in sizes) + stream

tcp_seeds = [
    ("one", tcp(frame(good))),
    ("byte-by-byte", tcp(frame(good), [1] * 15)),
    ("split-prefix", tcp(frame(good) + frame(good2), [1, 2, 40])),
    ("pipelined", tcp(frame(good) + frame(good2) + frame(good), [50, 3])),
    ("big", tcp(frame(big) + frame(good), [7])),
    ("zero-length", tcp(frame(good) + b"\0\0" + frame(good))),
    ("short-message", tcp(frame(good) + frame(b"\x12\x34\x01") + frame(good))),
    ("response", tcp(frame(query("httpbin.bar.global", flags=0x8100)) + frame(good))),
    ("malformed", tcp(frame(good + b"\xff") + frame(query(b"\xc0\x0c")) + frame(good))),
    ("truncated", tcp(frame(good) + frame(good)[:20], [5])),
    ("prefix-only", tcp(frame(good) + b"\0")),
    ("cap-1", tcp(frame(good) + frame(good2), cap=1)),
    ("cap-2", tcp(frame(good) + frame(good2) + frame(good), [30], cap=2)),
    ("long-frame", tcp(b"\xff\xff" + b"\0" * 300, [100, 100])),
]
write("tcp_framing", tcp_seeds)
