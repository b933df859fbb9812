//! How fast `manifest::parse` reads a big file: 100,000 ServiceEntry
//! documents (about 17 MB, as a `--file` of that many entries would be),
//! in kubectl's block style and in the flow style `benches/load.py` writes.
//! Then where a start-up's time goes after the parse: converting the
//! entries, and building the index from them.
//! `cargo run --release --example manifest_speed [documents] [runs]`;
//! prints each run and the median, in documents and MB a second.

use std::time::Instant;

use std::path::Path;
use std::sync::Arc;

use meshdns::index::{Index, ZoneConfig};
use meshdns::source::manifest;
use prometheus::Registry;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a number"));
    let documents = args.next().unwrap_or(100_000);
    let runs = args.next().unwrap_or(5);
    for (style, text) in [("block", entries(documents)), ("flow", flow_entries(documents))] {
        measure(style, &text, documents, runs);
    }
    let text = flow_entries(documents);
    let (mut load, mut reset) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let index =
            Index::new(vec![Arc::from("global")], ZoneConfig::default(), None, &Registry::new()).expect("a valid zone");
        let file = Path::new("/bench/se.yaml");
        let started = Instant::now();
        let entries = meshdns::source::file::load(file, &text, &index).expect("valid manifests");
        load.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        index.reset(&meshdns::source::file::source_id(file), entries);
        reset.push(started.elapsed().as_secs_f64());
    }
    println!("parse and convert: median {:.3} s", median(&mut load));
    println!("index (one reset): median {:.3} s", median(&mut reset));
}

fn median(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn measure(style: &str, text: &str, documents: usize, runs: usize) {
    let mb = text.len() as f64 / 1e6;
    println!("{style} style: {documents} documents, {mb:.1} MB");
    let mut seconds = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let parsed = manifest::parse(text).expect("valid manifests");
        seconds.push(started.elapsed().as_secs_f64());
        assert_eq!(parsed.entries.len(), documents);
    }
    for s in &seconds {
        println!("  {:.3} s", s);
    }
    let median = median(&mut seconds);
    println!(
        "median {median:.3} s: {:.0} documents/s, {:.1} MB/s",
        documents as f64 / median,
        mb / median
    );
}

/// Realistic entries, about 170 bytes each, as kubectl writes them
/// (`apiVersion` and `kind` first).
fn entries(n: usize) -> String {
    let mut text = String::with_capacity(n * 180);
    for i in 0..n {
        let ns = i % 200;
        text.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: s{i}\n  namespace: ns{ns}\nspec:\n  hosts: [s{i}.ns{ns}.global]\n  addresses: [240.{}.{}.{}]\n  resolution: DNS\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    text
}

/// The same entries as `benches/load.py` writes them.
fn flow_entries(n: usize) -> String {
    let mut text = String::with_capacity(n * 200);
    for i in 0..n {
        let ns = i % 100;
        text.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc{i}, namespace: ns{ns}}}\nspec: {{hosts: [svc{i}.ns{ns}.global], addresses: [240.{}.{}.{}], resolution: DNS}}\n---\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    text
}
