//! The CoreDNS side: one server block per zone, `Z:53 { errors; cache 30;
//! forward . <ClusterIP> }`, added to or replaced in a Corefile with every
//! other byte left as it was.
//!
//! The scanner follows the Caddyfile lexer that CoreDNS uses just far enough
//! to find server blocks: tokens split on white space, `#` starts a comment
//! to the end of the line (outside quotes, even inside a token), `"…"`
//! quotes with `\"` escapes and may span lines, a lone `{` or `}` opens or
//! closes a block. A server block is its keys (one line, or more when a key
//! ends with a comma) and the braced body after them; snippets `(name)` are
//! blocks too, and a top-level `import` line is skipped. A Corefile it does
//! not understand (a server block without braces, unbalanced braces, an
//! open quote) is an error, and nothing is edited.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why a Corefile is not edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {0}: a quoted string is not closed")]
    OpenQuote(usize),
    #[error("line {0}: this block's '{{' is never closed")]
    Unclosed(usize),
    #[error("line {0}: '}}' closes no block")]
    StrayClose(usize),
    #[error("line {0}: the server block has no braces; add them before editing it with this command")]
    Braceless(usize),
    #[error("line {0}: a key ends with ',' but no key follows")]
    MissingKey(usize),
}

/// A server block for one of our zones that does not forward (only) to the
/// ClusterIP: replaced only with `--force`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    pub zone: String,
    /// The key as written, e.g. `global:53`.
    pub key: String,
    pub line: usize,
    /// The arguments of its `forward` directive (`. 10.0.0.9`), if it has one.
    pub forward: Option<String>,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.forward {
            Some(to) => write!(
                f,
                "zone {}: the server block {} (line {}) has `forward {to}`",
                self.zone, self.key, self.line
            ),
            None => write!(
                f,
                "zone {}: the server block {} (line {}) does not forward",
                self.zone, self.key, self.line
            ),
        }
    }
}

/// What [`apply`] did to one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A block for the zone already forwards to the ClusterIP.
    Kept {
        zone: String,
        line: usize,
    },
    Added {
        zone: String,
    },
    /// The block this command wrote before forwards to the Service's
    /// previous ClusterIP: replaced without `--force`.
    Updated {
        zone: String,
        line: usize,
        from: IpAddr,
    },
    /// `--force`: the foreign block was replaced (or, when it served other
    /// zones too, the zone's key was taken out of it and a block added).
    Replaced(Foreign),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Kept { zone, line } => write!(f, "zone {zone}: already forwarded (line {line})"),
            Change::Added { zone } => write!(f, "zone {zone}: server block added"),
            Change::Updated { zone, line, from } => {
                write!(
                    f,
                    "zone {zone}: server block (line {line}) moved from the old ClusterIP {from}"
                )
            }
            Change::Replaced(foreign) => write!(f, "replaced: {foreign}"),
        }
    }
}

/// The Corefile after [`apply`]: `text` holds every change that was
/// allowed; `foreign` lists the blocks left alone for want of `--force`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub text: String,
    pub changes: Vec<Change>,
    pub foreign: Vec<Foreign>,
}

/// The server block this command writes for `zone` (normalized, no
/// trailing dot), formatted as `deploy/coredns/global.server`.
pub fn server_block(zone: &str, ip: IpAddr) -> String {
    format!("{zone}:53 {{\n    errors\n    cache 30\n    forward . {ip}\n}}\n")
}

/// Adds or replaces the server block of each zone in `corefile` (zones
/// normalized: lower case, no trailing dot). A block that forwards to `ip`
/// already is kept as it is. One that forwards to `previous` alone (the
/// ClusterIP this command last wrote, recorded on the ConfigMap) and
/// serves only that zone is replaced. Any other is replaced only when
/// `force` is set, and otherwise reported in [`Edit::foreign`].
pub fn apply(
    corefile: &str,
    zones: &[String],
    ip: IpAddr,
    previous: Option<IpAddr>,
    force: bool,
) -> Result<Edit, ParseError> {
    let blocks = scan(corefile)?;
    let mut changes = Vec::new();
    let mut foreign = Vec::new();
    // What happens to each block, by its index: one entry per block, so
    // that no two edits overlap.
    let mut edits: BTreeMap<usize, BlockEdit> = BTreeMap::new();
    let mut append = String::new();
    let mut seen = Vec::new();
    for zone in zones {
        if seen.contains(&zone) {
            continue;
        }
        seen.push(zone);
        let matching: Vec<(usize, usize)> = blocks
            .iter()
            .enumerate()
            .filter_map(|(n, b)| {
                b.keys
                    .iter()
                    .position(|k| key_zone(&k.text).as_deref() == Some(zone))
                    .map(|i| (n, i))
            })
            .collect();
        if matching.is_empty() {
            append.push_str(&server_block(zone, ip));
            changes.push(Change::Added { zone: zone.clone() });
            continue;
        }
        let ours = matching.iter().find(|&&(n, _)| blocks[n].forwards_only_to(ip));
        if let Some(&(n, _)) = ours {
            changes.push(Change::Kept {
                zone: zone.clone(),
                line: blocks[n].line,
            });
        }
        let mut placed = ours.is_some();
        for &(n, i) in matching.iter().filter(|&&(n, _)| !blocks[n].forwards_only_to(ip)) {
            let b = &blocks[n];
            let found = Foreign {
                zone: zone.clone(),
                key: b.keys[i].text.clone(),
                line: b.line,
                forward: b.forward.as_ref().map(|args| args.join(" ")),
            };
            let single = b.keys.len() == 1;
            let outdated = previous.filter(|&p| single && b.forwards_only_to(p));
            if outdated.is_none() && !force {
                foreign.push(found);
                continue;
            }
            if !single {
                // Shared with other zones: only this zone's key goes, and
                // the zone gets a block of its own below.
                match edits.entry(n).or_insert_with(|| BlockEdit::RemoveKeys(Vec::new())) {
                    BlockEdit::RemoveKeys(keys) => keys.push(i),
                    _ => unreachable!("a block with several keys is only ever edited by key"),
                }
            } else if placed {
                edits.insert(n, BlockEdit::Delete);
            } else {
                edits.insert(n, BlockEdit::Replace(server_block(zone, ip)));
                placed = true;
            }
            changes.push(match outdated {
                Some(from) => Change::Updated {
                    zone: zone.clone(),
                    line: b.line,
                    from,
                },
                None => Change::Replaced(found),
            });
        }
        if !placed && force {
            append.push_str(&server_block(zone, ip));
        }
    }

    let mut text = String::with_capacity(corefile.len() + append.len() + 1);
    let mut at = 0;
    for (n, edit) in &edits {
        let b = &blocks[*n];
        let through_newline = if corefile[b.end..].starts_with('\n') {
            b.end + 1
        } else {
            b.end
        };
        let (start, end, replacement) = match edit {
            BlockEdit::Replace(block) => (b.start, b.end, block.trim_end_matches('\n').to_string()),
            BlockEdit::Delete => (b.start, through_newline, String::new()),
            BlockEdit::RemoveKeys(gone) if gone.len() == b.keys.len() => (b.start, through_newline, String::new()),
            BlockEdit::RemoveKeys(gone) => {
                let kept: Vec<&str> = (0..b.keys.len())
                    .filter(|k| !gone.contains(k))
                    .map(|k| b.keys[k].text.as_str())
                    .collect();
                let last = b.keys.last().expect("several keys");
                (b.start, last.end, kept.join(" "))
            }
        };
        text.push_str(&corefile[at..start]);
        text.push_str(&replacement);
        at = end;
    }
    text.push_str(&corefile[at..]);
    if !append.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&append);
    }
    Ok(Edit { text, changes, foreign })
}

/// What [`apply`] does to one existing block.
#[derive(Debug)]
enum BlockEdit {
    /// Our block in its place.
    Replace(String),
    Delete,
    /// These keys (by index) go; the block stays with the others, or goes
    /// when none is left.
    RemoveKeys(Vec<usize>),
}

/// The zone a server block key serves with plain DNS on port 53, normalized;
/// `None` for another port or transport (`tls://`, `grpc://`, …).
pub fn key_zone(key: &str) -> Option<String> {
    let key = match key.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("dns") => rest,
        Some(_) => return None,
        None => key,
    };
    let host = match key.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            if port.parse::<u32>() != Ok(53) {
                return None;
            }
            host
        }
        _ => key,
    };
    if host.contains('/') {
        return super::reverse_zone(host).ok();
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    Some(if host.is_empty() {
        ".".into()
    } else {
        host.to_ascii_lowercase()
    })
}

// ---------------------------------------------------------------------------
// The scanner

#[derive(Debug)]
struct Token {
    /// The text, quotes removed and `\"` unescaped.
    text: String,
    /// Byte span in the file, quotes included.
    start: usize,
    end: usize,
    line: usize,
    quoted: bool,
}

impl Token {
    fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

#[derive(Debug)]
struct Block {
    keys: Vec<Token>,
    /// From the first key to just after the closing brace.
    start: usize,
    end: usize,
    line: usize,
    /// The arguments of the body's first `forward` directive.
    forward: Option<Vec<String>>,
}

impl Block {
    /// `forward . <ip>` (or `forward <zone> <ip>`), every destination being
    /// the ClusterIP on port 53.
    fn forwards_only_to(&self, ip: IpAddr) -> bool {
        let Some(args) = &self.forward else {
            return false;
        };
        let Some((_from, to)) = args.split_first() else {
            return false;
        };
        !to.is_empty() && to.iter().all(|t| is_dns_server(t, ip))
    }
}

fn is_dns_server(dest: &str, ip: IpAddr) -> bool {
    let dest = match dest.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("dns") => rest,
        Some(_) => return false,
        None => dest,
    };
    if let Ok(addr) = dest.parse::<IpAddr>() {
        return addr == ip;
    }
    dest.parse::<SocketAddr>()
        .is_ok_and(|sa| sa.ip() == ip && sa.port() == 53)
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut line = 1;
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&(_, c)| c != '\n').is_some() {},
            '"' => {
                let start_line = line;
                let mut value = String::new();
                let mut end = None;
                while let Some((j, c)) = chars.next() {
                    match c {
                        '\\' if chars.peek().is_some_and(|&(_, c)| c == '"') => {
                            chars.next();
                            value.push('"');
                        }
                        '"' => {
                            end = Some(j + 1);
                            break;
                        }
                        c => {
                            if c == '\n' {
                                line += 1;
                            }
                            value.push(c);
                        }
                    }
                }
                let end = end.ok_or(ParseError::OpenQuote(start_line))?;
                tokens.push(Token {
                    text: value,
                    start: i,
                    end,
                    line: start_line,
                    quoted: true,
                });
            }
            _ => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, c)) = chars.peek() {
                    if c.is_whitespace() || c == '#' {
                        break;
                    }
                    end = j + c.len_utf8();
                    chars.next();
                }
                tokens.push(Token {
                    text: text[i..end].to_string(),
                    start: i,
                    end,
                    line,
                    quoted: false,
                });
            }
        }
    }
    Ok(tokens)
}

/// The file's top-level blocks, in order.
fn scan(text: &str) -> Result<Vec<Block>, ParseError> {
    let mut tokens = tokenize(text)?.into_iter().peekable();
    let mut blocks = Vec::new();
    while let Some(first) = tokens.next() {
        if first.is("}") {
            return Err(ParseError::StrayClose(first.line));
        }
        if first.is("import") {
            while tokens.next_if(|t| t.line == first.line).is_some() {}
            continue;
        }
        // Keys: the rest of the line, and the next line after a trailing comma.
        let line = first.line;
        let mut keys = vec![first];
        loop {
            let last = keys.last().expect("a key");
            let more = !last.quoted && last.text.ends_with(',');
            let last_line = last.line;
            match tokens.peek() {
                Some(t) if t.is("{") => break,
                Some(t) if more || t.line == last_line => keys.push(tokens.next().expect("peeked")),
                Some(_) => break,
                None if more => return Err(ParseError::MissingKey(last_line)),
                None => break,
            }
        }
        let Some(open) = tokens.next_if(|t| t.is("{")) else {
            return Err(ParseError::Braceless(line));
        };
        let mut depth = 1;
        let mut forward = None;
        // 0: the first token after `{` starts a directive, even on its line.
        let mut prev_line = 0;
        let end = loop {
            let Some(t) = tokens.next() else {
                return Err(ParseError::Unclosed(open.line));
            };
            if t.is("{") {
                depth += 1;
            } else if t.is("}") {
                depth -= 1;
                if depth == 0 {
                    break t.end;
                }
            } else if depth == 1 && t.line != prev_line && t.is("forward") && forward.is_none() {
                let mut args = Vec::new();
                while let Some(arg) = tokens.next_if(|a| a.line == t.line && !a.is("{") && !a.is("}")) {
                    args.push(arg.text);
                }
                forward = Some(args);
            }
            prev_line = t.line;
        };
        for key in &mut keys {
            if !key.quoted
                && let Some(stripped) = key.text.strip_suffix(',')
            {
                key.text = stripped.to_string();
            }
        }
        keys.retain(|k| !k.text.is_empty());
        let start = keys.first().map_or(open.start, |k| k.start);
        blocks.push(Block {
            keys,
            start,
            end,
            line,
            forward,
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_ip() -> IpAddr {
        "10.96.0.10".parse().unwrap()
    }

    fn mk_zones(zones: &[&str]) -> Vec<String> {
        zones.iter().map(|z| z.to_string()).collect()
    }

    /// kubeadm's default Corefile.
    fn mk_corefile() -> String {
        ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    \
         kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       \
         fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    \
         forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    \
         reload\n    loadbalance\n}\n"
            .to_string()
    }

    fn mk_apply(corefile: &str, zones: &[&str], force: bool) -> Edit {
        apply(corefile, &mk_zones(zones), mk_ip(), None, force).unwrap()
    }

    #[test]
    fn appends_a_block_and_leaves_the_rest() {
        let before = mk_corefile();
        let edit = mk_apply(&before, &["global"], false);
        assert_eq!(edit.text, format!("{before}{}", server_block("global", mk_ip())));
        assert_eq!(edit.changes, [Change::Added { zone: "global".into() }]);
        assert!(edit.foreign.is_empty());
        // The block is formatted as deploy/coredns/global.server.
        let shipped = include_str!("../../deploy/coredns/global.server");
        let shipped: String = shipped
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            shipped.replace("MESHDNS_CLUSTER_IP", "10.96.0.10"),
            server_block("global", mk_ip())
        );
        // And applying again changes nothing.
        let again = mk_apply(&edit.text, &["global"], false);
        assert_eq!(again.text, edit.text);
        assert_eq!(
            again.changes,
            [Change::Kept {
                zone: "global".into(),
                line: 21
            }]
        );
    }

    #[test]
    fn no_trailing_newline_and_empty_file() {
        let edit = mk_apply(".:53 {\n  forward . 8.8.8.8\n}", &["global"], false);
        assert_eq!(
            edit.text,
            format!(".:53 {{\n  forward . 8.8.8.8\n}}\n{}", server_block("global", mk_ip()))
        );
        assert_eq!(mk_apply("", &["global"], false).text, server_block("global", mk_ip()));
    }

    #[test]
    fn the_documented_stanzas_count_as_done() {
        for corefile in [
            // deploy/coredns/global.server as the README says to fill it in.
            include_str!("../../deploy/coredns/global.server").replace("MESHDNS_CLUSTER_IP", "10.96.0.10"),
            format!(
                "{}# ours\nGLOBAL. {{\n  forward . dns://10.96.0.10:53 # the meshdns Service\n}}\n",
                mk_corefile()
            ),
            "global:53 {\n  log\n  forward global 10.96.0.10 {\n    force_tcp\n  }\n  cache 60\n}\n".into(),
            "dns://global.:53 { forward . 10.96.0.10 }\n".into(),
        ] {
            let edit = mk_apply(&corefile, &["global"], false);
            assert_eq!(edit.text, corefile);
            assert!(matches!(edit.changes[..], [Change::Kept { .. }]), "{corefile}");
        }
    }

    #[test]
    fn a_foreign_block_needs_force() {
        let corefile = format!(
            "{}global:53 {{\n    errors\n    forward . 10.0.0.9\n}}\n# after\n",
            mk_corefile()
        );
        let edit = mk_apply(&corefile, &["global"], false);
        assert_eq!(edit.text, corefile);
        assert_eq!(
            edit.foreign,
            [Foreign {
                zone: "global".into(),
                key: "global:53".into(),
                line: 21,
                forward: Some(". 10.0.0.9".into()),
            }]
        );
        assert_eq!(
            edit.foreign[0].to_string(),
            "zone global: the server block global:53 (line 21) has `forward . 10.0.0.9`"
        );

        let forced = mk_apply(&corefile, &["global"], true);
        assert_eq!(
            forced.text,
            format!("{}{}# after\n", mk_corefile(), server_block("global", mk_ip()))
        );
        assert!(forced.foreign.is_empty());
        assert!(matches!(&forced.changes[..], [Change::Replaced(f)] if f.line == 21));
        // A second destination, or none, is foreign too.
        for body in ["forward . 10.96.0.10 10.0.0.9", "forward .", "whoami"] {
            let corefile = format!("global {{\n  {body}\n}}\n");
            assert_eq!(mk_apply(&corefile, &["global"], false).foreign.len(), 1, "{body}");
        }
        // The ClusterIP on another port is not the Service.
        let corefile = "global {\n  forward . 10.96.0.10:1053\n}\n";
        assert_eq!(mk_apply(corefile, &["global"], false).foreign.len(), 1);
    }

    #[test]
    fn the_block_for_the_previous_cluster_ip_moves_without_force() {
        let old: IpAddr = "10.96.0.9".parse().unwrap();
        let corefile = format!("{}{}# after\n", mk_corefile(), server_block("global", old));
        let edit = apply(&corefile, &mk_zones(&["global"]), mk_ip(), Some(old), false).unwrap();
        assert_eq!(
            edit.text,
            format!("{}{}# after\n", mk_corefile(), server_block("global", mk_ip()))
        );
        assert_eq!(
            edit.changes,
            [Change::Updated {
                zone: "global".into(),
                line: 21,
                from: old
            }]
        );
        assert!(edit.foreign.is_empty());
        // Another address is still foreign.
        let other: IpAddr = "10.96.0.8".parse().unwrap();
        let edit = apply(&corefile, &mk_zones(&["global"]), mk_ip(), Some(other), false).unwrap();
        assert_eq!(edit.foreign.len(), 1);
    }

    #[test]
    fn other_ports_transports_and_zones_are_not_ours() {
        let corefile = "global:1053 {\n  forward . 1.1.1.1\n}\ntls://global {\n  forward . 1.1.1.1\n}\n\
                        a.global {\n  forward . 1.1.1.1\n}\n";
        let edit = mk_apply(corefile, &["global"], false);
        assert_eq!(edit.text, format!("{corefile}{}", server_block("global", mk_ip())));
    }

    #[test]
    fn comments_and_quotes_do_not_confuse_the_scanner() {
        let corefile = "# global:53 { forward . 1.1.1.1 }\n\
                        .:53 {\n  template IN TXT {\n    answer \"x 60 IN TXT \\\"} global {\\\"\"\n  }\n  \
                        forward . 8.8.8.8 # }\n}\n";
        let edit = mk_apply(corefile, &["global"], false);
        assert_eq!(edit.text, format!("{corefile}{}", server_block("global", mk_ip())));
    }

    #[test]
    fn several_zones_and_reverse_zones() {
        let corefile = format!("{}240.0.0.0/8:53 {{\n  forward . 10.96.0.10\n}}\n", mk_corefile());
        let edit = mk_apply(&corefile, &["global", "240.in-addr.arpa", "other"], false);
        assert_eq!(
            edit.text,
            format!(
                "{corefile}{}{}",
                server_block("global", mk_ip()),
                server_block("other", mk_ip())
            )
        );
        assert_eq!(edit.changes.len(), 3);
    }

    #[test]
    fn a_shared_block_loses_only_our_key() {
        let corefile = "global:53, other:53 {\n  forward . 1.1.1.1\n}\n";
        let edit = mk_apply(corefile, &["global"], false);
        assert_eq!(edit.foreign.len(), 1);
        let forced = mk_apply(corefile, &["global"], true);
        assert_eq!(
            forced.text,
            format!(
                "other:53 {{\n  forward . 1.1.1.1\n}}\n{}",
                server_block("global", mk_ip())
            )
        );
        let forced = mk_apply("a:53, global {\n  forward . 1.1.1.1\n}\n", &["global"], true);
        assert_eq!(
            forced.text,
            format!("a:53 {{\n  forward . 1.1.1.1\n}}\n{}", server_block("global", mk_ip()))
        );
        let forced = mk_apply("a:53,\n  global b {\n}\n", &["global"], true);
        assert_eq!(
            forced.text,
            format!("a:53 b {{\n}}\n{}", server_block("global", mk_ip()))
        );
    }

    #[test]
    fn two_of_our_zones_in_one_shared_block() {
        let corefile = "global:53, other:53 b {\n  forward . 1.1.1.1\n}\n# after\n";
        let forced = mk_apply(corefile, &["global", "other"], true);
        assert_eq!(
            forced.text,
            format!(
                "b {{\n  forward . 1.1.1.1\n}}\n# after\n{}{}",
                server_block("global", mk_ip()),
                server_block("other", mk_ip())
            )
        );
        // Every key ours: the block goes.
        let forced = mk_apply(corefile, &["global", "other", "b", "global"], true);
        assert_eq!(
            forced.text,
            format!(
                "# after\n{}{}{}",
                server_block("global", mk_ip()),
                server_block("other", mk_ip()),
                server_block("b", mk_ip())
            )
        );
    }

    #[test]
    fn duplicates_are_merged_into_one_block_with_force() {
        let corefile = "global {\n  forward . 1.1.1.1\n}\nglobal:53 {\n  forward . 10.96.0.10\n}\n";
        let edit = mk_apply(corefile, &["global"], false);
        assert_eq!(edit.foreign.len(), 1);
        let forced = mk_apply(corefile, &["global"], true);
        assert_eq!(forced.text, "global:53 {\n  forward . 10.96.0.10\n}\n");
    }

    #[test]
    fn snippets_and_imports_are_skipped() {
        let corefile = "(common) {\n  errors\n}\nimport extra/*.server\n.:53 {\n  import common\n}\n";
        let edit = mk_apply(corefile, &["global"], false);
        assert_eq!(edit.text, format!("{corefile}{}", server_block("global", mk_ip())));
    }

    #[test]
    fn what_it_does_not_understand_is_an_error() {
        for (corefile, error) in [
            (".:53\nforward . 8.8.8.8\n", ParseError::Braceless(1)),
            (".:53 {\n  forward . 8.8.8.8\n", ParseError::Unclosed(1)),
            ("}\n", ParseError::StrayClose(1)),
            (".:53 {\n  x \"open\n}\n", ParseError::OpenQuote(2)),
            ("a:53,", ParseError::MissingKey(1)),
        ] {
            assert_eq!(
                apply(corefile, &mk_zones(&["global"]), mk_ip(), None, true),
                Err(error),
                "{corefile}"
            );
        }
    }

    /// Every prefix and every suffix of a busy Corefile: an edit or an
    /// error, never a panic, and a second apply of an edit changes nothing.
    #[test]
    fn cut_anywhere() {
        let corefile = format!(
            "{}# c {{\nglobal:53, other b {{\n  forward . 1.1.1.1 {{\n  }}\n}}\n(s) {{ x \"}} {{\\\" ü\" }}\n\
             import y\nother.:53 {{ forward . 10.96.0.10 }}\nglobal {{\n}}\n",
            mk_corefile()
        );
        for (i, _) in corefile.char_indices() {
            for text in [&corefile[..i], &corefile[i..]] {
                for force in [false, true] {
                    if let Ok(edit) = apply(text, &mk_zones(&["global", "other", "b"]), mk_ip(), None, force)
                        && edit.foreign.is_empty()
                    {
                        let again = apply(&edit.text, &mk_zones(&["global", "other", "b"]), mk_ip(), None, false)
                            .unwrap_or_else(|e| panic!("{e}: {:?}", edit.text));
                        assert_eq!(again.text, edit.text, "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn keys() {
        assert_eq!(key_zone("Global.:53").as_deref(), Some("global"));
        assert_eq!(key_zone("dns://global").as_deref(), Some("global"));
        assert_eq!(key_zone(".:53").as_deref(), Some("."));
        assert_eq!(key_zone("global:5353"), None);
        assert_eq!(key_zone("grpc://global"), None);
        assert_eq!(key_zone("10.0.0.0/8").as_deref(), Some("10.in-addr.arpa"));
        assert!(is_dns_server("[fd00::a]:53", "fd00::a".parse().unwrap()));
        assert!(!is_dns_server("tls://10.96.0.10", mk_ip()));
    }
}
