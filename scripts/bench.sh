#!/usr/bin/env bash
# Benchmarks (never run by the test suite): the decision path (criterion) and the side-by-side runs
# against containerd's Go runc shim on one private containerd. Usage:
#   scripts/bench.sh [MODE ...] [--iterations N]   MODE: handoff builtin memory scale gvisor all
# The router binaries are built in release first, as they ship (scripts/build-shim.sh): the harness
# runs them from target/release/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-shim.sh --release
cargo bench -p router-benches --bench decision -- --noplot
cargo bench -p router-benches --bench shims -- "$@"
