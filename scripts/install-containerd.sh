#!/usr/bin/env bash
# Installs Debian's containerd packages of other lines beside the system's containerd (1.6 on
# Debian 12), into a private prefix, for the e2e version matrix. Nothing outside the prefix is
# touched: apt runs with a private sources file, list dir and cache dir built from the machine's
# own mirror (the first `URIs:` line of /etc/apt/sources.list.d/debian.sources), the package is
# fetched with `apt-get download` and unpacked with `dpkg -x` (never installed, so dpkg's database
# and the system's containerd, runc and services stay as they are).
#
# Usage: scripts/install-containerd.sh [SPEC...]     SPEC = SUITE[:VERSION-PREFIX]
#   default: trixie:1.7.24 sid:2.1.9
# Prints one line per installed containerd: `<version> <bin dir>`; the bin dir holds containerd,
# containerd-shim-runc-v2 and ctr and is what ROUTER_E2E_CONTAINERD_DIR names.
# Prefix: $RUNTIME_ROUTER_CI_PREFIX (default /opt/runtime-router-ci) → <prefix>/containerd-<version>/.
# The system's runc is kept (newer Debian runc needs a newer glibc than Debian 12's).
set -euo pipefail

prefix=${RUNTIME_ROUTER_CI_PREFIX:-/opt/runtime-router-ci}
sources=/etc/apt/sources.list.d/debian.sources
[ "$#" -gt 0 ] || set -- trixie:1.7.24 sid:2.1.9

mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$sources" | head -n1)
if [ -z "$mirror" ]; then
    echo "install-containerd: no URIs: line in $sources" >&2
    exit 1
fi
keyring=$(sed -n 's/^Signed-By:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$sources" | head -n1)
keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}

apt_dir="$prefix/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
list="$apt_dir/sources.list"
: >"$list.tmp"
for spec in "$@"; do
    suite=${spec%%:*}
    echo "deb [signed-by=$keyring] $mirror $suite main" >>"$list.tmp"
done
sort -u "$list.tmp" >"$list"
rm -f "$list.tmp"

apt_opts=(
    -o "Dir::Etc::SourceList=$list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::Status=/var/lib/dpkg/status"
    -o "APT::Get::List-Cleanup=0"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
)
# Lists younger than a day are reused (a CI run twice in a row does not fetch them again).
stamp="$apt_dir/lists/.updated"
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ] || [ "$list" -nt "$stamp" ]; then
    apt-get "${apt_opts[@]}" -qq update >&2
    touch "$stamp"
fi

for spec in "$@"; do
    suite=${spec%%:*}
    want=""
    [ "$spec" = "$suite" ] || want=${spec#*:}
    # Versions apt knows for the suite, newest first; the first one starting with `want`.
    version=$(apt-cache "${apt_opts[@]}" madison containerd |
        awk -v s="$suite" '$0 ~ ("/" s "[ /]") || $0 ~ (" " s "/") { print $3 }' |
        awk -v w="$want" 'index($0, w) == 1 { print; exit }')
    if [ -z "$version" ]; then
        echo "install-containerd: no containerd ${want:-(any)} in suite $suite of $mirror" >&2
        apt-cache "${apt_opts[@]}" madison containerd >&2 || true
        exit 1
    fi
    upstream=${version#*:}
    upstream=${upstream%%[~+-]*}
    dest="$prefix/containerd-$upstream"
    if [ -x "$dest/usr/bin/containerd" ] && [ "$(cat "$dest/.deb-version" 2>/dev/null)" = "$version" ]; then
        echo "$upstream $dest/usr/bin"
        continue
    fi
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "containerd=$version" >&2)
    deb=$(ls -t "$apt_dir/debs"/containerd_*.deb | while read -r f; do
        [ "$(dpkg-deb -f "$f" Version)" = "$version" ] && echo "$f" && break
    done)
    [ -n "$deb" ] || { echo "install-containerd: downloaded deb of $version not found" >&2; exit 1; }
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    dpkg -x "$deb" "$dest.tmp"
    echo "$version" >"$dest.tmp/.deb-version"
    got=$("$dest.tmp/usr/bin/containerd" --version) || {
        echo "install-containerd: $deb's containerd does not run here" >&2
        exit 1
    }
    echo "install-containerd: $got" >&2
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "$upstream $dest/usr/bin"
done
