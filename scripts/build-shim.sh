#!/usr/bin/env bash
# Builds the router's binaries the way they ship. `containerd-shim-router-v2` runs once per pod
# sandbox and once per container (`start`), so its process start-up is on the pod start path:
# it is linked statically and position-dependent (no shared libraries to load, no symbol lookups,
# no relocations to apply before `main`), which halves what the router adds to a pod start (see
# docs/benchmarks.md). Only the final link of that one binary gets these flags (`cargo rustc`),
# so build scripts and proc-macros are built as usual.
# Usage: scripts/build-shim.sh [--release]   (binaries land in ${CARGO_TARGET_DIR:-target}/<profile>/)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=()
case "${1:-}" in
    --release) profile=(--release) ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac

cargo build "${profile[@]}" --quiet -p router-ctl --bin routerctl
cargo rustc "${profile[@]}" --quiet -p router-shim --bin containerd-shim-router-v2 -- \
    -C target-feature=+crt-static -C relocation-model=static
