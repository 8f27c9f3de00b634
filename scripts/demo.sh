#!/usr/bin/env bash
# The demo, from a fresh Debian 12 machine (as root, with a Rust toolchain): installs what it needs,
# builds the router, starts a private containerd whose only runtime handler is the router, runs a
# trusted pod (namespace telemetry → built-in runc backend) and an untrusted pod (namespace
# customer-a → built-in gVisor backend), prints where each landed and why (decision record, serving
# shim, the kernel each pod sees), three refusals (one by the untrusted tenant's Pod Security baseline), and the audit lines; then removes everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-shim.sh --release
cargo build --release --quiet -p router-integration --example demo
"${CARGO_TARGET_DIR:-target}/release/examples/demo"
