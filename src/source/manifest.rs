//! Reading ServiceEntries out of YAML manifests: multi-document files,
//! `kind: List`, other kinds ignored. Errors name the line they start on.

use std::fmt;

use serde::Deserialize;
use serde_yaml::Value;

use crate::serviceentry::{self, ServiceEntry, is_object_name};

#[derive(Debug, Default)]
pub struct Manifests {
    pub entries: Vec<ServiceEntry>,
    /// Documents of other kinds (ConfigMaps, Services …), left alone.
    pub ignored: usize,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub struct ManifestError {
    /// 1-based line in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}: {}", self.line, self.column, self.message)
    }
}

/// Parses a whole file; any invalid document makes the whole file invalid,
/// so a half-edited file never replaces a good one.
pub fn parse(text: &str) -> Result<Manifests, ManifestError> {
    let mut entries = Vec::new();
    let ignored = parse_each(text, |se| entries.push(se))?;
    Ok(Manifests { entries, ignored })
}

/// [`parse`], handing each ServiceEntry to `each` as soon as it is read, so
/// that a big file's parsed objects are never all held at once. Returns how
/// many documents of other kinds were ignored.
pub fn parse_each(text: &str, mut each: impl FnMut(ServiceEntry)) -> Result<usize, ManifestError> {
    // Some Windows editors start a UTF-8 file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ignored = 0;
    for (first_line, doc) in documents(text) {
        parse_document(doc, first_line, &mut each, &mut ignored)?;
    }
    Ok(ignored)
}

/// Splits at YAML document markers (`---`, `...` at column 0), keeping each
/// document's first line number so errors point into the file.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        let marker = bare == "---" || bare == "..." || line.starts_with("--- ") || line.starts_with("---\t");
        if marker {
            docs.push((start_line, &text[start..offset]));
            // `--- {inline: doc}`: the content after the marker belongs to the next document.
            let after = if line.starts_with("--- ") || line.starts_with("---\t") {
                4
            } else {
                line.len()
            };
            start = offset + after.min(line.len());
            start_line = i + 1 + usize::from(after >= line.len());
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

/// Deeper `[`/`{` nesting than any manifest has. serde_yaml refuses more
/// than 128 levels, but only after libyaml has scanned the whole document,
/// which takes quadratic time: 200 KB of `[` took 16 s, with reloads of
/// every other file waiting behind it.
const MAX_FLOW_DEPTH: usize = 1000;

/// The line (0-based within `doc`) where flow collections nest deeper than
/// [`MAX_FLOW_DEPTH`]. A cheap scan that skips quoted scalars and comments;
/// brackets in plain or block scalars count too, which at worst lets a
/// deep document through to serde_yaml's own limit.
fn too_deep(doc: &str) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 0);
    let mut quote = None;
    let mut prev = b'\n';
    let mut bytes = doc.bytes();
    while let Some(b) = bytes.next() {
        match (quote, b) {
            (_, b'\n') => line += 1,
            // An escape: the next byte cannot close the string.
            (Some(b'"'), b'\\') => line += usize::from(bytes.next() == Some(b'\n')),
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'#') if prev.is_ascii_whitespace() => {
                // A comment, to the end of the line.
                line += usize::from(bytes.any(|c| c == b'\n'));
                prev = b'\n';
                continue;
            }
            (None, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            (None, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = b;
    }
    None
}

fn parse_document(
    doc: &str,
    first_line: usize,
    each: &mut impl FnMut(ServiceEntry),
    ignored: &mut usize,
) -> Result<(), ManifestError> {
    // Directives (`%YAML 1.1`) before a `---` belong to the next document;
    // libyaml, given them alone, wants a document start.
    if doc
        .lines()
        .all(|l| l.starts_with('%') || l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        return Ok(());
    }
    if let Some(line) = too_deep(doc) {
        return Err(ManifestError {
            line: first_line + line,
            column: 0,
            message: format!("[ and {{ nested more than {MAX_FLOW_DEPTH} deep"),
        });
    }
    let at = |e: serde_yaml::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ManifestError {
            line: first_line + line.saturating_sub(1),
            column,
            message: relocate(&e.to_string(), first_line - 1),
        }
    };
    let value: Value = serde_yaml::from_str(doc).map_err(at)?;
    match kind(&value) {
        None if value.is_null() => Ok(()),
        Some((api_version, serviceentry::KIND)) if serviceentry::is_istio_networking(api_version) => {
            // Parsed once; only an error is parsed again, for its line.
            let se = ServiceEntry::deserialize(&value)
                .map_err(|e| at(serde_yaml::from_str::<ServiceEntry>(doc).err().unwrap_or(e)))?;
            push(se, first_line, each)
        }
        Some((_, list)) if list.ends_with("List") => {
            let items = value
                .get("items")
                .and_then(Value::as_sequence)
                .map_or(&[][..], Vec::as_slice);
            for (i, item) in items.iter().enumerate() {
                match kind(item) {
                    Some((api_version, serviceentry::KIND)) if serviceentry::is_istio_networking(api_version) => {
                        let se: ServiceEntry = serde_yaml::from_value(item.clone()).map_err(|e| ManifestError {
                            line: first_line,
                            column: 0,
                            message: format!("items[{i}]: {}", relocate(&e.to_string(), first_line - 1)),
                        })?;
                        push(se, first_line, each)?;
                    }
                    _ => *ignored += 1,
                }
            }
            Ok(())
        }
        Some(_) => {
            *ignored += 1;
            Ok(())
        }
        None => Err(ManifestError {
            line: first_line,
            column: 0,
            message: "not a Kubernetes object (no apiVersion/kind)".into(),
        }),
    }
}

fn kind(value: &Value) -> Option<(&str, &str)> {
    Some((value.get("apiVersion")?.as_str()?, value.get("kind")?.as_str()?))
}

fn push(se: ServiceEntry, line: usize, each: &mut impl FnMut(ServiceEntry)) -> Result<(), ManifestError> {
    let invalid = |message: String| ManifestError {
        line,
        column: 0,
        message,
    };
    if se.metadata.name.is_empty() {
        return Err(invalid("ServiceEntry without metadata.name".into()));
    }
    // The API server enforces these; a file must not smuggle in what it would refuse.
    if !is_object_name(&se.metadata.name, false) {
        return Err(invalid(format!(
            "metadata.name {:?} is not a Kubernetes name (lower-case letters, digits, '-' and '.')",
            se.metadata.name
        )));
    }
    if let Some(ns) = se.metadata.namespace.as_deref().filter(|ns| !is_object_name(ns, true)) {
        return Err(invalid(format!(
            "metadata.namespace {ns:?} is not a Kubernetes namespace (lower-case letters, digits and '-')"
        )));
    }
    each(se);
    Ok(())
}

/// serde_yaml puts " at line X column Y" into its messages, counted from
/// the document's start. The first is the error's own place, which
/// [`ManifestError`] reports as a file line, so it goes; any other (", while
/// parsing a flow sequence at line 4 column 9") is moved down by `offset`
/// lines to count from the file's start too.
fn relocate(message: &str, offset: usize) -> String {
    const AT: &str = " at line ";
    let number = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut first = true;
    while let Some(at) = rest.find(AT) {
        out.push_str(&rest[..at]);
        let after = &rest[at + AT.len()..];
        let Ok(line) = after[..number(after)].parse::<usize>() else {
            out.push_str(AT);
            rest = after;
            continue;
        };
        let mut tail = &after[number(after)..];
        let mut column = "";
        if let Some(t) = tail.strip_prefix(" column ") {
            (column, tail) = t.split_at(number(t));
        }
        if !first {
            out.push_str(&format!("{AT}{}", line + offset));
            if !column.is_empty() {
                out.push_str(&format!(" column {column}"));
            }
        }
        first = false;
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: a\n  namespace: foo\nspec:\n  hosts: [a.global]\n  resolution: DNS\n  addresses: [240.0.0.1]\n";

    #[test]
    fn multi_document_with_other_kinds() {
        let text = format!(
            "# leading comment\n{SE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata: {{a: b}}\n---\n{}\n---\n",
            SE.replace("name: a", "name: b")
        );
        let m = parse(&text).unwrap();
        assert_eq!(
            m.entries.iter().map(|e| e.metadata.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(m.ignored, 1);
        assert_eq!(m.entries[0].spec.hosts, ["a.global"]);
    }

    #[test]
    fn list_kind() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1beta1\n  kind: ServiceEntry\n  metadata: {name: x, namespace: y}\n  spec: {hosts: [x.global], resolution: DNS}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n";
        let m = parse(text).unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(m.ignored, 1);
    }

    #[test]
    fn other_groups_are_not_serviceentries() {
        let m = parse(&SE.replace("networking.istio.io", "example.com")).unwrap();
        assert_eq!((m.entries.len(), m.ignored), (0, 1));
    }

    #[test]
    fn syntax_error_names_the_file_line() {
        let text =
            format!("{SE}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: [unclosed\n");
        let err = parse(&text).unwrap_err();
        assert!(err.line >= 13 && err.line <= 15, "{err}");
    }

    #[test]
    fn type_error_names_the_line() {
        let text = format!("{SE}---\n{}", SE.replace("hosts: [a.global]", "hosts: {not: a list}"));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 17, "{err}");
        assert!(err.message.contains("hosts"), "{err}");
    }

    #[test]
    fn locations_in_messages_count_from_the_file_start() {
        assert_eq!(relocate("bad thing at line 4 column 12", 10), "bad thing");
        assert_eq!(
            relocate("did not find ']' at line 4 column 1, while parsing a flow sequence", 0),
            "did not find ']', while parsing a flow sequence"
        );
        assert_eq!(
            relocate(
                "did not find expected ',' or ']' at line 25 column 1, while parsing a flow sequence at line 4 column 9",
                20
            ),
            "did not find expected ',' or ']', while parsing a flow sequence at line 24 column 9"
        );
        assert_eq!(relocate("no location, at line x", 3), "no location, at line x");
    }

    #[test]
    fn byte_order_mark_and_directives_are_fine() {
        let m = parse(&format!("\u{feff}%YAML 1.1\n# c\n---\n{SE}")).unwrap();
        assert_eq!(m.entries.len(), 1);
        let e = parse(&format!("{SE}---\n{SE}a: [\n")).unwrap_err();
        assert_eq!(e.line, 21);
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let text = format!(
            "kind: x\n# [[[[ {}\nx: '[[[[' \n\ny: {}",
            "[".repeat(2000),
            "[".repeat(5000)
        );
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (5, "[ and { nested more than 1000 deep"));
        // Quoted and commented brackets do not count; real nesting within the limit parses.
        let ok = format!(
            "apiVersion: v1\nkind: ConfigMap\ndata: {{a: \"{}\\\"\"}} # {}\nb: {}{}",
            "[".repeat(2000),
            "{".repeat(2000),
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(parse(&ok).unwrap().ignored, 1);
    }

    #[test]
    fn missing_name_and_non_objects_are_errors() {
        assert!(parse(&SE.replace("  name: a\n", "")).is_err());
        assert!(parse("just a string\n").is_err());
        assert!(parse("").unwrap().entries.is_empty());
        assert!(parse("---\n---\n# only comments\n").unwrap().entries.is_empty());
    }

    #[test]
    fn names_the_api_server_would_refuse_are_errors() {
        let e = parse(&SE.replace("  name: a\n", "  name: \"a\\nINFO forged\"\n")).unwrap_err();
        assert_eq!(
            e.message,
            r#"metadata.name "a\nINFO forged" is not a Kubernetes name (lower-case letters, digits, '-' and '.')"#
        );
        assert!(parse(&SE.replace("  name: a\n", "  name: A_b\n")).is_err());
        assert!(parse(&SE.replace("  name: a\n", "  name: a.b-c\n")).is_ok());
        let e = parse(&SE.replace("  namespace: foo\n", "  namespace: a.b\n")).unwrap_err();
        assert!(
            e.message.starts_with(r#"metadata.namespace "a.b" is not"#),
            "{}",
            e.message
        );
    }
}
