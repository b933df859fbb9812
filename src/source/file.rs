//! The file source: `--file` paths (YAML files, or directories of `*.yaml`
//! / `*.yml`), loaded at start-up and watched with inotify. Each file is its
//! own [`SourceId`], so a change re-reads one file and resets only the
//! entries that file defines. A file that stops parsing keeps its last good
//! state. Watches follow the paths, not the inodes seen at start-up: a
//! directory deleted and made again, a retargeted symlink, or a symlink's
//! target elsewhere are all watched again after each rescan. Only what the
//! paths need is watched, so writes beside them cost nothing.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use hashbrown::HashTable;
use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use prometheus::IntCounter;
use tracing::{debug, error, info, warn};

use super::manifest;
use crate::index::{Entry, Index, Namespaces, Skipped, SourceId};

/// Quiet time after a change before reloading, so an editor's
/// write-rename-chmod burst is read once.
const DEBOUNCE: Duration = Duration::from_millis(50);
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);
/// Files at least this big are read on several threads at once.
const PARALLEL_BYTES: usize = 1 << 20;
/// At most this many: reading is about half of a big file's start-up, the
/// index build the rest.
const MAX_PARSE_THREADS: usize = 4;
/// Rescans after new watches, at most (`Files::watch_and_catch_up`): a
/// watch set that still grows after that many is churning, and its next
/// change raises an event of its own.
const CATCH_UP_PASSES: usize = 4;

type SharedWatcher = Mutex<notify::RecommendedWatcher>;

/// The file source; dropping it stops the watch.
pub struct FileSource {
    _watcher: Arc<SharedWatcher>,
}

impl FileSource {
    /// Loads every path (an error if one is missing or unreadable), then
    /// watches them from a background thread. Relative paths are taken from
    /// the current directory, once.
    /// `errors` counts failed reloads (`meshdns_file_reload_errors_total`).
    pub fn start(paths: Vec<PathBuf>, index: Arc<Index>, errors: IntCounter) -> anyhow::Result<Self> {
        let paths = paths
            .iter()
            .map(|path| {
                std::fs::metadata(path).with_context(|| format!("--file {}", path.display()))?;
                // inotify reports paths as they were watched; absolute ones
                // match the events whatever the spelling of --file.
                std::path::absolute(path).with_context(|| format!("--file {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .context("cannot start the file watcher (inotify)")?;
        let watcher = Arc::new(Mutex::new(watcher));
        let mut state = Files::new(paths, index, errors, &watcher);
        // At start-up there is no good state to keep: refuse to become ready
        // on a broken file (`meshdns check` shows the same errors).
        let failed = state.rescan();
        if !failed.is_empty() {
            anyhow::bail!("invalid ServiceEntry manifests:\n  {}", failed.join("\n  "));
        }
        let failed = state.watch_and_catch_up();
        if let Some((dir, e)) = failed.into_iter().next() {
            return Err(anyhow::anyhow!(e).context(format!(
                "cannot watch {} (is fs.inotify.max_user_watches/instances exhausted?)",
                dir.display()
            )));
        }
        std::thread::Builder::new()
            .name("file-watch".into())
            .spawn(move || state.watch(rx))
            .context("cannot start the file watch thread")?;
        Ok(Self { _watcher: watcher })
    }
}

/// The directory holding `path` (absolute); the root holds itself.
fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(path).to_path_buf()
}

struct Files {
    /// Absolute.
    paths: Vec<PathBuf>,
    index: Arc<Index>,
    known: HashMap<PathBuf, Fingerprint>,
    errors: IntCounter,
    /// Gone once the [`FileSource`] is dropped.
    watcher: Weak<SharedWatcher>,
    /// Directories watched, with the (device, inode) each had when its
    /// watch was added: a watch follows that inode, not the path.
    watched: HashMap<PathBuf, (u64, u64)>,
    /// Where symlinked files really are, so their edits count as changes.
    targets: HashSet<PathBuf>,
    /// The files the last rescan found (or kept, for a path it could not
    /// list).
    listed: HashSet<PathBuf>,
}

/// Cheap change detection: metadata first, the content hash decides. The
/// ctime is in it because tools that keep the mtime (`cp -p`, `rsync -t`,
/// tar) cannot keep that.
#[derive(Clone, Copy, PartialEq)]
struct Fingerprint {
    meta: (u64, u64, u64, i64, i64, i64, i64),
    content: u64,
}

impl Files {
    /// Nothing loaded or watched yet; `paths` absolute.
    fn new(paths: Vec<PathBuf>, index: Arc<Index>, errors: IntCounter, watcher: &Arc<SharedWatcher>) -> Self {
        Self {
            paths,
            index,
            known: HashMap::new(),
            errors,
            watcher: Arc::downgrade(watcher),
            watched: HashMap::new(),
            targets: HashSet::new(),
            listed: HashSet::new(),
        }
    }

    fn watch(mut self, rx: mpsc::Receiver<notify::Result<notify::Event>>) {
        while let Ok(event) = rx.recv() {
            if !self.note(event) {
                continue;
            }
            let start = Instant::now();
            while start.elapsed() < DEBOUNCE_MAX {
                match rx.recv_timeout(DEBOUNCE) {
                    Ok(event) => _ = self.note(event),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            self.rescan();
            for (dir, error) in self.watch_and_catch_up() {
                warn!(dir = %dir.display(), %error, "cannot watch; its changes show at the next rescan");
            }
        }
    }

    /// Watches what the last rescan found, and rescans while that adds a
    /// watch: a write that landed before its directory's watch existed
    /// raised no event, so only a scan after the watch sees it. Returns the
    /// directories it could not watch.
    fn watch_and_catch_up(&mut self) -> Vec<(PathBuf, notify::Error)> {
        for _ in 0..CATCH_UP_PASSES {
            let (added, failed) = self.rewatch();
            if !added {
                return failed;
            }
            self.rescan();
        }
        self.rewatch().1
    }

    /// Whether an event may mean new content. Opens and reads are not: the
    /// rescan's own `read_dir` would otherwise wake the watcher forever.
    /// Events about other files in a watched directory (a log, say) are not
    /// either, so that a busy neighbour costs no rescans. A watched
    /// directory removed has lost its watch, even if a new one gets its
    /// inode number: it is watched again after the rescan.
    fn note(&mut self, event: notify::Result<notify::Event>) -> bool {
        if let Ok(event) = &event
            && (event.kind.is_remove() || matches!(event.kind, EventKind::Modify(ModifyKind::Name(_))))
        {
            for path in &event.paths {
                // Re-added by the next rewatch: a moved directory's watch
                // went with it, a removed one's is gone.
                if let Some(id) = self.watched.get_mut(path) {
                    *id = GONE;
                }
            }
        }
        match event {
            Ok(event) if event.kind.is_access() => false,
            Ok(event)
                if !event.paths.is_empty()
                    && !event
                        .paths
                        .iter()
                        .any(|p| self.targets.contains(p) || concerns(p, &self.paths)) =>
            {
                false
            }
            Ok(event) => {
                debug!(?event.kind, paths = ?event.paths, "file event");
                true
            }
            Err(e) => {
                warn!(error = %e, "file watch error; rescanning");
                true
            }
        }
    }

    /// Watches what can change what the paths load, as the paths resolve
    /// now; returns whether it added a watch, and the directories it could
    /// not watch.
    fn rewatch(&mut self) -> (bool, Vec<(PathBuf, notify::Error)>) {
        let Some(watcher) = self.watcher.upgrade() else {
            return (false, Vec::new());
        };
        let (wanted, targets) = watch_set(&self.paths, &self.listed);
        self.targets = targets;
        let mut watcher = watcher.lock().unwrap_or_else(|e| e.into_inner());
        let (mut added, mut failed) = (false, Vec::new());
        // Stale first: one inode must never have two watches (inotify gives
        // both paths one descriptor, and notify would confuse them).
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(dir, id)| wanted.get(*dir) != Some(id))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in stale {
            self.watched.remove(&dir);
            // Fails when the directory went away, which ended the watch anyway.
            let _ = watcher.unwatch(&dir);
        }
        for (dir, id) in wanted {
            if self.watched.contains_key(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %dir.display(), "watching");
                    self.watched.insert(dir, id);
                    added = true;
                }
                Err(e) => failed.push((dir, e)),
            }
        }
        (added, failed)
    }

    /// Re-reads whatever changed on disk; unchanged files cost one stat.
    /// Returns the files that failed to load (each already logged).
    fn rescan(&mut self) -> Vec<String> {
        let mut present = HashSet::new();
        let mut failed = Vec::new();
        for path in self.paths.clone() {
            match expand(&path) {
                Ok(files) => {
                    for file in files {
                        // Named twice (`--file d --file d/a.yaml`): loaded once.
                        if !present.insert(file.clone()) {
                            continue;
                        }
                        if let Err(e) = self.reload(&file) {
                            failed.push(format!("{}: {e}", file.display()));
                        }
                    }
                }
                // Unreadable is not gone: keep what was loaded from there.
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot list; keeping the last good state of its files");
                    present.extend(self.known.keys().filter(|k| k.starts_with(&path)).cloned());
                }
            }
        }
        let gone: Vec<PathBuf> = self.known.keys().filter(|p| !present.contains(*p)).cloned().collect();
        for file in gone {
            info!(file = %file.display(), "file removed; dropping its entries");
            self.known.remove(&file);
            self.index.reset(&source_id(&file), Vec::new());
        }
        self.listed = present;
        failed
    }

    fn reload(&mut self, file: &Path) -> Result<(), String> {
        let meta = match std::fs::metadata(file) {
            Ok(m) => (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ),
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot stat file; keeping its last good state");
                return Ok(());
            }
        };
        let known = self.known.get(file).copied();
        if known.is_some_and(|k| k.meta == meta) {
            return Ok(());
        }
        let started = Instant::now();
        let text = match read(file) {
            Ok(text) => text,
            Err(e) => {
                self.errors.inc();
                error!(file = %file.display(), error = %e, "cannot read file; keeping its last good state");
                return Err(e.to_string());
            }
        };
        let fingerprint = Fingerprint {
            meta,
            content: hash(&text),
        };
        self.known.insert(file.to_path_buf(), fingerprint);
        if known.is_some_and(|k| k.content == fingerprint.content) {
            return Ok(());
        }
        // A writer that truncates first (`kubectl get … > file`) shows an
        // empty file for a moment; deleting the file is how entries go.
        if text.trim().is_empty() {
            warn!(file = %file.display(), "file is empty; keeping its last good state (delete it to drop its entries)");
            return Ok(());
        }
        let read_done = Instant::now();
        match load(file, &text, &self.index) {
            Ok(entries) => {
                let (count, parsed) = (entries.len(), Instant::now());
                self.index.reset(&source_id(file), entries);
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                info!(file = %file.display(), entries = count,
                    read_ms = ms(read_done - started),
                    parse_convert_ms = ms(parsed - read_done),
                    index_ms = ms(parsed.elapsed()),
                    "file loaded");
                Ok(())
            }
            Err(e) => {
                self.errors.inc();
                error!(file = %file.display(), line = e.line, column = e.column, error = %e.message,
                    "invalid ServiceEntry manifest; keeping the file's last good state");
                Err(e.to_string())
            }
        }
    }
}

/// A watched directory's identity once an event said it moved or went.
const GONE: (u64, u64) = (0, 0);

/// The directories to watch for `paths`, whose files are `files`, each
/// with its (device, inode), and the real paths of symlinked files: the
/// directory holding each path's files, and the real directory of each
/// symlinked file. The directory above a holder is watched only while it
/// tells something: the holder is missing (until it is made again) or is a
/// symlink (which may be retargeted). Watching it always would wake meshdns
/// for every write next to the holder, a log for instance. An inode
/// reached by two paths is watched once.
fn watch_set(paths: &[PathBuf], files: &HashSet<PathBuf>) -> (HashMap<PathBuf, (u64, u64)>, HashSet<PathBuf>) {
    let (mut holders, mut above) = (Vec::new(), Vec::new());
    for path in paths {
        let holder = if path.is_dir() { path.clone() } else { parent(path) };
        let link = std::fs::symlink_metadata(&holder).map(|m| m.file_type().is_symlink());
        if !matches!(link, Ok(false)) {
            above.push(parent(&holder));
        }
        holders.push(holder);
    }
    let targets: HashSet<PathBuf> = files
        .iter()
        .filter(|file| std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink()))
        .filter_map(|file| std::fs::canonicalize(file).ok())
        .collect();
    let real_dirs: Vec<PathBuf> = targets.iter().map(|real| parent(real)).collect();
    let mut wanted = HashMap::new();
    let mut inodes = HashSet::new();
    // Events name the path a directory was watched by, so for an inode
    // reached several ways the --file spelling wins.
    for dir in holders.into_iter().chain(real_dirs).chain(above) {
        if let Ok(m) = std::fs::metadata(&dir)
            && m.is_dir()
            && inodes.insert((m.dev(), m.ino()))
        {
            wanted.insert(dir, (m.dev(), m.ino()));
        }
    }
    (wanted, targets)
}

/// Whether a change at `path` may change what `paths` load: one of them
/// (or a parent), a YAML file (in a watched directory), or ConfigMap's
/// `..data` swap, which replaces every file of the volume at once.
fn concerns(path: &Path, paths: &[PathBuf]) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("..")
        || name.ends_with(".yaml")
        || name.ends_with(".yml")
        || paths.iter().any(|p| p.starts_with(path))
}

/// A path's YAML files: itself, or a directory's `*.yaml` / `*.yml`
/// (hidden ones skipped, which also skips ConfigMap's `..data` internals).
pub fn expand(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

pub fn source_id(file: &Path) -> SourceId {
    SourceId::File(file.display().to_string().into())
}

/// The largest file meshdns reads: far above any real manifest set (100,000
/// ServiceEntries are about 17 MB), and small enough that a runaway writer
/// cannot make one reload hold gigabytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads one manifest file, refusing one over [`MAX_FILE_BYTES`] (or not
/// UTF-8) with an error that says so.
pub fn read(file: &Path) -> std::io::Result<String> {
    read_capped(file, MAX_FILE_BYTES)
}

fn read_capped(file: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    // Reading at most one byte past the cap also bounds a file that grows
    // while it is read.
    std::fs::File::open(file)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "larger than {max} bytes, the limit for one file"
        )));
    }
    Ok(text)
}

/// Parses and converts one file's entries (through [`Index::convert`],
/// which logs what is skipped). Each ServiceEntry is converted as soon as
/// it is parsed, so only the entries, not the parsed objects, are ever
/// held all at once.
pub fn load(file: &Path, text: &str, index: &Index) -> Result<Vec<Entry>, manifest::ManifestError> {
    load_each(file, text, index, |_, _| {})
}

/// [`load`], also handing `skipped` what each kept entry left out.
pub fn load_each(
    file: &Path,
    text: &str,
    index: &Index,
    mut skipped: impl FnMut(&Entry, Vec<Skipped>),
) -> Result<Vec<Entry>, manifest::ManifestError> {
    let source = source_id(file);
    let threads = if text.len() < PARALLEL_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_PARSE_THREADS))
    };
    let (runs, _ignored) = manifest::parse_runs(text, threads, |se, out: &mut Vec<(Entry, Vec<Skipped>)>| {
        out.push(index.convert(&source, &se));
    })?;
    let total = runs.iter().map(Vec::len).sum();
    let mut namespaces = Namespaces::default();
    let mut entries: Vec<Entry> = Vec::with_capacity(total);
    // Positions in `entries` by namespace and name (one file, one source):
    // a repeat is found without keeping a copy of every id.
    let hasher = foldhash::quality::RandomState::default();
    let key = |e: &Entry| hasher.hash_one((&*e.id.namespace, e.id.name.as_str()));
    let mut seen: HashTable<usize> = HashTable::with_capacity(total);
    for (run, list) in runs.into_iter().enumerate() {
        for (entry, left_out) in list {
            // Runs after the first were read on threads that have ended:
            // copied, so that nothing kept stays in their allocator arenas.
            let mut entry = if run == 0 { entry } else { entry.deep_copy() };
            // One copy per namespace: the index keeps its own, and many
            // short-lived ones would leave holes between the entries it keeps.
            entry.id.namespace = namespaces.intern_str(&entry.id.namespace);
            let hash = key(&entry);
            let same =
                |&i: &usize| entries[i].id.namespace == entry.id.namespace && entries[i].id.name == entry.id.name;
            if seen.find(hash, same).is_some() {
                warn!(file = %file.display(), entry = %entry.id, "ServiceEntry defined twice in one file; the first one is used");
                continue;
            }
            seen.insert_unique(hash, entries.len(), |&i| key(&entries[i]));
            if !left_out.is_empty() {
                skipped(&entry, left_out);
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The content half of a file's fingerprint. It only tells a rewrite with
/// the same bytes from a change, so it need not be keyed. foldhash instead
/// of SipHash took the read of 100k entries (18 MB) from 23–29 to 14–18 ms.
fn hash(text: &str) -> u64 {
    foldhash::quality::FixedState::default().hash_one(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::{mk_index, resolve};

    fn mk_doc(namespace: &str, name: &str, address: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             spec: {{hosts: [{name}.{namespace}.global], addresses: [{address}], resolution: DNS}}\n"
        )
    }

    /// A repeat of a namespace and name keeps the first, whichever parse
    /// thread read each (the file is big enough to be read in parallel);
    /// the same name in another namespace is another entry.
    #[test]
    fn an_entry_defined_twice_in_one_file_keeps_the_first() {
        let mut docs = vec![mk_doc("ns", "dup", "240.0.0.1"), mk_doc("other", "dup", "240.0.0.2")];
        while docs.iter().map(String::len).sum::<usize>() < 2 * PARALLEL_BYTES {
            docs.push(mk_doc("ns", &format!("svc{}", docs.len()), "240.0.1.1"));
        }
        docs.push(mk_doc("ns", "dup", "240.0.0.3"));
        let text = docs.join("---\n");
        let index = mk_index();
        let entries = load(Path::new("/etc/meshdns/se.yaml"), &text, &index).unwrap();
        assert_eq!(entries.len(), docs.len() - 1);
        let dups: Vec<_> = entries
            .iter()
            .filter(|e| e.id.name == "dup")
            .map(|e| (&*e.id.namespace, e.hosts[0].addrs[0].to_string()))
            .collect();
        assert_eq!(
            dups,
            [("ns", "240.0.0.1".to_string()), ("other", "240.0.0.2".to_string())]
        );
    }

    /// A write that lands after a rescan but before the watch on its
    /// directory exists raises no event (a directory made again, say, then
    /// written at once): the rescan after a new watch must see it.
    #[test]
    fn a_write_before_its_directorys_watch_is_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let file = d.join("a.yaml");
        std::fs::write(&file, mk_doc("ns", "svc", "240.0.0.1")).unwrap();
        let index = Arc::new(mk_index());
        let (tx, _rx) = mpsc::channel();
        let watcher = notify::recommended_watcher(move |event| _ = tx.send(event)).unwrap();
        let watcher = Arc::new(Mutex::new(watcher));
        let errors = IntCounter::new("errors", "errors").unwrap();
        let mut files = Files::new(vec![d], index.clone(), errors, &watcher);
        assert!(files.rescan().is_empty());
        assert_eq!(resolve(&index, "svc.ns.global"), "240.0.0.1");

        std::fs::write(&file, mk_doc("ns", "svc", "240.0.0.2")).unwrap();
        assert!(files.watch_and_catch_up().is_empty());
        assert_eq!(resolve(&index, "svc.ns.global"), "240.0.0.2");
        // Watched already: the next call adds nothing, so scans nothing.
        assert!(!files.rewatch().0);
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("se.yaml");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(read_capped(&path, 10).unwrap(), "0123456789");
        let e = read_capped(&path, 9).unwrap_err();
        assert_eq!(e.to_string(), "larger than 9 bytes, the limit for one file");
    }

    #[test]
    fn only_events_that_may_change_the_files_count() {
        let paths = [PathBuf::from("/etc/meshdns/se.conf"), PathBuf::from("/srv/entries")];
        for yes in [
            "/etc/meshdns/se.conf",
            "/etc/meshdns",
            "/etc",
            "/etc/meshdns/..data",
            "/etc/meshdns/..2026_11_22_10_00_00.123",
            "/srv/entries/new.yaml",
            "/srv/entries/new.yml",
            "/srv/entries",
        ] {
            assert!(concerns(Path::new(yes), &paths), "{yes}");
        }
        for no in [
            "/etc/meshdns/meshdns.log",
            "/srv/entries/notes.txt",
            "/srv/entries/.x.swp",
        ] {
            assert!(!concerns(Path::new(no), &paths), "{no}");
        }
    }
}
