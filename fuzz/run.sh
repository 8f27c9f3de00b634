#!/bin/sh
# Runs every cargo-fuzz target for a bounded time each: fuzz/run.sh SECONDS (default 30).
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on a stable toolchain.
# Corpora start from fuzz/seeds/<kind>/ and grow in fuzz/corpus/<target>/ (git-ignored).
# Exits non-zero if any target finds a crash (artifacts in fuzz/artifacts/<target>/).
set -eu
secs="${1:-30}"
case "$secs" in ''|*[!0-9]*) echo "usage: $0 SECONDS" >&2; exit 2;; esac
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
for pair in policy_parse:policy spec_parse:spec bootstrap_reply:bootstrap; do
    target="${pair%%:*}"
    seeds="seeds/${pair#*:}"
    mkdir -p "corpus/$target"
    echo "== fuzzing $target for ${secs}s"
    cargo fuzz run "$target" "corpus/$target" "$seeds" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
echo "== fuzzing finished without crashes"
