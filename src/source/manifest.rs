//! Reading ServiceEntries out of YAML manifests: multi-document files,
//! `kind: List`, other kinds ignored. Errors name the line they start on.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::{
    Budget, DEFAULT_ENGLISH_LOCALIZER, DefaultMessageFormatter, Localizer, Location, Options, SnippetMode,
};

use crate::serviceentry::{self, ServiceEntry, is_object_name};

mod plain;

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
    let (runs, ignored) = parse_runs(text, 1, |se, out| out.push(se))?;
    let entries = runs.into_iter().flatten().collect();
    Ok(Manifests { entries, ignored })
}

/// [`parse`] on up to `threads` threads at once, for big files, handing
/// each ServiceEntry to `each` as soon as it is read, so that the parsed
/// objects are never all held at once. The documents are split into runs
/// of about equal size; each run is read on a thread of its own (the first
/// on the caller's), `each` adding what it makes of an entry to that run's
/// list. The lists come back in file order with the count of documents of
/// other kinds, and the first error in the file wins: documents are
/// independent, so any number of threads reads what one does.
pub fn parse_runs<T: Send>(
    text: &str,
    threads: usize,
    each: impl Fn(ServiceEntry, &mut Vec<T>) + Sync,
) -> Result<(Vec<Vec<T>>, usize), ManifestError> {
    // Some Windows editors start a UTF-8 file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = documents(text);
    let runs = threads.clamp(1, docs.len());
    let mut bounds = vec![0];
    let (mut size, per_run) = (0, text.len() / runs + 1);
    for (i, (_, doc)) in docs.iter().enumerate() {
        size += doc.len();
        if size >= per_run && bounds.len() < runs && i + 1 < docs.len() {
            bounds.push(i + 1);
            size = 0;
        }
    }
    bounds.push(docs.len());
    let read = |run: &[(usize, &str)]| -> Result<(Vec<T>, usize), ManifestError> {
        let (mut out, mut ignored) = (Vec::new(), 0);
        let mut push = |se| each(se, &mut out);
        for (first_line, doc) in run {
            parse_document(doc, *first_line, &mut push, &mut ignored)?;
        }
        Ok((out, ignored))
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let helpers: Vec<_> = bounds[1..]
            .windows(2)
            .map(|w| {
                let run = &docs[w[0]..w[1]];
                s.spawn(move || read(run))
            })
            .collect();
        let first = read(&docs[..bounds[1]]);
        std::iter::once(first)
            .chain(
                helpers
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
            )
            .collect()
    });
    let (mut lists, mut ignored) = (Vec::with_capacity(results.len()), 0);
    for result in results {
        let (list, n) = result?;
        lists.push(list);
        ignored += n;
    }
    Ok((lists, ignored))
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

/// How a document is read. The Rust types are the schema: a plain scalar
/// read into a string is its text (`240.0.0.1`, `DNS`, `yes`), except that
/// one that reads as a number or `true`/`false` (`123`, `0755`, `1e3`) must
/// be quoted: kubectl would send the API server that number, which it
/// refuses where a string belongs. The budget bounds nesting and aliases
/// (billion laughs), but not size: without aliases a document has fewer
/// nodes than bytes, so a big `kind: List` is fine.
fn options(doc: &str) -> Options {
    // The default depth, 64, is kept: deeper nesting would need more than
    // the watch thread's 2 MB of stack in a debug build.
    let mut budget = Budget::default();
    budget.max_nodes = budget.max_nodes.max(doc.len());
    budget.max_events = budget.max_events.max(2 * doc.len());
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(doc.len());
    serde_saphyr::options! {
        budget: Some(budget),
        no_schema: true,
        // `yes`, `on`, `y` stay text, as serde_yaml read them.
        strict_booleans: true,
    }
}

fn parse_document(
    doc: &str,
    first_line: usize,
    each: &mut impl FnMut(ServiceEntry),
    ignored: &mut usize,
) -> Result<(), ManifestError> {
    // Directives (`%YAML 1.1`) before a `---` belong to the next document;
    // given them alone, the parser wants a document start.
    if doc
        .lines()
        .all(|l| l.starts_with('%') || l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        return Ok(());
    }
    match plain::read(doc) {
        Some(plain::Read::Entry(se)) => return push(se, first_line, each),
        Some(plain::Read::Other) => {
            *ignored += 1;
            return Ok(());
        }
        None => {}
    }
    read_general(doc, first_line, each, ignored)
}

/// Reads one document with serde-saphyr: everything YAML allows, with
/// errors that say where.
fn read_general(
    doc: &str,
    first_line: usize,
    each: &mut impl FnMut(ServiceEntry),
    ignored: &mut usize,
) -> Result<(), ManifestError> {
    let at = |e: serde_saphyr::Error| located(&e, doc, first_line);
    // `None`: an empty or null document.
    let Some(object) = serde_saphyr::from_str_with_options::<Option<Object>>(doc, options(doc)).map_err(at)? else {
        return Ok(());
    };
    let list_error = |i: usize, message: String| ManifestError {
        line: first_line,
        column: 0,
        message: format!("items[{i}]: {message}"),
    };
    match object.kind() {
        Some(Kind::ServiceEntry) if object.early.is_empty() => push(object.entry, first_line, each),
        // The kind came after the body: read it again as what it is, for the error's place.
        Some(Kind::ServiceEntry) => {
            let se = serde_saphyr::from_str_with_options(doc, options(doc)).map_err(at)?;
            push(se, first_line, each)
        }
        Some(Kind::List) => {
            let items = object.items().map_err(|message| ManifestError {
                line: first_line,
                column: 0,
                message,
            })?;
            for (i, item) in items.into_iter().enumerate() {
                match item.kind() {
                    Some(Kind::ServiceEntry) => {
                        let se = item.into_entry().map_err(|e| list_error(i, e))?;
                        push(se, first_line, each)?;
                    }
                    _ => *ignored += 1,
                }
            }
            Ok(())
        }
        Some(Kind::Other) => {
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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    ServiceEntry,
    List,
    Other,
}

/// A document or `List` item, read in one pass: `metadata`, `spec` and
/// `status` go straight into a [`ServiceEntry`] once `apiVersion` and
/// `kind` (first in every manifest kubectl writes) say it is one; any other
/// kind's are skipped unread. What comes before them is kept untyped in
/// `early`, to be read once the kind is known.
#[derive(Debug, Default)]
struct Object {
    api_version: Option<String>,
    kind: Option<String>,
    entry: ServiceEntry,
    items: Vec<Object>,
    early: serde_json::Map<String, serde_json::Value>,
}

impl Object {
    fn kind(&self) -> Option<Kind> {
        let (api_version, kind) = (self.api_version.as_deref()?, self.kind.as_deref()?);
        Some(
            if kind == serviceentry::KIND && serviceentry::is_istio_networking(api_version) {
                Kind::ServiceEntry
            } else if kind.ends_with("List") {
                Kind::List
            } else {
                Kind::Other
            },
        )
    }

    /// A List's items, also when `items` came before its `kind`.
    fn items(mut self) -> Result<Vec<Object>, String> {
        match self.early.remove("items") {
            None => Ok(self.items),
            Some(items) => Vec::<Object>::deserialize(items).map_err(|e| format!("items: {e}")),
        }
    }

    /// The ServiceEntry of a List item (whose text is not at hand to read again).
    fn into_entry(self) -> Result<ServiceEntry, String> {
        if self.early.is_empty() {
            return Ok(self.entry);
        }
        let mut se = self.entry;
        let typed = |e: serde_json::Error| e.to_string();
        for (key, value) in self.early {
            match key.as_str() {
                "metadata" => se.metadata = Deserialize::deserialize(value).map_err(typed)?,
                "spec" => se.spec = Deserialize::deserialize(value).map_err(typed)?,
                "status" => se.status = Deserialize::deserialize(value).map_err(typed)?,
                _ => {}
            }
        }
        Ok(se)
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object (a mapping with apiVersion and kind)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        let mut o = Object::default();
        while let Some(key) = map.next_key::<Key>()? {
            let Key(Some(key)) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            match (key.as_str(), o.kind()) {
                ("apiVersion", _) => o.api_version = map.next_value()?,
                ("kind", _) => o.kind = map.next_value()?,
                ("metadata", Some(Kind::ServiceEntry)) => o.entry.metadata = map.next_value()?,
                ("spec", Some(Kind::ServiceEntry)) => o.entry.spec = map.next_value()?,
                ("status", Some(Kind::ServiceEntry)) => o.entry.status = map.next_value()?,
                ("items", Some(Kind::List)) => o.items = map.next_value()?,
                ("metadata" | "spec" | "status" | "items", None) => {
                    o.early.insert(key, map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(o)
    }
}

/// A key of an [`Object`]: its name, or `None` for a key that is not text
/// (`1:`, `true:`), which is skipped with its value rather than refused.
struct Key(Option<String>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(Some(v.into())))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Key, E> {
        Ok(Key(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Key, E> {
        Ok(Key(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Key, E> {
        Ok(Key(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Key, E> {
        Ok(Key(None))
    }

    fn visit_unit<E>(self) -> Result<Key, E> {
        Ok(Key(None))
    }
}

/// A serde-saphyr error as a [`ManifestError`]: its place counted from the
/// file's start, and a message that does not repeat it.
fn located(e: &serde_saphyr::Error, doc: &str, first_line: usize) -> ManifestError {
    let own = e.location().map(|l| (l.line(), l.column()));
    let offset = first_line as u64 - 1;
    let localizer = OtherPlaces {
        own: own.map(|(line, column)| (line + offset, column)),
    };
    let formatter = DefaultMessageFormatter.with_localizer(&localizer);
    let message = e.render_with_options(serde_saphyr::render_options! {
        formatter: &formatter,
        snippets: SnippetMode::Off,
        line_offset: offset,
    });
    let (line, column) = own.map_or((0, 0), |(l, c)| (l as usize, c as usize));
    // serde-saphyr names no field ("expected sequence start"); the key the
    // value belongs to does.
    let key = doc
        .lines()
        .nth(line.wrapping_sub(1))
        .and_then(|text| key_before(text, column));
    ManifestError {
        line: first_line + line.saturating_sub(1),
        column,
        message: match key {
            Some(key) => format!("{key}: {message}"),
            None => message,
        },
    }
}

/// The key of `key: value` whose value starts at 1-based `column` of `line`.
fn key_before(line: &str, column: usize) -> Option<&str> {
    let start = line.char_indices().nth(column.checked_sub(1)?)?.0;
    let before = line[..start].trim_end().strip_suffix(':')?;
    // The key is the run of key characters just before the colon; the
    // character before it may be any width (a fuzzer found a 4-byte one).
    let key = before
        .rsplit(|c: char| !(c.is_alphanumeric() || "_-./".contains(c)))
        .next()?;
    (!key.is_empty()).then_some(key)
}

/// Leaves the error's own place out of its message ([`ManifestError`] has
/// it), but keeps any other it names, such as where an alias's anchor is.
struct OtherPlaces {
    own: Option<(u64, u64)>,
}

impl OtherPlaces {
    fn is_own(&self, at: Location) -> bool {
        self.own == Some((at.line(), at.column()))
    }
}

impl Localizer for OtherPlaces {
    fn attach_location<'a>(&self, base: Cow<'a, str>, at: Location) -> Cow<'a, str> {
        if self.is_own(at) {
            base
        } else {
            DEFAULT_ENGLISH_LOCALIZER.attach_location(base, at)
        }
    }

    fn alias_used_at(&self, at: Location) -> String {
        if self.is_own(at) {
            String::new()
        } else {
            DEFAULT_ENGLISH_LOCALIZER.alias_used_at(at)
        }
    }
}

/// For tests and fuzzing: every document of `text` that the fast reader
/// reads, serde-saphyr reads the same (the same entry, or the same other
/// kind). Returns how many documents the fast reader took, or the first
/// that differs.
#[doc(hidden)]
pub fn check_fast_reader(text: &str) -> Result<usize, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut taken = 0;
    for (first_line, doc) in documents(text) {
        let Some(fast) = plain::read(doc) else { continue };
        taken += 1;
        let (mut entries, mut ignored) = (Vec::new(), 0);
        let general = read_general(doc, first_line, &mut |se| entries.push(se), &mut ignored);
        let same = match (&fast, general) {
            (plain::Read::Entry(se), Ok(())) => ignored == 0 && entries.len() == 1 && entries[0] == *se,
            // `push` must refuse the entry with the same error.
            (plain::Read::Entry(se), Err(e)) => {
                entries.is_empty() && push(se.clone(), first_line, &mut |_| {}).err() == Some(e)
            }
            (plain::Read::Other, Ok(())) => ignored == 1 && entries.is_empty(),
            (plain::Read::Other, Err(_)) => false,
        };
        if !same {
            return Err(format!(
                "line {first_line}: fast reader {fast:?}, serde-saphyr differs on:\n{doc}"
            ));
        }
    }
    Ok(taken)
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

#[cfg(test)]
mod tests {
    use super::*;

    const SE: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: a\n  namespace: foo\nspec:\n  hosts: [a.global]\n  resolution: DNS\n  addresses: [240.0.0.1]\n";

    /// Any number of threads reads what one does, and reports the first
    /// error in the file, wherever the runs are split.
    #[test]
    fn parse_runs_on_any_number_of_threads_equals_one() {
        let mut docs: Vec<String> = (0..40)
            .map(|i| SE.replace("name: a\n", &format!("name: a{i}\n")))
            .collect();
        docs[7] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n".into();
        docs[13] = format!("%YAML 1.2\n---\n{}", docs[13]);
        let text = format!("\u{feff}{}", docs.join("---\n"));
        let names = |lists: Vec<Vec<String>>| lists.concat();
        let one = parse(&text).unwrap();
        let want: Vec<String> = one.entries.iter().map(|se| se.metadata.name.clone()).collect();
        for threads in [1, 2, 3, 4, 64] {
            let (lists, ignored) =
                parse_runs(&text, threads, |se, out: &mut Vec<String>| out.push(se.metadata.name)).unwrap();
            assert!(
                lists.len() <= threads && (threads == 1 || lists.len() > 1),
                "{threads} threads"
            );
            assert_eq!(
                (names(lists), ignored),
                (want.clone(), one.ignored),
                "{threads} threads"
            );
        }
        for bad in [3, 20, 38] {
            let mut docs = docs.clone();
            docs[bad] = docs[bad].replace("hosts: [a.global]", "hosts: {a: b}");
            docs[bad + 1] = docs[bad + 1].replace("resolution: DNS", "resolution: [DNS]");
            let text = docs.join("---\n");
            let want = parse(&text).unwrap_err();
            for threads in [1, 2, 3, 4] {
                let got = parse_runs(&text, threads, |_, _: &mut Vec<()>| {}).unwrap_err();
                assert_eq!(
                    got.to_string(),
                    want.to_string(),
                    "{threads} threads, error in document {bad}"
                );
            }
        }
    }

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
    fn byte_order_mark_and_directives_are_fine() {
        let m = parse(&format!("\u{feff}%YAML 1.1\n# c\n---\n{SE}")).unwrap();
        assert_eq!(m.entries.len(), 1);
        // The unclosed `[` itself (serde_yaml named the end of the file, line 21).
        let e = parse(&format!("{SE}---\n{SE}a: [\n")).unwrap_err();
        assert_eq!((e.line, e.column), (20, 4), "{e}");
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        // A syntax error, then a type error, in the second document.
        let text =
            format!("{SE}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: [unclosed\n");
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.column), (14, 9), "{e}");
        assert_eq!(e.to_string(), "line 14 column 9: name: expected string scalar");
        let e = parse(&format!(
            "{SE}---\n{}",
            SE.replace("  name: a\n", "  name: a\n  labels: {x: y\n")
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 16 column 12: while parsing a flow mapping, did not find expected ',' or '}'"
        );
        let e = parse(&format!(
            "{SE}---\n{}",
            SE.replace("hosts: [a.global]", "hosts: {not: a list}")
        ))
        .unwrap_err();
        assert_eq!(e.to_string(), "line 17 column 10: hosts: expected sequence start");
        // In flow style too, and after a leading comment and an empty document.
        let e = parse(&format!(
            "# c\n---\n---\n{}",
            SE.replace("  hosts: [a.global]", "  hosts: [a, {b: c}]")
        ))
        .unwrap_err();
        assert_eq!((e.line, e.column), (10, 14), "{e}");
        // The kind after the body: read again, still with the place.
        let late = "metadata: {name: a}\nspec:\n  hosts: 7\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n";
        let e = parse(&format!("{SE}---\n{late}")).unwrap_err();
        assert_eq!((e.line, e.column), (13, 10), "{e}");
        // Other places a message names count from the file's start too.
        let alias = SE
            .replace("  name: a\n", "  name: a\n  labels: &l {x: y}\n")
            .replace("[a.global]", "*l");
        let e = parse(&format!("{SE}---\n{alias}")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 18 column 10: hosts: expected sequence start (defined at line 15, column 14)"
        );
    }

    #[test]
    fn byte_order_mark() {
        let m = parse(&format!("\u{feff}{SE}---\n{SE}")).unwrap();
        assert_eq!(m.entries.len(), 2);
        let m = parse(&format!("\u{feff}# c\n---\n{SE}")).unwrap();
        assert_eq!(m.entries.len(), 1);
        // Lines are still counted from the first.
        let e = parse(&format!("\u{feff}{}", SE.replace("DNS", "[DNS"))).unwrap_err();
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn yaml_directives() {
        for text in [
            format!("%YAML 1.1\n---\n{SE}"),
            format!("%YAML 1.2\n# c\n--- # c\n{SE}"),
            "%YAML 1.2\n--- {apiVersion: networking.istio.io/v1, kind: ServiceEntry, metadata: {name: a}}\n".into(),
            format!("{SE}---\n%YAML 1.2\n---\n{}", SE.replace("name: a", "name: b")),
            format!("{SE}...\n%YAML 1.1\n---\n{}", SE.replace("name: a", "name: b")),
        ] {
            assert!(!parse(&text).unwrap().entries.is_empty(), "{text}");
        }
        // A directive wants a `---` after it, as YAML says.
        let e = parse(&format!("{SE}---\n%YAML 1.1\n{SE}")).unwrap_err();
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("document start"), "{e}");
    }

    #[test]
    fn yaml_1_1_scalars() {
        // Text where a string belongs, as serde_yaml read them: no Norway problem.
        let m = parse(
            &SE.replace("namespace: foo", "namespace: yes")
                .replace("[a.global]", "[on, y, a.global]"),
        )
        .unwrap();
        let se = &m.entries[0];
        assert_eq!(
            (se.namespace(), &se.spec.hosts[..]),
            ("yes", &["on", "y", "a.global"].map(String::from)[..])
        );
        assert_eq!(se.spec.addresses, ["240.0.0.1"]);
        // What kubectl would send as a number or boolean must be quoted.
        for bad in ["0755", "123", "1e3", "0x1f", "true", ".inf"] {
            let e = parse(&SE.replace("namespace: foo", &format!("namespace: {bad}"))).unwrap_err();
            assert_eq!((e.line, e.column), (5, 14), "{bad}: {e}");
            assert!(
                e.message.starts_with("namespace: ") && e.message.contains("quoted"),
                "{e}"
            );
        }
        let m = parse(&SE.replace("namespace: foo", "namespace: \"0755\"")).unwrap();
        assert_eq!(m.entries[0].namespace(), "0755");
        // Fields meshdns does not read are not interpreted: octal-looking ports are fine.
        let ports = SE.replace("spec:\n", "spec:\n  ports: [{number: 0755, name: on, protocol: TCP}]\n");
        assert_eq!(parse(&ports).unwrap().entries.len(), 1);
        // Keys that are not text are skipped like other unknown keys.
        let keys = format!("1: x\ntrue: y\n{SE}");
        assert_eq!(parse(&keys).unwrap().entries.len(), 1);
    }

    #[test]
    fn aliases_are_bounded() {
        let mut laughs = String::from(
            "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        );
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            laughs.push_str(&format!("  {name}: &{name} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = parse(&format!("{SE}---\n{laughs}")).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(e.line > 10 && e.message.contains("budget"), "{e}");
        // Aliases within reason are YAML like any other.
        let ok = SE.replace("  name: a\n", "  name: &n a\n  labels: {app: *n}\n");
        assert_eq!(parse(&ok).unwrap().entries.len(), 1);
    }

    #[test]
    fn a_big_list_is_not_refused_for_its_size() {
        // Over serde-saphyr's default budget of 250,000 nodes a document.
        let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
        for i in 0..30_000 {
            text.push_str(&format!(
                "- {{apiVersion: v1, kind: Service, metadata: {{name: s{i}, labels: {{a: b}}}}}}\n"
            ));
        }
        text.push_str("- {apiVersion: networking.istio.io/v1, kind: ServiceEntry, metadata: {name: x}, spec: {hosts: [x.global]}}\n");
        let m = parse(&text).unwrap();
        assert_eq!((m.entries.len(), m.ignored), (1, 30_000));
    }

    #[test]
    fn deep_flow_nesting_is_refused_quickly() {
        let text = format!(
            "kind: x\n# [[[[ {}\nx: '[[[[' \n\ny: {}",
            "[".repeat(2000),
            "[".repeat(5000)
        );
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (5, "recursion limit exceeded"));
        // 200 KB of `[` took libyaml 16 s; serde-saphyr stops at depth 255.
        let started = std::time::Instant::now();
        let e = parse(&format!("{SE}---\na: {}", "[".repeat(200_000))).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(e.line, 11, "{e}");
        // So is nesting deeper than 64, within the stack a parse has.
        let deep = (0..200)
            .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
            .collect::<String>();
        let e = std::thread::scope(|s| s.spawn(|| parse(&deep).unwrap_err()).join().unwrap());
        assert_eq!(e.line, 65, "{e}");
        // Quoted and commented brackets do not count; real nesting within the limit (64) parses.
        let ok = format!(
            "apiVersion: v1\nkind: ConfigMap\ndata: {{a: \"{}\\\"\"}} # {}\nb: {}{}",
            "[".repeat(2000),
            "{".repeat(2000),
            "[".repeat(60),
            "]".repeat(60)
        );
        assert_eq!(parse(&ok).unwrap().ignored, 1);
    }

    #[test]
    fn the_key_named_in_an_error_may_follow_any_character() {
        assert_eq!(key_before("  hosts: {a: b}", 10), Some("hosts"));
        assert_eq!(key_before("\u{de3d6}ports: 1", 9), Some("ports"));
        assert_eq!(key_before("\u{de3d6}: 1", 4), None);
        // What the fuzzer found: a 4-byte character right before the key.
        assert!(parse("anes\") #\u{de3d6}V:\0\0\0\0\0\x05es\")").is_err());
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
