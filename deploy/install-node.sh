#!/usr/bin/env bash
# Installs runtime-router on a node that already runs containerd (1.6 or newer, config version 2).
# Usage: deploy/install-node.sh [TARGET_DIR]   (run from a checkout after `scripts/build-shim.sh --release`)
# It copies the binaries, installs the policy only if none exists, validates it together with the
# containerd config, and tells you what to add to containerd's config. It never restarts containerd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-"$here/../target/release"}
prefix=${PREFIX:-/usr/local/bin}
policy=/etc/containerd/runtime-router.toml
containerd_config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}

for bin in containerd-shim-router-v2 routerctl; do
    if [ ! -x "$target/$bin" ]; then
        echo "missing $target/$bin: build with 'scripts/build-shim.sh --release' first" >&2
        exit 1
    fi
    install -m 0755 "$target/$bin" "$prefix/$bin"
done

# the tier handlers of deploy/runtime-router.toml's [handlers] (containerd-config.toml registers
# them): containerd runs containerd-shim-<handler>-v2, the router reads the name
for handler in router-sandbox router-vm; do
    ln -sfn containerd-shim-router-v2 "$prefix/containerd-shim-$handler-v2"
done

install -d -m 0755 /etc/containerd /var/log/runtime-router
if [ -e "$policy" ]; then
    echo "keeping existing policy $policy"
else
    install -m 0644 "$here/runtime-router.toml" "$policy"
    echo "installed example policy $policy: review tenants and backends before routing pods"
fi

if [ -e "$containerd_config" ]; then
    "$prefix/routerctl" check "$policy" --containerd-config "$containerd_config" || {
        echo "routerctl check found problems (above); merge deploy/containerd-config.toml into $containerd_config" >&2
        exit 1
    }
else
    "$prefix/routerctl" check "$policy"
    echo "no $containerd_config: merge deploy/containerd-config.toml into your containerd config"
fi
echo "done: restart containerd when its config names the router handler; running pods keep their shims"
