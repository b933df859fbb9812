//! A fast reader for the shape nearly every manifest has: block mappings
//! and sequences (kubectl's style or indented), plain or simply quoted
//! one-line scalars, one-line flow sequences, `{}`, and whole-line
//! comments. It reads a document straight into a [`ServiceEntry`], about
//! ten times faster than a general YAML parser, or declines at the first
//! thing outside that shape, and serde-saphyr reads the document instead.
//!
//! It never errors and never decides what YAML means where that is subtle:
//! anything a schema could read as other than text (`1e3`, `true`, `~`),
//! anchors, tags, escapes, multi-line scalars, tabs, duplicate keys, a type
//! that does not fit: all decline. So whatever it returns, serde-saphyr
//! returns too; `manifest::check_fast_reader` compares the two, in the unit
//! tests and in the fuzz target.

use crate::serviceentry::{self, Metadata, Port, ServiceEntry, Spec, Status, StatusAddress};

/// What a document is, when the fast reader can tell.
#[derive(Debug, PartialEq)]
// Built once per document and moved straight on: no box needed.
#[allow(clippy::large_enum_variant)]
pub(super) enum Read {
    Entry(ServiceEntry),
    /// Another kind (not a `List`): ignored, as the general path does.
    Other,
}

/// Reads `doc`, or `None` where serde-saphyr must.
pub(super) fn read(doc: &str) -> Option<Read> {
    let lines = lines(doc)?;
    let first = lines.first()?.indent;
    let mut parser = Parser { lines, at: 0, depth: 0 };
    let node = parser.block(first)?;
    if parser.at != parser.lines.len() {
        return None;
    }
    object(node)
}

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// Without the indentation and trailing spaces; never empty.
    text: &'a str,
}

/// The document's lines that hold content. Blank lines and whole-line
/// comments go; a tab, a character YAML does not allow in a document
/// (comments included), a directive or a document marker declines.
fn lines(doc: &str) -> Option<Vec<Line<'_>>> {
    let mut out = Vec::with_capacity(16);
    for line in doc.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // Tabs and CR included: both are YAML, but not this reader's.
        if line.bytes().any(|b| b < 0x20 || b == 0x7f) || (!line.is_ascii() && line.chars().any(not_printable)) {
            return None;
        }
        let text = line.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if line.starts_with('%') || line.starts_with("---") || line.starts_with("...") {
            return None;
        }
        out.push(Line {
            indent: line.len() - text.len(),
            text: text.trim_end_matches(' '),
        });
    }
    Some(out)
}

/// Outside YAML's printable set (`c-printable`), or a line break in YAML
/// 1.1 (NEL, U+2028, U+2029), or a byte order mark inside a document:
/// the general parser refuses or reads these its own way.
fn not_printable(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
    )
}

#[derive(Debug)]
enum Node<'a> {
    /// A one-line scalar: its text, and whether it was quoted.
    Scalar(&'a str, bool),
    Seq(Vec<Node<'a>>),
    Map(Vec<(&'a str, Node<'a>)>),
}

/// Far below serde-saphyr's depth budget; real manifests nest about 5 deep.
const MAX_DEPTH: usize = 24;

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn line(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// The block node starting at the current line, at `indent`.
    fn block(&mut self, indent: usize) -> Option<Node<'a>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let line = self.line()?;
        let node = if is_item(line.text) {
            self.seq(indent)
        } else {
            self.map(indent)
        };
        self.depth -= 1;
        node
    }

    fn seq(&mut self, indent: usize) -> Option<Node<'a>> {
        let mut items = Vec::new();
        while let Some(line) = self.line().filter(|l| l.indent == indent && is_item(l.text)) {
            // `- value` or `- key: value`; a bare `-` (the item on the next
            // lines) or `- - x` declines.
            let rest = line.text.strip_prefix("- ")?;
            let inner = rest.trim_start_matches(' ');
            if is_item(inner) {
                return None;
            }
            let column = indent + (line.text.len() - inner.len());
            if entry_key(inner).is_some() {
                // The item is a mapping whose first key shares the dash's line.
                self.lines[self.at] = Line {
                    indent: column,
                    text: inner,
                };
                self.depth += 1;
                let map = self.map(column)?;
                self.depth -= 1;
                items.push(map);
            } else {
                items.push(value(inner)?);
                self.at += 1;
            }
        }
        // A deeper line here would continue the last item: a multi-line scalar.
        if self.line().is_some_and(|l| l.indent > indent) {
            return None;
        }
        Some(Node::Seq(items))
    }

    fn map(&mut self, indent: usize) -> Option<Node<'a>> {
        let mut entries: Vec<(&'a str, Node<'a>)> = Vec::new();
        while let Some(line) = self.line().filter(|l| l.indent == indent) {
            let (key, rest) = entry_key(line.text)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return None;
            }
            let node = if rest.is_empty() {
                self.at += 1;
                let next = self.line()?;
                if next.indent > indent {
                    self.block(next.indent)?
                } else if next.indent == indent && is_item(next.text) {
                    // kubectl's style: a sequence at its key's indentation.
                    self.depth += 1;
                    let seq = self.seq(indent)?;
                    self.depth -= 1;
                    seq
                } else {
                    // `key:` with nothing is null: not for this reader.
                    return None;
                }
            } else {
                let node = value(rest)?;
                self.at += 1;
                node
            };
            entries.push((key, node));
        }
        if self.line().is_some_and(|l| l.indent > indent) {
            return None;
        }
        Some(Node::Map(entries))
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` or `key:` (rest empty), for a key of plain name characters
/// that no schema reads as anything but text.
fn entry_key(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let (key, rest) = (&text[..colon], &text[colon + 1..]);
    let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
        && !is_special_word(key);
    if !key_ok {
        return None;
    }
    match rest.strip_prefix(' ') {
        Some(rest) => Some((key, rest.trim_start_matches(' '))),
        None if rest.is_empty() => Some((key, rest)),
        None => None,
    }
}

/// A value on one line: a scalar, or a flow collection (`[a, b]`,
/// `{name: a, hosts: [b]}`).
fn value(text: &str) -> Option<Node<'_>> {
    if text.contains('#') {
        // Possibly a comment after the value.
        return None;
    }
    if text.starts_with(['[', '{']) {
        let mut flow = Flow { text, at: 0, depth: 0 };
        let node = flow.node()?;
        flow.skip_spaces();
        return (flow.at == text.len()).then_some(node);
    }
    scalar(text, false)
}

/// A one-line flow collection, read by hand.
struct Flow<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Flow<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn node(&mut self) -> Option<Node<'a>> {
        self.skip_spaces();
        match self.peek()? {
            b'[' | b'{' => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return None;
                }
                let node = self.collection();
                self.depth -= 1;
                node
            }
            quote @ (b'"' | b'\'') => {
                let len = self.text[self.at + 1..].find(char::from(quote))?;
                let end = self.at + len + 2;
                let node = scalar(&self.text[self.at..end], true)?;
                self.at = end;
                Some(node)
            }
            _ => {
                let len = self.text[self.at..]
                    .find([',', ']', '}'])
                    .unwrap_or(self.text.len() - self.at);
                let node = scalar(self.text[self.at..self.at + len].trim_end_matches(' '), true)?;
                self.at += len;
                Some(node)
            }
        }
    }

    /// `[a, b]` or `{k: v, k2: v2}`; an empty item (`[a, ]`) declines.
    fn collection(&mut self) -> Option<Node<'a>> {
        let is_map = self.peek()? == b'{';
        let close = if is_map { b'}' } else { b']' };
        self.at += 1;
        let mut items = Vec::new();
        let mut entries: Vec<(&'a str, Node<'a>)> = Vec::new();
        self.skip_spaces();
        if self.peek()? != close {
            loop {
                if is_map {
                    self.skip_spaces();
                    let rest = &self.text[self.at..];
                    let colon = rest.find(": ")?;
                    let (key, _) = entry_key(&rest[..colon + 1])?;
                    if entries.iter().any(|(k, _)| *k == key) {
                        return None;
                    }
                    self.at += colon + 2;
                    entries.push((key, self.node()?));
                } else {
                    items.push(self.node()?);
                }
                self.skip_spaces();
                match self.peek()? {
                    b',' => self.at += 1,
                    b if b == close => break,
                    _ => return None,
                }
            }
        }
        self.at += 1;
        Some(if is_map { Node::Map(entries) } else { Node::Seq(items) })
    }
}

/// A quoted scalar without escapes, or a plain one of characters that
/// mean nothing in YAML (`in_flow`: inside `[ ]`, where a quote holding a
/// comma would have been split).
fn scalar(text: &str, in_flow: bool) -> Option<Node<'_>> {
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote) {
            let inner = inner.strip_suffix(quote)?;
            let simple = inner
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\'' && b != b'\\');
            return (simple && !(in_flow && inner.contains(','))).then_some(Node::Scalar(inner, true));
        }
    }
    let first_ok = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/'));
    let rest_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'*' | b'=' | b'+' | b' '));
    // A long run of digits may not fit a number type; some schema would try.
    let long_number =
        text.len() > 15 && text.starts_with(|c: char| c.is_ascii_digit()) && text.matches('.').count() < 2;
    (first_ok && rest_ok && !long_number && !(in_flow && text.contains(' '))).then_some(Node::Scalar(text, false))
}

/// Words some YAML schema reads as a boolean or null.
fn is_special_word(text: &str) -> bool {
    const WORDS: [&str; 11] = [
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "inf", "nan",
    ];
    WORDS.iter().any(|w| w.eq_ignore_ascii_case(text))
}

/// A scalar's text where a string belongs, if no schema reads it as other
/// than text. Plain scalars starting with a digit are read only with two
/// dots or more (`240.0.0.1`, `1.2.3.0/24`), which no number has.
fn text<'a>(node: &Node<'a>) -> Option<&'a str> {
    let Node::Scalar(text, quoted) = *node else {
        return None;
    };
    if quoted {
        return Some(text);
    }
    let first = text.bytes().next()?;
    let numeric = first.is_ascii_digit() && text.bytes().filter(|&b| b == b'.').count() < 2;
    (!numeric && !is_special_word(text) && text.parse::<f64>().is_err()).then_some(text)
}

fn texts(node: &Node<'_>) -> Option<Vec<String>> {
    let Node::Seq(items) = node else {
        return None;
    };
    items.iter().map(|item| text(item).map(String::from)).collect()
}

fn map<'n, 'a>(node: &'n Node<'a>) -> Option<&'n [(&'a str, Node<'a>)]> {
    match node {
        Node::Map(entries) => Some(entries),
        _ => None,
    }
}

fn object(node: Node<'_>) -> Option<Read> {
    let entries = map(&node)?;
    let field = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let api_version = text(field("apiVersion")?)?;
    let kind = text(field("kind")?)?;
    if kind.ends_with("List") {
        return None;
    }
    if kind != serviceentry::KIND || !serviceentry::is_istio_networking(api_version) {
        return Some(Read::Other);
    }
    let mut se = ServiceEntry::default();
    for (key, value) in entries {
        match *key {
            "metadata" => se.metadata = metadata(value)?,
            "spec" => se.spec = spec(value)?,
            "status" => se.status = Some(status(value)?),
            _ => {}
        }
    }
    Some(Read::Entry(se))
}

fn metadata(node: &Node<'_>) -> Option<Metadata> {
    let mut m = Metadata::default();
    for (key, value) in map(node)? {
        match *key {
            "name" => m.name = text(value)?.into(),
            "namespace" => m.namespace = Some(text(value)?.into()),
            "creationTimestamp" => m.creation_timestamp = Some(text(value)?.into()),
            _ => {}
        }
    }
    Some(m)
}

fn spec(node: &Node<'_>) -> Option<Spec> {
    let mut s = Spec::default();
    for (key, value) in map(node)? {
        match *key {
            "hosts" => s.hosts = texts(value)?,
            "addresses" => s.addresses = texts(value)?,
            "resolution" => s.resolution = Some(text(value)?.into()),
            "exportTo" => s.export_to = texts(value)?,
            "ports" => {
                let Node::Seq(items) = value else {
                    return None;
                };
                s.ports = items.iter().map(port).collect::<Option<_>>()?;
            }
            _ => {}
        }
    }
    Some(s)
}

fn port(node: &Node<'_>) -> Option<Port> {
    let mut p = Port::default();
    for (key, value) in map(node)? {
        match *key {
            "name" => p.name = text(value)?.into(),
            "number" => p.number = Some(number(value)?),
            "protocol" => p.protocol = Some(text(value)?.into()),
            _ => {}
        }
    }
    Some(p)
}

/// A plain decimal integer without a leading zero; anything else declines.
fn number(node: &Node<'_>) -> Option<i64> {
    let Node::Scalar(text, false) = *node else {
        return None;
    };
    let digits = text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit());
    (digits && (text == "0" || !text.starts_with('0')))
        .then(|| text.parse().ok())
        .flatten()
}

fn status(node: &Node<'_>) -> Option<Status> {
    let mut s = Status::default();
    for (key, value) in map(node)? {
        if *key == "addresses" {
            let Node::Seq(items) = value else {
                return None;
            };
            s.addresses = items.iter().map(status_address).collect::<Option<_>>()?;
        }
    }
    Some(s)
}

fn status_address(node: &Node<'_>) -> Option<StatusAddress> {
    let mut a = StatusAddress::default();
    for (key, value) in map(node)? {
        match *key {
            "value" => a.value = text(value)?.into(),
            "host" => a.host = Some(text(value)?.into()),
            _ => {}
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::manifest::check_fast_reader;

    fn mk_doc(body: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n{body}")
    }

    /// The shapes real files have are read here, and read as serde-saphyr reads them.
    #[test]
    fn common_shapes_are_read_and_agree() {
        let shapes = [
            // kubectl's style: sequences at their key's indentation.
            "metadata:\n  name: a\n  namespace: ns1\nspec:\n  hosts:\n  - a.ns1.global\n  addresses:\n  - 240.0.0.1\n  ports:\n  - name: http\n    number: 80\n    protocol: HTTP\n  resolution: DNS\n",
            // Indented sequences, quotes, comments, a blank line, CRLF.
            "# a comment\nmetadata:\n    name: 'b'\n    labels:\n        app: b\r\n\nspec:\n    hosts:\n        - \"*.b.global\"\n        - b.global\n    exportTo: [\".\"]\n    location: MESH_INTERNAL\n",
            // Flow sequences and auto-allocated addresses.
            "metadata: {}\nspec:\n  hosts: [c.global, d.global]\n  addresses: []\nstatus:\n  addresses:\n  - value: 240.240.0.1\n    host: c.global\n",
            // Text that only looks odd.
            // Flow mappings, as benches/load.py writes them.
            "metadata: {name: svc1, namespace: ns1}\nspec: {hosts: [svc1.ns1.global], addresses: [240.0.0.1], resolution: DNS}\n",
            "metadata: { }\nspec:\n  ports:\n  - {name: http, number: 80, protocol: HTTP}\n  - { name: dns , number: 53 }\n",
            "metadata:\n  name: e\n  annotations:\n    note: some words here\n    x.io/y: v=1+2\nspec:\n  hosts: [e.global]\n  addresses: [10.1.0.0/16]\n  ports: []\n",
        ];
        for body in shapes {
            let doc = mk_doc(body);
            assert!(matches!(read(&doc), Some(Read::Entry(_))), "not read: {doc}");
            assert_eq!(check_fast_reader(&doc), Ok(1), "{doc}");
        }
        let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: '1'\n";
        assert_eq!(read(other), Some(Read::Other));
    }

    /// Whatever a schema could read otherwise, or YAML spells in ways this
    /// reader does not follow, goes to serde-saphyr.
    #[test]
    fn anything_subtle_declines() {
        let subtle = [
            "metadata:\n  name: 1e3\n",
            "metadata:\n  name: yes\n",
            "metadata:\n  name: ~\n",
            "metadata:\n  name:\n",
            "metadata:\n  name: &a x\n",
            "metadata:\n  name: !!str x\n",
            "metadata:\n  name: x # comment\n",
            "metadata:\n  name: x\n    y\n",
            "metadata:\n  name: \"a\\tb\"\n",
            "metadata:\n  name: 'it''s'\n",
            "metadata:\n\tname: x\n",
            // Found by the fuzzer: serde-saphyr refuses control characters
            // even in a comment.
            "# a \u{1}\u{0}\u{b} comment\nmetadata:\n  name: x\n",
            "metadata:\n  name: x\u{7f}\n",
            "metadata:\n  name: x\u{85}y\n",
            "metadata:\n  name: x\u{2028}y\n",
            "metadata:\n  name: x\n  name: y\n",
            "metadata: {name: x, name: y}\n",
            "metadata: {name: x,\n  namespace: y}\n",
            "spec: {hosts: [a, ]}\n",
            "spec:\n  hosts: [a, [b]]\n",
            "spec:\n  hosts: a.global\n",
            "spec:\n  ports:\n  - number: 080\n",
            "spec:\n  ports:\n  - number: '80'\n",
            "spec:\n  hosts:\n  -\n    a.global\n",
            "spec:\n  hosts: [\"a,b\"]\n",
            "spec:\n  description: |\n    text\n",
            "spec:\n  x: 123456789012345678901234\n",
        ];
        for body in subtle {
            let doc = mk_doc(body);
            assert_eq!(read(&doc), None, "read: {doc}");
        }
        assert_eq!(read("apiVersion: v1\nkind: List\nitems: []\n"), None);
        assert_eq!(read("%YAML 1.2\n---\na: b\n"), None);
    }

    /// Documents built at random from pieces that are and are not in the
    /// reader's shape: where it reads one, serde-saphyr must agree.
    #[test]
    fn random_documents_agree_with_serde_saphyr() {
        const SCALARS: &[&str] = &[
            // The first eight are in the reader's shape.
            "a",
            "s1.ns1.global",
            "240.0.0.1",
            "10.0.0.0/8",
            "DNS",
            "\"*.a.global\"",
            "'q'",
            "a b",
            "1.5",
            "1e3",
            "0x10",
            "0o7",
            "true",
            "yes",
            "Y",
            "~",
            "null",
            "''",
            "\"\"",
            "80",
            "080",
            "0",
            "-5",
            "+5",
            ".5",
            "inf",
            ".inf",
            "NaN",
            "Infinity",
            "2024-01-01",
            "12:30",
            "a b",
            "a:b",
            "a #b",
            "'q'",
            "\"q\"",
            "\"*.a.global\"",
            "'*.a.global'",
            "*.a.global",
            "&x a",
            "*x",
            "!!str 1",
            "[a, b]",
            "[]",
            "{}",
            "{a: b}",
            "[a,]",
            "a,b",
            "123456789012345678901",
            "1.2.3",
            "65536",
            "DNS",
            "UDP",
            "udp",
            "ServiceEntry",
            "networking.istio.io/v1",
            "v1",
            "1_000",
            "e5",
            "a=b",
            "x+y",
            "1.2.3.4",
            "'a\"b'",
            "\"it's\"",
            "[\"a\", 'b']",
            "- a",
            "-",
            "a-",
            "_a",
            "/p",
        ];
        const KEYS: &[&str] = &[
            "metadata",
            "spec",
            "status",
            "name",
            "namespace",
            "hosts",
            "addresses",
            "ports",
            "number",
            "protocol",
            "resolution",
            "exportTo",
            "value",
            "host",
            "labels",
            "x",
            "creationTimestamp",
            "1",
            "true",
            "y",
            "a.b/c",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut taken = 0;
        let runs = 4000;
        for _ in 0..runs {
            let mut doc = String::new();
            if next(8) != 0 {
                doc.push_str("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n");
            }
            random_map(&mut doc, 0, 0, &mut next, SCALARS, KEYS);
            match check_fast_reader(&doc) {
                Ok(n) => taken += n,
                Err(e) => panic!("{e}"),
            }
        }
        // The test means something only if the reader takes a fair share.
        assert!(taken > runs / 20, "fast reader took {taken} of {runs}");
    }

    /// Two thirds of the time one of the first eight scalars.
    fn pick<'s>(next: &mut impl FnMut(usize) -> usize, scalars: &[&'s str]) -> &'s str {
        if next(3) == 0 {
            scalars[next(scalars.len())]
        } else {
            scalars[next(8)]
        }
    }

    fn random_map(
        out: &mut String,
        indent: usize,
        depth: usize,
        next: &mut impl FnMut(usize) -> usize,
        scalars: &[&str],
        keys: &[&str],
    ) {
        for _ in 0..1 + next(4) {
            let pad = " ".repeat(indent);
            let key = keys[next(keys.len())];
            if next(10) == 0 {
                out.push_str(&format!("{pad}# note\n"));
            }
            match if depth >= 3 { 0 } else { next(5) } {
                0 => out.push_str(&format!("{pad}{key}: {}\n", pick(next, scalars))),
                1 => {
                    out.push_str(&format!("{pad}{key}:\n"));
                    random_map(out, indent + 2 + 2 * next(2), depth + 1, next, scalars, keys);
                }
                2 => {
                    // A block sequence, kubectl's style or indented, of scalars or maps.
                    out.push_str(&format!("{pad}{key}:\n"));
                    let item_pad = " ".repeat(indent + 2 * next(2));
                    for _ in 0..1 + next(3) {
                        if next(2) == 0 {
                            out.push_str(&format!("{item_pad}- {}\n", pick(next, scalars)));
                        } else {
                            let mut item = String::new();
                            random_map(&mut item, item_pad.len() + 2, depth + 1, next, scalars, keys);
                            let item = item.trim_start_matches(' ');
                            out.push_str(&format!("{item_pad}- {item}"));
                        }
                    }
                }
                3 => {
                    let entries: Vec<_> = (0..next(4))
                        .map(|_| {
                            let value = if next(4) == 0 {
                                format!("[{}]", pick(next, scalars))
                            } else {
                                pick(next, scalars).to_string()
                            };
                            format!("{}: {value}", keys[next(keys.len())])
                        })
                        .collect();
                    out.push_str(&format!("{pad}{key}: {{{}}}\n", entries.join(", ")));
                }
                _ => {
                    let items: Vec<_> = (0..next(4)).map(|_| pick(next, scalars)).collect();
                    out.push_str(&format!("{pad}{key}: [{}]\n", items.join(", ")));
                }
            }
        }
    }
}
