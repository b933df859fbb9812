//! Link options for the `meshdns` binary that depend on the C library it
//! will run on.
//!
//! Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): a
//! position-independent glibc build carries about 24,000 relative
//! relocations, 24 bytes each in `.rela.dyn`. The dynamic loader reads all of
//! them at start and the pages stay resident, about 0.6 MiB of RSS for the
//! life of the process. RELR packs them into a bitmap of a few KiB. It needs
//! glibc 2.36 or later at run time (the binary then names the version
//! `GLIBC_ABI_DT_RELR`, so an older glibc refuses it at exec with that name),
//! so it is only on when the build machine's own glibc has it and the binary
//! is for the build machine. The static musl image is not position-independent
//! and has no run-time relocations at all.
//!
//! `MESHDNS_RELR=1` or `=0` overrides the choice (e.g. when cross-linking
//! against a known glibc).

use std::process::Command;

/// The first glibc that applies DT_RELR.
const GLIBC_RELR: (u32, u32) = (2, 36);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MESHDNS_RELR");
    let relr = match std::env::var("MESHDNS_RELR").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        Ok(other) => panic!("MESHDNS_RELR={other}: use 1 (pack relocations) or 0 (do not)"),
        Err(_) => glibc_has_relr(),
    };
    if relr {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Lets the tests check that the binary they run was linked as decided.
    println!("cargo:rustc-env=MESHDNS_LINKED_RELR={}", u8::from(relr));
}

/// A glibc target that is this machine, whose glibc applies DT_RELR.
fn glibc_has_relr() -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" || var("HOST") != var("TARGET") {
        return false;
    }
    // `getconf GNU_LIBC_VERSION` prints "glibc 2.36".
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().strip_prefix("glibc ").unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= GLIBC_RELR,
        _ => false,
    }
}
