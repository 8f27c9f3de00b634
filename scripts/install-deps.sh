#!/usr/bin/env bash
# Installs the Debian 12 packages runtime-router needs to build, test and demo, and nothing else.
# Idempotent: packages already installed are left alone, and `apt-get update` runs at most once, only
# when something is missing. Needs root (uses sudo when run as another user).
#
#   containerd                   containerd 1.6, ctr and containerd-shim-runc-v2 (also the source of
#                                the Kata stand-in: no /dev/kvm here, so Kata itself cannot run)
#   runc, runsc                  OCI runtimes of the built-in backend (runsc = gVisor)
#   busybox-static               the only binary in the test images, built offline by integration/
#   containernetworking-plugins  CNI bridge + host-local for pods with their own network namespace
#   iproute2                     `ip`, used to delete each test harness's bridge
#   iptables                     used by the CNI plugins when a network needs it
#   protobuf-compiler            `protoc`, needed by the k8s-cri crate's build script
#   gcc, libc6-dev               the linker Rust needs
#   procps                       `ps`, used by the demo
#
# The test harness never uses a system containerd: it starts its own in a temp dir. If this script
# installs the containerd package and Debian starts its service, the service is stopped and
# disabled again (set KEEP_SYSTEM_CONTAINERD=1 to keep it). A containerd that was already installed
# is not touched.
set -euo pipefail

PACKAGES=(
    containerd runc runsc busybox-static containernetworking-plugins iproute2 iptables
    protobuf-compiler gcc libc6-dev procps
    prometheus  # promtool checks `routerctl metrics` output; one e2e test scrapes it with a real server
)

SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps.sh: run as root (or install sudo)" >&2
        exit 1
    fi
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps.sh: all packages present (${PACKAGES[*]})"
else
    had_containerd=0
    installed containerd && had_containerd=1
    echo "install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$had_containerd" = 0 ] && [ "${KEEP_SYSTEM_CONTAINERD:-0}" != 1 ] \
        && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now containerd.service >/dev/null 2>&1 || true
        echo "install-deps.sh: stopped and disabled the system containerd service (tests start their own)"
    fi
fi

# Sanity: the binaries the harness and the router expect.
for bin in containerd ctr containerd-shim-runc-v2 runc runsc protoc ip; do
    command -v "$bin" >/dev/null 2>&1 || { echo "install-deps.sh: $bin not on PATH" >&2; exit 1; }
done
for f in /bin/busybox /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback; do
    [ -x "$f" ] || { echo "install-deps.sh: $f missing" >&2; exit 1; }
done
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps.sh: note: no cargo on PATH; a Rust toolchain (rustup, 1.85 or newer) is needed to build" >&2
fi
