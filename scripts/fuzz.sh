#!/usr/bin/env bash
# The short fuzz run: every target in fuzz/ under libFuzzer for SECONDS
# each (default 60), one after the other, starting from the committed
# corpus. Not part of CI; `cargo test --test fuzz_corpus` replays the
# corpus there. Installs cargo-fuzz (under ~/.cache/meshdns/tools, at the
# version scripts/install-tools.sh pins) if it is missing; needs a nightly
# toolchain (`rustup toolchain install nightly`).
#
# New inputs go to fuzz/target/corpus/<target>, not the committed corpus;
# merge the interesting ones with
#   cargo +nightly fuzz cmin <target> fuzz/corpus/<target>
# A crash leaves its input in fuzz/artifacts/<target>/: minimize it
# (`cargo +nightly fuzz tmin <target> <file>`), fix it, and keep it in
# fuzz/regressions/<target>/ so the replay test guards it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"

# cargo-fuzz at the version scripts/install-tools.sh pins.
PATH="$(../scripts/install-tools.sh fuzz):$PATH"
export PATH

# No sanitizer: the targets run safe Rust, and ASan would halve the
# execution rate. Debug assertions and overflow checks stay on (the
# default without -O), so tcp.rs's buffer bound is checked.
for target in $(cargo +nightly fuzz list); do
    work="target/corpus/$target"
    mkdir -p "$work" "artifacts/$target"
    echo "== $target: ${seconds}s"
    log="target/$target.log"
    status=0
    cargo +nightly fuzz run --sanitizer none "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::|Done)|panicked|Test unit written' "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "$target failed (exit $status); see fuzz/$log and fuzz/artifacts/$target" >&2
        exit "$status"
    fi
done
