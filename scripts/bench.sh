#!/usr/bin/env bash
# Benchmarks (never run by the test suite): the decision path (criterion) and the side-by-side runs
# against containerd's Go runc shim on one private containerd. Usage:
#   scripts/bench.sh [MODE ...] [--iterations N]   MODE: handoff builtin memory scale gvisor all
# The router binaries are built in release first: the harness runs them from target/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --quiet -p router-shim --bins
cargo bench -p router-benches --bench decision -- --noplot
cargo bench -p router-benches --bench shims -- "$@"
