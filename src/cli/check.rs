//! `meshdns check`: loads manifests as `serve` would and prints the records
//! they produce, as a table or as zone files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use crate::index::{self, Index, name};
use crate::source::file;
use crate::source::manifest;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Zone,
}

/// Checks `files` into `index` (fresh, with the zones to check against)
/// and prints the result; fails when a file is missing or invalid.
pub fn run(files: &[PathBuf], output: Output, index: Index) -> anyhow::Result<ExitCode> {
    let mut report = String::new();
    let mut invalid = 0;
    let mut records: Vec<(String, &'static str, IpAddr, String)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut defined_by: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for path in files {
        let found = file::expand(path).with_context(|| format!("cannot read {}", path.display()))?;
        if found.is_empty() {
            writeln!(
                report,
                "error: {}: no such file, or no *.yaml/*.yml in it",
                path.display()
            )?;
            invalid += 1;
        }
        for f in found {
            let text = std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
            let manifests = match manifest::parse(&text) {
                Ok(m) => m,
                Err(e) => {
                    writeln!(report, "error: {}: {e}", f.display())?;
                    invalid += 1;
                    continue;
                }
            };
            for se in &manifests.entries {
                let who = se.display_name();
                let (entry, left_out) = index.convert(&file::source_id(&f), se);
                for host in &entry.hosts {
                    defined_by
                        .entry(format!("{}.", host.name))
                        .or_default()
                        .push(who.clone());
                    for addr in &host.addrs {
                        let rtype = if addr.is_ipv4() { "A" } else { "AAAA" };
                        records.push((format!("{}.", host.name), rtype, *addr, who.clone()));
                    }
                }
                for s in &left_out {
                    skipped.push(format!("{who}  {}: {}", s.item, s.reason));
                }
            }
            index.reset(&file::source_id(&f), file::load(&f, &text, &index).unwrap_or_default());
        }
    }

    match output {
        Output::Zone => print!("{}", zone_file(&index.table())),
        Output::Text => {
            records.sort();
            let width = records.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
            println!("{:width$}  {:4}  {:39}  SOURCE", "NAME", "TYPE", "ADDRESS");
            for (name, rtype, addr, who) in &records {
                println!("{name:width$}  {rtype:4}  {:39}  {who}", addr.to_string());
            }
            if !skipped.is_empty() {
                println!("\nskipped:");
                skipped.iter().for_each(|s| println!("  {s}"));
            }
            let conflicts: Vec<_> = defined_by.iter().filter(|(_, who)| who.len() > 1).collect();
            if !conflicts.is_empty() {
                println!("\nconflicts (served as the union, oldest entry first):");
                for (name, who) in &conflicts {
                    println!("  {name}  defined by {}", who.join(", "));
                }
            }
            // What the table serves, against what the entries list.
            let table = index.table();
            let served: HashMap<&str, usize> = table
                .records()
                .into_iter()
                .map(|(name, node)| (name, node.v4().len() + node.v6().len()))
                .collect();
            let mut listed: BTreeMap<&str, HashSet<IpAddr>> = BTreeMap::new();
            for (name, _, addr, _) in &records {
                listed.entry(name.as_str()).or_default().insert(*addr);
            }
            let capped: Vec<_> = listed
                .iter()
                .map(|(name, addrs)| {
                    (
                        name,
                        addrs.len(),
                        served.get(name.trim_end_matches('.')).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, listed, served)| served < listed)
                .collect();
            if !capped.is_empty() {
                println!("\nover the addresses one name may have (the first ones are served):");
                for (name, listed, served) in &capped {
                    println!("  {name}  {listed} addresses, {served} served");
                }
            }
            println!(
                "\n{} records, {} skipped, {} conflicts, {} names over the address limit, {} invalid files",
                records.len(),
                skipped.len(),
                conflicts.len(),
                capped.len(),
                invalid
            );
        }
    }
    eprint!("{report}");
    Ok(if invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The table as RFC 1035 master files, one per zone, SOA serial 1.
fn zone_file(table: &index::Table) -> String {
    let c = &table.config;
    let mut out = String::new();
    for zone in table.zones.iter() {
        let _ = writeln!(out, "$ORIGIN {}\n$TTL {}", zone.name, c.ttl);
        let _ = writeln!(
            out,
            "@ {} IN SOA {} {} 1 {} {} {} {}\n@ {} IN NS {}",
            c.ttl,
            c.nameserver,
            c.hostmaster,
            index::SOA_REFRESH,
            index::SOA_RETRY,
            index::SOA_EXPIRE,
            c.negative_ttl,
            c.ttl,
            c.nameserver
        );
        let own: Vec<_> = table
            .records()
            .into_iter()
            .filter(|(n, _)| {
                name::in_zone(n, &zone.key)
                    && !table
                        .zones
                        .iter()
                        .any(|z| z.key.len() > zone.key.len() && name::in_zone(n, &z.key))
            })
            .collect();
        for (n, node) in own {
            node.v4()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN A {a}", c.ttl));
            node.v6()
                .iter()
                .for_each(|a| _ = writeln!(out, "{n}. {} IN AAAA {a}", c.ttl));
        }
    }
    out
}
